"""Multinomial logistic regression with L2, in NumPy: the new head `edgerec teach` fits on features.

Full-batch Nesterov-accelerated gradient descent on standardized features with the step 1/L, where L
bounds the curvature of the loss (half the largest eigenvalue of the features' second-moment matrix, plus
the L2 weight). No randomness: the same features give the same head on the same machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FitOptions:
    l2: float = 0.1  # weight of 0.5 * l2 * |W|^2 on the standardized features (the bias is not penalised)
    steps: int = 300


@dataclass(frozen=True)
class LinearHead:
    """logits = features @ weight + bias, on the raw features (the standardization is folded in)."""

    weight: np.ndarray  # float32 [D, C]
    bias: np.ndarray  # float32 [C]
    loss: float  # mean cross-entropy on the training rows at the end (without the L2 term)
    train_top1: float


def fit_softmax_regression(features: np.ndarray, labels: np.ndarray, classes: int,
                           options: FitOptions | None = None) -> LinearHead:
    """Fit C-class softmax regression to float [N, D] `features` and int `labels` in [0, C)."""
    options = options or FitOptions()
    x = features.astype(np.float32)
    mean = x.mean(0)
    std = x.std(0)
    std[std < 1e-6] = 1.0  # constant features (e.g. a channel that is zero after ReLU6 everywhere)
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1), np.float32)])  # the last column carries the bias
    target = np.eye(classes, dtype=np.float32)[labels]
    penalty = np.full((z.shape[1], 1), options.l2, np.float32)
    penalty[-1] = 0.0
    step = 1.0 / (0.5 * 1.05 * _largest_eigenvalue(z) + options.l2)  # 5% margin on the estimate
    w = previous = np.zeros((z.shape[1], classes), np.float32)
    for t in range(options.steps):
        look = w + (t / (t + 3)) * (w - previous)
        gradient = z.T @ (_softmax(z @ look) - target) / len(z) + penalty * look
        previous, w = w, look - step * gradient
    probs = _softmax(z @ w)
    loss = float(-np.log(np.maximum(probs[np.arange(len(z)), labels], 1e-12)).mean())
    weight = w[:-1] / std[:, None]
    bias = w[-1] - mean / std @ w[:-1]
    return LinearHead(weight.astype(np.float32), bias.astype(np.float32), loss,
                      float((probs.argmax(1) == labels).mean()))


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _largest_eigenvalue(z: np.ndarray, iterations: int = 50) -> float:
    """Of z^T z / n, by power iteration from a fixed start."""
    v = np.ones(z.shape[1], np.float32) / np.sqrt(z.shape[1])
    value = 0.0
    for _ in range(iterations):
        u = z.T @ (z @ v) / len(z)
        value = float(np.linalg.norm(u))
        v = u / max(value, 1e-12)
    return value
