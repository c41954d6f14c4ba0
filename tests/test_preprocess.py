"""edge.core.preprocess: crop geometry, input layouts, buffers, and closeness to cv2.INTER_AREA."""

from __future__ import annotations

import threading
import tracemalloc

import cv2
import numpy as np
import pytest

from edge.core.preprocess import Fitter, Geometry, fit, plan

NET = Geometry(224, 224)
BLUE, GREEN, RED = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def realish(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A camera-like frame: smooth colour regions, sharp anti-aliased discs, a little sensor noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
    frame = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(30):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(frame, centre, int(rng.integers(4, height // 5)), colour, -1, cv2.LINE_AA)
    frame += rng.integers(0, 5, frame.shape, dtype=np.uint8)
    return frame


def crop_of(frame: np.ndarray, geometry: Geometry) -> np.ndarray:
    box = plan(frame.shape[0], frame.shape[1], geometry)
    return frame[box.top : box.top + box.height, box.left : box.left + box.width]


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


@pytest.mark.parametrize("height, width", [(480, 640), (720, 1280), (1080, 1920), (2160, 3840), (50, 70)])
@pytest.mark.parametrize("geometry", [NET, Geometry(192, 256), Geometry(300, 200, crop=1.0)])
def test_output_is_contiguous_uint8_bgr_of_the_network_size(height, width, geometry):
    result = fit(realish(height, width), geometry)
    assert result.shape == (geometry.height, geometry.width, 3)
    assert result.dtype == np.uint8
    assert result.flags.c_contiguous


@pytest.mark.parametrize(
    "frame_hw, geometry, box",
    [
        ((480, 640), NET, (30, 110, 420, 420)),
        ((480, 640), Geometry(224, 224, crop=1.0), (0, 80, 480, 480)),
        ((720, 1280), Geometry(192, 256), (45, 220, 630, 840)),  # 4:3 net in a 16:9 frame
        ((480, 640), Geometry(256, 192), (30, 162, 420, 315)),  # portrait net
        ((640, 480), NET, (110, 30, 420, 420)),  # portrait frame
    ],
)
def test_crop_box_is_the_centred_net_aspect_region_scaled_by_crop(frame_hw, geometry, box):
    found = plan(*frame_hw, geometry)
    assert (found.top, found.left, found.height, found.width) == box


def test_only_pixels_inside_the_crop_box_reach_the_output():
    frame = np.full((720, 1280, 3), GREEN, np.uint8)
    box = plan(720, 1280, NET)
    frame[box.top : box.top + box.height, box.left : box.left + box.width] = BLUE
    assert np.all(fit(frame, NET) == BLUE)


@pytest.mark.parametrize("crop, side", [(0.875, 112), (1.0, 98)])
def test_centre_square_lands_in_the_centre_with_the_crop_scale(crop, side):
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[135:345, 215:425] = RED  # 210 px square at the frame's centre
    result = fit(frame, Geometry(224, 224, crop=crop))
    rows, cols = np.nonzero(result[:, :, 2] > 127)
    # 210 px of a 420 px (crop 0.875) or 480 px (crop 1.0) region, scaled to 224 px
    assert rows.max() - rows.min() + 1 == pytest.approx(side, abs=1)
    assert cols.max() - cols.min() + 1 == pytest.approx(side, abs=1)
    assert (rows.min() + rows.max()) / 2 == pytest.approx(111.5, abs=0.5)
    assert (cols.min() + cols.max()) / 2 == pytest.approx(111.5, abs=0.5)


def test_gray_and_single_channel_frames_become_bgr():
    gray = cv2.cvtColor(realish(480, 640), cv2.COLOR_BGR2GRAY)
    expected = fit(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), NET)
    assert np.array_equal(fit(gray, NET), expected)
    assert np.array_equal(fit(gray[:, :, None], NET), expected)


def test_bgra_frames_lose_alpha():
    bgr = realish(720, 1280)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = np.arange(1280, dtype=np.uint8)  # alpha must not matter
    assert np.array_equal(fit(bgra, NET), fit(bgr, NET))


def test_out_is_filled_and_returned():
    out = np.zeros((224, 224, 3), np.uint8)
    frame = realish(480, 640)
    assert fit(frame, NET, out=out) is out
    assert np.array_equal(out, fit(frame, NET))


@pytest.mark.parametrize("shape", [(224, 224), (224, 224, 4), (112, 112, 3)])
def test_out_of_the_wrong_shape_is_refused(shape):
    with pytest.raises(ValueError, match="out must be"):
        fit(realish(480, 640), NET, out=np.empty(shape, np.uint8))


@pytest.mark.parametrize("height, width", [(720, 1280), (1080, 1920), (2160, 3840)])
def test_result_is_close_to_inter_area(height, width):
    frame = realish(height, width)
    reference = cv2.resize(crop_of(frame, NET), (224, 224), interpolation=cv2.INTER_AREA)
    linear = cv2.resize(crop_of(frame, NET), (224, 224), interpolation=cv2.INTER_LINEAR)
    difference = mean_abs_diff(fit(frame, NET), reference)
    assert difference < 1.0
    assert difference < mean_abs_diff(linear, reference) / 3  # it does not just alias like INTER_LINEAR


def test_downscales_under_two_are_a_plain_inter_linear():
    frame = realish(480, 640)  # 420x420 crop -> 224: scale 1.875
    assert not plan(480, 640, NET).supersample and plan(720, 1280, NET).supersample
    linear = cv2.resize(crop_of(frame, NET), (224, 224), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(fit(frame, NET), linear)


@pytest.mark.parametrize("height, width", [(540, 960), (576, 1024), (620, 1100)])
def test_scales_from_two_to_two_and_a_half_halve_with_a_box_then_resize_linearly(height, width):
    """A quarter of a 1080p frame as a region (crop scale 2.1): one exact 2x2 box, then INTER_LINEAR < 1.25x."""
    box = plan(height, width, NET)
    assert box.halvings == 1 and not box.supersample
    assert box.height % 2 == 0 and box.width % 2 == 0
    frame = realish(height, width)
    crop = crop_of(frame, NET)
    halved = cv2.resize(crop, (box.width // 2, box.height // 2), interpolation=cv2.INTER_AREA)
    assert np.array_equal(fit(frame, NET), cv2.resize(halved, (224, 224), interpolation=cv2.INTER_LINEAR))
    reference = cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA)
    assert mean_abs_diff(fit(frame, NET), reference) < 1.5


def test_a_scale_of_exactly_two_gives_the_box_average():
    frame = realish(512, 512)  # 448x448 crop -> 224: both two-stage orders are the one 2x2 box
    expected = cv2.resize(crop_of(frame, NET), (224, 224), interpolation=cv2.INTER_AREA)
    assert np.array_equal(fit(frame, NET), expected)


def test_large_sources_are_halved_first_on_an_even_crop():
    box = plan(2160, 3840, NET)
    assert box.halvings == 1
    assert box.height % 2 == 0 and box.width % 2 == 0
    assert plan(1080, 1920, NET).halvings == 0 and plan(720, 1280, NET).halvings == 0


def test_tiny_sources_are_upscaled():
    frame = np.zeros((12, 16, 3), np.uint8)
    frame[:, :8] = RED
    frame[:, 8:] = BLUE
    box = plan(12, 16, NET)
    assert not box.supersample and box.halvings == 0
    result = fit(frame, NET)
    assert np.all(result[:, :100] == RED)
    assert np.all(result[:, 124:] == BLUE)
    assert np.array_equal(fit(np.full((1, 1, 3), 7, np.uint8), NET), np.full((224, 224, 3), 7, np.uint8))


def test_fitter_allocates_no_pixel_buffer_per_frame():
    fitter = Fitter(NET)
    frame, out = realish(1080, 1920), np.empty((224, 224, 3), np.uint8)
    fitter.fit(frame, out)
    tracemalloc.start()
    try:
        for _ in range(5):
            fitter.fit(frame, out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16_000  # one 224x224x3 image alone is 150 kB


def test_fitter_follows_frame_size_changes():
    fitter = Fitter(NET)
    bgr = realish(480, 640)
    for frame in [bgr, realish(1080, 1920), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), bgr[:, :, 0], bgr]:
        assert np.array_equal(fitter.fit(frame), fit(frame, NET))


def test_fit_is_safe_to_call_from_several_threads():
    frames = [realish(720, 1280, seed) for seed in range(4)]
    expected = [fit(frame, NET) for frame in frames]
    mismatches = []

    def work(index: int) -> None:
        for _ in range(30):
            if not np.array_equal(fit(frames[index], NET), expected[index]):
                mismatches.append(index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(frames))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mismatches == []


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((480, 640, 3), np.float32),
        np.zeros((480, 640, 2), np.uint8),
        np.zeros((0, 640, 3), np.uint8),
        np.zeros((4, 480, 640, 3), np.uint8),
    ],
)
def test_frames_that_are_not_images_are_refused(frame):
    with pytest.raises(ValueError, match="frame"):
        fit(frame, NET)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"height": 0, "width": 224},
        {"height": 224, "width": 224, "crop": 0.0},
        {"height": 224, "width": 224, "crop": 1.5},
        {"height": 22.4, "width": 224},
    ],
)
def test_invalid_geometry_is_refused(kwargs):
    with pytest.raises(ValueError, match="Geometry"):
        Geometry(**kwargs)
