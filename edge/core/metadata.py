"""The model file's self-description: one schema, written by training and read by the runtime.

Every field is stored as its own ``metadata_props`` entry under the ``edgerec.`` prefix with a JSON value,
so ``onnx``-free readers (ONNX Runtime's ``custom_metadata_map``, Netron) see plain key/value pairs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from edge.core.novelty import NoveltyInfo
from edge.core.preprocess import Geometry
from edge.errors import EdgerecError

FORMAT_VERSION = 1
PREFIX = "edgerec."
INPUT_NAME = "image"
OUTPUT_NAME = "probs"
FEATURES_NAME = "features"  # the optional second output: the pooled embedding the classifier reads
PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class DatasetInfo:
    """Where the model's knowledge comes from: enough to tell two training sets apart."""

    name: str
    fingerprint: str = ""
    num_train: int | None = None
    num_val: int | None = None


@dataclass(frozen=True)
class FeaturesInfo:
    """The file's second output: float32 [N, dim], the tensor its classifier reads (what `edgerec teach`
    fits a new head on). Files without it still load; a runtime that predates it ignores the entry."""

    output: str = FEATURES_NAME
    dim: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """Everything the runtime needs to use a model file, and what a person needs to trust it."""

    labels: list[str]
    input_size: tuple[int, int]  # (height, width) of the uint8 BGR input
    crop: float  # centre-crop fraction, see edge.core.preprocess.Geometry
    arch: str
    precision: str  # fp32 | int8
    dataset: DatasetInfo
    label_ids: list[str] | None = None  # e.g. WordNet ids for ImageNet
    created: str = field(default_factory=lambda: now_iso())
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. val_top1_fp32, val_top1_int8
    training: dict[str, Any] = field(default_factory=dict)  # settings that produced the file
    quantization: dict[str, Any] = field(default_factory=dict)  # calibration method, images, agreement
    features: FeaturesInfo | None = None  # the features output, when the file has one
    novelty: NoveltyInfo | None = None  # what says `unknown` (edge.core.novelty), when the file has it
    format_version: int = FORMAT_VERSION

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.input_size[0], self.input_size[1], self.crop)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_props(self) -> dict[str, str]:
        """The metadata_props entries: ``edgerec.<field>`` -> JSON text."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values = {key: value.to_json() if key == "novelty" and value is not None else value
                  for key, value in values.items()}  # fmt: skip
        values = {key: asdict(value) if hasattr(value, "__dataclass_fields__") else value
                  for key, value in values.items()}  # fmt: skip
        return {PREFIX + key: json.dumps(value) for key, value in values.items() if value is not None}

    def with_updates(self, **changes: Any) -> ModelInfo:
        return ModelInfo(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


def now_iso() -> str:
    """UTC now, or $SOURCE_DATE_EPOCH when set, so that a rebuild can reproduce a file byte for byte."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return when.isoformat(timespec="seconds")


DATASET_FIELDS = frozenset(f.name for f in fields(DatasetInfo))
REQUIRED = ("format_version", "labels", "input_size", "crop", "arch", "precision")


def from_props(props: Mapping[str, str], source: str) -> ModelInfo:
    """Parse and validate the entries written by ``ModelInfo.to_props``; ``source`` names the file in errors."""
    values = _decode(props, source)
    missing = [key for key in REQUIRED if key not in values]
    if missing:
        lacking = ", ".join(PREFIX + k for k in missing)
        raise EdgerecError(f"{source}: not an edgerec model file (metadata lacks {lacking}); "
                           "export it with `edgerec train` or scripts/build_default_model.py")
    _check(values, source)
    known = {f.name for f in fields(ModelInfo)}
    values = {k: v for k, v in values.items() if k in known}  # newer writers may add fields
    values["input_size"] = tuple(values["input_size"])
    dataset = values.get("dataset", {"name": "unknown"})
    values["dataset"] = DatasetInfo(**{k: v for k, v in dataset.items() if k in DATASET_FIELDS})
    if "features" in values:
        values["features"] = FeaturesInfo(values["features"]["output"], values["features"]["dim"])
    if "novelty" in values:
        if values.get("features") is None:
            raise EdgerecError(f"{source}: metadata {PREFIX}novelty needs the features output ({PREFIX}features)")
        values["novelty"] = NoveltyInfo.from_json(values["novelty"], len(values["labels"]),
                                                  values["features"].dim, source)
    return ModelInfo(**values)


def _decode(props: Mapping[str, str], source: str) -> dict[str, Any]:
    values = {}
    for key, text in props.items():
        if not key.startswith(PREFIX):
            continue
        try:
            values[key[len(PREFIX):]] = json.loads(text)
        except json.JSONDecodeError:
            raise EdgerecError(f"{source}: metadata {key} is not valid JSON: {text[:60]!r}") from None
    return values


def _check(values: dict[str, Any], source: str) -> None:
    version = values["format_version"]
    if version != FORMAT_VERSION:
        raise EdgerecError(f"{source}: model format version {version!r}; this edgerec reads version {FORMAT_VERSION}")
    labels = values["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise EdgerecError(f"{source}: metadata {PREFIX}labels must be a non-empty list of strings")
    ids = values.get("label_ids")
    if ids is not None and (not isinstance(ids, list) or len(ids) != len(labels)):
        raise EdgerecError(f"{source}: metadata {PREFIX}label_ids must list one id per label ({len(labels)})")
    size = values["input_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise EdgerecError(f"{source}: metadata {PREFIX}input_size must be [height, width], got {size!r}")
    crop = values["crop"]
    if not (isinstance(crop, (int, float)) and 0 < crop <= 1):
        raise EdgerecError(f"{source}: metadata {PREFIX}crop must be in (0, 1], got {crop!r}")
    features = values.get("features")
    if features is not None and not (isinstance(features, dict) and {"output", "dim"} <= set(features)
                                     and features["output"] == FEATURES_NAME
                                     and isinstance(features["dim"], int) and features["dim"] > 0):
        raise EdgerecError(f"{source}: metadata {PREFIX}features must be "
                           f'{{"output": "{FEATURES_NAME}", "dim": D > 0}}, got {features!r}')
    dataset = values.get("dataset", {"name": ""})
    if not (isinstance(dataset, dict) and isinstance(dataset.get("name"), str)):
        raise EdgerecError(f"{source}: metadata {PREFIX}dataset must be an object with a name, got {dataset!r:.60}")
    for key in ("metrics", "training", "quantization"):
        if not isinstance(values.get(key, {}), dict):
            raise EdgerecError(f"{source}: metadata {PREFIX}{key} must be an object, got {values[key]!r:.60}")
    if values["precision"] not in PRECISIONS:
        raise EdgerecError(f"{source}: metadata {PREFIX}precision must be one of {PRECISIONS}, "
                           f"got {values['precision']!r}")
