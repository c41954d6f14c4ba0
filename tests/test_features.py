"""training/features.py with small generic prefixes (no dependence on the real architecture)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from training.features import CachedActivations, CacheOptions, cache_activations


class ToFloat(nn.Module):
    """uint8 NHWC -> float NCHW in [0, 1], as an in-graph preprocessing would."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.permute(0, 3, 1, 2).float() / 255


def conv_prefix() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(ToFloat(), nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5))


def images(n: int = 5, h: int = 12, w: int = 10) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("engine", ["onnxruntime", "torch"])
def test_caches_images_and_mirrors_in_eval_mode(engine: str) -> None:
    prefix, x = conv_prefix().train(), images()
    cache = cache_activations(prefix, x, [0, 1, 2, 1, 0], CacheOptions(batch_size=2, engine=engine, bf16=False))
    assert not prefix.training
    assert cache.views == 2 and cache.n_images == 5
    assert cache.activations.shape == (10, 4, 10, 8) and cache.activations.dtype == torch.float32
    assert cache.activations.is_contiguous(memory_format=torch.channels_last)
    assert cache.labels.tolist() == [0, 1, 2, 1, 0] * 2
    with torch.no_grad():
        expected = prefix(torch.from_numpy(x))
        mirrored = prefix(torch.from_numpy(np.ascontiguousarray(x[:, :, ::-1])))
    torch.testing.assert_close(cache.activations[:5], expected)
    torch.testing.assert_close(cache.activations[5:], mirrored)
    assert not torch.equal(cache.activations[:5], cache.activations[5:])


def test_without_mirror_and_pooled_features() -> None:
    prefix = nn.Sequential(conv_prefix(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    cache = cache_activations(prefix, images(3), [2, 0, 1], CacheOptions(mirror=False, bf16=False))
    assert cache.views == 1 and cache.activations.shape == (3, 4) and cache.labels.tolist() == [2, 0, 1]


def test_bf16_autocast_stores_bf16_close_to_fp32() -> None:
    prefix, x = conv_prefix(), images()
    fp32 = cache_activations(prefix, x, [0] * 5, CacheOptions(engine="torch", bf16=False)).activations
    bf16 = cache_activations(prefix, x, [0] * 5, CacheOptions(engine="torch", bf16=True)).activations
    assert bf16.dtype == torch.bfloat16
    torch.testing.assert_close(bf16.float(), fp32, atol=0.05, rtol=0.02)


def test_epoch_batches_cover_each_image_once_in_one_view() -> None:
    n = 40
    cache = cache_activations(
        nn.Sequential(ToFloat(), nn.Flatten()), images(n, 2, 2), list(range(n)), CacheOptions(batch_size=16)
    )
    first = list(cache.epoch_batches(16, seed=1, epoch=0))
    assert [len(y) for _, y in first] == [16, 16, 8]
    labels = torch.cat([y for _, y in first])
    assert sorted(labels.tolist()) == list(range(n)) and labels.tolist() != list(range(n))
    rows = torch.cat([x for x, _ in first])
    originals = cache.activations[labels]
    mirrored = cache.activations[labels + n]
    is_original = (rows == originals).all(1)
    assert bool(((rows == mirrored).all(1) | is_original).all())  # each row is one of the image's views
    assert 0 < int(is_original.sum()) < n  # both views are used
    again = torch.cat([y for _, y in cache.epoch_batches(16, seed=1, epoch=0)])
    other = torch.cat([y for _, y in cache.epoch_batches(16, seed=1, epoch=1)])
    assert torch.equal(labels, again) and not torch.equal(labels, other)
    assert torch.equal(torch.cat([y for _, y in cache.in_order(7)]), cache.labels)
    shards = [torch.cat([y for _, y in cache.epoch_batches(4, seed=1, epoch=0, rank=r, world=3)]) for r in range(3)]
    assert [len(s) for s in shards] == [13, 13, 13]  # 40 images: one left out so that all ranks step together
    assert len(set(torch.cat(shards).tolist())) == 39


def test_a_head_trained_on_cached_features_learns() -> None:
    """End to end on the cache: a linear head separates three colour classes from pooled features."""
    rng = np.random.default_rng(0)
    colours = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220]], np.float64)
    labels = rng.integers(0, 3, 60)
    x = np.clip(colours[labels][:, None, None, :] + rng.normal(0, 40, (60, 8, 8, 3)), 0, 255).astype(np.uint8)
    prefix = nn.Sequential(ToFloat(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    cache = cache_activations(prefix, x, labels.tolist(), CacheOptions(bf16=False))
    torch.manual_seed(0)
    head = nn.Linear(3, 3)
    optimizer = torch.optim.AdamW(head.parameters(), lr=0.1)
    for epoch in range(30):
        for features, targets in cache.epoch_batches(16, seed=0, epoch=epoch):
            loss = nn.functional.cross_entropy(head(features), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        accuracy = (head(cache.activations).argmax(1) == cache.labels).float().mean().item()
    assert accuracy > 0.95


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        cache_activations(conv_prefix(), images().astype(np.float32), [0] * 5)
    with pytest.raises(ValueError, match="4 labels for 5 images"):
        cache_activations(conv_prefix(), images(), [0] * 4)
    with pytest.raises(ValueError, match="engine"):
        cache_activations(conv_prefix(), images(), [0] * 5, CacheOptions(engine="tensorrt"))


class Drifting(nn.Module):
    """A module whose output depends on Python state: tracing freezes it, so ONNX cannot match torch."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return image.float() * self.calls


def test_onnx_export_is_checked_against_torch() -> None:
    with pytest.raises(RuntimeError, match="differs from torch"):
        cache_activations(Drifting(), images(), [0] * 5)
    cache = cache_activations(Drifting(), images(), [0] * 5, CacheOptions(engine="torch", mirror=False))
    assert cache.activations.shape == (5, 12, 10, 3)


def test_combine_views_of_the_same_images() -> None:
    prefix, x = conv_prefix(), images()
    labels = [0, 1, 2, 1, 0]
    a = cache_activations(prefix, x, labels, CacheOptions(bf16=False))
    b = cache_activations(prefix, x[:, ::-1].copy(), labels, CacheOptions(bf16=False, mirror=False))
    both = CachedActivations.combine([a, b])
    assert both.views == 3 and both.n_images == 5 and both.labels.tolist() == labels * 3
    torch.testing.assert_close(both.activations[10:], b.activations)
    rows = torch.cat([y for _, y in both.epoch_batches(4, seed=0, epoch=0)])
    assert sorted(rows.tolist()) == sorted(labels)
    with pytest.raises(ValueError, match="same images"):
        CachedActivations.combine([a, cache_activations(prefix, x[:4], labels[:4], CacheOptions(bf16=False))])
