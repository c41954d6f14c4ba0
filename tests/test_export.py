"""Export and quantization check themselves against their reference and never leave a bad file behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import blocky_images, small_info

torch = pytest.importorskip("torch", reason="export needs the [train] extra (torch)")

from edge.core.model import Model  # noqa: E402
from edge.errors import EdgerecError  # noqa: E402
from training import export as export_module  # noqa: E402
from training.export import export_onnx  # noqa: E402
from training.models import create_model  # noqa: E402
from training.quantize import QuantOptions, quantize_model  # noqa: E402


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return blocky_images()


def test_export_writes_a_contract_file_that_matches_torch(tmp_path: Path, images: np.ndarray) -> None:
    torch.manual_seed(0)
    net = create_model(num_classes=4, pretrained=False)
    check = export_onnx(net, small_info(4), tmp_path / "m.onnx", images)
    assert check.max_abs_diff <= 1e-4 and check.top1_agreement == 1.0
    model = Model.load(tmp_path / "m.onnx", "cpu")
    assert model.labels == ["c0", "c1", "c2", "c3"] and model.info.precision == "fp32"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary files left


def test_export_fails_loudly_and_writes_nothing_when_ort_differs(tmp_path: Path, images: np.ndarray,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "FP32_TOLERANCE", -1.0)  # any difference now counts as a mismatch
    with pytest.raises(EdgerecError, match="export check failed"):
        export_onnx(create_model(num_classes=4, pretrained=False), small_info(4), tmp_path / "m.onnx", images)
    assert list(tmp_path.iterdir()) == []


def test_quantize_writes_int8_metadata_and_reports_agreement(tmp_path: Path, images: np.ndarray) -> None:
    torch.manual_seed(0)
    export_onnx(create_model(num_classes=4, pretrained=False), small_info(4), tmp_path / "fp32.onnx", images)
    report = quantize_model(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", images, images, QuantOptions())
    int8 = Model.load(tmp_path / "int8.onnx", "cpu")
    assert int8.info.precision == "int8"
    assert int8.info.quantization["calibration_images"] == len(images)
    assert int8.info.labels == ["c0", "c1", "c2", "c3"]
    assert report.check_images == len(images) and 0.0 <= report.top1_agreement <= 1.0
    assert report.max_abs_diff < 0.5


def test_quantize_rejects_unknown_options(tmp_path: Path) -> None:
    with pytest.raises(EdgerecError, match="calibration method 'best'; valid: minmax, percentile, entropy"):
        quantize_model(tmp_path / "x.onnx", tmp_path / "y.onnx", np.zeros(1), np.zeros(1), QuantOptions(method="best"))
