"""Multinomial logistic regression with L2, in NumPy: the new head `edgerec teach` fits on features.

Full-batch Nesterov-accelerated gradient descent on standardized features with the step 1/L, where L
bounds the curvature of the loss (half the largest eigenvalue of the features' second-moment matrix, plus
the L2 weight). No randomness: the same features give the same head on the same machine.

The matrix products run on one BLAS thread (threadpoolctl): they are small (N x D times D x C), and a
multi-threaded BLAS spent 10x the CPU time on them here while other processes shared the cores (AMD EPYC
Zen 2, load average 12: 300 gradient steps of 480 x 1281 features took 2.17 s CPU on OpenBLAS's threads,
0.19 s on one) -- on a device the frame loop is such a process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits


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
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(features, labels, classes, options or FitOptions())


def _fit(features: np.ndarray, labels: np.ndarray, classes: int, options: FitOptions) -> LinearHead:
    if classes == 1:  # one label: its probability is 1 whatever the weights (an anomaly model says `unknown`)
        zeros = np.zeros((features.shape[1], 1), np.float32)
        return LinearHead(zeros, np.zeros(1, np.float32), 0.0, 1.0)
    x = features.astype(np.float32)
    mean = x.mean(0)
    std = x.std(0)
    std[std < 1e-6] = 1.0  # constant features (e.g. a channel that is zero after ReLU6 everywhere)
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1), np.float32)])  # the last column carries the bias
    z_t = np.ascontiguousarray(z.T)
    target = np.eye(classes, dtype=np.float32)[labels]
    penalty = np.full((z.shape[1], 1), options.l2, np.float32)
    penalty[-1] = 0.0
    step = 1.0 / (0.5 * 1.05 * _largest_eigenvalue(z, z_t) + options.l2)  # 5% margin on the estimate
    w = previous = np.zeros((z.shape[1], classes), np.float32)
    for t in range(options.steps):
        look = w + (t / (t + 3)) * (w - previous)
        gradient = z_t @ (_softmax(z @ look) - target) / len(z) + penalty * look
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


def _largest_eigenvalue(z: np.ndarray, z_t: np.ndarray, iterations: int = 50) -> float:
    """Of z^T z / n, by power iteration from a fixed start."""
    v = np.ones(z.shape[1], np.float32) / np.sqrt(z.shape[1])
    value = 0.0
    for _ in range(iterations):
        u = z_t @ (z @ v) / len(z)
        value = float(np.linalg.norm(u))
        v = u / max(value, 1e-12)
    return value
