"""scripts/bench/int8_error_sources.py: taking every rounding out of a post-training INT8 file gives its FP32
source back, so the graph surgery (pairs out, folded ReLU6 back, float weights in) is exact."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PHOTOS

pytest.importorskip("onnxruntime.quantization")

import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from edge.core.metadata import DatasetInfo, ModelInfo  # noqa: E402
from edge.core.model import Model  # noqa: E402
from edge.core.preprocess import fit  # noqa: E402
from training.quantize import quantize_model  # noqa: E402

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench" / "int8_error_sources.py"
SIZE = 16


def float_model(path: Path) -> Path:
    """Three convolutions with ReLU6 (the first, the stem, stays float), pooled, and a classifier of 5 classes:
    a contract file shaped like the exported networks."""
    rng = np.random.default_rng(0)
    widths = [3, 8, 8, 8]
    nodes = [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["x"], ["t0"], perm=[0, 3, 1, 2]),
             helper.make_node("Mul", ["t0", "norm"], ["a0"])]
    inits = [helper.make_tensor("norm", TensorProto.FLOAT, [], [1 / 64]),
             helper.make_tensor("lo", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("hi", TensorProto.FLOAT, [], [6.0])]
    for i, (cin, cout) in enumerate(zip(widths, widths[1:])):
        k = 3 if i == 0 else 1
        w = rng.normal(0, 1 / np.sqrt(cin * k * k), (cout, cin, k, k)).astype(np.float32)
        inits += [helper.make_tensor(f"w{i}", TensorProto.FLOAT, w.shape, w.flatten()),
                  helper.make_tensor(f"b{i}", TensorProto.FLOAT, [cout], rng.normal(0, 0.1, cout).astype(np.float32))]
        nodes += [helper.make_node("Conv", [f"a{i}", f"w{i}", f"b{i}"], [f"c{i}"], pads=[k // 2] * 4),
                  helper.make_node("Clip", [f"c{i}", "lo", "hi"], [f"a{i + 1}"], name=f"clip{i}")]
    classifier = rng.normal(0, 0.5, (5, widths[-1])).astype(np.float32)
    inits += [helper.make_tensor("wc", TensorProto.FLOAT, classifier.shape, classifier.flatten()),
              helper.make_tensor("bc", TensorProto.FLOAT, [5], np.zeros(5, np.float32))]
    nodes += [helper.make_node("GlobalAveragePool", [f"a{len(widths) - 1}"], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"]),
              helper.make_node("Gemm", ["flat", "wc", "bc"], ["logits"], transB=1),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    for index, node in enumerate(nodes):
        node.name = node.name or f"{node.op_type.lower()}{index}"  # the quantizer excludes nodes by name
    graph = helper.make_graph(nodes, "five", [helper.make_tensor_value_info("image", TensorProto.UINT8,
                                                                            ["N", SIZE, SIZE, 3])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 5])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    info = ModelInfo(labels=list("abcde"), input_size=(SIZE, SIZE), crop=1.0, arch="tiny-test", precision="fp32",
                     dataset=DatasetInfo("synthetic", "0" * 16, 5, 5))
    for key, value in info.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return path


def test_with_no_rounding_left_a_post_training_file_is_its_float_source(tmp_path: Path) -> None:
    fp32 = float_model(tmp_path / "fp32.onnx")
    photos = [cv2.imread(str(p)) for p in sorted(PHOTOS.glob("*.jpg"))]
    geometry = Model.load(fp32, device="cpu").geometry
    images = np.stack([fit(image, geometry) for image in photos])
    int8 = tmp_path / "int8.onnx"
    quantize_model(fp32, int8, images, images)
    done = subprocess.run([sys.executable, str(SCRIPT), "--fp32", str(fp32), "--photos", str(PHOTOS),
                           f"tiny={int8}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {m[1]: m for m in re.finditer(r"\| tiny \| (.+?) \| (\d+)/(\d+), .* \| ([\d.e+-]+) \|", done.stdout)}
    assert list(rows) == ["weights and activations (as written)", "weights only", "activations only", "none"]
    none = rows["none"]
    assert none[2] == none[3] == str(len(photos)) and float(none[4]) == 0.0
    assert float(rows["weights and activations (as written)"][4]) > 0.0  # the file as written does round
