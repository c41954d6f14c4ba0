"""Knowing what a model does not know: a novelty score per image, and the threshold above which it is `unknown`.

The score is the deep nearest-neighbour distance (Sun et al., "Out-of-distribution detection with deep
nearest neighbors", ICML 2022) on the model's own `features` output: the features are centred on the mean of
the training photos' features (with two labels or more) and scaled to unit length, and the score is 1 - the
mean cosine similarity of the `k` most similar reference features (training photos). A photo like one the
model was taught scores near 0; one unlike all of them scores higher. The threshold is calibrated on the
training photos alone: the `target_kept` quantile of their leave-one-out scores (each photo scored against the
references other than itself), so that about that share of photos like the taught ones is kept. The choices
were measured against others (class-conditional, Mahalanobis, mirror views as references, k-means
references, per-class thresholds): docs/unknown.md.

Everything the runtime needs is stored in the model file as the `edgerec.novelty` metadata entry
(`NoveltyInfo`): the mean, the references (float16, unit length, at most `cap` in all), the label of each
reference, k and the threshold. A runtime that predates it ignores the entry and runs the file as before.

`build_novelty` (NumPy only) makes the entry from features, for `edgerec teach` and `edgerec train` alike;
`NoveltyScorer` scores a batch of features on the device: one [B, D] x [D, R] product, well under 0.2 ms
per region for a few hundred references (docs/unknown.md).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.errors import EdgerecError

METHOD = "knn-cosine"
DEFAULT_K = 3
DEFAULT_TARGET_KEPT = 0.95
DEFAULT_CAP = 512
"""Reference photos kept at most, in all (an even share per label): bounds the file's size (1.3 MB at D = 1280)
and the score's cost (0.07 ms per image at 512 on an AMD EPYC Zen 3, one thread; docs/unknown.md)."""
NUDGED_PHOTOS = 32
"""Training photos (at most; a seeded choice) whose nudged view also calibrates the threshold (`build_novelty`)."""
UNKNOWN = "unknown"
"""The reserved label of a result that is like nothing the model was taught (and of a low score)."""


@dataclass(frozen=True)
class NoveltyInfo:
    """The `edgerec.novelty` metadata entry: what the runtime needs to say `unknown`."""

    threshold: float
    """Scores above this are `unknown`."""
    k: int
    """Nearest references averaged."""
    mean: np.ndarray = field(repr=False)
    """float32 [D]: the training photos' mean feature, subtracted before the cosine."""
    references: np.ndarray = field(repr=False)
    """float16 [R, D]: centred, unit-length reference features."""
    reference_labels: np.ndarray = field(repr=False)
    """int [R]: the label index of each reference."""
    target_kept: float = DEFAULT_TARGET_KEPT
    """The share of training photos the threshold keeps (leave-one-out)."""
    calibration: dict[str, Any] = field(default_factory=dict)
    """How the threshold was set: photos, views, the kept share measured."""
    method: str = METHOD

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method, "threshold": float(self.threshold), "k": self.k,
            "target_kept": self.target_kept, "dim": self.dim, "count": len(self.references),
            "mean": _b64(self.mean.astype("<f4")), "references": _b64(self.references.astype("<f2")),
            "reference_labels": [int(v) for v in self.reference_labels], "calibration": self.calibration,
        }  # fmt: skip

    @classmethod
    def from_json(cls, value: object, num_labels: int, features_dim: int | None, source: str) -> NoveltyInfo:
        """Parse and check an `edgerec.novelty` entry; `source` names the file in errors."""

        def bad(why: str) -> EdgerecError:
            return EdgerecError(f"{source}: metadata edgerec.novelty {why}")

        if not isinstance(value, Mapping):
            raise bad(f"must be an object, got {value!r:.60}")
        if value.get("method") != METHOD:
            raise bad(f"method {value.get('method')!r} is not known to this edgerec; valid: {METHOD!r}")
        try:
            dim, count, k = int(value["dim"]), int(value["count"]), int(value["k"])
            threshold, kept = float(value["threshold"]), float(value.get("target_kept", DEFAULT_TARGET_KEPT))
            mean = _unb64(value["mean"], "<f4", (dim,))
            references = _unb64(value["references"], "<f2", (count, dim))
            labels = np.asarray(value["reference_labels"], np.int64)
        except (KeyError, TypeError, ValueError) as error:
            raise bad(f"is incomplete or malformed ({error})") from None
        if features_dim is not None and dim != features_dim:
            raise bad(f"has dim {dim}; the features output has {features_dim}")
        if count < 1 or k < 1 or labels.shape != (count,) or labels.min() < 0 or labels.max() >= num_labels:
            raise bad(f"needs count >= 1, k >= 1 and one label index in 0..{num_labels - 1} per reference")
        if not np.isfinite(threshold) or not np.all(np.isfinite(mean)) or not np.all(np.isfinite(references)):
            raise bad("holds a value that is not finite")
        calibration = value.get("calibration", {})
        return cls(threshold, k, mean, references, labels, kept, calibration if isinstance(calibration, dict) else {})


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _unb64(text: object, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(text, str):
        raise TypeError("an array must be base64 text")
    array = np.frombuffer(base64.b64decode(text, validate=True), dtype=dtype)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"an array holds {array.size} values, not {int(np.prod(shape))}")
    return array.reshape(shape)


# --- on the device ------------------------------------------------------------------------------------------


class NoveltyScorer:
    """Scores features [B, D] -> novelty [B]; buffers are kept between calls of one batch size. The float32
    references are made at the first `score`: a model whose graph computes the score never needs them."""

    def __init__(self, info: NoveltyInfo) -> None:
        self.info, self.k, self.threshold = info, info.k, float(info.threshold)
        self._k = min(self.k, len(info.references))
        self._centred = np.empty((0, info.dim), np.float32)
        self._sims = np.empty((0, len(info.references)), np.float32)

    @functools.cached_property
    def _mean(self) -> np.ndarray:
        return self.info.mean.astype(np.float32)

    @functools.cached_property
    def _refs_t(self) -> np.ndarray:
        return np.ascontiguousarray(self.info.references.astype(np.float32).T)  # [D, R]

    def score(self, features: np.ndarray) -> np.ndarray:
        """1 - mean cosine similarity of the k nearest references, one value per row of `features`."""
        rows = len(features)
        if len(self._centred) != rows:
            self._centred = np.empty((rows, self._mean.shape[0]), np.float32)
            self._sims = np.empty((rows, self._refs_t.shape[1]), np.float32)
        centred, sims = self._centred, self._sims
        np.subtract(features, self._mean, out=centred)
        norms = np.sqrt(np.einsum("ij,ij->i", centred, centred))
        np.matmul(centred, self._refs_t, out=sims)
        if self._k == 1:
            nearest = sims.max(axis=1)
        else:
            nearest = np.partition(sims, sims.shape[1] - self._k, axis=1)[:, -self._k:].mean(axis=1)
        return 1.0 - nearest / np.maximum(norms, 1e-12)


# --- when a model is made (teach, train) ----------------------------------------------------------------------


def build_novelty(features: np.ndarray, labels: np.ndarray, k: int = DEFAULT_K,
                  target_kept: float = DEFAULT_TARGET_KEPT, cap: int = DEFAULT_CAP, seed: int = 0,
                  nudged: np.ndarray | None = None, nudged_photos: np.ndarray | None = None) -> NoveltyInfo:
    """The novelty entry for a model taught on one feature row per training photo, `features` [N, D] with
    `labels` [N] (the photos themselves: their augmented views add nothing here, docs/unknown.md).

    Centred on the photos' mean when there are two labels or more; with one label plain cosine (its own mean
    would take away what tells it from everything else). References: at most `cap` photos, an even share per
    label (a label with fewer photos passes its share on), a seeded random choice within each. Threshold: the
    `target_kept` quantile of every photo's score against the references other than itself, and at least the
    same quantile of the `nudged` views' scores [M, D] (each photo of `nudged_photos` [M] as the camera shows
    it a little shifted and closer, `nudged`; scored against the references other than its own
    photo). Photos that are near-duplicates of each other (crops of one still scene, collected on the web
    page) would otherwise set a threshold tighter than the camera's own frame-to-frame change, and every
    live frame would be `unknown`; on varied photos the nudged views score as the photos do.
    """
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels, np.int64)
    if len(features) < 2:
        raise EdgerecError(f"unknown detection needs at least 2 training photos, got {len(features)}; add photos "
                           "or leave it out (--no-unknown)")
    if not 0.5 <= target_kept < 1.0:
        raise EdgerecError(f"target kept {target_kept} is out of range; valid: 0.5 <= kept < 1")
    centred = len(np.unique(labels)) >= 2
    mean = features.mean(axis=0) if centred else np.zeros(features.shape[1], np.float32)
    unit = _unit(features - mean)
    chosen = _references(labels, cap, seed)
    scores = _leave_one_out(unit, chosen, k)
    threshold = float(np.quantile(scores, target_kept))
    calibration = {"photos": int(len(features)), "how": "leave-one-out over the training photos",
                   "centred": centred}
    if nudged is not None and nudged_photos is not None and len(nudged):
        owners = np.asarray(nudged_photos, np.int64)
        moved = _scores(_unit(np.asarray(nudged, np.float32) - mean), owners, unit, chosen, k)
        calibration.update(nudged=int(len(moved)), photos_threshold=round(threshold, 4),
                           nudged_threshold=round(float(np.quantile(moved, target_kept)), 4))
        threshold = max(threshold, float(np.quantile(moved, target_kept)))
    calibration["kept"] = round(float(np.mean(scores <= threshold)), 4)
    return NoveltyInfo(threshold, k, mean.astype(np.float32), unit[chosen].astype(np.float16), labels[chosen],
                       target_kept, calibration)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _references(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Indices of the photos kept as references: each label's quota, a seeded random choice, in label order."""
    classes = np.unique(labels)
    quota = _quotas(np.array([np.sum(labels == c) for c in classes]), cap)
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)])


def _quotas(counts: np.ndarray, total: int) -> np.ndarray:
    """Photos kept per label: an even share of `total`, the unused share of smaller labels passed on."""
    quota = np.zeros_like(counts)
    left, waiting = total, list(np.argsort(counts, kind="stable"))
    while waiting:
        label = waiting.pop(0)
        quota[label] = min(counts[label], left // (len(waiting) + 1))
        left -= quota[label]
    return quota


def _leave_one_out(unit: np.ndarray, chosen: np.ndarray, k: int) -> np.ndarray:
    """Each photo's score against the references, itself left out where it is one."""
    return _scores(unit, np.arange(len(unit)), unit, chosen, k)


def _scores(queries: np.ndarray, owners: np.ndarray, unit: np.ndarray, chosen: np.ndarray, k: int) -> np.ndarray:
    """Each query row's score against the references (`unit[chosen]`), the reference that is its own photo
    (`owners`, an index into `unit`) left out ([512, R] at a time)."""
    refs = unit[chosen]
    k = min(k, len(chosen) - 1) if len(chosen) > 1 else 1
    out = np.empty(len(queries), np.float32)
    for start in range(0, len(queries), 512):
        rows = np.arange(start, min(start + 512, len(queries)))
        sims = queries[rows] @ refs.T
        sims[owners[rows][:, None] == chosen[None, :]] = -np.inf
        out[rows] = 1.0 - np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:].mean(axis=1)
    return out


NUDGE_SIDE = 0.95
"""`nudged` keeps this share of each side: the camera shifted by 2.5% and 5% closer."""


def nudged(image: np.ndarray, index: int) -> np.ndarray:
    """The photo as the camera might show it next: its top-left (even `index`) or bottom-right (odd) 95% x 95%.
    What the calibration (`build_novelty`) scores beside the photos."""
    h, w = image.shape[:2]
    ch, cw = max(1, round(h * NUDGE_SIDE)), max(1, round(w * NUDGE_SIDE))
    return np.ascontiguousarray(image[h - ch:, w - cw:] if index % 2 else image[:ch, :cw])


def nudged_choice(photos: int, seed: int = 0, count: int = NUDGED_PHOTOS) -> np.ndarray:
    """Which of `photos` training photos (indices, ascending) give a nudged view for the calibration."""
    return np.sort(np.random.default_rng(seed).permutation(photos)[:count])


def describe(info: NoveltyInfo, labels: Sequence[str]) -> str:
    """One line for `edgerec info`."""
    counts = np.bincount(info.reference_labels, minlength=len(labels))
    per = ", ".join(f"{label} {n}" for label, n in zip(labels, counts))
    kept = info.calibration.get("kept")
    measured = f", {kept:.1%} of {info.calibration.get('photos', '?')} training photos kept" if kept else ""
    return (f"unknown above novelty {info.threshold:.3f} ({info.method}, k={info.k}, target {info.target_kept:.0%} "
            f"kept{measured}); references: {per}")
