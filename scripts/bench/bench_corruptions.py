#!/usr/bin/env python3
"""What each camera corruption costs: milliseconds per photo, all five severities averaged, on photos of a
folder as they are (a phone's 12 MP photo costs far more than a 256 px one: the per-pixel corruptions work at
the photo's own resolution, edge/tools/corruptions.py). `edgerec train`'s robustness report applies every
corruption at every severity to each of its `--robustness-images` photos.

    python scripts/bench/bench_corruptions.py /tmp/photoset --photos 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from bench_watch import cpu_model  # this folder is on the path when the script runs

from edge.core.datasets import IMAGE_EXTENSIONS
from edge.tools.corruptions import CORRUPTIONS, SEVERITIES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder of photos (searched recursively)")
    parser.add_argument("--photos", type=int, default=8, help="photos taken evenly from the sorted listing")
    args = parser.parse_args()
    files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    chosen = files[:: max(1, len(files) // args.photos)][: args.photos]
    photos = [image for image in (cv2.imread(str(p)) for p in chosen) if image is not None]
    if not photos:
        raise SystemExit(f"{args.folder}: no readable photos")
    megapixels = sum(p.shape[0] * p.shape[1] for p in photos) / 1e6
    print(f"{len(photos)} photos, {megapixels:.2f} MP in all; {cpu_model()}")
    rng, total = np.random.default_rng(0), 0.0
    for name, corruption in CORRUPTIONS.items():
        start = time.perf_counter()
        for photo in photos:
            for severity in SEVERITIES:
                corruption(photo, severity, rng)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{name:16s} {1000 * seconds / (len(photos) * len(SEVERITIES)):7.1f} ms per photo and severity")
    print(f"all {len(CORRUPTIONS)} x {len(SEVERITIES)} severities: {total:.2f} s for {len(photos)} photos")


if __name__ == "__main__":
    main()
