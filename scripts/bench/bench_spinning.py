"""ONNX Runtime's pool threads spinning between runs (its default) or sleeping, side by side.

    python scripts/bench/bench_spinning.py [--runs 200] [--threads N]

Two sessions of the INT8 default, `session.intra_op.allow_spinning` "1" and "0", at --threads (default:
ONNX Runtime's choice), each timed alone and through the whole per-frame path (edge.app.bench.PathBench: a
looping still of a real photo, overlay drawn for a sink that shows pixels), all in the same interleaved
rounds, wall clock; OpenCV on one thread, as in `edgerec run`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.app.bench import FRAME_SIZES, PathBench, load_model  # noqa: E402
from edge.loop.pipeline import using_opencv_threads  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    models = {spin: load_model(None, "cpu", args.threads, spin) for spin in (True, False)}
    with using_opencv_threads(1):
        benches = [(spin, PathBench(model, size, "pixels", time.perf_counter))
                   for size in FRAME_SIZES for spin, model in models.items()]
        for _ in range(5):
            for _, bench in benches:
                bench.round()
        for _, bench in benches:
            bench.clear()
        for _ in range(args.runs):
            for _, bench in benches:
                bench.round()
    print(f"{models[True].threads} inference threads, {args.runs} interleaved rounds, median (p95) ms, wall clock")
    print("| frame | spinning | session.run alone | whole path (frame) | beyond session.run | beyond / session |")
    print("|---|---|---|---|---|---|")
    for spin, bench in benches:
        t = bench.timing()
        frame, beyond = t.stages["frame"], t.stages["beyond-model"]
        print(f"| {t.frame_size} | {'on' if spin else 'off'} | {t.session.median_ms:.2f} ({t.session.p95_ms:.2f}) "
              f"| {frame.median_ms:.2f} ({frame.p95_ms:.2f}) | {beyond.median_ms:.2f} ({beyond.p95_ms:.2f}) "
              f"| {t.beyond_pct:.1f}% |")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
