"""`edgerec` command line: each subcommand parses its flags and calls one library function."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from edge.errors import EdgerecError
from edge.model import DEVICES

DEVICE_HELP = (f"execution device: auto (best available: TensorRT, CUDA, else CPU), {', '.join(DEVICES)}; "
               "an explicit choice this onnxruntime lacks is an error listing what is available")
MODEL_HELP = "model file (.onnx written by edgerec); default: the embedded ImageNet EfficientNet-Lite0 INT8"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", type=Path, default=None, help=MODEL_HELP)
    parser.add_argument("--device", "-d", default="auto", help=DEVICE_HELP)
    parser.add_argument("--threads", type=int, default=None,
                        help="inference threads (default: onnxruntime's choice, one per physical core)")


def cmd_classify(args: argparse.Namespace) -> int:
    from edge.classify import classify_files, sample_photos_dir
    from edge.model import Model

    paths = [*args.paths, *([sample_photos_dir()] if args.samples else [])]
    if not paths:
        raise EdgerecError("nothing to classify: name image files or folders, or add --samples")
    model = Model.load(args.model, args.device, args.threads)
    for result in classify_files(model, paths, args.top_k):
        if args.json:
            print(json.dumps({"file": str(result.file), "top": [asdict(c) for c in result.prediction.top],
                              "model": str(model.path), "provider": model.provider, "ms": round(result.ms, 2)}),
                  flush=True)
        else:
            others = ", ".join(f"{c.label} {c.score:.1%}" for c in result.prediction.top[1:])
            print(f"{result.file}: {result.prediction.label} {result.prediction.score:.1%}"
                  + (f"  ({others})" if others else ""), flush=True)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import threading

    from edge.pipeline import install_signal_handlers, run
    from edge.run_args import describe_change, describe_state, describe_summary, options_from_args

    options = options_from_args(args)
    stop = threading.Event()
    restore = install_signal_handlers(stop)
    try:
        show = None if args.events == "-" else (lambda result: print(describe_change(result), flush=True))
        summary = run(options, stop, on_change=show,
                      on_source_state=lambda status: print(describe_state(status), file=sys.stderr, flush=True))
    finally:
        restore()
    print("\n".join(describe_summary(summary)), file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from edge.model import Model

    model = Model.load(args.model, "cpu")
    info = model.info
    if args.json:
        print(json.dumps({"file": str(model.path), **asdict(info)}))
        return 0
    labels = ", ".join(info.labels[:8]) + (f", … ({info.num_classes} in all)" if info.num_classes > 8 else "")
    rows = [("file", str(model.path)), ("architecture", info.arch), ("precision", info.precision),
            ("input", f"uint8 BGR [N, {info.input_size[0]}, {info.input_size[1]}, 3], centre crop {info.crop}"),
            ("classes", str(info.num_classes)), ("labels", labels),
            ("dataset", f"{info.dataset.name} {info.dataset.fingerprint}".strip()),
            ("created", info.created), ("format version", str(info.format_version))]
    rows += [(f"metric {k}", f"{v:.4g}") for k, v in info.metrics.items()]
    rows += [(f"quantization {k}", str(v)) for k, v in info.quantization.items()]
    rows += [(f"training {k}", str(v)) for k, v in info.training.items()]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import bench

    results = bench(args.models or [None], args.device, args.threads, args.runs)
    if args.json:
        for result in results:
            print(json.dumps(asdict(result)))
        return 0
    base = results[0].session.median_ms
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
    from edge.train_args import GATE_FAILED, describe_report, train_kwargs

    try:
        from training.train import TrainOptions, train
    except ImportError as exc:  # a runtime-only install: no torch
        raise EdgerecError(f"edgerec train needs the training extra ({exc.name} is missing): "
                           "pip install 'edgerec[train]'") from None

    report = train(TrainOptions(**train_kwargs(args)))
    if report.rank != 0:
        return 0
    print("\n".join(describe_report(report)))
    if not report.gate_passed:
        print(f"edgerec: INT8 failed the accuracy gate; {report.deliverable} is the FP32 model", file=sys.stderr)
        return GATE_FAILED
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgerec", description="Real-time image recognition on the camera's own device.",
        epilog="Run `edgerec COMMAND --help` for each command's options.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    classify = commands.add_parser("classify", help="label image files or folders of images",
                                   description="Label image files (or every image under a folder).",
                                   epilog="examples:\n  edgerec classify photo.jpg photos/ --top-k 3 --json\n"
                                          "  edgerec classify --samples",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    classify.add_argument("paths", nargs="*", metavar="IMAGE_OR_DIR")
    classify.add_argument("--samples", action="store_true", help="also classify the photos shipped with edgerec")
    add_model_arguments(classify)
    classify.add_argument("--top-k", "-k", type=int, default=5, help="labels per image (default: %(default)s)")
    classify.add_argument("--json", action="store_true",
                          help="one JSON object per line: file, top [{label, index, score}], model, provider, ms")
    classify.set_defaults(func=cmd_classify)

    from edge.run_args import add_run_arguments

    run = commands.add_parser("run", help="recognise live: camera, stream, video file or the demo clip",
                              description="Label every frame of a source; show, record and report label "
                                          "changes. Ctrl-C or SIGTERM stops cleanly.")
    add_model_arguments(run)
    add_run_arguments(run)
    run.set_defaults(func=cmd_run)

    info = commands.add_parser("info", help="show what a model file says about itself",
                               description="Print a model file's metadata: labels, input, precision, metrics.")
    info.add_argument("model", type=Path, nargs="?", default=None, metavar="MODEL", help=MODEL_HELP)
    info.add_argument("--json", action="store_true", help="the metadata as one JSON object")
    info.set_defaults(func=cmd_info)

    bench = commands.add_parser("bench", help="time model files side by side",
                                description="Load time, session latency (median/p95), preprocess + session "
                                            "from 640x480 and 1920x1080 frames, provider, threads, RSS.",
                                epilog="example: edgerec bench build/model_fp32.onnx build/model_int8.onnx")
    bench.add_argument("models", type=Path, nargs="*", metavar="MODEL", help=MODEL_HELP)
    bench.add_argument("--device", "-d", default="auto", help=DEVICE_HELP)
    bench.add_argument("--threads", type=int, default=None, help="inference threads")
    bench.add_argument("--runs", type=int, default=200, help="timed runs per stage (default: %(default)s)")
    bench.add_argument("--json", action="store_true", help="one JSON object per model")
    bench.set_defaults(func=cmd_bench)

    from edge.train_args import add_train_arguments

    train = commands.add_parser("train", help="fine-tune a model on your own photos (needs edgerec[train])")
    add_train_arguments(train)
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
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
