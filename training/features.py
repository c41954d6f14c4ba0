"""Run a frozen network prefix once over a set of images and keep its outputs for training the rest.

Training splits a network into a frozen prefix (in-graph preprocessing, stem, the first blocks) and a
trainable suffix. The prefix's output for an image never changes, so it is computed once per image (and
per horizontal mirror) and the suffix trains on the cache for as many epochs as it likes: this is what
makes fine-tuning fast on a CPU. Nothing here knows the architecture: the prefix is any module that takes
uint8 [N, H, W, 3] BGR batches, as the model file does.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

Batch = tuple[torch.Tensor, torch.Tensor]  # (activations, int64 labels)


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(probe is not None and torch.backends.mkldnn.is_available() and probe())


@dataclass(frozen=True)
class CacheOptions:
    """How to run the prefix."""

    batch_size: int = 64
    mirror: bool = True  # also cache the horizontal mirror of every image (a free augmentation)
    engine: str = "onnxruntime"  # or "torch"; ORT ran the Lite0 prefix 5x faster than torch eager on a CPU
    bf16: bool | None = None  # torch engine: bf16 autocast; None = when the CPU has native bf16 (native_bf16)
    channels_last: bool = True  # keep 4-D outputs NHWC in memory (torch engine: also the prefix's weights)
    progress: bool = False  # tqdm bar on stderr


ENGINES = ("onnxruntime", "torch")
ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-3  # largest ORT-vs-torch difference accepted, relative to the largest activation


@dataclass(frozen=True)
class CachedActivations:
    """The prefix's outputs: row v * n_images + i is view v of image i (from one `cache_activations` call,
    view 0 is the image as given and view 1 its mirror; `combine` appends the views of further calls)."""

    activations: torch.Tensor  # [views * n_images, ...]; bf16 when computed under bf16 autocast
    labels: torch.Tensor  # int64 [views * n_images]
    views: int

    @classmethod
    def combine(cls, caches: Sequence[CachedActivations]) -> CachedActivations:
        """One cache holding the views of several caches of the same images (e.g. augmented views)."""
        first = caches[0].labels[: caches[0].n_images]
        if any(c.n_images != len(first) or not torch.equal(c.labels[: c.n_images], first) for c in caches):
            raise ValueError("caches to combine must hold the same images (same count and labels)")
        return cls(
            torch.cat([c.activations for c in caches]),
            torch.cat([c.labels for c in caches]),
            sum(c.views for c in caches),
        )

    @property
    def n_images(self) -> int:
        return self.activations.shape[0] // self.views

    def epoch_batches(self, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        """Every image once, in a random order and a random one of its views; the same for the same
        (seed, epoch). The last batch may be smaller. With `world` > 1 (DistributedDataParallel), rank
        `rank` gets every world-th image of the same order, all ranks the same count (a remainder of
        fewer than `world` images is left out of this epoch)."""
        rng = np.random.default_rng((seed, epoch))
        order = rng.permutation(self.n_images)
        rows = rng.integers(0, self.views, self.n_images) * self.n_images + order
        rows = torch.from_numpy(rows[: len(rows) - len(rows) % world][rank::world])
        for start in range(0, len(rows), batch_size):
            index = rows[start : start + batch_size]
            yield self.activations[index], self.labels[index]

    def in_order(self, batch_size: int) -> Iterator[Batch]:
        """All rows in stored order (for evaluation)."""
        for start in range(0, self.activations.shape[0], batch_size):
            yield self.activations[start : start + batch_size], self.labels[start : start + batch_size]


def cache_activations(
    prefix: nn.Module, images: np.ndarray, labels: Sequence[int], options: CacheOptions | None = None
) -> CachedActivations:
    """Run `prefix` (switched to eval mode, without gradients) over uint8 [N, H, W, 3] `images` and their
    mirrors. With the onnxruntime engine the prefix is exported to ONNX in memory and checked against
    torch on the first images before use."""
    options = options or CacheOptions()
    _check_inputs(images, labels, options)
    prefix.eval()
    run = _onnxruntime_runner(prefix, images[:2]) if options.engine == "onnxruntime" else _torch_runner(prefix, options)
    views = 2 if options.mirror else 1
    n = len(images)
    out = None
    with tqdm(total=n * views, desc="cache", unit="img", disable=not options.progress) as bar:
        for start in range(0, n, options.batch_size):
            batch = images[start : start + options.batch_size]
            for view in range(views):
                y = run(np.ascontiguousarray(batch[:, :, ::-1]) if view else batch)
                if out is None:
                    out = _allocate(n * views, y, options.channels_last)
                out[view * n + start : view * n + start + len(batch)] = y
                bar.update(len(batch))
    targets = torch.as_tensor(np.asarray(labels, np.int64)).repeat(views)
    return CachedActivations(out, targets, views)


def _check_inputs(images: np.ndarray, labels: Sequence[int], options: CacheOptions) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {list(images.shape)}")
    if len(images) == 0:
        raise ValueError("no images to cache")
    if len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    if options.engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {options.engine!r}")


Runner = Callable[[np.ndarray], torch.Tensor]  # uint8 [B, H, W, 3] -> the prefix's output for the batch


def _torch_runner(prefix: nn.Module, options: CacheOptions) -> Runner:
    bf16 = native_bf16() if options.bf16 is None else options.bf16
    if options.channels_last:
        prefix.to(memory_format=torch.channels_last)

    def run(batch: np.ndarray) -> torch.Tensor:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with torch.no_grad(), autocast:
            return prefix(torch.from_numpy(batch))

    return run


def _onnxruntime_runner(prefix: nn.Module, check: np.ndarray) -> Runner:
    """Export `prefix` to ONNX in memory and run it with ONNX Runtime, after checking it against torch."""
    import onnxruntime as ort

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and constant-folding notes
        torch.onnx.export(prefix, (torch.from_numpy(check),), buffer, input_names=["image"],
                          output_names=["activations"], opset_version=ONNX_OPSET, dynamo=False,
                          dynamic_axes={"image": {0: "N"}, "activations": {0: "N"}})  # fmt: skip
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(buffer.getvalue(), session_options, providers=["CPUExecutionProvider"])

    def run(batch: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"image": batch})[0])

    with torch.no_grad():
        expected = prefix(torch.from_numpy(check)).float()
    difference = float((run(check) - expected).abs().max())
    if difference > ONNX_TOLERANCE * max(1.0, float(expected.abs().max())):
        raise RuntimeError(f"the ONNX export of the prefix differs from torch by {difference:.3g}; "
                           "use CacheOptions(engine='torch')")  # fmt: skip
    return run


def _allocate(rows: int, first: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """The cache for `rows` outputs shaped like `first` (one batch), in its dtype."""
    shape = (rows, *first.shape[1:])
    if channels_last and first.dim() == 4:
        return torch.empty(shape, dtype=first.dtype, memory_format=torch.channels_last)
    return torch.empty(shape, dtype=first.dtype)
