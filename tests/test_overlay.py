import numpy as np
import pytest

from edge.live.overlay import DARKEN, STATS_REFRESH_S, Overlay, OverlayOptions
from edge.live.result import FrameResult, Result, single

LABELS = ["tabby cat", "golden retriever", "espresso", "fire engine"]
PROBS = np.array([0.62, 0.2, 0.1, 0.08], np.float32)


def result(label: str = "tabby cat", index: int = 0) -> FrameResult:
    return single(Result(7, 0.0, label, index, 0.62, PROBS, True, True, 23.4, 29.97))


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return (before != after).any(axis=2)


@pytest.mark.parametrize("level", [250, 5])
def test_label_and_stats_are_drawn_in_place_and_readable_on_bright_and_dark_frames(level):
    frame = np.full((480, 640, 3), level, np.uint8)
    before, address = frame.copy(), frame.ctypes.data

    Overlay(LABELS).draw(frame, result())

    assert frame.ctypes.data == address
    diff = changed(before, frame)
    rows, cols = np.nonzero(diff[:60])
    assert rows.min() == 0 and cols.min() == 0 and 20 < rows.max() < 60 and 150 < cols.max() < 400
    label_box = frame[: rows.max() + 1, : cols.max() + 1]
    assert (label_box.max(axis=2) >= 240).sum() > 200  # white text
    assert (label_box.max(axis=2) <= 0.3 * 255 + 1).sum() > label_box.shape[0] * label_box.shape[1] // 2
    assert diff[-30:, :60].any()  # stats, bottom left
    assert not diff[60:-40].any() and not diff[:, 400:].any()  # the picture itself is untouched


def test_boxes_keep_the_picture_visible_under_them():
    frame = np.full((480, 640, 3), 200, np.uint8)
    Overlay(LABELS, OverlayOptions(stats=False)).draw(frame, result())
    assert (frame[2, :100] == round(200 * DARKEN)).all()


def test_top_k_bars_are_drawn_under_the_label_only_when_asked():
    frames = {k: np.full((480, 640, 3), 128, np.uint8) for k in (0, 3)}
    for k, frame in frames.items():
        Overlay(LABELS, OverlayOptions(top_k=k, stats=False)).draw(frame, result())
    diff = changed(frames[0], frames[3])
    rows = np.nonzero(diff.any(axis=1))[0]
    assert 30 < rows.min() < 60 and 100 < rows.max() < 200
    bar_colour = np.all(frames[3] == (40, 125, 40), axis=2)
    bar_lengths = [bar_colour[r].sum() for r in range(rows.min(), rows.max()) if bar_colour[r].any()]
    assert max(bar_lengths) > 0.5 * 256  # the 62% bar spans most of the 256 px wide panel


def test_drawing_scales_with_the_frame_height():
    heights = {}
    for h, w in [(480, 640), (1080, 1920)]:
        frame = np.full((h, w, 3), 128, np.uint8)
        before = frame.copy()
        Overlay(LABELS, OverlayOptions(stats=False)).draw(frame, result())
        heights[h] = np.nonzero(changed(before, frame).any(axis=1))[0].max()
    assert heights[1080] / heights[480] == pytest.approx(1080 / 480, rel=0.15)


def test_a_long_label_is_cut_to_fit_the_frame():
    frame = np.full((240, 320, 3), 128, np.uint8)
    before = frame.copy()
    Overlay(LABELS).draw(frame, result("fox squirrel, eastern fox squirrel, Sciurus niger " * 3))
    diff = changed(before, frame)
    assert diff[:, :300].any() and not diff[:, -3:].any()


def test_unknown_is_drawn_in_grey():
    frame = np.zeros((480, 640, 3), np.uint8)
    Overlay(LABELS, OverlayOptions(stats=False)).draw(frame, result("unknown", -1))
    assert frame.max() == 170


def test_stats_change_at_most_twice_a_second_and_the_label_at_once():
    overlay = Overlay(LABELS)

    def drawn(captured: float, label: str, index: int, fps: float) -> np.ndarray:
        frame = np.full((480, 640, 3), 128, np.uint8)
        overlay.draw(frame, single(Result(1, captured, label, index, 0.62, PROBS, True, True, 23.4, fps)))
        return frame

    first = drawn(10.0, "tabby cat", 0, 29.97)
    soon = drawn(10.2, "espresso", 2, 12.5)
    later = drawn(10.0 + STATS_REFRESH_S, "espresso", 2, 12.5)
    assert (first[:60] != soon[:60]).any()  # the new label shows on the next frame
    assert np.array_equal(first[-40:], soon[-40:])  # the figures hold still, so they can be read
    assert (soon[-40:] != later[-40:]).any()  # and are refreshed after STATS_REFRESH_S


@pytest.mark.parametrize(("index", "level"), [(0, 255), (-1, 170)])
def test_a_region_is_outlined_just_inside_its_box_white_or_grey_when_unknown(index, level):
    frame = np.zeros((1080, 1920, 3), np.uint8)
    region = Result(7, 0.0, "tabby cat", index, 0.62, PROBS, True, True, 23.4, 29.97, region="door",
                    box=(0.25, 0.25, 0.5, 0.5))
    Overlay(LABELS, OverlayOptions(stats=False)).draw(frame, FrameResult("camera", 7, 0.0, 29.97, (region,)))
    thick = 3  # 2 x the 1080p scale of 1.5
    assert (frame[400:810, 480:480 + thick] == level).all()  # left side below the tag, which darkens it
    assert (frame[270:810, 1440 - thick:1440] == level).all() and (frame[810 - thick:810, 480:1440] == level).all()
    assert not frame[269].any() and not frame[810].any() and not frame[:, 479].any() and not frame[:, 1440].any()
    assert not frame[270 + thick:810 - thick, 480 + thick:1440 - thick][100:].any()  # the inside, under the tag
