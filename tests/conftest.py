"""Shared fixtures: tiny contract-conforming models built with onnx.helper (no torch, no training)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import select
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

# Fuzz tests (tests/test_fuzz_*.py): a fixed, bounded run by default (the same examples every time, as CI
# runs them); EDGEREC_FUZZ_EXAMPLES=N draws N fresh random examples per target when run by hand.
FUZZ_EXAMPLES = int(os.environ.get("EDGEREC_FUZZ_EXAMPLES", "0") or 0)
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("fuzz", max_examples=FUZZ_EXAMPLES or 1000, database=None, deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.load_profile("fuzz" if FUZZ_EXAMPLES else "ci")
except ImportError:  # hypothesis comes with the [dev] extra; without it the fuzz tests are skipped
    pass

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "tests" / "data" / "photos"
COLOURS = {"blue": (200, 40, 40), "green": (40, 200, 40), "red": (40, 40, 200)}  # BGR; the tiny model's classes


def write_clip(path: Path, labels: list[str], fps: float = 25.0, size: tuple[int, int] = (96, 64)) -> Path:
    """A video of plain frames, one per label, in the colour the tiny model names by that label."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    for label in labels:
        writer.write(np.full((size[1], size[0], 3), COLOURS[label], np.uint8))
    writer.release()
    return path


def small_info(classes: int):
    """Metadata for a small 64 px EfficientNet-Lite0 export in the export tests."""
    from edge.core.metadata import DatasetInfo, ModelInfo

    return ModelInfo(labels=[f"c{i}" for i in range(classes)], input_size=(64, 64), crop=1.0,
                     arch="efficientnet_lite0", precision="fp32", dataset=DatasetInfo("noise", "f" * 8, 8, 4))


def blocky_images() -> np.ndarray:
    """12 blocky 64 px BGR images (8 px blocks of random colour: structure, not pure noise)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (12, 8, 8, 3), np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(base, 8, axis=1), 8, axis=2))


def count_frames(path: Path) -> int:
    """How many frames OpenCV reads back from a video file."""
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames


def load_script(name: str) -> types.ModuleType:
    """scripts/GROUP/NAME.py as a module (scripts are not a package), registered so its dataclasses work."""
    if name in sys.modules:
        return sys.modules[name]
    (path,) = (REPO / "scripts").glob(f"*/{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Worker:
    """A Python child process answering one JSON line per line it is sent (the fuzz tests' sandbox): a
    request that kills it comes back as {"crash": exit status}, and the next request starts a new one."""

    def __init__(self, script: str, *args: str) -> None:
        self.command = [sys.executable, "-c", script, *args]
        self.process: subprocess.Popen | None = None

    def ask(self, line: str, timeout: float) -> dict:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, text=True, cwd=REPO)
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        answer = self.process.stdout.readline() if ready else ""
        if answer:
            return json.loads(answer)
        self.process.kill()
        return {"crash": self.process.wait()}

    def close(self) -> None:
        """End the child (the next request starts a fresh one)."""
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait(timeout=10)
            self.process = None


def run_parser() -> argparse.ArgumentParser:
    """The `edgerec run` argument parser, as the CLI builds it."""
    from edge.app.cli import add_model_arguments
    from edge.app.run_args import add_run_arguments

    parser = argparse.ArgumentParser(prog="edgerec run")
    add_model_arguments(parser)
    add_run_arguments(parser)
    return parser


def make_tiny_model(path: Path, labels: list[str] | None = None, size: int = 8, input_type: str = "uint8",
                    layout: str = "NHWC", classes: int | None = None, metadata: dict[str, str] | None = None,
                    precision: str = "fp32") -> Path:
    """A contract model that labels a frame by its dominant BGR channel: 'blue', 'green' or 'red'.

    The keyword arguments break the contract on purpose for the refusal tests.
    """
    import onnx
    from onnx import TensorProto, helper

    from edge.core.metadata import DatasetInfo, ModelInfo

    labels = labels or ["blue", "green", "red"]
    classes = classes or len(labels)
    elem = {"uint8": TensorProto.UINT8, "float": TensorProto.FLOAT}[input_type]
    shape = ["N", size, size, 3] if layout == "NHWC" else ["N", 3, size, size]
    axes = [1, 2] if layout == "NHWC" else [2, 3]
    weights = np.zeros((3, classes), np.float32)
    weights[np.arange(3), np.arange(3) % classes] = 0.2
    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["x"], ["mean"], axes=axes, keepdims=0),
         helper.make_node("MatMul", ["mean", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("image", elem, shape)],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])],
        [helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.flatten())])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if metadata is None:
        info = ModelInfo(labels=labels, input_size=(size, size), crop=1.0, arch="tiny-test", precision=precision,
                         dataset=DatasetInfo("synthetic", "0" * 16, 3, 3))
        metadata = info.to_props()
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return path


@pytest.fixture(autouse=True)
def _state_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The web page's state (crops, the review queue, taught models) goes to a temporary folder, never the
    user's ~/.local/state/edgerec: the review queue writes as soon as a run with --web meets a label change."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return make_tiny_model(tmp_path / "tiny.onnx")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `edgerec ARGS` the way a user does (a fresh process), capturing its output."""
    return subprocess.run([sys.executable, "-m", "edge.app.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=120)


def fuzz_examples(ci: int) -> int:
    """Examples per fuzz target: `ci` (fixed seed) by default, EDGEREC_FUZZ_EXAMPLES when set."""
    return FUZZ_EXAMPLES or ci
