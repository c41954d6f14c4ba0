"""training/qat.py: the fake quantization rounds weights as the INT8 file stores them (8 or 7 bits)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the [train] extra")

from training.qat import REDUCED_WEIGHT_MAX, WEIGHT_MAX, FoldedConv, FoldedNet, fake_quantize_weight  # noqa: E402


@pytest.mark.parametrize("limit", [WEIGHT_MAX, REDUCED_WEIGHT_MAX])
def test_weights_round_to_the_files_levels_per_output_channel(limit):
    weight = torch.randn(4, 3, 3, 3) * torch.tensor([0.1, 1.0, 10.0, 0.01]).view(4, 1, 1, 1)
    rounded = fake_quantize_weight(weight, limit)
    for w, r in zip(weight, rounded):
        scale = w.abs().max() / limit
        levels = r / scale
        assert torch.allclose(levels, levels.round(), atol=1e-3)  # on the channel's grid
        assert levels.abs().max().round() == limit  # the largest weight keeps its value: full range
        assert (r - w).abs().max() <= scale / 2 + 1e-6  # rounding, never more than half a step


def test_seven_bit_weights_are_coarser():
    weight = torch.randn(8, 16, 1, 1)
    error = [(fake_quantize_weight(weight, limit) - weight).abs().mean() for limit in (WEIGHT_MAX, REDUCED_WEIGHT_MAX)]
    assert error[1] > 1.5 * error[0]


def test_set_mode_gives_every_layer_the_weight_limit():
    from training.models import create_model

    net = FoldedNet(create_model(pretrained=False))
    net.set_mode("quantize", REDUCED_WEIGHT_MAX)
    layers = [m for m in net.modules() if isinstance(m, (FoldedConv, FoldedNet))]
    assert len(layers) > 40 and all(m.fake and m.limit == REDUCED_WEIGHT_MAX for m in layers)
    net.set_mode("off")
    assert all(not m.fake and m.limit == WEIGHT_MAX for m in layers)
