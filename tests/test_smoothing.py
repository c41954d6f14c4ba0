import numpy as np
import pytest

from edge.errors import EdgerecError
from edge.live.smoothing import UNKNOWN, Smoother, SmoothingOptions

LABELS = ["cat", "dog", "fox"]


def probs(cat: float, dog: float) -> np.ndarray:
    return np.array([cat, dog, 1.0 - cat - dog], np.float32)


def shown(smoother: Smoother, sequence: list[np.ndarray]) -> list[str]:
    return [smoother.update(p).label for p in sequence]


@pytest.mark.parametrize("strong,weak", [(0.9, 0.1), (0.55, 0.4)])
def test_alternating_frames_do_not_flicker(strong, weak):
    sequence = [probs(strong, weak) if i % 2 == 0 else probs(weak, strong) for i in range(100)]
    raw = [LABELS[int(p.argmax())] for p in sequence]
    flips = sum(a != b for a, b in zip(raw[:-1], raw[1:], strict=True))
    assert flips == 99  # the raw top label flips on every frame

    labels = shown(Smoother(LABELS), sequence)

    assert labels == ["cat"] * 100


def test_hysteresis_alone_suppresses_flicker_without_averaging():
    sequence = [probs(0.9, 0.1) if i % 2 == 0 else probs(0.1, 0.9) for i in range(50)]
    labels = shown(Smoother(LABELS, SmoothingOptions(alpha=1.0, frames=2)), sequence)
    assert set(labels) == {"cat"}


@pytest.mark.parametrize("frames", [1, 2, 3, 5])
def test_a_real_change_shows_within_k_frames_without_averaging(frames):
    sequence = [probs(0.9, 0.05)] * 20 + [probs(0.05, 0.9)] * 20
    labels = shown(Smoother(LABELS, SmoothingOptions(alpha=1.0, frames=frames)), sequence)
    assert labels.index("dog") == 20 + frames - 1
    assert labels[20 + frames - 1 :] == ["dog"] * (20 - frames + 1)


@pytest.mark.parametrize("alpha,margin,frames", [(0.5, 0.1, 3), (0.3, 0.2, 2), (0.8, 0.05, 4)])
def test_a_real_change_shows_k_frames_after_the_average_leads(alpha, margin, frames):
    before, after = probs(0.9, 0.05), probs(0.05, 0.9)
    sequence = [before] * 30 + [after] * 30
    ema, lead_frame = before.copy(), 30  # the average, computed here independently of the smoother
    while True:
        ema = (1 - alpha) * ema + alpha * after
        if ema[1] >= ema[0] + margin:
            break
        lead_frame += 1

    labels = shown(Smoother(LABELS, SmoothingOptions(alpha=alpha, margin=margin, frames=frames)), sequence)

    assert labels.index("dog") == lead_frame + frames - 1
    assert lead_frame - 30 <= 3  # the average itself adds only a few frames at these settings


def test_min_score_shows_unknown_and_reports_each_change():
    smoother = Smoother(LABELS, SmoothingOptions(alpha=1.0, frames=1, min_score=0.5))
    sequence = [probs(0.8, 0.1), probs(0.8, 0.1), probs(0.4, 0.3), probs(0.4, 0.3), probs(0.1, 0.8)]
    results = [smoother.update(p) for p in sequence]
    assert [r.label for r in results] == ["cat", "cat", UNKNOWN, UNKNOWN, "dog"]
    assert [r.changed for r in results] == [True, False, True, False, True]
    assert [r.index for r in results] == [0, 0, -1, -1, 1]
    assert results[2].score == pytest.approx(0.4)


def test_update_reuses_one_read_only_buffer():
    smoother = Smoother(LABELS)
    first = smoother.update(probs(0.6, 0.3)).probs
    second = smoother.update(probs(0.2, 0.7)).probs
    assert second is first
    assert np.allclose(second, [0.4, 0.5, 0.1])
    with pytest.raises(ValueError):
        second[0] = 1.0


def test_wrong_number_of_classes_is_a_clear_error():
    with pytest.raises(EdgerecError, match="3 labels"):
        Smoother(LABELS).update(np.ones(4, np.float32) / 4)


@pytest.mark.parametrize(
    "bad", [dict(alpha=0.0), dict(alpha=1.5), dict(margin=-0.1), dict(frames=0), dict(min_score=1.2)]
)
def test_bad_options_are_refused(bad):
    with pytest.raises(EdgerecError):
        SmoothingOptions(**bad)


@pytest.mark.parametrize("alpha", [0.3, 0.5, 1.0])
def test_settled_once_the_average_is_within_the_tolerance_of_the_newest_probabilities(alpha):
    """`settled` is worked out only when asked; it must say what the full comparison says after every update,
    asked after every update or only now and then."""
    from edge.live.smoothing import SETTLE_TOLERANCE

    rng = np.random.default_rng(1)
    noise = [probs(*rng.dirichlet([1, 1, 1])[:2]) for _ in range(8)]
    sequence = [probs(0.9, 0.05)] * 4 + [probs(0.1, 0.8)] * 12 + noise
    options = SmoothingOptions(alpha=alpha)
    asked_every_time, asked_at_odd_steps = Smoother(LABELS, options), Smoother(LABELS, options)
    average = None
    for step, p in enumerate(sequence):
        average = p.astype(np.float64) if average is None else average + alpha * (p - average)
        expected_gap = float(np.abs(p - average).max())
        asked_every_time.update(p)
        asked_at_odd_steps.update(p)
        if abs(expected_gap - SETTLE_TOLERANCE) < 1e-4:
            continue  # too close to the line for float32 to say
        expected = asked_every_time._streak == 0 and expected_gap < SETTLE_TOLERANCE
        assert asked_every_time.settled == expected, step
        if step % 2:
            assert asked_at_odd_steps.settled == expected, step
    assert Smoother(LABELS).settled is False  # nothing seen yet: never settled
