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


def test_augmented_views_are_seeded_crops_of_the_photo_at_its_size():
    import numpy as np

    from training.qat import GAIN, OFFSET, augmented

    image = np.zeros((64, 48, 3), np.uint8)
    image[:32] = 200  # top half bright: a crop's mean says which part of the photo it kept
    views = [augmented(image, np.random.default_rng(seed)) for seed in range(40)]
    again = [augmented(image, np.random.default_rng(seed)) for seed in range(40)]
    assert all(v.shape == image.shape and v.dtype == np.uint8 for v in views)
    assert all(np.array_equal(a, b) for a, b in zip(views, again))  # the seed decides
    means = [float(v.mean()) for v in views]
    assert max(means) - min(means) > 50  # different crops, not one view
    grey = np.full((64, 48, 3), 100, np.uint8)  # brightness and contrast move a grey photo within their bounds
    levels = [int(augmented(grey, np.random.default_rng(seed))[0, 0, 0]) for seed in range(40)]
    assert all(100 * (1 - GAIN) - OFFSET - 1 <= v <= 100 * (1 + GAIN) + OFFSET + 1 for v in levels)
    assert len(set(levels)) > 10
