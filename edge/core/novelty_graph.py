"""The novelty score as part of the model's own graph: appended in memory when a file with novelty data loads.

`NoveltyScorer` (edge/core/novelty.py) computes the score in NumPy after `session.run`; on a device that costs
several times the arithmetic, because the references and NumPy's code are cold in the cache after the model ran
(0.4-0.6 ms per region for 512 references on an AMD EPYC Zen 3, `edgerec bench --pipeline`). The same
arithmetic as ONNX nodes fed by the `features` output runs inside the same `session.run`, while the features
are still in cache, for a few hundredths of a millisecond (docs/unknown.md, the bench row).

The file is not changed: the nodes are added to the parsed graph (`append_novelty`), and the session opens once,
from those bytes. A runtime that predates this reads the file as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.core import onnx_edit
from edge.core.metadata import FEATURES_NAME, PREFIX
from edge.core.novelty import NoveltyInfo

NOVELTY_KEY = f"{PREFIX}novelty"
"""The metadata entry whose presence makes `Model.load` append the score."""
NOVELTY_OUTPUT = "edgerec_novelty"
"""The appended graph output: float32 [N], one score per image, as `NoveltyScorer.score` gives."""
_P = "edgerec_novelty/"
MIN_OPSET = 13
"""ReduceSum takes its axes as an input from opset 13; older graphs are scored in NumPy."""


def append_novelty(model: Any, info: NoveltyInfo) -> bytes | None:
    """The bytes of `model` (a parsed ModelProto, edge.core.onnx_edit.parse; changed in place) with
    `NOVELTY_OUTPUT` computed from `features`: 1 - mean of the k largest (features - mean) . reference /
    |features - mean|. None when the graph's operator set predates `MIN_OPSET` (no edgerec file does)."""
    if onnx_edit.opset(model) < MIN_OPSET:
        return None
    references = np.ascontiguousarray(info.references.astype(np.float32).T)  # [D, R]
    k = min(info.k, references.shape[1])
    for name, value in (("mean", info.mean.astype(np.float32)), ("references", references),
                        ("k", np.array([k], np.int64)), ("axis", np.array([1], np.int64)),
                        ("inv_k", np.array(1.0 / k, np.float32)), ("one", np.array(1.0, np.float32)),
                        ("tiny", np.array(1e-12, np.float32))):  # fmt: skip
        onnx_edit.add_initializer(model, _P + name, value)
    for op, inputs, outputs, ints in (
        ("Sub", [FEATURES_NAME, "mean"], ["centred"], {}),
        ("MatMul", ["centred", "references"], ["similarity"], {}),
        ("TopK", ["similarity", "k"], ["nearest", "nearest_index"], {"axis": 1}),
        ("ReduceSum", ["nearest", "axis"], ["nearest_sum"], {"keepdims": 0}),
        ("Mul", ["nearest_sum", "inv_k"], ["nearest_mean"], {}),
        ("Mul", ["centred", "centred"], ["squares"], {}),
        ("ReduceSum", ["squares", "axis"], ["norm2"], {"keepdims": 0}),
        ("Sqrt", ["norm2"], ["norm"], {}),
        ("Max", ["norm", "tiny"], ["safe_norm"], {}),
        ("Div", ["nearest_mean", "safe_norm"], ["cosine"], {}),
    ):
        onnx_edit.add_node(model, op, [_name(i) for i in inputs], [_P + o for o in outputs], _P + outputs[0], ints)
    onnx_edit.add_node(model, "Sub", [_P + "one", _P + "cosine"], [NOVELTY_OUTPUT], _P + "novelty")
    onnx_edit.add_output(model, NOVELTY_OUTPUT, ["N"])
    return model.SerializeToString()


def _name(value: str) -> str:
    return value if value == FEATURES_NAME else _P + value
