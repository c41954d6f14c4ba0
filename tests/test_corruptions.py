"""edge.tools.corruptions: shapes, determinism, severity order, size scaling and the sensor model, on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import PHOTOS

from edge.core.preprocess import Geometry, fit
from edge.errors import EdgerecError
from edge.tools.corruptions import (
    CORRUPTIONS,
    NORMAL_FROM,
    SEVERITIES,
    _to_linear,
    _to_srgb,
    _to_uint8,
    _unit,
    corrupt,
    low_light,
    over_exposure,
    photons,
    plasma_fractal,
)

SQUIRREL = cv2.imread(str(PHOTOS / "squirrel_cls.jpg"), cv2.IMREAD_COLOR)
BABOON = cv2.imread(str(PHOTOS / "baboon.jpg"), cv2.IMREAD_COLOR)
SPATIAL = ("defocus_blur", "motion_blur", "pixelate", "fog", "rolling_shutter")
NET = Geometry(224, 224, 0.875)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_the_registry_holds_the_camera_corruptions():
    assert set(CORRUPTIONS) >= {"gaussian_noise", "shot_noise", "motion_blur", "defocus_blur", "low_light",
                                "over_exposure", "jpeg", "pixelate", "fog"}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_same_seed_same_pixels_and_size_kept(name: str):
    out = corrupt(SQUIRREL, name, 3, seed=7, index=2)
    assert out.shape == SQUIRREL.shape and out.dtype == np.uint8
    assert np.array_equal(out, corrupt(SQUIRREL, name, 3, seed=7, index=2))
    assert not np.array_equal(out, SQUIRREL)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "low_light", "motion_blur", "fog"])
def test_another_seed_or_image_index_draws_other_pixels(name: str):
    out = corrupt(SQUIRREL, name, 3, seed=0, index=0)
    assert not np.array_equal(out, corrupt(SQUIRREL, name, 3, seed=1, index=0))
    assert not np.array_equal(out, corrupt(SQUIRREL, name, 3, seed=0, index=1))


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n != "fog"])
@pytest.mark.parametrize("photo", [SQUIRREL, BABOON], ids=["squirrel", "baboon"])
def test_each_severity_moves_the_photo_further(name: str, photo: np.ndarray):
    """Fog is left out: each severity draws its own veil, so its pixel distance is not ordered (its
    contrast is, below)."""
    distances = [_distance(corrupt(photo, name, s), photo) for s in SEVERITIES]
    assert all(b > a for a, b in zip(distances, distances[1:])), distances


def test_fog_lowers_the_detail_at_each_severity():
    """Severities 3 and 4 share ImageNet-C's strength 2.5 (4 has the rougher veil), so 4 may tie 3."""
    detail = [float(np.abs(cv2.Laplacian(corrupt(SQUIRREL, "fog", s), cv2.CV_32F)).mean()) for s in SEVERITIES]
    original = float(np.abs(cv2.Laplacian(SQUIRREL, cv2.CV_32F)).mean())
    assert original > 2 * detail[0] and detail[-1] < 0.75 * detail[0], (original, detail)
    assert all(b < 1.02 * a for a, b in zip(detail, detail[1:])), detail


@pytest.mark.parametrize("name", SPATIAL)
def test_spatial_corruptions_scale_with_the_photo(name: str):
    """The same photo at twice the resolution gives nearly the same network input after `fit`: lengths are
    defined on ImageNet-C's 256 px scale, not in pixels. (Pixelation's block edges land on slightly
    different sub-pixel positions at the two sizes: 0.34 of its effect; the others stay under 0.15.)"""
    big = cv2.resize(SQUIRREL, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    small_in, big_in = fit(corrupt(SQUIRREL, name, 4), NET), fit(corrupt(big, name, 4), NET)
    effect = _distance(small_in, fit(SQUIRREL, NET))
    assert _distance(small_in, big_in) < 0.4 * effect, (_distance(small_in, big_in), effect)


def test_low_light_is_darker_and_noisier():
    """Darker (the camera's gain recovers only half the lost stops) and noisier than the same darkening
    without noise: the sensor's shot and read noise."""
    flat = np.full((200, 200, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    previous_mean, previous_snr = 128.0, np.inf
    for severity in SEVERITIES:
        out = low_light(flat, severity, rng).astype(np.float64)
        snr = out.mean() / out.std()
        assert out.mean() < previous_mean and snr < previous_snr, (severity, out.mean(), snr)
        previous_mean, previous_snr = out.mean(), snr


@pytest.mark.parametrize("mean", [100.0, 150.0, 500.0, 2000.0])
def test_photon_counts_from_normal_from_follow_the_poisson_they_stand_for(mean: float):
    """docs/robustness.md: from NORMAL_FROM expected photons the counts are drawn as the Poisson's normal limit,
    at most about one count from it at the 1% and 99% quantiles; below, they are Poisson draws (integers)."""
    rng = np.random.default_rng(0)
    drawn = photons(np.full(400_000, mean, np.float32), rng)
    poisson = rng.poisson(mean, 400_000)
    assert abs(drawn.mean() - mean) < 0.05 * np.sqrt(mean) and abs(drawn.std() / np.sqrt(mean) - 1) < 0.01
    for q in (0.01, 0.99):
        assert abs(np.quantile(drawn, q) - np.quantile(poisson, q)) <= 1.5
    dim = photons(np.full(1000, NORMAL_FROM - 1, np.float32), rng)
    assert np.array_equal(dim, np.round(dim))


def test_over_exposure_by_table_gives_the_pixels_of_the_formula():
    for severity in SEVERITIES:
        formula = _to_uint8(_to_srgb(_to_linear(_unit(BABOON)) * 2.0 ** (0.5 * severity)))
        assert np.array_equal(over_exposure(BABOON, severity, np.random.default_rng(0)), formula)


def test_plasma_fractal_spans_zero_to_one_and_wants_a_power_of_two():
    veil = plasma_fractal(64, 2.0, np.random.default_rng(0))
    assert veil.shape == (64, 64) and veil.min() == 0.0 and veil.max() == 1.0
    with pytest.raises(ValueError, match="power of two"):
        plasma_fractal(48, 2.0, np.random.default_rng(0))


def test_unknown_corruption_or_severity_is_a_one_line_error():
    with pytest.raises(EdgerecError, match="'snow'.*known: gaussian_noise"):
        corrupt(SQUIRREL, "snow", 1)
    with pytest.raises(EdgerecError, match="severity must be one of"):
        corrupt(SQUIRREL, "jpeg", 6)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_no_corruption_writes_into_the_photo_it_is_given(name: str):
    """The robustness report decodes each photo once for its 55 corrupted passes (evaluate.DecodedPhotos)."""
    photo = cv2.resize(SQUIRREL, (96, 64))
    before = photo.copy()
    for severity in (1, 5):
        corrupt(photo, name, severity)
    assert np.array_equal(photo, before)
