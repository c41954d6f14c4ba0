"""The `features` output: every file training writes carries it, and adding it changes no probability."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import PHOTOS, blocky_images, small_info

from edge.core.model import Model, default_model_path
from edge.core.preprocess import fit
from edge.tools.classify import read_image

torch = pytest.importorskip("torch", reason="export needs the [train] extra (torch)")

from edge.core.metadata import FeaturesInfo  # noqa: E402
from training.export import add_features_to_file, export_onnx  # noqa: E402
from training.models import create_model  # noqa: E402
from training.quantize import QuantOptions, quantize_model  # noqa: E402


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return blocky_images()


def test_train_outputs_fp32_and_int8_carry_features(tmp_path: Path, images: np.ndarray) -> None:
    torch.manual_seed(0)
    net = create_model(num_classes=4, pretrained=False).eval()
    export_onnx(net, small_info(4), tmp_path / "fp32.onnx", images)
    quantize_model(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", images, images, QuantOptions())
    for name in ("fp32.onnx", "int8.onnx"):
        model = Model.load(tmp_path / name, "cpu")
        assert model.info.features == FeaturesInfo("features", 1280)
        probs, features = model.features(images)
        assert features.shape == (len(images), 1280) and features.dtype == np.float32
        np.testing.assert_array_equal(probs, model.infer(images))
        weight, bias = net.classifier.weight.detach().numpy(), net.classifier.bias.detach().numpy()
        logits = features @ weight.T + bias  # the features are what the classifier reads
        expected = np.exp(logits - logits.max(1, keepdims=True))
        tolerance = 1e-4 if name == "fp32.onnx" else 0.05
        np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), atol=tolerance)


def test_adding_features_to_the_shipped_int8_file_keeps_every_probability(tmp_path: Path) -> None:
    import onnx

    stripped = onnx.load(str(default_model_path()))  # the shipped file as it was: no features output
    stripped.graph.output.pop()
    node = [n for n in stripped.graph.node if n.output[0] == "features"][0]
    stripped.graph.node.remove(node)
    props = [p for p in stripped.metadata_props if p.key != "edgerec.features"]
    del stripped.metadata_props[:]
    stripped.metadata_props.extend(props)
    old = tmp_path / "old.onnx"
    onnx.save(stripped, str(old))
    new = tmp_path / "new.onnx"
    shutil.copyfile(old, new)
    assert add_features_to_file(new) == 1280
    before, after = Model.load(old, "cpu"), Model.load(new, "cpu")
    assert before.info.features is None and after.info.features == FeaturesInfo("features", 1280)
    batch = np.stack([fit(read_image(p), before.geometry) for p in sorted(PHOTOS.glob("*.jpg"))])
    np.testing.assert_array_equal(before.infer(batch), after.infer(batch))  # bit for bit
    np.testing.assert_array_equal(after.features(batch)[0], after.infer(batch))
    shipped = Model.load(None, "cpu")
    np.testing.assert_array_equal(shipped.infer(batch), after.infer(batch))
