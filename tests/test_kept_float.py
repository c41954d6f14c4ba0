"""Layers a file keeps in float run in float: ONNX Runtime's WeightBiasQuantization would give a float convolution
that reads a quantized tensor per-tensor INT8 weights when the session opens (edge.core.devices.KEPT_FLOAT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from edge.core.devices import KEPT_FLOAT
from edge.core.metadata import DatasetInfo, ModelInfo
from edge.core.model import Model
from training.gate import exact_session

# Two classes from one 1x1 convolution over the colour channels: blue x 1.0 and green x 0.003. In one per-tensor
# INT8 scale (1.0 / 127) the second weight, under half a step, rounds to 0.
WEIGHTS = np.array([[1.0, 0.0, 0.0], [0.0, 0.003, 0.0]], np.float32).reshape(2, 3, 1, 1)


def kept_float_model(path: Path) -> Path:
    """A contract file whose convolution reads a quantized (Q -> DQ) tensor, keeps its weights in float and writes
    a quantized one: a layer training.quantize leaves in float between quantized ones."""
    scalar = lambda name, kind, value: helper.make_tensor(name, kind, [], [value])  # noqa: E731
    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
         helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
         helper.make_node("QuantizeLinear", ["nchw", "scale", "zero"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"]),
         helper.make_node("Conv", ["dq", "w"], ["conv_float"]),
         helper.make_node("QuantizeLinear", ["conv_float", "out_scale", "zero"], ["conv_q"]),  # as the next layer
         helper.make_node("DequantizeLinear", ["conv_q", "out_scale", "zero"], ["conv"]),      # would read it
         helper.make_node("ReduceMean", ["conv"], ["logits"], axes=[2, 3], keepdims=0),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "kept_float",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 8, 8, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])],
        [scalar("scale", TensorProto.FLOAT, 1.0), scalar("zero", TensorProto.UINT8, 0),
         scalar("out_scale", TensorProto.FLOAT, 0.01),
         helper.make_tensor("w", TensorProto.FLOAT, WEIGHTS.shape, WEIGHTS.flatten())])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    info = ModelInfo(labels=["blue", "green"], input_size=(8, 8), crop=1.0, arch="tiny-test", precision="int8",
                     dataset=DatasetInfo("synthetic", "0" * 16, 2, 2))
    for key, value in info.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return path


def expected(image: np.ndarray) -> np.ndarray:
    logits = image.reshape(-1, 3).mean(0) @ WEIGHTS.reshape(2, 3).T
    return np.exp(logits) / np.exp(logits).sum()


def test_a_float_convolution_after_a_quantized_tensor_keeps_its_float_weights(tmp_path: Path) -> None:
    path = kept_float_model(tmp_path / "kept.onnx")
    image = np.zeros((1, 8, 8, 3), np.uint8)
    image[..., 0], image[..., 1] = 2, 255  # blue logit 2.0; green 0.765 in float, 0 in per-tensor INT8
    want = expected(image[0])
    model = Model.load(path, device="cpu")
    assert np.allclose(model.session.run(["probs"], {"image": image})[0][0], want, atol=2e-3)
    assert np.allclose(exact_session(path, threads=1).run(["probs"], {"image": image})[0][0], want, atol=2e-3)


def test_the_optimisation_turned_off_is_the_one_that_rounds_them(tmp_path: Path) -> None:
    """Without KEPT_FLOAT this ONNX Runtime rounds the green weight to 0: the test above can fail."""
    path = kept_float_model(tmp_path / "kept.onnx")
    image = np.zeros((1, 8, 8, 3), np.uint8)
    image[..., 0], image[..., 1] = 2, 255
    plain = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["probs"], {"image": image})[0][0]
    kept = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(KEPT_FLOAT)).run(["probs"], {"image": image})[0][0]
    assert np.allclose(kept, expected(image[0]), atol=2e-3)
    assert abs(plain[1] - kept[1]) > 0.03  # the green class lost its 0.765 logit
