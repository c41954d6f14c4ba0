"""scripts/bench/bench_augment.py: its folds, held-out bookkeeping and paired intervals (no training run here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from edge.tools.corruptions import CORRUPTIONS
from training.data import Sample

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench" / "bench_augment.py"
spec = importlib.util.spec_from_file_location("bench_augment", SCRIPT)
ba = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = ba
spec.loader.exec_module(ba)


def samples(per_class: tuple[int, ...]) -> list[Sample]:
    return [Sample(Path(f"c{c}/{i}.png"), f"c{c}/{i}.png", c, 1, "0", 1, 1)
            for c, n in enumerate(per_class) for i in range(n)]


def test_every_image_is_validated_in_exactly_one_fold_and_each_fold_holds_a_fifth_of_each_class():
    items = samples((10, 7, 23))
    fold = ba._folds(items, 5, seed=0)
    labels = np.array([s.label for s in items])
    for label, n in enumerate((10, 7, 23)):
        counts = np.bincount(fold[labels == label], minlength=5)
        assert counts.sum() == n and counts.max() - counts.min() <= 1
    assert not np.array_equal(fold, ba._folds(items, 5, seed=1))  # the seed reshuffles


def test_held_out_groups_cover_every_corruption_once():
    a, b = ba.HELD_OUT_GROUPS
    assert sorted(a + b) == sorted(CORRUPTIONS) and not set(a) & set(b)


def test_held_out_scores_each_corruption_with_the_head_that_did_not_train_on_it():
    n = len(ba.CONDITIONS)
    head_a, head_b = np.zeros((n, 4), bool), np.ones((n, 4), bool)  # trained on group A / on group B
    mixed = ba._held_out(head_a, head_b)
    for row, (name, _) in zip(mixed, ba.CONDITIONS):
        assert row.all() == (name in ba.HELD_OUT_GROUPS[0])  # group A's rows come from head B (all True)


def test_paired_interval_is_the_mean_difference_with_a_t_interval_over_the_splits():
    a = [np.array([1, 1, 0, 1]), np.array([1, 0, 1, 1]), np.array([1, 1, 1, 0])]
    b = [np.array([1, 0, 0, 1]), np.array([1, 0, 1, 0]), np.array([0, 1, 1, 0])]
    ids = [np.arange(0, 4), np.arange(4, 8), np.arange(8, 12)]  # k-fold: every image validated once
    out = ba._paired(a, b, lambda x: x.astype(float), ids)
    assert out["mean"] == 3 / 12 and out["per_split"] == [0.25, 0.25, 0.25]
    assert out["t95"] == [0.25, 0.25]  # no spread between splits
    low, high = out["bootstrap95"]
    assert 0 <= low < 0.25 < high <= 0.75


def test_the_bootstrap_resamples_images_not_runs():
    """Two seeds scoring the same images the same way are one image's evidence twice, not twice the
    evidence: the interval is that of one run (a cluster bootstrap), where a pooled one would narrow."""
    a, b = [np.array([1, 1, 0, 1, 1, 0])], [np.array([1, 0, 0, 1, 0, 0])]
    ids = [np.arange(6)]
    once = ba._paired(a, b, lambda x: x.astype(float), ids)
    twice = ba._paired(a * 2, b * 2, lambda x: x.astype(float), ids * 2)
    assert twice["bootstrap95"] == once["bootstrap95"] and twice["mean"] == once["mean"]


def test_discordance_bound_is_clopper_pearson():
    assert abs(ba.discordance_bound(0, 299) - (1 - 0.025 ** (1 / 299))) < 1e-9  # closed form at zero
    assert abs(ba.discordance_bound(5, 100) - 0.1128) < 1e-4  # the tabulated exact upper limit of 5/100
    assert ba.discordance_bound(100, 100) == 1.0


def test_t_quantile_matches_the_table_beyond_it():
    assert ba.t975(4) == 2.776
    for df, table in ((10, 2.228), (20, 2.086), (30, 2.042), (120, 1.980)):
        assert abs(ba.t975(df) - table) < 0.005


def test_a_missing_folder_is_one_line_and_status_2(tmp_path: Path, capsys):
    assert ba.main([str(tmp_path / "missing"), "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench_augment: error: ") and err.count("\n") == 1 and "missing" in err
