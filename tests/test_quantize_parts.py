"""training.quantize: which nodes each part of --keep-float names; histogram calibration that cannot fit refused."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

pytest.importorskip("onnxruntime.quantization")
from training.quantize import TAIL_CONVS, float_nodes  # noqa: E402


def graph_with(convs: int) -> onnx.ModelProto:
    """/preprocess/Mul, conv0 .. conv{n-1} (conv1 depthwise: group 8), a Gemm and a Softmax."""
    nodes = [helper.make_node("Mul", ["x", "s"], ["t0"], name="/preprocess/Mul")]
    for i in range(convs):
        extra = {"group": 8} if i == 1 else {}
        nodes.append(helper.make_node("Conv", [f"t{i}", f"w{i}"], [f"t{i + 1}"], name=f"conv{i}", **extra))
    nodes += [helper.make_node("Gemm", [f"t{convs}", "fc"], ["logits"], name="fc"),
              helper.make_node("Softmax", ["logits"], ["probs"], name="softmax")]
    return helper.make_model(helper.make_graph(nodes, "g", [], []))


@pytest.mark.parametrize(("parts", "expected"), [
    (("preprocess", "softmax", "stem"), ["/preprocess/Mul", "conv0", "softmax"]),
    (("depthwise",), ["conv1"]),
    (("classifier",), ["fc"]),
    (("tail",), [f"conv{i}" for i in range(8 - TAIL_CONVS, 8)]),
])  # fmt: skip
def test_each_part_names_its_nodes(parts, expected):
    assert float_nodes(graph_with(8), parts) == sorted(expected)


def test_histogram_calibration_that_cannot_fit_in_memory_is_refused_before_it_starts(tmp_path, monkeypatch):
    from conftest import make_tiny_model

    import training.quantize as quantize
    from edge.errors import EdgerecError

    proto = onnx.load(str(make_tiny_model(tmp_path / "tiny.onnx")))
    per_image = quantize.image_tensor_bytes(proto)
    assert per_image == 4 * (8 * 8 * 3 + 3 + 3 + 3)  # the cast image, its channel means, the logits, the output
    monkeypatch.setattr(quantize, "available_memory", lambda: 100 * per_image)
    with pytest.raises(EdgerecError, match=r"percentile calibration on 200 images .* at most 80 images, or use minmax"):
        quantize._check_histogram_memory(proto, "percentile", 200)
    quantize._check_histogram_memory(proto, "percentile", 80)
    quantize._check_histogram_memory(proto, "minmax", 10_000)  # MinMax keeps two numbers a tensor
    monkeypatch.setattr(quantize, "available_memory", lambda: None)  # unknown: not refused
    quantize._check_histogram_memory(proto, "entropy", 10_000)
