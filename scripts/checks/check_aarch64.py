"""Helper of scripts/checks/check_aarch64.sh (run that, not this): dependency list, probes, and the report.

    python scripts/checks/check_aarch64.py requirements 3.10       # pyproject's runtime dependencies for that Python
    python scripts/checks/check_aarch64.py versions                # JSON: machine, Python and library versions
    python scripts/checks/check_aarch64.py fit OUT.npz PHOTO...   # edge.core.preprocess.fit of each photo, by name
    python scripts/checks/check_aarch64.py infer OUT.npz PIXELS.npz [MODEL]  # the model's probabilities on them
    python scripts/checks/check_aarch64.py report --wheels cp311=DIR ... --x86 DIR --arm DIR [--arm DIR ...]

`versions`, `fit` and `infer` also run under emulation, so this file imports only the standard library at the
top. `report` compares what the same commands wrote on this host (--x86) and under emulation (one --arm per
emulated CPU): `edgerec info --json`, `edgerec classify --json --top-k 1000` per model, fit's pixels, the models
on the x86 pixels, the events of `edgerec run --source demo`. It prints no timings (emulated ones say nothing
about a board) and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FP32_LIMIT = 1e-3  # largest |p(aarch64) - p(x86_64)| accepted for the FP32 model on the same pixels
NEAR_TIE = 0.05
"""A top-1 that differs end to end fails the check unless x86_64 itself put aarch64's top-1 within this of its
own: OpenCV's resize rounds some pixel values one level differently on aarch64 (docs/deployment.md), and a
photo whose two best classes are that close can flip on it."""
DEMO_FRAMES = 30
MODELS = ("fp32", "int8")


def requirements(python_version: str) -> list[str]:
    """pyproject.toml's runtime dependencies whose markers hold on Linux aarch64 with that CPython."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    from packaging.requirements import Requirement

    env = {"python_version": python_version, "python_full_version": f"{python_version}.0",
           "platform_machine": "aarch64", "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = [Requirement(d) for d in deps]
    return [f"{r.name}{r.specifier}" for r in reqs if r.marker is None or r.marker.evaluate(env)]


def versions() -> dict:
    import platform

    import cv2
    import numpy
    import onnxruntime
    import pydantic

    return {"machine": platform.machine(), "python": platform.python_version(), "numpy": numpy.__version__,
            "onnxruntime": onnxruntime.__version__, "providers": onnxruntime.get_available_providers(),
            "opencv": cv2.__version__, "pydantic": pydantic.VERSION}


def fit_photos(out: Path, photos: list[Path]) -> None:
    import cv2
    import numpy as np

    from edge.core.model import Model
    from edge.core.preprocess import fit

    geometry = Model.load(device="cpu").geometry  # the default model's; its FP32 source has the same
    np.savez(out, **{p.name: fit(cv2.imread(str(p), cv2.IMREAD_COLOR), geometry) for p in photos})


def infer(out: Path, pixels: Path, model: str | None) -> None:
    import numpy as np

    from edge.core.model import Model

    batch = np.load(pixels)
    probs = Model.load(model, device="cpu").infer(np.stack([batch[name] for name in batch.files]))
    np.savez(out, **dict(zip(batch.files, probs)))


# ---- report ----

@dataclass(frozen=True)
class Check:
    ok: bool
    lines: list[str]


@dataclass(frozen=True)
class Side:
    """What one machine (x86_64, or aarch64 under one emulated CPU) wrote into its folder."""

    name: str
    folder: Path

    def json(self, name: str) -> dict:
        return json.loads((self.folder / name).read_text())

    def jsonl(self, name: str) -> list[dict]:
        return [json.loads(line) for line in (self.folder / name).read_text().splitlines() if line.strip()]

    def classify(self, model: str) -> dict[str, dict]:
        """photo file name -> its `classify --json` row."""
        return {Path(row["file"]).name: row for row in self.jsonl(f"classify-{model}.jsonl")}

    def npz(self, name: str) -> dict:
        import numpy as np

        with np.load(self.folder / name) as data:
            return {k: data[k] for k in data.files}


def wheel_lines(tag: str, folder: Path, direct: set[str]) -> list[str]:
    """'CPython 3.11: numpy 2.4.6, ...' with pyproject's own dependencies first, then what they pull in."""
    found = sorted((w.name.split("-")[0].replace("_", "-").lower(), w.name.split("-")[1]) for w in folder.glob("*.whl"))
    own = ", ".join(f"{n} {v}" for n, v in found if n in direct)
    pulled = ", ".join(f"{n} {v}" for n, v in found if n not in direct)
    python = f"CPython {tag[2]}.{tag[3:]}"
    return [f"  {python}: {own}", f"  {' ' * len(python)}  + {pulled}"]


def check_info(x86: Side, arms: list[Side], models: list[str]) -> Check:
    def metadata(side: Side, model: str) -> dict:
        info = side.json(f"info-{model}.json")
        info.pop("file")
        return info

    differ = [f"{a.name} {m.upper()}" for a in arms for m in models if metadata(a, m) != metadata(x86, m)]
    verdict = "same metadata as on x86_64" if not differ else "DIFFERS from x86_64: " + ", ".join(differ)
    return Check(not differ, [f"edgerec info --json ({', '.join(m.upper() for m in models)}): {verdict}"])


def probabilities(rows: dict[str, dict]) -> dict[str, list[float]]:
    """photo -> probability per class index, from `classify --json --top-k 1000` rows."""
    out = {}
    for name, row in rows.items():
        probs = [0.0] * len(row["top"])
        for c in row["top"]:
            probs[c["index"]] = c["score"]
        out[name] = probs
    return out


def max_diff(a: dict, b: dict) -> tuple[float, str]:
    """Largest |a - b| over every photo and class, and the photo where it is."""
    return max(((float(max(abs(p - q) for p, q in zip(a[f], b[f]))), f) for f in a), default=(0.0, ""))


def classify_table(x86: Side, arms: list[Side], model: str) -> Check:
    sides = [x86, *arms]
    rows = {s.name: s.classify(model) for s in sides}
    photos = list(rows[x86.name])
    width = 22
    lines = [(f"  {model.upper():18s}" + "".join(s.name.removeprefix("aarch64-").ljust(width) for s in sides)).rstrip()]
    for photo in photos:
        cells = [f"{rows[s.name][photo]['top'][0]['label']} {rows[s.name][photo]['top'][0]['score']:.3f}"
                 for s in sides]
        lines.append((f"  {photo:18s}" + "".join(c.ljust(width) for c in cells)).rstrip())
    ok, host = True, probabilities(rows[x86.name])
    for arm in arms:
        top = {p: rows[arm.name][p]["top"][0]["index"] for p in photos}
        differ = [p for p in photos if top[p] != rows[x86.name][p]["top"][0]["index"]]
        margins = {p: max(host[p]) - host[p][top[p]] for p in differ}  # x86_64's own lead over aarch64's top-1
        ties = [f"{p}: a near tie on x86_64 too, margin {margins[p]:.3f}" for p in differ if margins[p] < NEAR_TIE]
        verdict = "" if not differ else f" ({'; '.join(ties)})" if len(ties) == len(differ) else " (DIFFERS)"
        diff, where = max_diff(probabilities(rows[arm.name]), host)
        lines.append(f"  {arm.name}: top-1 as on x86_64 on {len(photos) - len(differ)}/{len(photos)}{verdict}; "
                     f"max |p(aarch64) - p(x86_64)| end to end {diff:.1e} ({where})")
        ok &= len(ties) == len(differ)
    return Check(ok, lines)


def check_pixels(x86: Side, arms: list[Side]) -> Check:
    import numpy as np

    reference = x86.npz("fit.npz")
    lines = []
    for arm in arms:
        pixels = arm.npz("fit.npz")
        changed = {p: np.abs(pixels[p].astype(int) - reference[p].astype(int)) for p in reference}
        same = [p for p, d in changed.items() if not d.any()]
        notes = "; ".join(f"{p}: {int((d > 0).sum())} of {d.size} values differ, by at most {int(d.max())}"
                          for p, d in changed.items() if d.any())
        lines.append(f"  {arm.name}: identical on {len(same)}/{len(reference)} photos{'; ' + notes if notes else ''}")
    return Check(True, ["fit() pixels (OpenCV JPEG decode, crop, resize) against x86_64's:", *lines])


def check_same_pixels(x86: Side, arms: list[Side], models: list[str]) -> Check:
    lines, ok = ["each model on x86_64's fit() pixels, max |p(aarch64) - p(x86_64)|:"], True
    for arm in arms:
        parts = []
        for model in models:
            probs, reference = arm.npz(f"probs-{model}.npz"), x86.npz(f"probs-{model}.npz")
            diff, where = max_diff(probs, reference)
            part = f"{model.upper()} {diff:.1e} ({where}"
            if model == "fp32":
                part += f"; limit {FP32_LIMIT:.0e}: {'ok' if diff <= FP32_LIMIT else 'TOO LARGE'}"
                ok &= diff <= FP32_LIMIT
            parts.append(part + "), top-1 " + top1_agreement(probs, reference, label_names(x86, model)))
        lines.append(f"  {arm.name}: {'; '.join(parts)}")
    if set(MODELS) <= set(models):
        gaps = [f"{s.name} {max_diff(s.npz('probs-int8.npz'), s.npz('probs-fp32.npz'))[0]:.3f}" for s in (x86, *arms)]
        lines.append(f"  INT8 against FP32 on the same CPU, max |p(INT8) - p(FP32)|: {', '.join(gaps)}")
    return Check(ok, lines)


def label_names(side: Side, model: str) -> dict[int, str]:
    row = next(iter(side.classify(model).values()))
    return {c["index"]: c["label"] for c in row["top"]}


def top1_agreement(probs: dict, reference: dict, labels: dict[int, str]) -> str:
    """'as on x86_64 on 5/6 (chelsea.jpg: tiger cat 0.377 against Egyptian cat 0.456)'."""
    differ = [p for p in probs if probs[p].argmax() != reference[p].argmax()]
    text = f"as on x86_64 on {len(probs) - len(differ)}/{len(probs)}"
    notes = [f"{p}: {labels[int(probs[p].argmax())]} {probs[p].max():.3f} against "
             f"{labels[int(reference[p].argmax())]} {reference[p].max():.3f}" for p in differ]
    return text + (f" ({'; '.join(notes)})" if notes else "")


def demo_frames(log: Path) -> int:
    match = re.search(r"^(\d+) frames in ", log.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def check_demo(x86: Side, arms: list[Side]) -> Check:
    lines, ok = [f"edgerec run --source demo --max-frames {DEMO_FRAMES} --no-display --events FILE:"], True
    for side in (*arms, x86):
        events = side.jsonl("events.jsonl")
        frames = demo_frames(side.folder / "run.log")
        labels = ", ".join(f"frame {e['frame']} {e['label']} {e['score']:.2f}" for e in events)
        lines.append(f"  {side.name}: {frames} frames, {len(events)} event{'s' * (len(events) != 1)}: {labels}")
        ok &= frames == DEMO_FRAMES and len(events) > 0
    return Check(ok, lines)


def report(args: argparse.Namespace) -> int:
    x86, arms = Side("x86_64", args.x86), [Side(p.name, p) for p in args.arm]
    direct = {re.split(r"[<>=!~; ]", d, maxsplit=1)[0].lower() for d in requirements("3.10") + requirements("3.11")}
    lines = ["wheels (pip download --only-binary=:all:, manylinux2014_aarch64 + manylinux_2_28_aarch64):"]
    for spec in args.wheels:
        tag, folder = spec.split("=", 1)
        lines += wheel_lines(tag, Path(folder), direct)
    found = [arm.json("versions.json") for arm in arms]
    lines.append("imported under emulation: " + ", ".join(
        f"{k} {v if isinstance(v, str) else '+'.join(v)}" for k, v in found[0].items()))
    models = [m for m in MODELS if (x86.folder / f"classify-{m}.jsonl").exists()]
    checks = [Check(all(v["machine"] == "aarch64" for v in found), []), check_info(x86, arms, models),
              Check(True, ["edgerec classify --json on tests/data/photos, top-1 and its probability:"]),
              *(classify_table(x86, arms, m) for m in models), check_pixels(x86, arms),
              check_same_pixels(x86, arms, models), check_demo(x86, arms)]
    for check in checks:
        lines += check.lines
    ok = all(c.ok for c in checks)
    lines.append(f"result: {'ok' if ok else 'FAILED'}" + ("" if "fp32" in models else " (FP32 not checked)"))
    print("\n".join(lines))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("requirements").add_argument("python_version")
    sub.add_parser("versions")
    fit = sub.add_parser("fit")
    fit.add_argument("out", type=Path)
    fit.add_argument("photos", type=Path, nargs="+")
    inf = sub.add_parser("infer")
    inf.add_argument("out", type=Path)
    inf.add_argument("pixels", type=Path)
    inf.add_argument("model", nargs="?", help="model file (default: the embedded INT8)")
    rep = sub.add_parser("report")
    rep.add_argument("--wheels", action="append", default=[], metavar="cpXY=DIR")
    rep.add_argument("--x86", type=Path, required=True)
    rep.add_argument("--arm", type=Path, action="append", required=True)
    args = parser.parse_args()
    if args.command == "requirements":
        print("\n".join(requirements(args.python_version)))
    elif args.command == "versions":
        print(json.dumps(versions()))
    elif args.command == "fit":
        fit_photos(args.out, args.photos)
    elif args.command == "infer":
        infer(args.out, args.pixels, args.model)
    else:
        return report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
