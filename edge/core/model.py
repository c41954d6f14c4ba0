"""Load a self-describing .onnx file, pick execution providers, and classify frames."""

from __future__ import annotations

import dataclasses
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge.core import onnx_edit
from edge.core.devices import (
    CPU,
    INT8_UNSATURATED,
    KEPT_FLOAT,
    Provider,
    int8_sums_saturate,
    physical_cores,
    resolve_providers,
)
from edge.core.metadata import FEATURES_NAME, INPUT_NAME, OUTPUT_NAME, ModelInfo, from_props
from edge.core.novelty import UNKNOWN, NoveltyInfo, NoveltyScorer
from edge.core.novelty_graph import NOVELTY_KEY, NOVELTY_OUTPUT, append_novelty
from edge.core.preprocess import Geometry, fit
from edge.errors import EdgerecError

log = logging.getLogger("edgerec.model")

DEFAULT_MODEL = "efficientnet_lite0_imagenet_int8.onnx"
MAX_THREADS = 1024
"""Most inference threads: ONNX Runtime starts every one it is asked for (and takes at most a 32-bit int)."""


@dataclass(frozen=True)
class Category:
    label: str
    index: int
    score: float


@dataclass(frozen=True)
class Prediction:
    """Top-k categories for one frame, best first."""

    top: list[Category]
    novelty: float | None = None
    """How unlike the taught photos the frame is (edge.core.novelty); None when the model carries no novelty data
    or it was not asked for."""
    unknown: bool = False
    """True when `novelty` is above the threshold: the answer is `unknown`, not the top category."""

    @property
    def label(self) -> str:
        """The answer: the top category's label, or "unknown"."""
        return UNKNOWN if self.unknown else self.top[0].label

    @property
    def score(self) -> float:
        return self.top[0].score


def default_model_path() -> Path:
    """The ImageNet EfficientNet-Lite0 INT8 file shipped inside the package."""
    return Path(str(resources.files("edge") / "assets" / DEFAULT_MODEL))


class Model:
    """A loaded model file: validated metadata, an ONNX Runtime session, and a reusable input buffer."""

    def __init__(self, path: Path, session: ort.InferenceSession, info: ModelInfo, load_ms: float):
        self.path = path
        self.session = session
        self.info = info
        self.load_ms = load_ms
        self.provider = session.get_providers()[0]
        self.novelty = NoveltyScorer(info.novelty) if info.novelty is not None else None
        """Scores features for `unknown` (edge.core.novelty); None when the file carries no novelty data."""
        self.novelty_in_graph = NOVELTY_OUTPUT in {o.name for o in session.get_outputs()}
        """Whether the session computes the score itself (edge.core.novelty_graph), else NumPy does after it."""
        self._batch = np.zeros((1, *info.input_size, 3), np.uint8)

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto", threads: int | None = None,
             spinning: bool = True, novelty: NoveltyInfo | None = None, int32_sums: bool = True) -> Model:
        """Open and validate a model file (None = the embedded default) and warm its session up.

        `spinning`: ONNX Runtime's pool threads spin between runs (its default: a little lower latency when
        runs follow each other at once); False lets them sleep, for frames that arrive at a camera's pace.
        `novelty`: novelty data to use instead of the file's (`edgerec bench` on a file without any).
        `int32_sums`: an INT8 file's products summed in 32 bits on every CPU, so it gives the same answers on
        every CPU, those its training gate and stored figures measured (ARM and VNNI x86 always do). False
        lets an x86 CPU without VNNI use its faster kernels, whose 16-bit sums saturate and move labels
        away from FP32's (`--fast-int8`; edge.core.devices.INT8_UNSATURATED, docs/quantization.md).
        """
        start = time.perf_counter()
        path = Path(path) if path is not None else default_model_path()
        providers = resolve_providers(device, ort.get_available_providers())
        options = _session_options(threads, spinning, int32_sums and int8_sums_saturate())
        session, info = _open(path, providers, options, novelty)
        model = cls(path, session, info, 0.0)
        model.infer(model._batch)  # warm-up: first run allocates and picks kernels
        model.load_ms = (time.perf_counter() - start) * 1000
        return model

    @property
    def labels(self) -> list[str]:
        return self.info.labels

    @property
    def geometry(self) -> Geometry:
        return self.info.geometry

    @property
    def threads(self) -> int:
        """Intra-op threads: as asked, else ONNX Runtime's default, one per physical core."""
        return self.session.get_session_options().intra_op_num_threads or physical_cores()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] BGR frames already fitted to the input size -> probabilities [N, C]."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

    @property
    def has_features(self) -> bool:
        return self.info.features is not None

    def features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like `infer`, and also the pooled embedding the classifier reads: (probs [N, C], features [N, D]).
        One run computes both; `infer` alone asks ONNX Runtime for `probs` only."""
        if not self.has_features:
            raise EdgerecError(no_features_message(self.path))
        probs, features = self.session.run([OUTPUT_NAME, FEATURES_NAME], {INPUT_NAME: batch})
        return probs, features

    def infer_novelty(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like `infer`, and each frame's features and novelty score: (probs [N, C], features [N, D], novelty
        [N]) from one run. Needs a file with novelty data (`self.novelty`)."""
        if self.novelty is None:
            raise EdgerecError(f"{self.path}: carries no novelty data; teach or train it again with this edgerec")
        if self.novelty_in_graph:
            probs, features, novelty = self.session.run([OUTPUT_NAME, FEATURES_NAME, NOVELTY_OUTPUT],
                                                        {INPUT_NAME: batch})
            return probs, features, novelty
        probs, features = self.features(batch)
        return probs, features, self.novelty.score(features)

    def classify(self, frames: Sequence[np.ndarray], top_k: int = 5, unknown_threshold: float | None = None,
                 unknown: bool = True) -> list[Prediction]:
        """Fit any-size BGR frames, run them as one batch, and return the top-k categories of each, with the
        novelty score and `unknown` when the file carries novelty data and `unknown` is on (the threshold: the
        file's, unless `unknown_threshold` is given)."""
        if len(frames) != len(self._batch):
            self._batch = np.empty((len(frames), *self.info.input_size, 3), np.uint8)
        for frame, slot in zip(frames, self._batch):
            fit(frame, self.geometry, out=slot)
        if self.novelty is None or not unknown:
            return [self.top(p, top_k) for p in self.infer(self._batch)]
        threshold = self.novelty.threshold if unknown_threshold is None else unknown_threshold
        probs, _, novelty = self.infer_novelty(self._batch)
        return [dataclasses.replace(self.top(p, top_k), novelty=float(n), unknown=bool(n > threshold))
                for p, n in zip(probs, novelty)]  # fmt: skip

    def top(self, probs: np.ndarray, k: int) -> Prediction:
        k = max(1, min(k, len(probs)))
        best = np.argpartition(probs, -k)[-k:]
        best = best[np.argsort(probs[best])[::-1]]
        return Prediction([Category(self.labels[i], int(i), float(probs[i])) for i in best])


def no_features_message(path: Path) -> str:
    return (f"{path} has no features output, so teach cannot build on it; valid: the embedded default (leave out "
            "--base) or a file written by this edgerec's `edgerec train` (`edgerec info` shows a features line)")


_CHILD = """
import sys
from edge.errors import EdgerecError
from edge.core.model import Model
try:
    Model.load(sys.argv[1], sys.argv[2], 1)
except EdgerecError as error:
    print(error)
    sys.exit(2)
"""


def check_in_child(path: str | Path, device: str = "cpu", timeout: float = 120.0) -> None:
    """Load `path` in a separate process first, so that a file which crashes ONNX Runtime (an abort, a
    segmentation fault) ends that process and not the caller, e.g. a service about to swap in a new model.

    Raises EdgerecError naming the file and the problem: the child's own one-line error, or how it died.
    """
    try:
        child = subprocess.run([sys.executable, "-c", _CHILD, str(path), device], capture_output=True, text=True,
                               timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EdgerecError(f"{path}: loading it took more than {timeout:g} s in a test process") from None
    lines = child.stdout.strip().splitlines()
    if child.returncode == 0:
        return
    if child.returncode == 2 and lines:
        raise EdgerecError(lines[-1])
    code = child.returncode
    how = f"signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else f"status {code}"
    raise EdgerecError(f"{path}: loading it killed a test process ({how}); the file is damaged or not a model")


def inference_session(source: str | Path | bytes, options: ort.SessionOptions | None = None,
                      providers: Sequence[Provider | str] = (CPU,)) -> ort.InferenceSession:
    """An ONNX Runtime session as every edgerec session opens: no silent fallback to another provider, and the
    optimisations of edge.core.devices.KEPT_FLOAT off, so that layers a file keeps in float run in float."""
    return ort.InferenceSession(source if isinstance(source, bytes) else str(source), options,
                                providers=list(providers), enable_fallback=0, disabled_optimizers=list(KEPT_FLOAT))


def _open(path: Path, providers: list[Provider], options: ort.SessionOptions,
          novelty: NoveltyInfo | None) -> tuple[ort.InferenceSession, ModelInfo]:
    """The session and the file's validated metadata (`novelty` in place of the file's, when given). A file with
    novelty data opens once, from its graph with the score appended (edge.core.novelty_graph); a device that
    cannot run the appended nodes gets the file as it is, the score then computed in NumPy after each run
    (slower, the same values), and the log says why, once."""
    graph = _graph_with_novelty(path, novelty)
    if graph is not None:
        try:
            session = inference_session(graph, options, providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            log.warning("%s: the novelty score runs in NumPy after each run: %s could not run it in the graph (%s)",
                        path, providers[0][0], str(exc).splitlines()[0][:160])
        else:
            return session, _info(session, path, novelty)
    session = _open_session(path, providers, options)
    return session, _info(session, path, novelty)


def _info(session: ort.InferenceSession, path: Path, novelty: NoveltyInfo | None) -> ModelInfo:
    info = from_props(_metadata(session, path), str(path))
    _check_io(session, info, str(path))
    return info if novelty is None else dataclasses.replace(info, novelty=novelty)


def _graph_with_novelty(path: Path, novelty: NoveltyInfo | None) -> bytes | None:
    """The file's graph with the novelty score appended, when its metadata (or `novelty`) carries novelty data;
    None when it carries none, or when the file cannot be read this way (opening it as it is then says why)."""
    try:
        model = onnx_edit.parse(path.read_bytes())
        if novelty is None:
            props = {p.key: p.value for p in model.metadata_props}
            if NOVELTY_KEY not in props:
                return None
            novelty = from_props(props, str(path)).novelty
    except Exception:  # OSError, protobuf's DecodeError, EdgerecError: the plain open reports each one
        return None
    return append_novelty(model, novelty) if novelty is not None else None


def _session_options(threads: int | None, spinning: bool, unsaturated: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if unsaturated:
        options.add_session_config_entry(INT8_UNSATURATED, "1")
    if threads is not None:
        if not 1 <= threads <= MAX_THREADS:
            raise EdgerecError(f"threads must be from 1 to {MAX_THREADS}, got {threads}")
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return options


def _open_session(path: Path, providers: list[Provider], options: ort.SessionOptions) -> ort.InferenceSession:
    if not path.is_file():
        raise EdgerecError(f"{path}: no such model file")
    try:
        return inference_session(path, options, providers)
    except Exception as exc:  # onnxruntime raises its own exception types for every kind of bad file
        reason = str(exc).splitlines()[0][:160]
        provider = providers[0][0]
    if provider != CPU and _loads_on_cpu(path, options):  # the file is fine: the accelerator failed
        raise EdgerecError(f"{path}: {provider} could not run this model ({reason}); --device cpu runs it")
    raise EdgerecError(f"{path}: not a loadable ONNX model ({reason})")


def _loads_on_cpu(path: Path, options: ort.SessionOptions) -> bool:
    try:
        inference_session(path, options, [CPU])
    except Exception:  # only asks whether the CPU provider can open the file
        return False
    return True


def _metadata(session: ort.InferenceSession, path: Path) -> dict[str, str]:
    try:
        return session.get_modelmeta().custom_metadata_map
    except UnicodeDecodeError as error:  # ONNX Runtime decodes the metadata strings as UTF-8
        raise EdgerecError(f"{path}: metadata is not UTF-8 text ({error.reason} at byte {error.start})") from None


def _check_io(session: ort.InferenceSession, info: ModelInfo, source: str) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    want = f"input '{INPUT_NAME}' uint8 [N, {info.input_size[0]}, {info.input_size[1]}, 3]"
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(uint8)":
        got = ", ".join(f"'{i.name}' {i.type}" for i in inputs)
        raise EdgerecError(f"{source}: model input must be {want}; it has {got}")
    if list(inputs[0].shape[1:]) != [*info.input_size, 3]:
        raise EdgerecError(f"{source}: model input must be {want}; it has shape {inputs[0].shape}")
    names = [o.name for o in outputs]
    if OUTPUT_NAME not in names:
        raise EdgerecError(f"{source}: model has no output '{OUTPUT_NAME}' (outputs: {', '.join(names)})")
    out = outputs[names.index(OUTPUT_NAME)]
    if out.type != "tensor(float)" or len(out.shape) != 2:
        raise EdgerecError(f"{source}: output '{OUTPUT_NAME}' must be float32 [N, C]; it is {out.type} {out.shape}")
    if out.shape[1] != info.num_classes:
        raise EdgerecError(f"{source}: output '{OUTPUT_NAME}' has {out.shape[1]} classes but the metadata lists "
                           f"{info.num_classes} labels")
    if info.features is not None:
        _check_features(outputs, names, info.features.dim, source)


def _check_features(outputs: list, names: list[str], dim: int, source: str) -> None:
    if FEATURES_NAME not in names:
        raise EdgerecError(f"{source}: the metadata declares an output '{FEATURES_NAME}' the graph lacks "
                           f"(outputs: {', '.join(names)})")
    out = outputs[names.index(FEATURES_NAME)]
    if out.type != "tensor(float)" or len(out.shape) != 2 or out.shape[1] != dim:
        raise EdgerecError(f"{source}: output '{FEATURES_NAME}' must be float32 [N, {dim}] as the metadata says; "
                           f"it is {out.type} {out.shape}")
