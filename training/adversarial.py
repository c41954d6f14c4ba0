"""How brittle the trained network is: validation top-1 under FGSM and PGD, the textbook worst-case attacks.

An attacker who has the model file and writes the pixels (not a camera's noise: docs/robustness.md) moves
every pixel by at most ``eps`` grey levels (L-infinity, the 0-255 range of the uint8 image the network takes)
in the direction that raises the loss most:

* **FGSM** (Goodfellow et al., 2015): one step of ``eps`` along the sign of the loss gradient.
* **PGD** (Madry et al., 2018): a random start in the ``eps`` box, then ``PGD_STEPS`` steps of ``eps/4``
  along the gradient's sign, projected back into the box (and into 0-255) after each.

The attack runs on the FP32 torch network with its in-graph preprocessing (training.models.InGraphPreprocess),
fed the uint8 pixels as floats so that the gradient reaches the pixels the camera delivers. The images are
the validation images as the runtime sees them (edge.core.preprocess.fit).

**Every adversarial image is a valid camera image**: rounded to whole grey levels and clipped to 0-255,
because the deployed file takes uint8 and a perturbation below one grey level cannot reach it. FGSM's
step is a whole number of grey levels already (eps is an integer), so rounding does not change it. PGD
keeps its float iterate (steps of eps/4 are fractions of a grey level) but takes each gradient at the
*rounded* image and stops on an image as soon as that rounded image is misclassified: what it counts as
fooled is always a uint8 image within eps that the network gets wrong, and the early stop saves the
remaining steps on brittle images. Rounding cannot leave the box: the clean pixels are whole numbers and
eps is a whole number of grey levels.

Deterministic on a CPU: the random start is drawn from a generator seeded with ``AttackOptions.seed``, the
images are attacked in a fixed order and batch size, and a cap picks the same images every time. It runs
where the network's weights are (training's device); a GPU's kernels need not repeat bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge.errors import EdgerecError
from edge.tools.evaluate import top1_interval
from training.models import InGraphPreprocess

EPSILONS = (1, 2, 4)  # grey levels of 0-255: 1/255, 2/255 and 4/255 of the pixel range
PGD_STEPS = 10
PGD_STEP_FRACTION = 0.25  # PGD's step, a share of eps
ATTACKS = ("fgsm", "pgd")


@dataclass(frozen=True)
class AttackOptions:
    epsilons: tuple[float, ...] = EPSILONS  # whole grey levels (0 = no perturbation)
    pgd_steps: int = PGD_STEPS
    step_fraction: float = PGD_STEP_FRACTION
    images: int | None = None  # attack at most this many validation images (a seeded, class-balanced pick)
    batch_size: int = 16
    seed: int = 0


@dataclass(frozen=True)
class AttackResult:
    attack: str  # clean | fgsm | pgd
    eps: float  # grey levels
    correct: int
    n: int

    @property
    def top1(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return top1_interval(self.top1, self.n)


@dataclass(frozen=True)
class AdversarialReport:
    options: AttackOptions
    images: int  # attacked
    of: int  # validation images in all
    clean: AttackResult
    results: tuple[AttackResult, ...]  # fgsm at each eps, then pgd at each eps
    seconds: float

    def result(self, attack: str, eps: float) -> AttackResult:
        return next(r for r in self.results if r.attack == attack and r.eps == eps)

    def metrics(self) -> dict[str, object]:
        """Flat keys for metrics.json: adv_clean_top1, adv_fgsm_eps1_top1, adv_pgd_eps4_interval95, ..."""
        flat: dict[str, object] = {"adv_clean_top1": self.clean.top1,
                                   "adv_clean_interval95": list(self.clean.interval)}
        for r in self.results:
            flat[f"adv_{r.attack}_eps{r.eps:g}_top1"] = r.top1
            flat[f"adv_{r.attack}_eps{r.eps:g}_interval95"] = list(r.interval)
        o = self.options
        flat["adversarial"] = {"images": self.images, "validation_images": self.of, "epsilons_grey_levels":
                               list(o.epsilons), "pgd_steps": o.pgd_steps, "pgd_step": f"eps*{o.step_fraction:g}",
                               "pgd_random_start": True, "seed": o.seed, "norm": "L-infinity",
                               "pixels": "rounded to whole grey levels, clipped to 0-255 (uint8, as a camera gives)",
                               "network": "FP32 torch, in-graph preprocessing", "seconds": self.seconds}
        return flat


def adversarial_check(net: nn.Module, images: np.ndarray, labels: np.ndarray,
                      options: AttackOptions | None = None) -> AdversarialReport:
    """Top-1 of ``net`` (float NCHW normalised input, logits out) on uint8 NHWC BGR ``images`` (fitted as the
    runtime fits them), clean and under FGSM and PGD at each eps."""
    o = options or AttackOptions()
    if any(e < 0 or e != int(e) for e in o.epsilons):
        raise EdgerecError(f"adversarial epsilons are whole grey levels (0, 1, 2, ...), got {o.epsilons}")
    start = time.perf_counter()
    chosen = pick(labels, o.images, o.seed)
    x_all = torch.from_numpy(images[chosen])
    y_all = torch.from_numpy(np.asarray(labels)[chosen]).long()
    device = next(net.parameters()).device
    model = _Attacked(net).to(device).eval()
    generator = torch.Generator().manual_seed(o.seed)
    counts: dict[tuple[str, float], int] = {}
    for x, y in zip(x_all.split(o.batch_size), y_all.split(o.batch_size)):
        x, y = x.to(device).float(), y.to(device)
        _count(counts, ("clean", 0.0), model, x, y)
        for eps in o.epsilons:
            _count(counts, ("fgsm", eps), model, fgsm(model, x, y, eps), y)
        for eps in o.epsilons:
            _count(counts, ("pgd", eps), model, pgd(model, x, y, eps, o.pgd_steps, o.step_fraction * eps,
                                                       generator), y)
    n = len(chosen)
    results = tuple(AttackResult(a, float(e), counts.get((a, float(e)), 0), n) for a in ATTACKS for e in o.epsilons)
    return AdversarialReport(o, n, len(labels), AttackResult("clean", 0.0, counts.get(("clean", 0.0), 0), n), results,
                             time.perf_counter() - start)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """One step of ``eps`` grey levels along the sign of the loss gradient; whole grey levels in 0-255."""
    return _valid(x + eps * _gradient(model, x, y).sign(), x, eps)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step: float,
        generator: torch.Generator) -> torch.Tensor:
    """Random start, ``steps`` signed-gradient steps of ``step`` projected into the eps box; each image stops at
    the first rounded iterate the model gets wrong (module docstring). Returns whole grey levels in 0-255."""
    start = (torch.rand(x.shape, generator=generator).to(x.device) * 2 - 1) * eps  # the same draw on any device
    current = _project(x + start, x, eps)
    done = _valid(current, x, eps)
    active = torch.arange(len(x), device=x.device)
    for _ in range(steps):
        rounded = _valid(current[active], x[active], eps)
        logits, gradient = _logits_and_gradient(model, rounded, y[active])
        fooled = logits.argmax(1) != y[active]
        done[active[fooled]] = rounded[fooled]
        keep = ~fooled
        active, gradient = active[keep], gradient[keep]
        if not len(active):
            break
        current[active] = _project(current[active] + step * gradient.sign(), x[active], eps)
    done[active] = _valid(current[active], x[active], eps)
    return done


def pick(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of up to n images, as even across classes as the labels allow, seeded; all (in order) when
    n is None or not smaller than the set."""
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    chosen: list[int] = []
    while len(chosen) < n:
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(int(queue.pop()))
    return np.sort(np.array(chosen, dtype=np.int64))


class _Attacked(nn.Module):
    """float NHWC BGR pixels in 0-255 -> logits: the deployed network without its softmax."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.preprocess = InGraphPreprocess()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(pixels))


def _count(counts: dict[tuple[str, float], int], key: tuple[str, float], model: nn.Module, x: torch.Tensor,
           y: torch.Tensor) -> None:
    with torch.no_grad():
        right = int((model(x).argmax(1) == y).sum())
    key = (key[0], float(key[1]))
    counts[key] = counts.get(key, 0) + right


def _logits_and_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at x and the gradient of the summed cross-entropy w.r.t. x (the weights get none)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        (gradient,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
    return logits.detach(), gradient


def _gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _logits_and_gradient(model, x, y)[1]


def _project(candidate: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Into the L-infinity box of eps around x, and into 0-255."""
    return torch.minimum(torch.maximum(candidate, x - eps), x + eps).clamp(0, 255)


def _valid(candidate: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Whole grey levels within the box: what a uint8 camera frame can hold."""
    return _project(candidate.round(), x, eps)

