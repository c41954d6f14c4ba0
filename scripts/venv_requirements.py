"""Which of edgerec's own requirements a venv holds in another build, and what to install around them.

Run by scripts/install-service.sh with the service venv's python, before it upgrades edgerec in that venv.
A Jetson or an Intel box replaces the CPU wheels edgerec depends on with accelerated builds of the same
module: `onnxruntime-gpu` (JetPack) or `onnxruntime-openvino` instead of `onnxruntime`, JetPack's or
a GUI OpenCV instead of `opencv-python-headless`. pip only knows the distribution names, so a plain
`pip install --upgrade edgerec` would install the CPU wheel over the accelerated module. This script
tells the installer which requirements are replaced, and lists edgerec's other requirements to install
after `pip install --no-deps`:

    python venv_requirements.py replaced                 # e.g. "onnxruntime" (one name per line; none: empty)
    python venv_requirements.py requirements --except onnxruntime
                                                         # numpy>=1.24, opencv-python-headless>=4.8, ...

Standard library only: it runs in whatever venv the installer finds, before edgerec is upgraded there.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import importlib.util
import re
import sys
from collections.abc import Callable

# distribution edgerec requires -> the module it provides, which other builds provide too
REPLACEABLE = {"onnxruntime": "onnxruntime", "opencv-python-headless": "cv2"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def replaced(
    has_distribution: Callable[[str], bool] = installed, has_module: Callable[[str], bool] = importable
) -> list[str]:
    """Requirements whose module imports although their own distribution is not installed."""
    return [dist for dist, module in REPLACEABLE.items() if not has_distribution(dist) and has_module(module)]


def requirements(requires: list[str], leave_out: set[str]) -> list[str]:
    """edgerec's requirement strings (environment markers kept for pip), without extras and LEAVE_OUT."""
    kept = []
    for requirement in requires:
        if re.search(r"\bextra\s*==", requirement):
            continue
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if name and normalise(name.group(1)) not in leave_out:
            kept.append(requirement.strip())
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("replaced", help="print the requirements this venv holds in another build")
    listing = sub.add_parser("requirements", help="print edgerec's requirements, one per line")
    listing.add_argument("--except", dest="leave_out", nargs="*", default=[], metavar="DIST")
    listing.add_argument("--distribution", default="edgerec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command == "replaced":
        for distribution in replaced():
            print(distribution)
        return 0
    try:
        requires = metadata.requires(args.distribution) or []
    except metadata.PackageNotFoundError:
        print(f"venv_requirements.py: error: {args.distribution} is not installed in {sys.prefix}", file=sys.stderr)
        return 2
    for requirement in requirements(requires, {normalise(d) for d in args.leave_out}):
        print(requirement)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
