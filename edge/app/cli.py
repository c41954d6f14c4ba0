"""`edgerec` command line: each subcommand parses its flags and calls one library function."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from edge.core.devices import DEVICES
from edge.errors import EdgerecError

if TYPE_CHECKING:
    from edge.core.model import Prediction

DEVICE_HELP = (f"execution device: auto (best available: TensorRT, CUDA, else CPU), {', '.join(DEVICES)}; "
               "cuda:N / tensorrt:N pick a GPU, openvino:CPU|GPU|NPU an OpenVINO device; "
               "an explicit choice this onnxruntime lacks is an error listing what is available")
MODEL_HELP = "model file (.onnx written by edgerec); default: the embedded ImageNet EfficientNet-Lite0 INT8"


FAST_INT8_HELP = ("INT8 model on an x86 CPU without VNNI: use its faster kernels, whose saturating 16-bit sums "
                  "change labels against FP32's (default: 32-bit sums, the same answers on every CPU; nothing "
                  "changes on ARM or VNNI x86)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", type=Path, default=None, help=MODEL_HELP)
    parser.add_argument("--device", "-d", default="auto", help=DEVICE_HELP)
    parser.add_argument("--threads", type=int, default=None,
                        help="inference threads (default: onnxruntime's choice, one per physical core)")
    parser.add_argument("--fast-int8", action="store_true", default=None, help=FAST_INT8_HELP)


def cmd_classify(args: argparse.Namespace) -> int:
    from edge.core.datasets import Unreadable
    from edge.core.model import Model
    from edge.tools.classify import classify_files, sample_photos_dir

    paths = [*args.paths, *([sample_photos_dir()] if args.samples else [])]
    if not paths:
        raise EdgerecError("nothing to classify: name image files or folders, or add --samples")
    model = Model.load(args.model, args.device, args.threads, int32_sums=not args.fast_int8)
    skipped = 0
    for result in classify_files(model, paths, args.top_k, args.unknown_threshold, args.unknown):
        if isinstance(result, Unreadable):
            skipped += 1
            print(f"edgerec: error: {result.path}: {result.reason}; skipped", file=sys.stderr, flush=True)
        elif args.json:
            prediction = result.prediction
            novelty = None if prediction.novelty is None else round(prediction.novelty, 4)
            print(json.dumps({"file": str(result.file), "label": prediction.label, "novelty": novelty,
                              "top": [asdict(c) for c in prediction.top], "model": str(model.path),
                              "provider": model.provider, "ms": round(result.ms, 2)}), flush=True)
        else:
            print(f"{result.file}: {describe_prediction(result.prediction)}", flush=True)
    return 1 if skipped else 0


def describe_prediction(prediction: Prediction) -> str:
    """`unknown (novelty 0.52; nearest: mug 61%, cup 20%)` or `mug 97.1%  (cup 2.0%)`."""
    top = prediction.top
    novelty = "" if prediction.novelty is None else f"novelty {prediction.novelty:.2f}"
    if prediction.unknown:
        nearest = ", ".join(f"{c.label} {c.score:.0%}" for c in top)
        return f"unknown ({novelty}; nearest: {nearest})"
    others = ", ".join(f"{c.label} {c.score:.1%}" for c in top[1:])
    extra = "; ".join(part for part in (others, novelty) if part)
    return f"{prediction.label} {prediction.score:.1%}" + (f"  ({extra})" if extra else "")


def cmd_run(args: argparse.Namespace) -> int:
    import threading

    from edge.app.run_args import LOG, StateLog, demo_defaults, describe_change, describe_summary, options_from_args
    from edge.logs import setup_logging
    from edge.loop.pipeline import run
    from edge.sinks.service import install_signal_handlers

    options, note = demo_defaults(options_from_args(args))
    setup_logging()
    if note:
        LOG.info(note)
    stop, reload = threading.Event(), threading.Event()
    restore = install_signal_handlers(stop, reload=reload)  # SIGHUP (systemctl reload): read the config again
    try:
        show = None if options.events == "-" else (lambda result: print(describe_change(result), flush=True))
        summary = run(options, stop, on_change=show, on_source_state=StateLog(),
                      reload=lambda: demo_defaults(options_from_args(args))[0], reload_requested=reload)
    finally:
        restore()
    print("\n".join(describe_summary(summary)), file=sys.stderr)
    if options.out:
        where = options.out if options.segment is None else f"{options.out} in {options.segment:g} s segments " \
            f"({Path(options.out).stem}-YYYYMMDD-HHMMSS{Path(options.out).suffix})"
        print(f"annotated video: {where}", file=sys.stderr)
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    import threading

    from edge.app.dataset_capture import CaptureOptions, capture
    from edge.app.run_args import StateLog, source_options_from_args
    from edge.logs import setup_logging
    from edge.sinks.service import install_signal_handlers

    options = CaptureOptions(source_options_from_args(args), args.out, args.label, args.every, args.max, args.quality)
    of_max = f"/{args.max}" if args.max else ""
    setup_logging()
    stop = threading.Event()
    restore = install_signal_handlers(stop)
    try:
        summary = capture(options, stop, on_saved=lambda s: print(f"{s.count}{of_max}  {s.path}", flush=True),
                          on_source_state=StateLog())
    finally:
        restore()
    print(f"{summary.saved} images in {summary.folder} ({summary.frames} frames read, stopped by "
          f"{summary.stopped_by})", file=sys.stderr)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from edge.app.config import describe_config, load_config, run_options

    config = load_config(args.file)
    run_options(config)  # what `edgerec run --config` would refuse, refused here too
    print(f"{args.file}: ok")
    print("\n".join("  " + line for line in describe_config(config)))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from edge.app.config import defaults_toml

    print(defaults_toml(service=args.service), end="")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from edge.core.model import Model
    from edge.core.novelty import describe as describe_novelty
    from edge.tools.robustness import ROBUST_METRICS, stored_robustness

    model = Model.load(args.model, "cpu")
    info = model.info
    if args.json:
        props = {key.removeprefix("edgerec."): json.loads(value) for key, value in info.to_props().items()}
        if info.novelty is not None:  # the reference features stay in the file
            props["novelty"] = {k: v for k, v in props["novelty"].items() if k not in ("mean", "references")}
        print(json.dumps({"file": str(model.path), **props}))
        return 0
    labels = ", ".join(info.labels[:8]) + (f", … ({info.num_classes} in all)" if info.num_classes > 8 else "")
    rows = [("file", str(model.path)), ("architecture", info.arch), ("precision", info.precision),
            ("input", f"uint8 BGR [N, {info.input_size[0]}, {info.input_size[1]}, 3], centre crop {info.crop}"),
            ("classes", str(info.num_classes)), ("labels", labels),
            ("features", f"output '{info.features.output}' float32 [N, {info.features.dim}]" if info.features
             else "none (edgerec teach cannot use this file as a base)"),
            ("unknown", describe_novelty(info.novelty, info.labels) if info.novelty
             else "none (every image gets one of the labels; edgerec teach/train store it)"),
            ("dataset", f"{info.dataset.name} {info.dataset.fingerprint}".strip()),
            ("created", info.created), ("format version", str(info.format_version))]
    robust = stored_robustness(info.metrics)
    rows += [("robustness", robust)] if robust else []
    rows += [(f"metric {k}", f"{v:.4g}") for k, v in info.metrics.items() if not robust or k not in ROBUST_METRICS]
    rows += [(f"quantization {k}", str(v)) for k, v in info.quantization.items()]
    rows += [(f"training {k}", str(v)) for k, v in info.training.items()]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return 0


def model_and_target(args: argparse.Namespace, target: str) -> tuple[Path | None, Path]:
    """`[MODEL] TARGET` positionals or `--model M TARGET`: (model path or None for the default, target)."""
    given = args.positionals
    if len(given) == 1:
        return args.model, given[0]
    if len(given) == 2 and args.model is None:
        return given[0], given[1]
    if len(given) == 2:
        raise EdgerecError(f"the model is named twice ({given[0]} and --model {args.model}); "
                           f"give MODEL {target} or --model MODEL {target}")
    raise EdgerecError(f"expected [MODEL] {target}, got {len(given)} arguments: {' '.join(map(str, given))}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from edge.core.model import Model
    from edge.progress import progress
    from edge.tools.evaluate import EvalOptions, describe, evaluate, write_report

    model_path, data_dir = model_and_target(args, "DATA_DIR")
    if args.unknown is not None:
        return _unknown(args, model_path, data_dir)
    if args.robustness:
        return _robustness(args, model_path, data_dir)
    if args.compare or args.corruptions:
        raise EdgerecError("--compare and --corruptions go with --robustness")
    model = Model.load(model_path, args.device, args.threads)
    with progress("evaluate") as on_progress:
        report = evaluate(model, data_dir, EvalOptions(batch=args.batch, on_progress=on_progress))
    if report.warning():
        print(f"edgerec: warning: {report.warning()}", file=sys.stderr)
    files = write_report(report, args.out) if args.out else None
    if args.json:
        print(json.dumps({**report.summary(), "files": {k: str(v) for k, v in asdict(files).items()} if files else {}}))
        return 0
    print("\n".join(describe(report)))
    print(f"\nwrote {files.confusion}, {files.misclassified.name}, {files.metrics.name}" if files
          else "\n(add --out DIR for the confusion matrix and misclassified-images PNGs and metrics.json)")
    return 0


def _unknown(args: argparse.Namespace, model_path: Path | None, data_dir: Path) -> int:
    from edge.core.model import Model
    from edge.progress import progress
    from edge.tools.unknown import UnknownOptions, describe, evaluate_unknown, write_report

    if args.robustness:
        raise EdgerecError("--unknown and --robustness are two reports: run one, then the other")
    model = Model.load(model_path, args.device, args.threads)
    with progress("unknown") as on_progress:
        report = evaluate_unknown(model, data_dir, args.unknown, UnknownOptions(args.unknown_threshold,
                                                                                 on_progress=on_progress))
    files = write_report(report, args.out) if args.out else None
    if args.json:
        print(json.dumps({**report.summary(), "files": [str(f) for f in files] if files else []}))
        return 0
    print("\n".join(describe(report)))
    print(f"\nwrote {files[0]}, {files[1].name}" if files else "\n(add --out DIR for unknown.png and unknown.json)")
    return 0


def _robustness(args: argparse.Namespace, model_path: Path | None, data_dir: Path) -> int:
    from edge.progress import progress
    from edge.tools.corruptions import parse_names
    from edge.tools.robustness import RobustnessOptions, compare, describe, load_models, summaries, write_report

    names = parse_names(args.corruptions)
    paths = [model_path, *([args.compare] if args.compare else [])]
    models, workers = load_models(paths, args.device, args.threads)
    with progress("robustness") as on_progress:
        options = RobustnessOptions(corruptions=names, seed=args.seed, batch=args.batch, workers=workers,
                                    on_progress=on_progress)
        reports = compare(models, data_dir, options)
    if reports[0].clean.warning():
        print(f"edgerec: warning: {reports[0].clean.warning()}", file=sys.stderr)
    files = write_report(reports, args.out) if args.out else None
    if args.json:
        written = {k: str(v) for k, v in asdict(files).items()} if files else {}
        print(json.dumps({**summaries(reports), "files": written}))
        return 0
    print("\n".join(describe(reports)))
    print(f"\nwrote {files.heatmap}, {files.metrics.name}" if files
          else "\n(add --out DIR for the heat map robustness.png and robustness.json)")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from edge.core.model import Model
    from edge.tools.classify import read_image
    from edge.tools.explain import ExplainOptions, check_output, explain, write_overlay

    model_path, image_path = model_and_target(args, "IMAGE")
    check_output(args.out)  # before the work, not after
    model = Model.load(model_path, args.device, args.threads)
    image = read_image(image_path)
    options = ExplainOptions(label=args.label, window=args.window, stride=args.stride, batch=args.batch)
    explanation = explain(model, image, options)
    write_overlay(args.out, image, explanation)
    if args.json:
        print(json.dumps({"file": str(image_path), "label": explanation.label, "score": explanation.score,
                          "top_label": explanation.top_label, "top_score": explanation.top_score,
                          "peak_drop": float(explanation.heat.max()), "variants": explanation.variants,
                          "ms": round(explanation.ms, 1), "out": str(args.out)}))
    else:
        print(f"{image_path}: {explanation.label} {explanation.score:.1%}; {explanation.variants} occluded copies "
              f"in {explanation.ms / 1000:.1f} s; wrote {args.out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.app.bench import bench, bench_pipeline, cpu_note, pipeline_table

    if args.pipeline:
        if len(args.models) > 1:
            raise EdgerecError("--pipeline times one model; name at most one MODEL")
        result = bench_pipeline(args.models[0] if args.models else None, args.device, args.threads, args.runs,
                                args.opencv_threads, args.spinning, args.decode_scale, args.fast_int8)
        print(json.dumps(asdict(result)) if args.json else "\n".join(pipeline_table(result)))
        return 0
    if args.decode_scale != 1:
        raise EdgerecError("--decode-scale applies to --pipeline (the per-frame path); add --pipeline")
    results = bench(args.models or [None], args.device, args.threads, args.runs, args.fast_int8)
    if args.json:
        for result in results:
            print(json.dumps(asdict(result)))
        return 0
    base = results[0].session.median_ms
    print(f"CPU: {results[0].cpu}{cpu_note(results[0].int8_sums)}")
    print(f"{'model':40s} {'prec':5s} {'provider':24s} thr {'load ms':>8s} {'session ms':>11s} {'p95':>6s} "
          f"{'vs first':>8s} {'640x480':>8s} {'1080p':>8s} {'cpu 1thr':>8s} {'vs first':>8s}")
    cpu_base = results[0].session_cpu_1thread.median_ms
    for r in results:
        print(f"{Path(r.model).name[:40]:40s} {r.precision:5s} {r.provider:24s} {r.threads:3d} {r.load_ms:8.0f} "
              f"{r.session.median_ms:11.2f} {r.session.p95_ms:6.2f} {base / r.session.median_ms:7.2f}x "
              f"{r.frame['640x480'].median_ms:8.2f} {r.frame['1920x1080'].median_ms:8.2f} "
              f"{r.session_cpu_1thread.median_ms:8.2f} {cpu_base / r.session_cpu_1thread.median_ms:7.2f}x")
    print(f"(median ms of {args.runs} interleaved runs; 640x480/1080p = preprocess + session from a camera-size "
          f"frame; cpu 1thr = CPU time of a one-thread session, steady on a busy machine; "
          f"peak RSS {results[-1].rss_mb:.0f} MB)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from edge.app.train_args import GATE_FAILED, describe_report, train_kwargs

    try:
        from training.train import TrainOptions, train
    except ImportError as exc:  # a runtime-only install: no torch
        raise EdgerecError(f"edgerec train needs the training extra ({exc.name} is missing): "
                           "pip install 'edgerec[train]'") from None

    report = train(TrainOptions(**train_kwargs(args)))
    if report.rank != 0:
        return 0
    print("\n".join(describe_report(report)))
    if args.require_int8 and not report.gate_passed:
        print(f"edgerec: --require-int8: the gate refused INT8 ({report.gate.reason}); {report.deliverable} is "
              "the FP32 model", file=sys.stderr)
        return GATE_FAILED
    return 0


def cmd_teach(args: argparse.Namespace) -> int:
    from edge.learn.head import TeachOptions, UnknownOptions, describe, teach
    from edge.learn.softmax_regression import FitOptions
    from edge.progress import progress

    with progress("teach") as on_progress:
        report = teach(TeachOptions(args.data_dir, args.out, args.val_dir, args.base, args.val_fraction, args.seed,
                                    tuple(args.views), FitOptions(args.l2, args.steps), device=args.device,
                                    threads=args.threads, on_progress=on_progress,
                                    unknown=UnknownOptions(not args.no_unknown, args.unknown_kept)))
    print("\n".join(describe(report)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgerec", description="Real-time image recognition on the camera's own device.",
        epilog="Run `edgerec COMMAND --help` for each command's options.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    classify = commands.add_parser("classify", help="label image files or folders of images",
                                   description="Label image files (or every image under a folder).",
                                   epilog="examples:\n  edgerec classify photo.jpg photos/ --top-k 3 --json\n"
                                          "  edgerec classify --samples\n\n"
                                          "exit status:\n  0  every image classified\n"
                                          "  1  some image files could not be read or decoded: each is named on "
                                          "stderr\n     (`edgerec: error: FILE: ...; skipped`) and the others are "
                                          "classified\n  2  a bad argument (no such file or folder, a folder "
                                          "without images, a bad model):\n     one line, nothing classified",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    classify.add_argument("paths", nargs="*", metavar="IMAGE_OR_DIR")
    classify.add_argument("--samples", action="store_true", help="also classify the photos shipped with edgerec")
    add_model_arguments(classify)
    classify.add_argument("--top-k", "-k", type=int, default=5, help="labels per image (default: %(default)s)")
    classify.add_argument("--json", action="store_true",
                          help="one JSON object per line: file, label (the answer: a label or unknown), novelty "
                               "(null without novelty data), top [{label, index, score}], model, provider, ms")
    classify.add_argument("--unknown", action=argparse.BooleanOptionalAction, default=True,
                          help="answer `unknown` for images unlike every photo the model was taught, when its file "
                               "carries novelty data (edgerec teach/train; docs/unknown.md) (default: on)")
    classify.add_argument("--unknown-threshold", type=float, default=None, metavar="S",
                          help="novelty score above which the answer is unknown (default: the model file's own)")
    classify.set_defaults(func=cmd_classify)

    from edge.app.run_args import add_run_arguments, add_source_arguments

    run = commands.add_parser("run", help="recognise live: camera, stream, video file or the demo clip",
                              description="Label what the cameras see: the whole frame, or named regions "
                                          "(--region) run on every frame, on motion or on an interval "
                                          "(--trigger); show, record and report label changes. Ctrl-C or "
                                          "SIGTERM stops cleanly; SIGHUP reads the config and model files "
                                          "again without stopping the cameras.")
    add_model_arguments(run)
    add_run_arguments(run)
    run.set_defaults(func=cmd_run)

    from edge.live.capture import SOURCE_HELP

    capture = commands.add_parser(
        "capture", help="save frames of a camera or video into a training folder (DIR/LABEL/*.jpg)",
        description="Save a frame every --every seconds as JPEG into DIR/LABEL/, the image-folder layout "
                    "training reads. Files are written atomically and never replace an existing one. "
                    "Ctrl-C or SIGTERM stops cleanly.",
        epilog=f"{SOURCE_HELP}\n\nexamples:\n"
               "  edgerec capture --source 0 --out data --label mug --every 0.5 --max 200\n"
               "  edgerec capture --source walk.mp4 --as-fast-as-possible --out data --label hallway --every 1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(capture, required=True)
    saving = capture.add_argument_group("saving")
    saving.add_argument("--out", "-o", type=Path, required=True, metavar="DIR",
                        help="dataset folder; images go into DIR/LABEL/")
    saving.add_argument("--label", "-l", required=True, metavar="NAME", help="class name: the subfolder of DIR")
    saving.add_argument("--every", type=float, default=0.5, metavar="S",
                        help="seconds between saved frames; a video file's own time, a camera's clock "
                             "(default: %(default)s)")
    saving.add_argument("--max", type=int, default=None, metavar="N", help="stop after saving N images")
    saving.add_argument("--quality", type=int, default=95, metavar="Q",
                        help="JPEG quality 1-100 (default: %(default)s)")
    capture.set_defaults(func=cmd_capture)

    check = commands.add_parser("check-config", help="check a config file without running anything",
                                description="Validate a TOML config file: prints 'FILE: ok' and what it sets "
                                            "up, or one line naming the bad key and what is valid (exit 2).")
    from edge.app.config import DEFAULT_PATH

    check.add_argument("file", type=Path, nargs="?", default=DEFAULT_PATH, metavar="FILE",
                       help="the file to check (default: %(default)s)")
    check.set_defaults(func=cmd_check_config)

    config = commands.add_parser("config", help="print an example config file with every setting",
                                 description="Print the config schema as TOML: every setting with its "
                                             "description and default.",
                                 epilog="example: edgerec config --defaults > config.toml")
    which = config.add_mutually_exclusive_group(required=True)
    which.add_argument("--defaults", action="store_true", help="every setting at its default value, commented")
    which.add_argument("--service", action="store_true",
                       help="the service's example (what scripts/install-service.sh writes): the defaults, but "
                            "recording in segments with retention")
    config.set_defaults(func=cmd_config)

    info = commands.add_parser("info", help="show what a model file says about itself",
                               description="Print a model file's metadata: labels, input, precision, metrics.")
    info.add_argument("model", type=Path, nargs="?", default=None, metavar="MODEL", help=MODEL_HELP)
    info.add_argument("--json", action="store_true", help="the metadata as one JSON object")
    info.set_defaults(func=cmd_info)

    evaluate = commands.add_parser(
        "evaluate", usage="edgerec evaluate [options] [MODEL] DATA_DIR",
        help="accuracy of a model file on a folder of labelled images",
        description="Classify every image below DATA_DIR's class folders (each named after one of the model's "
                    "labels) and report top-1/top-5, per-class precision/recall/F1 and latency; with --out, also "
                    "a confusion matrix PNG, a contact sheet of misclassified images and metrics.json.",
        epilog="examples:\n  edgerec evaluate build/model.onnx photos/val --out build/eval\n"
               "  edgerec evaluate build/model.onnx photos/val --json | tail -n 1\n"
               "  edgerec evaluate build/imagenet-photos --robustness   # the embedded model\n"
               "  edgerec evaluate out/model-fp32.onnx photos/val --robustness --compare out/model-int8.onnx "
               "--out build/robust",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_argument("positionals", type=Path, nargs="+", metavar="[MODEL] DATA_DIR",
                          help="model file (default: --model, else the embedded ImageNet model) and the folder "
                               "with one subfolder per class")
    evaluate.add_argument("--model", "-m", type=Path, default=None, help=MODEL_HELP)
    evaluate.add_argument("--out", "-o", type=Path, default=None, metavar="REPORT_DIR",
                          help="write confusion.png, misclassified.png and metrics.json here (created if needed)")
    evaluate.add_argument("--batch", type=int, default=1,
                          help="images per inference call (default: %(default)s, the live per-frame latency)")
    evaluate.add_argument("--device", "-d", default="auto", help=DEVICE_HELP)
    evaluate.add_argument("--threads", type=int, default=None,
                          help="inference threads (default: one per physical core; with --robustness one per file, "
                               "and one corruption condition per core at once: the corruptions are "
                               "single-threaded. Given, one condition at a time with this many threads)")
    evaluate.add_argument("--json", action="store_true",
                          help="the report as one JSON object on the last line: top1, top5, precision, n, per_class, "
                               "confusion, latency_ms, misclassified, unreadable, files")
    unknown = evaluate.add_argument_group("what the model was not taught (--unknown)")
    unknown.add_argument("--unknown", type=Path, default=None, metavar="UNKNOWN_DIR",
                         help="images of things the model was not taught (any folders): how well its novelty score "
                              "parts them from DATA_DIR's (AUROC against the top-probability baseline, unknowns kept "
                              "at 95%% of known kept, and at the stored threshold the known kept and unknown "
                              "flagged, with 95%% intervals); --out writes unknown.png and unknown.json")
    unknown.add_argument("--unknown-threshold", type=float, default=None, metavar="S",
                         help="judge this threshold instead of the one stored in the file")
    robust = evaluate.add_argument_group("camera corruptions (--robustness)")
    robust.add_argument("--robustness", action="store_true",
                        help="top-1 clean and under each camera corruption (noise, low light, over-exposure, "
                             "blur, JPEG, pixelation, fog, rolling shutter, interlace) at severities 1-5, the "
                             "mean corruption accuracy (mCA) and its drop from clean; --out writes robustness.png "
                             "and robustness.json; --json prints {models: [...], files}")
    robust.add_argument("--compare", type=Path, default=None, metavar="OTHER_MODEL",
                        help="a second model file (e.g. the INT8 twin of an FP32 file) run on the same corrupted "
                             "pixels, shown side by side")
    robust.add_argument("--corruptions", default=None, metavar="NAMES",
                        help="comma-separated subset of the corruptions (default: all; see docs/robustness.md)")
    robust.add_argument("--seed", type=int, default=0, help="seed of the corruptions' randomness (default: 0)")
    evaluate.set_defaults(func=cmd_evaluate)

    explain = commands.add_parser(
        "explain", usage="edgerec explain [options] [MODEL] IMAGE --out PNG",
        help="heatmap of what drove a prediction (occlusion sensitivity)",
        description="Slide a grey square over the model's input and map how much each position lowers the "
                    "label's probability; writes the heatmap over the image. Works for FP32 and INT8 files.",
        epilog="examples:\n  edgerec explain build/model.onnx photo.jpg --out heat.png --label stocked\n"
               "  edgerec explain photo.jpg --out heat.png   # the embedded ImageNet model",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    explain.add_argument("positionals", type=Path, nargs="+", metavar="[MODEL] IMAGE",
                         help="model file (default: --model, else the embedded ImageNet model) and the image")
    explain.add_argument("--model", "-m", type=Path, default=None, help=MODEL_HELP)
    explain.add_argument("--out", "-o", type=Path, required=True, help="PNG (or .jpg) to write, the image's size")
    explain.add_argument("--label", "-l", default=None, help="label to explain (default: the top-1)")
    explain.add_argument("--window", type=int, default=None,
                         help="side of the grey square in network-input pixels (default: 1/7 of the input, "
                              "32 at 224 px)")
    explain.add_argument("--stride", type=int, default=None,
                         help="step between square positions in network-input pixels (default: half the window)")
    explain.add_argument("--batch", type=int, default=32, help="occluded copies per inference call")
    explain.add_argument("--device", "-d", default="auto", help=DEVICE_HELP)
    explain.add_argument("--threads", type=int, default=None, help="inference threads")
    explain.add_argument("--json", action="store_true", help="one JSON object: label, score, peak_drop, ms, out")
    explain.set_defaults(func=cmd_explain)

    bench = commands.add_parser("bench", help="time model files side by side",
                                description="Load time, session latency (median/p95), preprocess + session "
                                            "from 640x480 and 1920x1080 frames, provider, threads, RSS.",
                                epilog="examples:\n  edgerec bench build/model_fp32.onnx build/model_int8.onnx\n"
                                       "  edgerec bench --pipeline --runs 300",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("models", type=Path, nargs="*", metavar="MODEL", help=MODEL_HELP)
    bench.add_argument("--device", "-d", default="auto", help=DEVICE_HELP)
    bench.add_argument("--threads", type=int, default=None, help="inference threads")
    bench.add_argument("--runs", type=int, default=200, help="timed runs per stage (default: %(default)s)")
    bench.add_argument("--fast-int8", action="store_true", help=FAST_INT8_HELP)
    bench.add_argument("--json", action="store_true", help="one JSON object per model")
    pipeline = bench.add_argument_group("the whole per-frame path (--pipeline)")
    pipeline.add_argument("--pipeline", action="store_true",
                          help="time session.run alone against the whole per-frame path (preprocess, infer, "
                               "smoothing, overlay, sinks) from 640x480 and 1920x1080 frames of a real photo, "
                               "in wall time and in CPU time of a one-thread session")
    pipeline.add_argument("--opencv-threads", type=int, default=1, metavar="N",
                          help="OpenCV threads for preprocessing and overlay (default: %(default)s, as edgerec run)")
    pipeline.add_argument("--no-spinning", dest="spinning", action="store_false",
                          help="ONNX Runtime pool threads sleep between runs (session.intra_op.allow_spinning=0)")
    pipeline.add_argument("--decode-scale", type=int, choices=(1, 2, 4, 8), default=1, metavar="N",
                          help="the camera frames as MJPEG decoded at 1/N of their size, as `edgerec run "
                               "--decode-scale N` has it done (default: %(default)s: full size)")
    bench.set_defaults(func=cmd_bench)

    from edge.learn.data import VIEWS
    from edge.learn.head import UnknownOptions
    from edge.learn.softmax_regression import FitOptions

    teach = commands.add_parser(
        "teach", help="new labels in seconds, without torch: a new head on a model's features",
        description="Fit a new classifier head on the base model's own features of the photos in DATA (one "
                    "subfolder per class, as `edgerec train` reads) and write a model file with the new labels. "
                    "The file also answers `unknown` for images unlike every training photo; one subfolder alone "
                    "makes an anomaly model (that label or unknown). Needs only the runtime install; the base "
                    "model must have a features output.",
        epilog="example: edgerec teach photos/ --out shelf.onnx && edgerec classify --model shelf.onnx x.jpg")
    teach.add_argument("data_dir", type=Path, metavar="DATA", help="folder with one subfolder of images per class")
    teach.add_argument("--out", "-o", type=Path, required=True, metavar="FILE", help="model file to write (.onnx)")
    teach.add_argument("--val-dir", type=Path, default=None, metavar="DIR",
                       help="validation folder with the same class subfolders (default: hold out --val-fraction)")
    teach.add_argument("--val-fraction", type=float, default=0.2,
                       help="share of each class held out for validation (default: %(default)s)")
    teach.add_argument("--seed", type=int, default=0,
                       help="which photos are held out; the same as `edgerec train --seed` (default: %(default)s)")
    teach.add_argument("--base", type=Path, default=None, metavar="MODEL",
                       help="model whose features to use (default: the embedded ImageNet EfficientNet-Lite0 INT8)")
    teach.add_argument("--views", nargs="*", default=[], choices=list(VIEWS),
                       help="extra views of each training photo: flip (its mirror image), crop-tl, crop-br "
                            "(its top-left / bottom-right 85%% x 85%%), camera (under one camera corruption at "
                            "a random severity, as `train --augment camera`; costs up to a second per large "
                            "photo); default: none")
    teach.add_argument("--l2", type=float, default=FitOptions().l2,
                       help="L2 weight on the standardized features (default: %(default)s)")
    teach.add_argument("--steps", type=int, default=FitOptions().steps,
                       help="gradient steps of the fit (default: %(default)s)")
    teach.add_argument("--unknown-kept", type=float, default=UnknownOptions().kept, metavar="SHARE",
                       help="the file says `unknown` for images unlike every training photo: its threshold keeps "
                            "this share of the training photos (leave-one-out) and of a few of them nudged as a camera "
                            "moves (default %(default)s). Lower flags "
                            "more unknowns and keeps fewer known images (docs/unknown.md)")
    teach.add_argument("--no-unknown", action="store_true",
                       help="store no unknown detection: every image gets one of the labels (as before)")
    teach.add_argument("--device", "-d", default="auto", help=DEVICE_HELP)
    teach.add_argument("--threads", type=int, default=None, help="inference threads")
    teach.set_defaults(func=cmd_teach)

    from edge.app.train_args import add_train_arguments

    train = commands.add_parser("train", help="fine-tune a model on your own photos (needs edgerec[train])")
    add_train_arguments(train)
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    from edge.logs import debug_requested, quiet_libraries

    quiet_libraries(debug_requested())  # before anything opens a camera or a stream
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgerecError as exc:
        print(f"edgerec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edgerec classify dir/ | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
