"""The adversarial check (training.adversarial): FGSM and PGD on a tiny trained network, and the keys
`edgerec train` writes.

The attack tests train a few-thousand-parameter CNN on the generated patterns of test_train in a second or
two; the training run is test_train's tiny one (64 px, 3 classes of 12 images)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_train import CLASSES, options, synthetic
from torch import nn

from edge.app.cli import main
from edge.app.train_args import describe_report
from edge.errors import EdgerecError
from training.adversarial import AttackOptions, _Attacked, adversarial_check, fgsm, pgd, pick
from training.train import train

SIZE = 32


class Tiny(nn.Module):
    """float NCHW normalised -> logits, like EfficientNetLite's forward."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(16, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def patterns(first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    images = [cv2.resize(synthetic(label, first + i), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
              for label in range(len(CLASSES)) for i in range(count)]
    return np.stack(images), np.repeat(np.arange(len(CLASSES)), count)


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A network trained to high top-1 on the patterns (seeded), and 30 held-out images."""
    torch.manual_seed(0)
    net = Tiny()
    images, labels = patterns(0, 40)
    x, y = torch.from_numpy(images).float(), torch.from_numpy(labels)
    model = _Attacked(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    val_images, val_labels = patterns(500, 10)
    return net.eval(), val_images, val_labels


def test_attacks_lower_top1_and_eps_0_changes_nothing(tiny) -> None:
    net, images, labels = tiny
    report = adversarial_check(net, images, labels, AttackOptions(epsilons=(0, 2, 24), seed=1))
    assert report.images == report.of == 30 and report.clean.top1 >= 0.8
    for attack in ("fgsm", "pgd"):
        assert report.result(attack, 0).correct == report.clean.correct
        assert report.result(attack, 24).top1 < report.clean.top1 - 0.3, report
        assert report.result(attack, 2).top1 <= report.clean.top1
    assert report.result("pgd", 24).top1 <= report.result("fgsm", 24).top1  # the stronger attack
    again = adversarial_check(net, images, labels, AttackOptions(epsilons=(0, 2, 24), seed=1))
    assert again.results == report.results  # deterministic


def test_pgd_is_seeded(tiny) -> None:
    net, images, labels = tiny
    model = _Attacked(net).eval()
    x, y = torch.from_numpy(images).float(), torch.from_numpy(labels)
    runs = [pgd(model, x, y, 2, 10, 0.5, torch.Generator().manual_seed(seed)) for seed in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_perturbations_stay_within_eps_and_are_valid_pixels(tiny) -> None:
    net, images, labels = tiny
    model = _Attacked(net).eval()
    x, y = torch.from_numpy(images).float(), torch.from_numpy(labels)
    x[0, :4] = 0
    x[1, :4] = 255  # pixels at the range's ends: the step must be clipped there
    for eps in (0, 1, 4):
        for adversarial in (fgsm(model, x, y, eps), pgd(model, x, y, eps, 10, eps / 4, torch.Generator())):
            assert (adversarial - x).abs().max() <= eps
            assert adversarial.min() >= 0 and adversarial.max() <= 255
            assert torch.equal(adversarial, adversarial.round())
    moved = (fgsm(model, x, y, 4) - x)[(x >= 4) & (x <= 251)]  # away from the range's ends: whole steps
    assert set(moved.unique().tolist()) <= {-4.0, 0.0, 4.0} and (moved != 0).float().mean() > 0.5


def test_a_cap_picks_the_same_balanced_images() -> None:
    labels = np.repeat(np.arange(3), [10, 4, 6])
    chosen = pick(labels, 9, seed=0)
    assert len(set(chosen.tolist())) == 9 and np.bincount(labels[chosen]).tolist() == [3, 3, 3]
    assert np.array_equal(chosen, pick(labels, 9, seed=0))
    assert np.array_equal(pick(labels, 50, seed=0), np.arange(20))


def test_epsilons_must_be_whole_grey_levels(tiny) -> None:
    net, images, labels = tiny
    with pytest.raises(EdgerecError, match="whole grey levels"):
        adversarial_check(net, images, labels, AttackOptions(epsilons=(0.5,)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "patterns"
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(12):
            cv2.imwrite(str(root / name / f"{i:02d}.png"), synthetic(label, i))
    return root


def test_train_writes_the_adversarial_figures(dataset: Path, tmp_path: Path) -> None:
    report = train(options(dataset, tmp_path / "out", min_int8_agreement=0.0, head_epochs=2, epochs=0,
                           finetune_blocks=0, adversarial_images=6))
    folder = report.out_dir / "report"
    assert (folder / "adversarial.png").is_file()
    metrics = json.loads((folder / "metrics.json").read_text())
    for attack in ("fgsm", "pgd"):
        for eps in (1, 2, 4):
            assert 0 <= metrics[f"adv_{attack}_eps{eps}_top1"] <= 1
            low, high = metrics[f"adv_{attack}_eps{eps}_interval95"]
            assert low <= metrics[f"adv_{attack}_eps{eps}_top1"] <= high
    assert metrics["adversarial"]["images"] == 6 and metrics["adversarial"]["validation_images"] == 9
    assert metrics["adv_clean_top1"] == report.adversarial.clean.top1
    text = "\n".join(describe_report(report))
    assert re.search(r"^adversarial  FP32 top-1 of 6 validation images \(clean [\d.]+%\) under FGSM at 1/2/4 grey "
                     r"levels [\d.]+/[\d.]+/[\d.]+%, PGD-10 [\d.]+/[\d.]+/[\d.]+% \(report/adversarial\.png\)$",
                     text, re.M), text

    off = train(options(dataset, tmp_path / "off", min_int8_agreement=0.0, head_epochs=2, epochs=0,
                        finetune_blocks=0, adversarial_images=0))
    assert off.adversarial is None and not (off.out_dir / "report" / "adversarial.png").exists()
    assert "adv_fgsm_eps1_top1" not in json.loads((off.out_dir / "report" / "metrics.json").read_text())


def test_a_negative_image_count_is_one_line_and_status_2(dataset: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", str(dataset), "--out", str(tmp_path / "o"), "--adversarial-images", "-1"]) == 2
    err = capsys.readouterr().err
    assert err == "edgerec: error: adversarial_images must be 0 or more, got -1\n", err
