"""The review queue (edge.learn.review): which results it keeps and why, its caps per hour and in bytes, near-
duplicates dropped by feature or thumbnail distance, assign and discard, and that the frame loop's thread never
encodes a JPEG."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from edge.errors import EdgerecError
from edge.learn.review import HOUR_S, ReviewOptions, ReviewQueue
from edge.live.result import FrameResult, Result

H, W = 120, 160
BOX = (0.5, 0.0, 0.5, 1.0)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def frame(seed: int) -> np.ndarray:
    """A picture of its own per seed (random blocks), so that thumbnails differ."""
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (W, H), interpolation=cv2.INTER_NEAREST)


def result(label: str = "cat", score: float = 0.9, changed: bool = False, inferred: bool = True,
           features: np.ndarray | None = None, region: str = "door", index: int = 0) -> FrameResult:
    r = Result(7, 0.0, label, index, score, np.zeros(2, np.float32), changed, inferred, 5.0, 10.0, camera="cam",
               region=region, box=BOX, novelty=0.25 if label == "unknown" else float("nan"), features=features)
    return FrameResult("cam", 7, 0.0, 10.0, (r,))


def drain(review: ReviewQueue) -> None:
    review.settle()


@pytest.fixture
def make(tmp_path):
    made = []

    def build(clock: Clock | None = None, **options) -> ReviewQueue:
        review = ReviewQueue(tmp_path / "review", ReviewOptions(**options), clock or Clock())
        made.append(review)
        return review

    yield build
    for review in made:
        review.close()


def kept(review: ReviewQueue) -> list[dict]:
    review.close()  # every offer handled
    return review.items("cam", "door")


def test_unknown_low_scores_and_label_changes_are_kept_with_their_result(make):
    clock = Clock()
    review = make(clock, min_gap_s=0, duplicate=0)
    for seed, (label, score, changed) in enumerate([("cat", 0.9, True), ("cat", 0.9, False), ("unknown", 0.3, False),
                                                    ("dog", 0.5, False), ("dog", 0.95, False)]):
        clock.now += 10  # beyond after_change_s (5 s): the second "cat" is not in the change's window
        review.write(frame(seed), result(label, score, changed))
    items = kept(review)
    assert [(i["label"], i["reason"]) for i in reversed(items)] == [
        ("cat", "label change"), ("unknown", "unknown"), ("dog", "low score")]
    unknown = items[1]
    assert unknown["score"] == 0.3 and unknown["novelty"] == 0.25 and unknown["camera"] == "cam"
    assert unknown["region"] == "door" and unknown["time"] == pytest.approx(clock.now - 20)
    assert items[0]["novelty"] is None  # NaN has no JSON form
    crop = cv2.imread(str(review.crop_path("cam", "door", unknown["file"])))
    assert crop.shape == (H, W // 2, 3)
    assert np.abs(crop.astype(int) - frame(2)[:, W // 2:]).mean() < 4  # the region's pixels (JPEG)


def test_carried_results_are_never_kept_and_a_change_opens_a_window(make):
    clock = Clock()
    review = make(clock, min_gap_s=1, duplicate=0, after_change_s=3, low_score=0)
    review.write(frame(0), result(changed=True))
    for seed in range(1, 9):  # 0.5 s apart: 1 s gap, 3 s window -> at 1, 2, 3 s
        clock.now += 0.5
        review.write(frame(seed), result())
        review.write(frame(100 + seed), result(label="unknown", inferred=False))  # carried over
    assert [i["reason"] for i in kept(review)] == ["label change"] * 4


def test_a_change_is_kept_at_once_even_inside_the_gap(make):
    clock = Clock()
    review = make(clock, min_gap_s=60, duplicate=0)
    review.write(frame(0), result(score=0.1))
    clock.now += 1
    review.write(frame(1), result(score=0.1))  # inside the gap
    review.write(frame(2), result("dog", changed=True))
    assert [i["reason"] for i in reversed(kept(review))] == ["low score", "label change"]


def test_at_most_per_hour_per_region_and_the_loop_stops_copying_until_a_slot_frees(make):
    clock = Clock()
    review = make(clock, per_hour=3, min_gap_s=0, duplicate=0)
    for seed in range(5):
        clock.now += 60
        review.write(frame(seed), result(score=0.1))
        review.write(frame(seed), result(score=0.1, region="window"))
        drain(review)
    # the fourth of each region is dropped on the queue's thread, which then tells the loop: the fifth is not offered
    assert review.dropped["hourly"] == 2 and review.status()["items"] == {"cam": {"door": 3, "window": 3}}
    offered = []
    offer = review._offer
    review._offer = lambda *args: (offered.append(args), offer(*args))  # noqa: SLF001
    clock.now += 60
    review.write(frame(9), result(score=0.1))  # the region is full: no copy made any more
    drain(review)
    assert review.dropped["hourly"] == 2 and not offered
    clock.now = clock.now - 5 * 60 + HOUR_S + 1  # the first crop is an hour old: one slot free again
    review.write(frame(10), result(score=0.1))
    assert len(kept(review)) == 4


def test_over_max_mb_the_oldest_crops_go_first(make, tmp_path):
    clock = Clock()
    review = make(clock, max_mb=0.012, min_gap_s=0, duplicate=0)
    for seed in range(12):
        clock.now += 1
        review.write(frame(seed), result(score=0.1, region=("door", "window")[seed % 2]))
        drain(review)
    status = review.status()
    assert 0 < status["bytes"] <= 12_000 and review.dropped["bytes"] > 0
    files = sorted(p.name for p in (tmp_path / "review").rglob("*.jpg"))
    left = sum(status["items"]["cam"].values())
    assert len(files) == left == 12 - review.dropped["bytes"]
    stamps = sorted(int(name.split("-")[0]) for name in files)
    assert stamps == [int((clock.now - left + 1 + n) * 1000) for n in range(left)]  # the newest are left
    on_disk = sum(p.stat().st_size for p in (tmp_path / "review").rglob("*") if p.is_file())
    assert on_disk == status["bytes"]


def test_near_duplicates_are_dropped_by_feature_distance(make):
    clock = Clock()
    review = make(clock, min_gap_s=0, duplicate=0.05)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=64).astype(np.float32), rng.normal(size=64).astype(np.float32)
    near = a + 0.05 * rng.normal(size=64).astype(np.float32)  # cosine distance ~0.001
    for vector in (a, near, b, a * 3):  # a*3: the same direction
        clock.now += 1
        review.write(frame(0), result(score=0.1, features=vector))
    assert len(kept(review)) == 2 and review.dropped["duplicate"] == 2


def test_without_features_a_colour_thumbnail_tells_duplicates(make):
    clock = Clock()
    review = make(clock, min_gap_s=0, duplicate=0.01)
    noise = np.random.default_rng(2)
    for seed in (0, 0, 1, 0):
        clock.now += 1
        noisy = np.clip(frame(seed) + noise.normal(0, 2, (H, W, 3)), 0, 255).astype(np.uint8)  # sensor noise
        review.write(noisy, result(score=0.1))
    assert len(kept(review)) == 2 and review.dropped["duplicate"] == 2


def test_the_frame_loops_thread_never_encodes_a_jpeg(make, monkeypatch):
    """Nor makes a thumbnail: the loop copies the crop, the queue's thread does the rest."""
    threads: list[str] = []
    encode, resize = cv2.imencode, cv2.resize
    frames = [frame(seed) for seed in range(3)]

    def spy(real):
        def called(*args, **kwargs):
            threads.append(threading.current_thread().name)
            return real(*args, **kwargs)
        return called

    monkeypatch.setattr(cv2, "imencode", spy(encode))
    monkeypatch.setattr(cv2, "resize", spy(resize))
    clock = Clock()
    review = make(clock, min_gap_s=0)
    for picture in frames:
        clock.now += 1
        review.write(picture, result(score=0.1))
    assert len(kept(review)) == 3
    assert len(threads) == 6 and set(threads) == {"edgerec-review"}


def test_a_full_queue_drops_on_the_loop_without_waiting(make, monkeypatch):
    gate = threading.Event()
    monkeypatch.setattr("edge.learn.review.ReviewQueue._keep", lambda self, offer: gate.wait(10))
    clock = Clock()
    review = make(clock, min_gap_s=0, duplicate=0)
    started = time.perf_counter()
    for seed in range(20):
        clock.now += 1
        review.write(frame(seed), result(score=0.1))
    assert time.perf_counter() - started < 1.0
    assert review.dropped["busy"] >= 20 - 8 - 1
    gate.set()


def test_assign_moves_the_crop_into_the_teach_crops_and_discard_removes_it(make, tmp_path):
    clock = Clock()
    review = make(clock, min_gap_s=0, duplicate=0)
    for seed in range(3):
        clock.now += 1
        review.write(frame(seed), result("unknown", 0.2, index=-1))
    items = kept(review)
    data = tmp_path / "teach" / "cam" / "door" / "data"
    moved = review.assign("cam", "door", items[0]["file"], "parcel", data)
    assert moved == data / "parcel" / items[0]["file"] and cv2.imread(str(moved)).shape == (H, W // 2, 3)
    review.discard("cam", "door", items[1]["file"])
    assert [i["file"] for i in review.items("cam", "door")] == [items[2]["file"]]
    assert sorted(p.name for p in (tmp_path / "review" / "cam" / "door").iterdir()) == [
        items[2]["file"], items[2]["file"].replace(".jpg", ".json")]
    with pytest.raises(EdgerecError, match="no review item cam/door/"):
        review.discard("cam", "door", items[1]["file"])
    with pytest.raises(EdgerecError, match="'unknown' is reserved"):
        review.assign("cam", "door", items[2]["file"], "unknown", data)
    with pytest.raises(EdgerecError, match="label '../x' is not valid"):
        review.assign("cam", "door", items[2]["file"], "../x", data)
    assert review.status()["items"] == {"cam": {"door": 1}}


def test_a_restart_finds_the_items_their_bytes_and_the_hours_count(tmp_path):
    clock = Clock()
    first = ReviewQueue(tmp_path / "review", ReviewOptions(per_hour=2, min_gap_s=0, duplicate=0), clock)
    for seed in range(2):
        clock.now += 1
        first.write(frame(seed), result(score=0.1))
    first.close()
    again = ReviewQueue(tmp_path / "review", ReviewOptions(per_hour=2, min_gap_s=0, duplicate=0), clock)
    try:
        assert again.status()["items"] == {"cam": {"door": 2}} and again.status()["bytes"] == first.status()["bytes"]
        clock.now += 1
        again.write(frame(5), result(score=0.1))
    finally:
        again.close()
    assert again.dropped["hourly"] == 1
    assert json.loads(next((tmp_path / "review").rglob("*.json")).read_text())["reason"] == "low score"


@pytest.mark.parametrize(("key", "value", "words"), [
    ("low_score", 1.5, "review low_score 1.5; valid: 0-1"),
    ("per_hour", 0, "review per_hour 0; valid: 1-3600"),
    ("max_mb", 0, "review max_mb 0; valid: a number > 0"),
    ("duplicate", -0.1, "review duplicate -0.1; valid: 0-2"),
])
def test_bad_options_are_one_line(key, value, words):
    with pytest.raises(EdgerecError, match=words):
        ReviewOptions(**{key: value})


def test_disabled_keeps_nothing(make, tmp_path):
    review = make(enabled=False)
    review.write(frame(0), result("unknown", 0.1, changed=True))
    assert kept(review) == [] and not (tmp_path / "review").exists()


def test_the_loop_side_is_cheap(make):
    """Per inferred region that is not kept: a few comparisons (no copy, no clock beyond one call)."""
    review = make(low_score=0.5)
    fine = result("cat", 0.9)
    started = time.perf_counter()
    for _ in range(10000):
        review.write(frame_buffer, fine)
    per_call_us = (time.perf_counter() - started) / 10000 * 1e6
    assert per_call_us < 50, per_call_us


frame_buffer = frame(0)


def test_plain_crops_of_two_colours_are_not_duplicates(make):
    clock = Clock()
    review = make(clock, min_gap_s=0)
    for colour in ((200, 40, 40), (40, 40, 200), (201, 40, 40)):
        clock.now += 1
        review.write(np.full((H, W, 3), colour, np.uint8), result(score=0.1))
    assert len(kept(review)) == 2 and review.dropped["duplicate"] == 1


def test_the_config_sets_the_queue_and_refuses_bad_values_in_one_line(tmp_path):
    from edge.app.config import load_config, run_options

    config = tmp_path / "config.toml"
    config.write_text('[web]\nlisten = "127.0.0.1:8080"\n[review]\nlow_score = 0.4\nper_hour = 5\nmax_mb = 2.5\n')
    review = run_options(load_config(config)).web.review
    assert (review.low_score, review.per_hour, review.max_bytes, review.duplicate) == (0.4, 5, 2_500_000, 0.1)
    config.write_text('[review]\nper_hour = 0\n')
    with pytest.raises(EdgerecError, match=r"config.toml: review\.per_hour: must be >= 1, got 0$"):
        load_config(config)
    config.write_text('[review]\nlow_scores = 0.4\n')
    with pytest.raises(EdgerecError, match="unknown key 'review.low_scores'"):
        load_config(config)
