"""Write the train/validation split `edgerec train DATA` makes into two folders, OUT/train and OUT/val.

`edgerec train DATA` without --val-dir holds out --val-fraction of each class, chosen by
`training.data.stratified_split` from the seed and the file names. This script runs that same function
(through `training.data.load_image_folders`, with the same defaults) and copies the images into class
folders, so that the validation images of a trained model can be evaluated on their own:

    python scripts/data/write_split.py /tmp/photoset /tmp/photoset-split           # --val-fraction 0.2 --seed 0
    edgerec evaluate OUT/model-fp32.onnx /tmp/photoset-split/val --robustness --compare OUT/model-int8.onnx

and `edgerec train OUT/train --val-dir OUT/val` trains on the same split. The files are copied unchanged
under the same relative paths (so the listing order, which seeds the corruptions, is the split's order);
OUT must not exist yet. Needs the [train] extra.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from training.data import DataOptions, Sample, load_image_folders


def write_split(data_dir: Path, out: Path, val_fraction: float, seed: int) -> tuple[int, int]:
    """Copy the split of `data_dir` into out/train and out/val (built beside `out`, then renamed into
    place); return the numbers of training and validation images."""
    if out.exists():
        raise SystemExit(f"{out} exists; give a new folder")
    data = load_image_folders(DataOptions(data_dir, None, val_fraction, seed))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        _copy(data.train, Path(tmp) / "train")
        _copy(data.val, Path(tmp) / "val")
        Path(tmp).chmod(0o755)  # a temporary folder is private; the split is not
        Path(tmp).rename(out)
        Path(tmp).mkdir()  # for TemporaryDirectory's clean-up
    return len(data.train), len(data.val)


def _copy(samples: tuple[Sample, ...], folder: Path) -> None:
    for sample in samples:
        target = folder / sample.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample.path, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="the folder `edgerec train` was given (one subfolder per class)")
    parser.add_argument("out", type=Path, help="new folder for train/ and val/")
    parser.add_argument("--val-fraction", type=float, default=DataOptions.val_fraction,
                        help="as edgerec train's (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DataOptions.seed, help="as edgerec train's (default: %(default)s)")
    args = parser.parse_args(argv)
    train, val = write_split(args.data_dir, args.out, args.val_fraction, args.seed)
    print(f"{args.out}: {train} training images in train/, {val} validation images in val/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
