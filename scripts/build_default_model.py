#!/usr/bin/env python3
"""Build the embedded default model: ImageNet EfficientNet-Lite0 as FP32 and INT8 contract files.

Build the file shipped in edge/assets/ (needs the [train] extra and Debian's opencv-doc photos; the
shipped file was calibrated with the `fit` of commit 903c9be, see docs/quantization.md):

    apt-get download opencv-doc && dpkg-deb -x opencv-doc_*.deb /tmp/ocvdoc
    python scripts/build_default_model.py --out build/ \\
        --calibration /tmp/ocvdoc/usr/share/doc/opencv-doc/examples/data --check tests/data/photos --install

Both files carry the `features` output (training.export.write_with_metadata adds it). To give an older
file that output in place, changing nothing else (its probabilities stay bit for bit the same; this is
how the shipped file got it):

    python scripts/build_default_model.py --add-features-to edge/assets/efficientnet_lite0_imagenet_int8.onnx

With a fidelity step (docs/quantization.md, "Rebuilding the default with a fidelity step"): fine-tune a
fake-quantized copy by distillation from FP32 on unlabelled real photos (training/qat.py), quantize that,
and compare the INT8 file with the ORIGINAL FP32 file; --robustness stores the INT8 file's camera-corruption
figures in its metrics (`edgerec info` shows them), as `edgerec train` does for every trained model:

    python scripts/data/make_distill_photos.py --packages /tmp/distill-packages \\
        --imagenet-photos /tmp/imagenet-photos /tmp/distill-photos          # docs/data.md
    python scripts/build_default_model.py --out build/qat --calibration /tmp/distill-photos/distill \\
        --check tests/data/photos --distill /tmp/distill-photos/distill --qat-epochs 2 --qat-lr 1e-5 --seed 0 \\
        --robustness /tmp/imagenet-photos

To store those figures in an existing file in place (metadata only; its outputs stay bit for bit the
same; this is how the shipped file got them):

    python scripts/build_default_model.py --add-robustness-to edge/assets/efficientnet_lite0_imagenet_int8.onnx \\
        --robustness /tmp/imagenet-photos
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from edge.core.model import Model
from edge.errors import EdgerecError
from edge.tools.robustness import stored_robustness
from training.default_model import IMAGENET_DIR, DefaultModelOptions, build_default_model, store_robustness
from training.export import add_features_to_file
from training.qat import REDUCED_WEIGHT_MAX, WEIGHT_MAX, QatOptions
from training.quantize import FLOAT_PARTS, QuantOptions

ASSETS = Path(__file__).resolve().parent.parent / "edge" / "assets"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--add-features-to", type=Path, metavar="FILE",
                        help="only add the features output to an existing model file, in place")
    parser.add_argument("--out", type=Path, help="folder for the FP32 and INT8 .onnx files")
    parser.add_argument("--calibration", type=Path, nargs="+",
                        help="folders or files of real photos/videos to calibrate INT8 on (videos: every 25th frame)")
    parser.add_argument("--check", type=Path, nargs="+",
                        help="clear real photos on which INT8 must give FP32's top-1 label")
    parser.add_argument("--imagenet-dir", type=Path, default=IMAGENET_DIR,
                        help="folder with imagenet_synsets.txt and imagenet_synset_to_lemma.txt")
    parser.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"])
    parser.add_argument("--format", default="qdq", choices=["qdq", "qoperator"])
    parser.add_argument("--keep-float", nargs="*", default=list(QuantOptions().keep_float),
                        choices=list(FLOAT_PARTS),
                        help="graph parts left in float (default: %(default)s)")
    parser.add_argument("--reduce-range", action="store_true",
                        help="7-bit weights (and a fine-tune that rounds to them): AVX2 CPUs without VNNI then "
                             "compute what ARM and VNNI compute, but every CPU loses weight precision "
                             "(docs/quantization.md: 84%% agreement everywhere against 94%% with 8 bits)")
    parser.add_argument("--distill", type=Path, nargs="+",
                        help="unlabelled real photos/videos: fine-tune quantization-aware by distillation from FP32 "
                             "on them and their mirror images (training/qat.py) before quantizing; without it, "
                             "post-training quantization only")
    parser.add_argument("--qat-epochs", type=float, default=2.0, help="passes over --distill (default: %(default)s)")
    parser.add_argument("--qat-lr", type=float, default=1e-5, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--qat-augment", action="store_true",
                        help="distil on random crops of --distill with changed brightness and contrast "
                             "(training/qat.py: augmented), not only on the photos and their mirror images; "
                             "measured: no gain on held-out photos (docs/quantization.md)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the fine-tune's order and the corruptions (default: %(default)s)")
    parser.add_argument("--robustness", type=Path, metavar="DIR",
                        help="ImageNet-labelled photos (scripts/data/make_imagenet_photos.py): store the INT8 file's "
                             "clean top-1 and mean corruption accuracy on them in its metrics (minutes)")
    parser.add_argument("--add-robustness-to", type=Path, metavar="FILE",
                        help="only store --robustness figures in an existing model file, in place")
    parser.add_argument("--install", action="store_true", help="copy the INT8 file into edge/assets/")
    args = parser.parse_args(argv)
    if args.add_robustness_to is not None and args.robustness is None:
        parser.error("--add-robustness-to needs --robustness DIR")
    only = args.add_features_to is not None or args.add_robustness_to is not None
    if not only and not (args.out and args.calibration and args.check):
        parser.error("--out, --calibration and --check are required (unless --add-features-to/--add-robustness-to)")
    if args.qat_epochs <= 0 or args.qat_lr <= 0:
        parser.error(f"--qat-epochs {args.qat_epochs} and --qat-lr {args.qat_lr} must be above 0")
    return args


def add_robustness(path: Path, folder: Path, seed: int) -> int:
    try:
        store_robustness(path, folder, seed)
    except EdgerecError as exc:
        print(f"build_default_model: error: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: robustness {stored_robustness(Model.load(path, device='cpu').info.metrics)}")
    return 0


def build_options(args: argparse.Namespace) -> tuple[QuantOptions, QatOptions | None]:
    """The quantization and (with --distill) fine-tune settings; --reduce-range sets both to 7-bit weights."""
    quant = QuantOptions(method=args.method, format=args.format, keep_float=tuple(args.keep_float),
                         reduce_range=args.reduce_range)
    if not args.distill:
        return quant, None
    return quant, QatOptions(epochs=args.qat_epochs, lr=args.qat_lr, seed=args.seed, augment=args.qat_augment,
                             weight_max=REDUCED_WEIGHT_MAX if args.reduce_range else WEIGHT_MAX)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.add_features_to is not None:
        try:
            dim = add_features_to_file(args.add_features_to)
        except EdgerecError as exc:
            print(f"build_default_model: error: {exc}", file=sys.stderr)
            return 2
        print(f"{args.add_features_to}: output 'features' float32 [N, {dim}]")
        return 0
    if args.add_robustness_to is not None:
        return add_robustness(args.add_robustness_to, args.robustness, args.seed)
    quant, qat = build_options(args)
    try:
        report = build_default_model(DefaultModelOptions(args.out, args.calibration, args.check, args.imagenet_dir,
                                                         quant=quant, distill=args.distill or [], qat=qat))
    except EdgerecError as exc:
        print(f"build_default_model: error: {exc}", file=sys.stderr)
        return 2
    print(f"FP32 {report.fp32_path}: max |ORT - torch| = {report.export.max_abs_diff:.2e} "
          f"on {report.export.num_images} images")
    q = report.quant
    print(f"INT8 {report.int8_path}: top-1 agreement with FP32 {q.top1_agreement:.1%} on {q.check_images} check "
          f"images, {q.clear_agreement:.1%} on the {q.clear_images} that FP32 labels with p >= 0.5; "
          f"max |diff| {q.max_abs_diff:.3f}; calibrated on {q.calibration_images} images")
    if report.qat is not None:
        r = report.qat
        print(f"QAT ({report.qat_fp32_path}): {r.steps} steps on {r.images} photos and their mirror images, "
              f"distillation loss {r.first_loss:.4f} -> {r.last_loss:.4f}, {r.seconds:.0f} s; "
              f"the agreement above is with the original FP32 file")
    for fp32, int8 in report.check_labels:
        print(f"  {fp32:30s} {int8:30s} {'' if fp32 == int8 else 'DIFFERS'}")
    if args.robustness is not None and add_robustness(report.int8_path, args.robustness, args.seed):
        return 2
    if args.install:
        shutil.copyfile(report.int8_path, ASSETS / report.int8_path.name)
        print(f"installed {ASSETS / report.int8_path.name}")
    return 0 if q.clear_agreement == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
