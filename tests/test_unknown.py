"""Knowing what a model does not know: the novelty score, its threshold, and `unknown` everywhere a label goes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PHOTOS, run_cli

from edge.app.bench import bench_novelty
from edge.core.metadata import from_props
from edge.core.model import Model
from edge.core.novelty import UNKNOWN, NoveltyInfo, NoveltyScorer, build_novelty, nudged_choice
from edge.core.preprocess import fit
from edge.errors import EdgerecError
from edge.learn.head import TeachOptions, UnknownOptions, teach
from edge.live.smoothing import Smoother, SmoothingOptions
from edge.tools.unknown import auroc, evaluate_unknown


def clusters(rng: np.random.Generator, centres: np.ndarray, n: int, spread: float = 0.05) -> np.ndarray:
    rows = np.repeat(centres, n, axis=0)
    return (rows + spread * rng.standard_normal(rows.shape)).astype(np.float32)


# --- the score ---------------------------------------------------------------------------------------------


def test_taught_like_points_score_low_and_others_high_with_the_threshold_keeping_its_target() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 64))
    train = clusters(rng, centres, 40)
    labels = np.repeat(np.arange(3), 40)
    info = build_novelty(train, labels, target_kept=0.9)
    assert 0.88 <= info.calibration["kept"] <= 0.92 and info.calibration["photos"] == 120
    scorer = NoveltyScorer(info)
    known = scorer.score(clusters(rng, centres, 20))
    novel = scorer.score(clusters(rng, rng.standard_normal((3, 64)), 20))
    assert np.mean(known <= info.threshold) >= 0.8
    assert np.all(novel > info.threshold)
    assert auroc(known, novel) == 1.0


def test_near_duplicate_photos_get_a_threshold_wide_enough_for_the_camera_moving_a_little() -> None:
    """Crops of one still scene (collected on the page) are near-duplicates: leave-one-out alone gives a
    threshold that every live frame exceeds. Their nudged views (each a little further off than the crops are
    from each other) set it; on varied photos the nudged views change nothing."""
    rng = np.random.default_rng(3)
    scene = rng.standard_normal((2, 256)).astype(np.float32) * 5
    crops = np.concatenate([scene[i] + rng.normal(0, 0.2, (7, 256)) for i in range(2)]).astype(np.float32)
    labels = np.repeat(np.arange(2), 7)
    live = np.concatenate([scene[i] + rng.normal(0, 0.2, (20, 256)) + rng.normal(0, 0.6, 256) for i in range(2)])
    nudged = (crops + rng.normal(0, 0.6, crops.shape)).astype(np.float32)  # the same shift of the view
    tight = build_novelty(crops, labels)
    wide = build_novelty(crops, labels, nudged=nudged, nudged_photos=np.arange(14))
    assert np.mean(NoveltyScorer(tight).score(live) > tight.threshold) > 0.9  # all `unknown` without them
    assert np.mean(NoveltyScorer(wide).score(live) <= wide.threshold) > 0.9
    assert wide.calibration["nudged"] == 14 and round(wide.threshold, 4) == wide.calibration["nudged_threshold"]
    varied = clusters(rng, rng.standard_normal((3, 64)), 40)
    small = (varied + rng.normal(0, 0.01, varied.shape)).astype(np.float32)
    three = np.repeat(np.arange(3), 40)
    assert build_novelty(varied, three, nudged=small[:32], nudged_photos=np.arange(32)).threshold == \
        build_novelty(varied, three).threshold


def test_nudged_views_are_left_out_of_their_own_photo_and_chosen_alike_every_time() -> None:
    rng = np.random.default_rng(4)
    photos = rng.standard_normal((40, 32)).astype(np.float32)
    info = build_novelty(photos, np.zeros(40, np.int64), nudged=photos[:10].copy(), nudged_photos=np.arange(10))
    assert info.calibration["nudged_threshold"] > 0.5  # scored against itself, each would be 0
    assert list(nudged_choice(100, 0)) == list(nudged_choice(100, 0)) and len(nudged_choice(100)) == 32
    assert list(nudged_choice(5)) == [0, 1, 2, 3, 4]


def test_a_photo_is_left_out_of_its_own_references() -> None:
    """Scored against itself every training photo would come out at 0, and the threshold with it."""
    rng = np.random.default_rng(1)
    info = build_novelty(rng.standard_normal((50, 32)).astype(np.float32), np.zeros(50, np.int64))
    assert info.threshold > 0.5  # random directions in 32 dimensions are far apart


def test_k_nearest_and_the_scorer_agree_with_a_plain_cosine() -> None:
    rng = np.random.default_rng(2)
    train = rng.standard_normal((30, 16)).astype(np.float32)
    info = build_novelty(train, np.repeat([0, 1], 15), k=3)
    query = rng.standard_normal((4, 16)).astype(np.float32)
    centred = query - info.mean
    refs = info.references.astype(np.float32)
    cosines = (centred / np.linalg.norm(centred, axis=1, keepdims=True)) @ refs.T
    expected = 1 - np.sort(cosines, axis=1)[:, -3:].mean(axis=1)
    assert np.allclose(NoveltyScorer(info).score(query), expected, atol=2e-3)  # float16 references


def test_one_label_is_not_centred_and_several_are() -> None:
    rng = np.random.default_rng(6)
    rows = rng.standard_normal((20, 8)).astype(np.float32) + 3
    assert not build_novelty(rows, np.zeros(20, np.int64)).mean.any()
    assert np.allclose(build_novelty(rows, np.repeat([0, 1], 10)).mean, rows.mean(axis=0))


def test_the_references_are_capped_with_an_even_share_per_label() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1, 2], [4, 60, 100])
    info = build_novelty(rng.standard_normal((164, 8)).astype(np.float32), labels, cap=40)
    assert np.bincount(info.reference_labels).tolist() == [4, 18, 18]  # the small label's share passed on
    assert np.allclose(np.linalg.norm(info.references.astype(np.float32), axis=1), 1.0, atol=1e-2)


def test_the_entry_round_trips_and_bad_entries_are_refused_in_one_line() -> None:
    rng = np.random.default_rng(4)
    info = build_novelty(rng.standard_normal((20, 8)).astype(np.float32), np.repeat([0, 1], 10))
    again = NoveltyInfo.from_json(json.loads(json.dumps(info.to_json())), 2, 8, "m.onnx")
    assert again.threshold == info.threshold and np.array_equal(again.references, info.references)
    good = info.to_json()
    for change, words in (({"method": "magic"}, "method 'magic'"), ({"dim": 9}, "is incomplete or malformed"),
                          ({"reference_labels": [5] * 20}, "one label index"), ({"k": 0}, "k >= 1"),
                          ({"threshold": "nan"}, "not finite")):
        with pytest.raises(EdgerecError) as error:
            NoveltyInfo.from_json({**good, **change}, 2, 8, "m.onnx")
        assert str(error.value).startswith("m.onnx: metadata edgerec.novelty") and words in str(error.value)
    with pytest.raises(EdgerecError, match="has dim 8; the features output has 16"):
        NoveltyInfo.from_json(good, 2, 16, "m.onnx")


def test_novelty_without_a_features_output_is_refused() -> None:
    rng = np.random.default_rng(5)
    info = build_novelty(rng.standard_normal((20, 8)).astype(np.float32), np.repeat([0, 1], 10))
    props = {"edgerec.format_version": "1", "edgerec.labels": '["a", "b"]', "edgerec.input_size": "[8, 8]",
             "edgerec.crop": "1.0", "edgerec.arch": '"x"', "edgerec.precision": '"fp32"',
             "edgerec.novelty": json.dumps(info.to_json())}
    with pytest.raises(EdgerecError, match="needs the features output"):
        from_props(props, "m.onnx")


# --- smoothing: the label shown -----------------------------------------------------------------------------


def test_the_smoother_says_unknown_above_the_threshold_and_back_below_it() -> None:
    smoother = Smoother(["a", "b"], SmoothingOptions(alpha=1.0), novelty_threshold=0.5)
    probs = np.array([0.9, 0.1], np.float32)
    assert smoother.update(probs, 0.2).label == "a"
    novel = smoother.update(probs, 0.8)
    assert (novel.label, novel.index, novel.changed, novel.novelty) == (UNKNOWN, -1, True, pytest.approx(0.8))
    assert smoother.update(probs, 0.3).label == "a"


def test_unknown_off_or_a_threshold_override_in_the_options() -> None:
    assert SmoothingOptions(unknown=False).threshold(0.4) is None
    assert SmoothingOptions().threshold(0.4) == 0.4
    assert SmoothingOptions(unknown_threshold=0.7).threshold(0.4) == 0.7
    assert SmoothingOptions(unknown_threshold=0.7).threshold(None) is None  # the file has no novelty data
    with pytest.raises(EdgerecError, match="unknown threshold 3"):
        SmoothingOptions(unknown_threshold=3)


def test_the_novelty_score_is_smoothed_like_the_probabilities() -> None:
    smoother = Smoother(["a", "b"], SmoothingOptions(alpha=0.5), novelty_threshold=0.5)
    probs = np.array([0.9, 0.1], np.float32)
    smoother.update(probs, 0.2)
    once = smoother.update(probs, 1.0)  # one novel frame: (0.2 + 1.0) / 2 = 0.6
    assert once.novelty == pytest.approx(0.6) and once.label == UNKNOWN
    assert smoother.update(probs, 0.0).novelty == pytest.approx(0.3)


# --- teach, classify, evaluate: real photos ------------------------------------------------------------------

ANIMALS = ("baboon.jpg", "chelsea.jpg", "squirrel_cls.jpg", "chicky_512.jpg")
OTHERS = ("coffee.jpg", "orange.jpg")


def views(image: np.ndarray) -> list[np.ndarray]:
    """Several framings of one photo: what a fixed camera sees of one scene over a day."""
    h, w = image.shape[:2]
    crops = [image, image[:, : int(w * 0.8)], image[:, w - int(w * 0.8):], image[: int(h * 0.8)],
             image[h - int(h * 0.8):], image[h // 10: h - h // 10, w // 10: w - w // 10]]
    return crops + [cv2.flip(c, 1) for c in crops]


@pytest.fixture(scope="module")
def one_label(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An anomaly model taught on animal photos alone, and a folder of other photos."""
    root = tmp_path_factory.mktemp("unknown")
    for name in ANIMALS:
        for i, view in enumerate(views(cv2.imread(str(PHOTOS / name)))):
            path = root / "data" / "animal" / f"{Path(name).stem}-{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), view)
    for name in OTHERS:
        for i, view in enumerate(views(cv2.imread(str(PHOTOS / name)))[:4]):
            path = root / "other" / f"{Path(name).stem}-{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), view)
    out = root / "animal.onnx"
    report = teach(TeachOptions(root / "data", out, device="cpu"))
    assert report.classes == ("animal",) and report.novelty is not None
    return out, root


def test_one_label_is_an_anomaly_model_that_answers_that_label_or_unknown(one_label) -> None:
    out, root = one_label
    model = Model.load(out, "cpu")
    assert model.labels == ["animal"] and model.novelty is not None
    others = [model.classify([cv2.imread(str(p))])[0] for p in sorted((root / "other").iterdir())]
    assert sum(p.label == UNKNOWN for p in others) >= 6  # of 8 views of a coffee cup and an orange
    own = [model.classify([cv2.imread(str(p))])[0] for p in sorted((root / "data" / "animal").iterdir())[:12]]
    assert all(p.label == "animal" for p in own)  # the photos it was taught on


def test_the_session_computes_the_score_as_numpy_does_and_the_file_is_left_as_it_was(one_label) -> None:
    out, root = one_label
    before = out.read_bytes()
    model = Model.load(out, "cpu")
    assert model.novelty is not None and model.novelty_in_graph  # appended in memory (edge.core.novelty_graph)
    batch = np.stack([fit(cv2.imread(str(p)), model.geometry) for p in sorted((root / "other").iterdir())[:5]])
    probs, features, novelty = model.infer_novelty(batch)
    assert novelty.shape == (5,) and np.allclose(novelty, model.novelty.score(features), atol=1e-5)
    assert np.allclose(probs, model.infer(batch), atol=1e-6)  # the appended nodes leave the answer alone
    assert out.read_bytes() == before


def test_a_device_that_cannot_run_the_appended_nodes_scores_in_numpy_and_says_so(one_label, monkeypatch,
                                                                                  caplog) -> None:
    import edge.core.model as model_module

    out, root = one_label
    monkeypatch.setattr(model_module, "append_novelty", lambda model, info: b"not a graph")
    with caplog.at_level("WARNING", logger="edgerec.model"):
        model = Model.load(out, "cpu")
    assert not model.novelty_in_graph and "runs in NumPy" in caplog.text and str(out) in caplog.text
    batch = np.stack([fit(cv2.imread(str(p)), model.geometry) for p in sorted((root / "other").iterdir())[:2]])
    _, features, novelty = model.infer_novelty(batch)
    assert np.allclose(novelty, model.novelty.score(features))


def test_bench_times_the_score_inside_the_run(one_label) -> None:
    out, _ = one_label
    timing = bench_novelty(out, "cpu", False, runs=5)
    stored = Model.load(out, "cpu").novelty
    assert stored is not None and timing.references == len(stored.info.references)
    assert timing.in_graph and timing.source == "the model file's"
    assert timing.novelty_ms.median_ms > 0 and timing.dim == 1280


def test_classify_json_gives_the_answer_and_the_score_and_can_turn_unknown_off(one_label) -> None:
    out, root = one_label
    done = run_cli("classify", "--model", str(out), str(root / "other"), "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(set(line) >= {"file", "label", "novelty", "top"} for line in lines)
    assert any(line["label"] == UNKNOWN for line in lines) and all(line["novelty"] > 0 for line in lines)
    off = run_cli("classify", "--model", str(out), str(root / "other"), "--json", "--no-unknown")
    assert {json.loads(line)["label"] for line in off.stdout.splitlines()} == {"animal"}


def test_info_shows_the_threshold_and_evaluate_unknown_reports_it(one_label, tmp_path: Path) -> None:
    out, root = one_label
    info = run_cli("info", str(out))
    assert "unknown above novelty" in info.stdout and "references: animal" in info.stdout
    report = evaluate_unknown(Model.load(out, "cpu"), root / "data", root / "other")
    assert report.auroc > 0.9 and report.unknown_flagged.n == 8 and report.known_kept.n == 48
    done = run_cli("evaluate", str(out), str(root / "data"), "--unknown", str(root / "other"), "--json",
                   "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["auroc"] == pytest.approx(report.auroc, abs=1e-4)
    assert (tmp_path / "unknown.png").stat().st_size > 1000 and (tmp_path / "unknown.json").is_file()


def test_a_folder_named_unknown_is_refused_in_one_line(tmp_path: Path) -> None:
    for label in ("unknown", "cat"):
        (tmp_path / "data" / label).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "data" / label / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    done = run_cli("teach", str(tmp_path / "data"), "--out", str(tmp_path / "m.onnx"))
    assert done.returncode == 2 and "'unknown' is a reserved label" in done.stderr
    assert done.stderr.count("\n") == 1


def test_no_unknown_stores_nothing(tmp_path: Path, one_label) -> None:
    _, root = one_label
    report = teach(TeachOptions(root / "data", tmp_path / "plain.onnx", device="cpu",
                                unknown=UnknownOptions(enabled=False)))
    assert report.novelty is None and Model.load(tmp_path / "plain.onnx", "cpu").novelty is None
