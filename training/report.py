"""The training report a person reads: curves, confusion matrix and metrics.json under OUT/report/."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.files import atomic_path


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[i, j] = images of class i predicted as class j."""
    return np.bincount(truth * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, default=str) + "\n")


def plot_curves(path: Path, history: Sequence[dict[str, Any]], title: str) -> None:
    """Loss (train, val) and validation top-1 per epoch; stage 1 (head) and stage 2 (fine-tune) side by side,
    the best epoch of each stage annotated and the one whose weights were exported starred."""
    plt = _pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.arange(1, len(history) + 1)
    stages = [h["stage"] for h in history]
    loss_ax.plot(x, [h["train_loss"] for h in history], "o-", ms=3, label="train (label-smoothed)")
    loss_ax.plot(x, [h["val_loss"] for h in history], "o-", ms=3, label="validation")
    acc_ax.plot(x, [100 * h["val_top1"] for h in history], "o-", ms=3, color="tab:green", label="validation top-1")
    score = lambda i: (history[i]["val_top1"], -history[i]["val_loss"])  # noqa: E731  (training's rule)
    kept = max(range(len(history)), key=score)
    acc_ax.plot(x[kept], 100 * history[kept]["val_top1"], "*", ms=13, color="tab:red", label="exported (best)")
    for stage in dict.fromkeys(stages):
        epochs = [i for i, s in enumerate(stages) if s == stage]
        best = max(epochs, key=score)
        acc_ax.annotate(f"{100 * history[best]['val_top1']:.1f}%", (x[best], 100 * history[best]["val_top1"]),
                        textcoords="offset points", xytext=(0, 8), ha="center", fontsize=9)
        for ax in (loss_ax, acc_ax):
            if epochs[0] > 0:
                ax.axvline(epochs[0] + 0.5, color="grey", lw=0.8, ls="--")
            ax.text((x[epochs[0]] + x[epochs[-1]]) / 2, 1.01, _STAGE_NAMES.get(stage, stage),
                    transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=9, color="dimgrey")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy")
    acc_ax.set(xlabel="epoch", ylabel="validation top-1 (%)")
    low = min(100 * h["val_top1"] for h in history)
    acc_ax.set_ylim(max(0.0, low - 5), 101)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=9)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _save(fig, path)


_STAGE_NAMES = {"head": "stage 1: head", "finetune": "stage 2: last blocks"}


def plot_confusion(path: Path, counts: np.ndarray, labels: Sequence[str], title: str) -> None:
    """Counts in each cell, colour = share of the true class (row), per-class recall beside each row."""
    plt = _pyplot()
    n = len(labels)
    rows = counts.sum(1, keepdims=True)
    share = counts / np.maximum(rows, 1)
    side = min(14.0, 2.5 + 0.6 * n)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if counts[i, j] or i == j:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=9 if n <= 15 else 7,
                        color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), [f"{label} ({int(r)})" for label, r in zip(labels, rows[:, 0])])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true class (validation images)")
    recall = ax.secondary_yaxis("right")
    recall.set_yticks(range(n), [f"{100 * share[i, i]:.0f}%" for i in range(n)])
    recall.set_ylabel("recall")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def plot_adversarial(path: Path, report: Any, title: str) -> None:
    """Top-1 against the attack's eps (grey levels) for FGSM and PGD, with their 95% intervals; eps 0 is the
    clean top-1 (``report`` is a training.adversarial.AdversarialReport)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    epsilons = [0.0, *report.options.epsilons]
    for attack, label, colour in (("fgsm", "FGSM (one step)", "tab:orange"),
                                  ("pgd", f"PGD ({report.options.pgd_steps} steps, random start)", "tab:red")):
        results = [report.clean, *(report.result(attack, e) for e in report.options.epsilons)]
        top1 = np.array([100 * r.top1 for r in results])
        low, high = (np.array([100 * r.interval[i] for r in results]) for i in (0, 1))
        ax.plot(epsilons, top1, "o-", color=colour, label=label)
        ax.fill_between(epsilons, low, high, color=colour, alpha=0.15, lw=0)
        for e, t in zip(epsilons[1:], top1[1:]):
            ax.annotate(f"{t:.0f}%", (e, t), textcoords="offset points", xytext=(6, 4 if attack == "fgsm" else -12),
                        fontsize=9, color=colour)
    ax.annotate(f"clean {100 * report.clean.top1:.1f}%", (0, 100 * report.clean.top1), textcoords="offset points",
                xytext=(6, 6), fontsize=9)
    ax.set_xticks(epsilons, [f"{e:g}" for e in epsilons])
    ax.set_xlim(-0.3, epsilons[-1] + 0.5)
    ax.set(xlabel="eps: largest change of any pixel, grey levels of 0-255 (L-infinity)",
           ylabel="validation top-1 (%), 95% interval shaded", ylim=(-2, 102))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
