"""Fine-tune EfficientNet-Lite on a folder of images and write one self-describing ONNX file.

What `edgerec train DATA --out OUT` runs, in the order it runs:

1. data     scan the folders (unreadable files skipped with one warning, too-small classes refused), split
2. cache    run the frozen prefix (preprocessing, stem, the first blocks) once over every training image,
            its mirror image and any augmented views, and over the validation images (training.features)
3. stage 1  a new linear head on the pooled features of the frozen network
4. stage 2  the last `finetune_blocks` blocks and the head, trained on the cached activations at a lower
            learning rate; skipped with finetune_blocks=0 or when it would not fit `time_limit`
5. export   OUT/model-fp32.onnx with full metadata; INT8 calibrated on training images; both measured on
            the validation images with ONNX Runtime; the gate picks OUT/model.onnx (training.gate)
5b. unknown each file's own features of the training photos as reference features, with a leave-one-out
            threshold keeping `unknown_kept` of them (edge.core.novelty), in each file
6. robust   clean top-1 and mean corruption accuracy of model-fp32.onnx and model-int8.onnx on up to
            `robustness_images` validation images under the camera corruptions of `edgerec evaluate
            --robustness` (edge.tools.robustness), stored in both files' metrics (so in model.onnx's too)
7. attack   validation top-1 of the FP32 network under FGSM and PGD at 1, 2, 4 grey levels
            (training.adversarial): how brittle the model is
8. report   OUT/report/: training curves, confusion matrix, robustness and adversarial figures, metrics.json
            (training.report)

Both stages use AdamW, linear warm-up then cosine decay, label smoothing, early stopping on validation
top-1 (ties broken by validation loss); the best epoch's weights are kept. OUT/checkpoint.pt is rewritten
after an epoch when the last write is `checkpoint_every` seconds old, and at the end of each stage;
`resume=True` continues from it.

Started by torchrun, every process runs this same code (training.distributed): each caches its share of
the images, DistributedDataParallel averages the gradients, and rank 0 alone writes files.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from edge.core.metadata import ModelInfo
from edge.core.model import Model
from edge.core.novelty import DEFAULT_TARGET_KEPT, build_novelty, nudged, nudged_choice
from edge.core.preprocess import Geometry, fit
from edge.errors import EdgerecError
from edge.files import atomic_path
from edge.progress import progress
from edge.tools.evaluate import ImageList, top1_interval
from edge.tools.robustness import RobustnessOptions, RobustnessReport, compare, summaries
from edge.tools.robustness import load_models as load_robustness_models
from edge.tools.robustness import metrics as robustness_metrics
from edge.tools.robustness import write_report as write_robustness
from training import distributed
from training.adversarial import AdversarialReport, AttackOptions, adversarial_check
from training.data import Augment, DataOptions, ImageFolders, Sample, load_image_folders, load_images
from training.distributed import World
from training.export import add_metrics, add_novelty, export_onnx
from training.features import CachedActivations, CacheOptions, cache_activations, native_bf16
from training.gate import (
    AGREEMENT_FLOOR,
    PAIRED_PREDICTIONS,
    RECIPES,
    Attempt,
    GateOptions,
    GateReport,
    deliver,
    gate_int8,
)
from training.models import CROP, EfficientNetLite, InGraphPreprocess, create_model, get_arch
from training.qat import QatOptions, QatResult, qat_finetune
from training.report import confusion_matrix, plot_adversarial, plot_confusion, plot_curves, write_metrics

CHECKPOINT_VERSION = 1
# Seconds between checkpoint writes within a stage (and one at each stage's end): a checkpoint holds the network
# twice (now and best) and the optimizer's moments, about 50 MB for EfficientNet-Lite0, and writing it after
# each of the 20 short epochs of ~200 photos took 1.9-4.1 s of a 90 s run here (docs/training.md); on a board's
# SD card far more. An interrupted run loses at most this much training.
CHECKPOINT_EVERY = 30.0
# The trained blocks' batch norms learn the new data's statistics at PyTorch's default rate rather than the
# network's own 0.01 (TensorFlow's 0.99), so the statistics used for evaluation catch up within an epoch:
# on Fashion-MNIST (128 px, 6 epochs) validation top-1 after epoch 1 was 85.2% against 83.1% with 0.01 and
# 82.3% with the statistics frozen (docs/training.md).
FINETUNE_BN_MOMENTUM = 0.1
AUGMENTS = ("camera", "standard")
# --augment camera (the default kind of augmented views; with augmented_views=0 there are none to corrupt):
# the share of the augmented views that also get a camera corruption. Default since it raised the mean
# corruption accuracy without costing clean top-1 (scripts/bench/bench_augment.py, docs/robustness.md).
CAMERA_VIEWS = 0.5
# The two reports are kept cheap by default so that `edgerec train` stays quick (issue 22: on ~200 photos they
# took 94 of 141 s at 32 and 64 images); more images on request narrow their intervals (docs/training.md).
# Validation images the adversarial check attacks by default (docs/robustness.md): about 0.8 s each on a Zen 5.
ADVERSARIAL_IMAGES = 8
# Validation images the robustness stage measures by default: each costs 55 corruptions of the full photo and
# 2 x 56 inferences, about 7 s CPU for a 1920x1080 photo at 224 px on an AMD EPYC Zen 2 (docs/training.md)
ROBUSTNESS_IMAGES = 8
# Bytes of fitted images the cache stage keeps for the stages after training (calibration, paired predictions,
# novelty), which otherwise decode the same photos again: 1,700 photos at 224 px. On ~200 photos of mixed sizes
# all decoding in `edgerec train` took 2.2 s before, 0.6 s after (the cache stage's own; 2 Zen 3 cores).
KEPT_FITTED_BYTES = 256 * 2**20


@dataclass(frozen=True)
class TrainOptions:
    """Everything `edgerec train` can be told; the defaults are what it does when told nothing."""

    data_dir: Path  # one subfolder of images per class
    out_dir: Path  # model.onnx, model-fp32.onnx, model-int8.onnx, checkpoint.pt, report/
    val_dir: Path | None = None  # same class subfolders; None = hold out val_fraction of data_dir
    val_fraction: float = 0.2
    arch: str = "efficientnet_lite0"
    img_size: int = 224  # network input side in pixels, a multiple of 32
    crop: float = CROP  # centre crop (edge.core.preprocess.Geometry) at training and at run time; 1.0 = whole image
    finetune_blocks: int = 5  # stage 2 trains the last N blocks (0 = head only: stage 1 alone)
    head_epochs: int = 30  # stage 1 (cheap: a linear layer on cached features)
    epochs: int = 8  # stage 2
    batch_size: int = 64
    lr: float = 5e-3  # stage 1 peak learning rate
    finetune_lr: float = 2e-3  # stage 2 peak learning rate
    warmup_epochs: float = 0.5  # linear warm-up to the peak, then cosine decay to zero
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    patience: int = 3  # stop a stage after this many epochs without a better validation score
    mirror: bool = True  # also cache the mirror image of every training image
    augmented_views: int = 0  # extra random views (crop, flip, colour, rotation) cached per training image
    augment: str = "camera"  # the augmented views' kind: camera (half also get a camera corruption), or standard
    seed: int = 0  # split, augmentation, head initialisation and batch order
    min_int8_agreement: float = AGREEMENT_FLOOR  # INT8 kept when its agreement with FP32 is at least this (95% low)
    int8_pairs: int = PAIRED_PREDICTIONS  # paired FP32/INT8 predictions the gate compares (training.gate)
    qat_images: int = 0  # training images for a quantization-aware fine-tune when every INT8 recipe is refused
    qat_epochs: float = 1.0  # its passes over them (each image and its mirror image)
    calibration_images: int = 200  # training images the INT8 calibration sees (twice that for the retries)
    adversarial_images: int = ADVERSARIAL_IMAGES  # validation images attacked with FGSM and PGD (0 = no attack)
    robustness_images: int = ROBUSTNESS_IMAGES  # validation images run under the camera corruptions (0 = none)
    unknown_kept: float | None = DEFAULT_TARGET_KEPT  # novelty threshold keeps this share of training photos;
    # None: no unknown detection stored (edge.core.novelty)
    time_limit: float | None = None  # minutes for data, caching and training; stage 2 epochs are cut to fit
    resume: bool = False  # continue from out_dir/checkpoint.pt
    checkpoint_every: float = CHECKPOINT_EVERY  # seconds between checkpoint writes within a stage (0: every epoch)
    workers: int | None = None  # image decoding threads (default: one per core)
    progress: bool = False  # tqdm bars on stderr (rank 0 only)


@dataclass(frozen=True)
class StageResult:
    name: str  # head | finetune
    epochs_run: int
    best_epoch: int  # 1-based, within the stage
    best_val_top1: float
    seconds: float
    stopped: str  # why it ended: "epochs", "early stop", "time limit", "skipped: ..."


@dataclass(frozen=True)
class TrainReport:
    """What a training run did and measured; the CLI prints it as a table."""

    out_dir: Path
    deliverable: Path
    gate: GateReport | None  # None on ranks other than 0
    classes: tuple[str, ...]
    train_counts: tuple[int, ...]
    val_counts: tuple[int, ...]
    data_warning: str | None  # unreadable files skipped
    imbalance: float  # largest / smallest class in the training split
    stages: tuple[StageResult, ...]
    seconds: dict[str, float]  # per phase, and "total"
    history: tuple[dict[str, Any], ...]  # one entry per epoch of both stages
    world_size: int
    rank: int
    adversarial: AdversarialReport | None = None  # None on ranks other than 0, or with adversarial_images=0
    robustness: tuple[RobustnessReport, ...] = ()  # FP32 and INT8 files' reports; () on ranks other than 0, or
    # with robustness_images=0

    @property
    def gate_passed(self) -> bool:
        return self.gate is not None and self.gate.passed


def train(options: TrainOptions, world: World | None = None) -> TrainReport:
    """Train, export, quantize and gate; see the module docstring for the steps. Rank 0 writes the files."""
    check_options(options)
    world = world or distributed.join()
    try:
        return Run(options, world).run()
    finally:
        distributed.leave(world)


def check_options(o: TrainOptions) -> None:
    """One-line errors for values that cannot work (the data's own checks come with the scan)."""
    arch = get_arch(o.arch)
    if o.img_size < 32 or o.img_size % 32:
        raise EdgerecError(f"img_size must be a positive multiple of 32 (the network halves it 5 times), "
                           f"got {o.img_size}; {arch.name} was trained at {arch.resolution}")
    blocks = len(EfficientNetLite(arch, 2, 0.0).blocks)
    if not 0 <= o.finetune_blocks < blocks:
        raise EdgerecError(f"finetune_blocks must be 0 (head only) to {blocks - 1} for {o.arch}, "
                           f"got {o.finetune_blocks}")
    positive = {"head_epochs": o.head_epochs, "batch_size": o.batch_size, "lr": o.lr, "finetune_lr": o.finetune_lr,
                "patience": o.patience, "calibration_images": o.calibration_images, "int8_pairs": o.int8_pairs}
    for name, value in positive.items():
        if value <= 0:
            raise EdgerecError(f"{name} must be positive, got {value}")
    non_negative = {"epochs": o.epochs, "warmup_epochs": o.warmup_epochs, "weight_decay": o.weight_decay,
                    "qat_images": o.qat_images, "qat_epochs": o.qat_epochs,
                    "augmented_views": o.augmented_views, "adversarial_images": o.adversarial_images,
                    "robustness_images": o.robustness_images}
    for name, value in non_negative.items():
        if value < 0:
            raise EdgerecError(f"{name} must be 0 or more, got {value}")
    if not 0 <= o.min_int8_agreement <= 1:
        raise EdgerecError(f"min_int8_agreement must be in [0, 1] (a share of paired predictions), "
                           f"got {o.min_int8_agreement}")
    if not 0 < o.crop <= 1:
        raise EdgerecError(f"crop must be in (0, 1] (1 = the whole image), got {o.crop}")
    if o.augment not in AUGMENTS:
        raise EdgerecError(f"augment must be one of {', '.join(AUGMENTS)}, got {o.augment!r}")
    if not 0 <= o.label_smoothing < 1:
        raise EdgerecError(f"label_smoothing must be in [0, 1), got {o.label_smoothing}")
    if not o.checkpoint_every >= 0:
        raise EdgerecError(f"checkpoint_every must be 0 or more seconds, got {o.checkpoint_every}")
    if o.time_limit is not None and o.time_limit <= 0:
        raise EdgerecError(f"time_limit must be a positive number of minutes, got {o.time_limit}")
    if o.resume and not (Path(o.out_dir) / "checkpoint.pt").is_file():
        raise EdgerecError(f"nothing to resume: {Path(o.out_dir) / 'checkpoint.pt'} does not exist")


class Run:
    """One training run. `run` reads top to bottom; the methods after it are its steps."""

    def __init__(self, options: TrainOptions, world: World):
        self.o = options
        self.world = world
        self.out = Path(options.out_dir)
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.bars = options.progress and world.is_main
        self.qat_result: QatResult | None = None
        self.kept: dict[Path, np.ndarray] = {}  # fitted images by path, from the cache stage (KEPT_FITTED_BYTES)

    def run(self) -> TrainReport:
        o, world = self.o, self.world
        # 1. data: every rank scans (cheap next to training) so that all agree on classes and split
        with self.phase("data"):
            val_dir = Path(o.val_dir) if o.val_dir is not None else None
            data = load_image_folders(DataOptions(Path(o.data_dir), val_dir, o.val_fraction, o.seed,
                                                  workers=o.workers, progress=self.bars))
            self.check_world(data)
        torch.manual_seed(o.seed)
        net = create_model(o.arch, len(data.classes), pretrained=True)
        cut = len(net.blocks) - o.finetune_blocks  # blocks [cut:] are trained in stage 2
        checkpoint = Checkpoint(self.out / "checkpoint.pt", self.checkpoint_meta(data), world)
        state = checkpoint.load(net) if o.resume else checkpoint.fresh()
        geometry = Geometry(o.img_size, o.img_size, o.crop)

        # 2. cache what the frozen part computes, once (nothing when resuming a finished run)
        if state["stage"] != "done":
            with self.phase("cache"):
                prefix = Prefix(net, cut if o.finetune_blocks else None)
                train_rows = self.cache(prefix, data.train, geometry, o.mirror, o.augmented_views)
                val_rows = self.cache(prefix, data.val, geometry, False, 0)
        suffix = Suffix(net, cut).to(world.device, memory_format=torch.channels_last)

        # 3. stage 1: the head on pooled features
        head = nn.Sequential(net.dropout, net.classifier).to(world.device)
        if state["stage"] == "head":
            with self.phase("head"):
                if o.finetune_blocks:  # the cache holds activations at block `cut`: pool them through the rest
                    train_features, forward_seconds = self.pooled(suffix, train_rows)
                    val_features, _ = self.pooled(suffix, val_rows)
                    state["finetune_epoch_estimate"] = 3 * forward_seconds / train_rows.views  # fwd + bwd ~ 3 fwd
                else:
                    train_features, val_features = train_rows, val_rows
                self.fit(Stage("head", head, train_features, val_features, o.head_epochs, o.lr), net, state,
                         checkpoint)
                del train_features, val_features

        # 4. stage 2: the last blocks and the head, on the cached activations
        if state["stage"] == "finetune":
            with self.phase("finetune"):
                epochs = self.finetune_epochs(state)
                if epochs:
                    self.fit(Stage("finetune", suffix, train_rows, val_rows, epochs, o.finetune_lr), net, state,
                             checkpoint)
                else:
                    self.skip_finetune(net, state, checkpoint)
        net.load_state_dict(state["best_model"])
        train_seconds = time.perf_counter() - self.start

        # 5 to 8: export, quantize, gate, corrupt, attack and report (rank 0); the others wait so that all leave
        # together
        gate = adversarial = None
        robustness: tuple[RobustnessReport, ...] = ()
        if world.is_main:
            with self.phase("export"):
                val_images = self.fitted_images(data.val, geometry)
                gate = self.export(net.cpu(), data, geometry, val_images, state, train_seconds)
            if o.unknown_kept is not None:
                with self.phase("novelty"):
                    self.novelty(data, gate, geometry)
            if o.robustness_images:
                with self.phase("robustness"):
                    robustness = self.robustness(data, gate)
            if o.adversarial_images:
                with self.phase("attack"):
                    labels = np.array([s.label for s in data.val])
                    adversarial = adversarial_check(net.to(world.device), val_images, labels,
                                                    AttackOptions(images=o.adversarial_images, seed=o.seed))
            with self.phase("report"):
                self.write_report(data, state, gate, adversarial, robustness)
        distributed.barrier(world)
        self.seconds["total"] = time.perf_counter() - self.start
        return TrainReport(self.out, self.out / "model.onnx", gate, data.classes, data.train_counts, data.val_counts,
                           data.warning, data.imbalance, tuple(StageResult(**s) for s in state["stages"]),
                           dict(self.seconds), tuple(state["history"]), world.size, world.rank, adversarial,
                           robustness)

    # -- 1. data -------------------------------------------------------------------------------------------

    def check_world(self, data: ImageFolders) -> None:
        if self.world.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        if min(len(data.train), len(data.val)) < self.world.size:
            raise EdgerecError(f"{self.world.size} training processes need at least as many training and "
                               f"validation images; found {len(data.train)} and {len(data.val)}")

    def checkpoint_meta(self, data: ImageFolders) -> dict[str, Any]:
        """What a checkpoint must match to be resumed: same data, classes and network shape."""
        return {"version": CHECKPOINT_VERSION, "fingerprint": data.fingerprint, "classes": list(data.classes),
                "arch": self.o.arch, "img_size": self.o.img_size, "crop": self.o.crop,
                "finetune_blocks": self.o.finetune_blocks,
                "seed": self.o.seed, "val_fraction": self.o.val_fraction}

    # -- 2. cache ------------------------------------------------------------------------------------------

    def cache(self, prefix: nn.Module, samples: tuple[Sample, ...], geometry: Geometry, mirror: bool,
              augmented: int) -> CachedActivations:
        """The prefix's output for every sample, view by view (fitted, mirrored, augmented). Each rank
        decodes and runs its share of the samples; every rank ends with all rows."""
        o, world = self.o, self.world
        mine = samples[world.shard(len(samples))]
        labels = [s.label for s in mine]
        options = CacheOptions(batch_size=o.batch_size, mirror=mirror, progress=self.bars)
        fitted = load_images(mine, geometry, workers=o.workers, progress=self.bars)
        self.keep(mine, fitted)
        parts = cache_activations(prefix, fitted, labels, options)
        views = list(parts.activations.chunk(parts.views))
        del fitted, parts
        for view in range(1, augmented + 1):  # view 0 is the fitted image, as at run time
            kind = Augment(camera=CAMERA_VIEWS if o.augment == "camera" else 0.0)
            images = load_images(mine, geometry, kind, o.seed, view, o.workers, self.bars)
            views.append(cache_activations(prefix, images, labels, replace(options, mirror=False)).activations)
        rows = [distributed.gather_rows(world, v, len(samples)) for v in views]
        activations = torch.cat(rows)
        if activations.dim() == 4:
            activations = activations.contiguous(memory_format=torch.channels_last)
        targets = torch.tensor([s.label for s in samples]).repeat(len(rows))
        return CachedActivations(activations, targets, len(rows))

    def keep(self, samples: Sequence[Sample], fitted: np.ndarray) -> None:
        """Keep `fitted` (the samples' images) for `fitted_images` when all of it fits KEPT_FITTED_BYTES."""
        if sum(image.nbytes for image in self.kept.values()) + fitted.nbytes <= KEPT_FITTED_BYTES:
            self.kept.update(zip((s.path for s in samples), fitted))

    def fitted_images(self, samples: Sequence[Sample], geometry: Geometry) -> np.ndarray:
        """uint8 [N, H, W, 3] fitted images of `samples`, as `load_images`: those the cache stage kept, the rest
        decoded again."""
        images = np.empty((len(samples), geometry.height, geometry.width, 3), np.uint8)
        missing = []
        for i, sample in enumerate(samples):
            kept = self.kept.get(sample.path)
            if kept is None:
                missing.append(i)
            else:
                images[i] = kept
        if missing:
            images[missing] = load_images([samples[i] for i in missing], geometry, workers=self.o.workers)
        return images

    # -- 3. stage 1 ----------------------------------------------------------------------------------------

    def pooled(self, suffix: Suffix, rows: CachedActivations) -> tuple[CachedActivations, float]:
        """The frozen rest of the network over cached activations: pooled features (and the seconds it took
        on this rank, which estimate a stage 2 epoch)."""
        start = time.perf_counter()
        shard = rows.activations[self.world.shard(len(rows.labels))]
        suffix.eval()
        with torch.no_grad(), self.autocast():
            parts = [suffix.features(x.to(self.world.device)).float().cpu()
                     for x in tqdm(shard.split(self.o.batch_size), desc="features", unit="batch",
                                   disable=not self.bars, leave=False)]
        seconds = (time.perf_counter() - start) * self.world.size
        features = distributed.gather_rows(self.world, torch.cat(parts), len(rows.labels))
        return CachedActivations(features, rows.labels, rows.views), seconds

    # -- both stages ---------------------------------------------------------------------------------------

    def fit(self, stage: Stage, net: EfficientNetLite, state: dict[str, Any], checkpoint: Checkpoint) -> None:
        """Train ``stage.model`` epoch by epoch from where ``state`` says; keep the best weights in state."""
        o, world = self.o, self.world
        params = [p for p in stage.model.parameters() if p.requires_grad]
        model = DistributedDataParallel(stage.model) if world.distributed else stage.model
        optimizer = torch.optim.AdamW(params, lr=stage.lr, weight_decay=o.weight_decay)
        if state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        steps = epoch_steps(stage.train.n_images // world.size, o.batch_size)
        planned = state.get("planned_epochs") or stage.epochs
        stage_start = time.perf_counter() - state.get("stage_seconds", 0.0)
        stopped = "epochs"
        epoch = state["epoch"]
        saved = time.perf_counter()
        while epoch < planned:
            epoch_start = time.perf_counter()
            torch.manual_seed(o.seed * 1000 + epoch)  # dropout and drop-path: the same again on resume
            stage.model.train()
            loss_sum = 0.0
            batches = islice(stage.train.epoch_batches(o.batch_size, o.seed, epoch, world.rank, world.size), steps)
            bar = tqdm(batches, total=steps, desc=f"{stage.name} {epoch + 1}/{planned}", unit="batch",
                       disable=not self.bars, leave=False)
            for step, (x, y) in enumerate(bar, start=epoch * steps):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, planned * steps, o.warmup_epochs * steps, stage.lr)
                with self.autocast():
                    loss = F.cross_entropy(model(x.to(world.device)), y.to(world.device),
                                           label_smoothing=o.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item()
                bar.set_postfix(loss=f"{loss_sum / (step - epoch * steps + 1):.3f}")
            train_loss = distributed.sum_all(world, [loss_sum / max(1, steps)])[0] / world.size
            val_top1, val_loss = self.evaluate(stage.model, stage.val)
            epoch += 1
            record = {"stage": stage.name, "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                      "val_top1": val_top1, "lr": optimizer.param_groups[0]["lr"],
                      "seconds": time.perf_counter() - epoch_start}
            state["history"].append(record)
            score = (val_top1, -val_loss)
            if state["best_score"] is None or score > tuple(state["best_score"]):  # the best of all stages
                state.update(best_score=score, best_stage=stage.name, best_model=_copy(net.state_dict()))
            if state["stage_best"] is None or score > tuple(state["stage_best"]):  # patience: this stage's best
                state.update(stage_best=score, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            planned, why = self.replan(planned, epoch, record["seconds"], state["bad_epochs"])
            stopped = why or stopped
            state.update(epoch=epoch, planned_epochs=planned, optimizer=optimizer.state_dict(),
                         stage_seconds=time.perf_counter() - stage_start)
            if world.is_main and epoch < planned and time.perf_counter() - saved >= o.checkpoint_every:
                checkpoint.save(net, state)
                saved = time.perf_counter()
        self.end_stage(stage.name, state, stopped, time.perf_counter() - stage_start)
        if world.is_main:
            checkpoint.save(net, state)

    def replan(self, planned: int, done: int, epoch_seconds: float, bad_epochs: int) -> tuple[int, str | None]:
        """Epochs this stage will run in all, decided by rank 0 (early stop, time limit)."""
        why = None
        if bad_epochs >= self.o.patience and done < planned:
            planned, why = done, "early stop"
        elif self.o.time_limit is not None:
            left = self.o.time_limit * 60 - (time.perf_counter() - self.start)
            fits = done + max(0, int(left // epoch_seconds))
            if fits < planned:
                planned, why = fits, "time limit"
        return distributed.agree(self.world, planned), why

    def end_stage(self, name: str, state: dict[str, Any], stopped: str, seconds: float) -> None:
        stage_history = [h for h in state["history"] if h["stage"] == name]
        best = max(stage_history, key=lambda h: (h["val_top1"], -h["val_loss"]))
        state["stages"].append(asdict(StageResult(name, len(stage_history), best["epoch"], best["val_top1"],
                                                  seconds, stopped)))
        # stage 2 starts from stage 1's best weights, and replaces them only if it does better
        self.next_stage(state, "finetune" if name == "head" and self.o.finetune_blocks else "done")

    @staticmethod
    def next_stage(state: dict[str, Any], stage: str) -> None:
        state.update(stage=stage, epoch=0, planned_epochs=None, optimizer=None, stage_seconds=0.0, stage_best=None,
                     bad_epochs=0)

    def evaluate(self, model: nn.Module, rows: CachedActivations) -> tuple[float, float]:
        """Validation top-1 and cross-entropy over all rows (each rank its share, summed)."""
        model.eval()
        shard = self.world.shard(len(rows.labels))
        x_all, y_all = rows.activations[shard], rows.labels[shard]
        correct = loss = 0.0
        with torch.no_grad(), self.autocast():
            for x, y in zip(x_all.split(256), y_all.split(256)):
                logits = model(x.to(self.world.device)).float()
                y = y.to(self.world.device)
                correct += float((logits.argmax(1) == y).sum())
                loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct, loss, n = distributed.sum_all(self.world, [correct, loss, float(len(y_all))])
        return correct / n, loss / n

    def autocast(self):
        """bf16 where the hardware computes it natively (AMX/AVX512-BF16 CPUs, recent GPUs); fp32 elsewhere,
        where emulated bf16 is many times slower."""
        device = self.world.device.type
        native = torch.cuda.is_bf16_supported() if device == "cuda" else native_bf16()
        return torch.autocast(device, dtype=torch.bfloat16) if native else nullcontext()

    # -- 4. stage 2 ----------------------------------------------------------------------------------------

    def finetune_epochs(self, state: dict[str, Any]) -> int:
        """Stage 2 epochs: the option, fewer when the time limit would not fit them (estimated from the
        time the pooled features took)."""
        if self.o.time_limit is None or state["epoch"] > 0:
            return self.o.epochs
        left = self.o.time_limit * 60 - (time.perf_counter() - self.start)
        estimate = state.get("finetune_epoch_estimate") or float("inf")
        return distributed.agree(self.world, min(self.o.epochs, max(0, int(left // estimate))))

    def skip_finetune(self, net: nn.Module, state: dict[str, Any], checkpoint: Checkpoint) -> None:
        reason = "skipped: epochs=0" if self.o.epochs == 0 else "skipped: would not fit the time limit"
        state["stages"].append(asdict(StageResult("finetune", 0, 0, 0.0, 0.0, reason)))
        self.next_stage(state, "done")
        if self.world.is_main:
            checkpoint.save(net, state)

    # -- 5. export, quantize, gate -------------------------------------------------------------------------

    def export(self, net: EfficientNetLite, data: ImageFolders, geometry: Geometry, val_images: np.ndarray,
               state: dict[str, Any], train_seconds: float) -> GateReport:
        o = self.o
        val_labels = np.array([s.label for s in data.val])
        training = {**self.training_settings(state, train_seconds), "data": data.metadata()}
        info = ModelInfo(labels=list(data.classes), input_size=(o.img_size, o.img_size), crop=o.crop, arch=o.arch,
                         precision="fp32", dataset=data.dataset_info(), training=training)
        fp32_path = self.out / "model-fp32.onnx"
        export_onnx(net, info, fp32_path, val_images[:16])
        calibrating = calibration_samples(data.train, 2 * o.calibration_images, o.seed)
        calibration = self.fitted_images(calibrating, geometry)
        extra = paired_samples(data.train, calibrating, o.int8_pairs - len(data.val))
        paired = self.fitted_images(extra, geometry) if extra else None
        tuning = qat_samples(data.train, extra, o.qat_images)

        def qat() -> Path:  # the fine-tuned float file, quantized by the gate's last recipe
            images = self.fitted_images(tuning, geometry)
            tune = QatOptions(o.qat_epochs, batch_size=min(32, o.batch_size), seed=o.seed)
            folded, self.qat_result = qat_finetune(net, images, calibration[:o.calibration_images], tune)
            path = self.out / ".model-qat-fp32.onnx"
            export_onnx(folded, info, path, val_images[:16])
            return path

        with tqdm(desc="int8 gate", total=len(RECIPES) + bool(tuning), unit="recipe", disable=not self.bars,
                  leave=False) as bar:
            def show(attempt: Attempt) -> None:
                bar.set_postfix(recipe=attempt.recipe, agreement=f"{100 * attempt.agreement:.1f}%")
                bar.update()

            return gate_int8(fp32_path, calibration, val_images, val_labels, paired,
                             np.array([s.label for s in extra]), GateOptions(o.min_int8_agreement, paired=o.int8_pairs),
                             show, qat if tuning else None)

    # -- 5b. unknown -----------------------------------------------------------------------------------------

    def novelty(self, data: ImageFolders, gate: GateReport, geometry: Geometry) -> None:
        """Each file's own features of the training photos, as reference features with a leave-one-out
        threshold (edge.core.novelty; also calibrated on the nudged view of a few photos, as teach does), stored
        in the file; model.onnx copied again."""
        images = self.fitted_images(data.train, geometry)
        labels = np.array([s.label for s in data.train])
        chosen = nudged_choice(len(images), self.o.seed)
        moved = np.stack([fit(nudged(images[i], int(i)), geometry) for i in chosen]) if len(chosen) else images[:0]
        for path in (gate.fp32_path, gate.int8_path):
            model = Model.load(path, device="cpu")
            features = np.concatenate([model.features(images[i:i + 32])[1] for i in range(0, len(images), 32)])
            views = model.features(moved)[1] if len(moved) else None
            add_novelty(path, build_novelty(features, labels, target_kept=self.o.unknown_kept, nudged=views,
                                            nudged_photos=chosen))
        deliver(gate)

    # -- 6. robustness -------------------------------------------------------------------------------------

    def robustness(self, data: ImageFolders, gate: GateReport) -> tuple[RobustnessReport, ...]:
        """Both files under every camera corruption on up to `robustness_images` validation images (a seeded
        subset, even across classes, in the validation listing's order); the numbers go into each file's
        metrics, and the deliverable is copied to model.onnx again."""
        o = self.o
        chosen = sorted(calibration_samples(data.val, o.robustness_images, o.seed), key=lambda s: s.relpath)
        images = ImageList(f"{len(chosen)} of {len(data.val)} validation images", list(data.classes),
                           [(s.path, s.label) for s in chosen])
        models, workers = load_robustness_models((gate.fp32_path, gate.int8_path), int32_sums=True)
        options = RobustnessOptions(seed=o.seed, workers=o.workers or workers)
        with progress("robustness") if self.bars else nullcontext() as show:
            reports = tuple(compare(models, images, replace(options, on_progress=show)))
        add_metrics(gate.fp32_path, robustness_metrics(reports[0]))
        add_metrics(gate.int8_path, robustness_metrics(reports[1], int32_sums=True))
        deliver(gate)
        return reports

    def training_settings(self, state: dict[str, Any], seconds: float) -> dict[str, Any]:
        o = self.o
        keep = ("finetune_blocks", "head_epochs", "epochs", "batch_size", "lr", "finetune_lr", "warmup_epochs",
                "weight_decay", "label_smoothing", "patience", "mirror", "augmented_views", "augment", "seed",
                "min_int8_agreement", "int8_pairs", "qat_images", "qat_epochs", "calibration_images", "time_limit",
                "robustness_images")
        return {**{k: getattr(o, k) for k in keep}, "optimizer": "AdamW", "schedule": "warm-up + cosine",
                "stages": state["stages"], "processes": self.world.size, "seconds": round(seconds, 1),
                "torch": torch.__version__, "bf16": native_bf16()}

    # -- 8. report -----------------------------------------------------------------------------------------

    def write_report(self, data: ImageFolders, state: dict[str, Any], gate: GateReport,
                     adversarial: AdversarialReport | None, robustness: tuple[RobustnessReport, ...]) -> None:
        folder = self.out / "report"
        folder.mkdir(exist_ok=True)
        truth = np.array([s.label for s in data.val])
        counts = confusion_matrix(truth, gate.predictions, len(data.classes))
        data_dir = Path(self.o.data_dir).resolve()
        name = f"{data_dir.parent.name}/{data_dir.name}" if data_dir.name in ("train", "training") else data_dir.name
        plot_curves(folder / "curves.png", state["history"], f"{self.o.arch} on {name}: "
                    f"{len(data.train)} training, {len(data.val)} validation images")
        plot_confusion(folder / "confusion.png", counts, data.classes,
                       f"{gate.deliverable.name} ({gate.precision.upper()}) on {len(truth)} validation images: "
                       f"top-1 {100 * (counts.trace() / counts.sum()):.1f}%")
        if adversarial:
            plot_adversarial(folder / "adversarial.png", adversarial, f"FP32 {self.o.arch} on {name}: "
                             f"{adversarial.images} of {adversarial.of} validation images under attack")
        if robustness:
            write_robustness(robustness, folder)
        write_metrics(folder / "metrics.json", {
            "val_top1_fp32": gate.fp32_top1, "val_top1_int8": gate.int8_top1, "int8_drop_points": gate.drop,
            "val_top1_int8_training_cpu": gate.int8_cpu_top1,
            "val_top1_interval95": list(top1_interval(gate.top1, len(truth))),
            "gate_passed": gate.passed, "deliverable": str(gate.deliverable), "deliverable_precision": gate.precision,
            "int8_gate": gate_summary(gate), "qat": asdict(self.qat_result) if self.qat_result else None,
            "quantization_attempts": [attempt_summary(a) for a in gate.attempts],
            "classes": list(data.classes), "train_counts": list(data.train_counts),
            "val_counts": list(data.val_counts), "confusion": counts.tolist(), "stages": state["stages"],
            "history": state["history"], "seconds": self.seconds, "options": asdict(self.o),
            "fingerprint": data.fingerprint, "unreadable_skipped": [str(u.path) for u in data.unreadable],
            **(adversarial.metrics() if adversarial else {}),
            "robustness": robustness_summary(gate, robustness)})

    def phase(self, name: str) -> _Phase:
        return _Phase(self.seconds, name)


@dataclass
class Stage:
    """One stage of training: a model over cached rows, and how long and fast to train it."""

    name: str
    model: nn.Module  # cached rows -> logits; shares its parameters with the whole network
    train: CachedActivations
    val: CachedActivations
    epochs: int
    lr: float


class Prefix(nn.Module):
    """uint8 NHWC BGR images -> activations before block ``cut`` (None: pooled features of the whole net)."""

    def __init__(self, net: EfficientNetLite, cut: int | None):
        super().__init__()
        self.preprocess = InGraphPreprocess()
        self.net = net
        self.cut = cut

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(self.preprocess(image), 0, self.cut)


class Suffix(nn.Module):
    """Activations before block ``cut`` -> logits: the part stage 2 trains (it shares the net's modules)."""

    def __init__(self, net: EfficientNetLite, cut: int):
        super().__init__()
        self.blocks = nn.Sequential(*net.blocks[cut:])
        self.head, self.pool, self.dropout, self.classifier = net.head, net.pool, net.dropout, net.classifier
        for module in self.modules():  # see FINETUNE_BN_MOMENTUM
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = FINETUNE_BN_MOMENTUM

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.head(self.blocks(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


def epoch_steps(rows: int, batch_size: int) -> int:
    """Batches per epoch: a last batch smaller than half the others is left out (the batch norms'
    statistics of a handful of images are noise); the order changes every epoch, so no image is left out
    for good. A single small batch is kept."""
    full, rest = divmod(rows, batch_size)
    return full + int(2 * rest >= batch_size or (full == 0 and rest > 0))


def learning_rate(step: int, total: int, warmup: float, peak: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1.0, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def paired_samples(samples: tuple[Sample, ...], calibrating: list[Sample], n: int) -> list[Sample]:
    """Up to n training samples for the INT8 gate's paired predictions: those the calibration did not see
    first (its ranges were fitted on the others), in the data's order."""
    chosen = set(calibrating)
    ordered = [s for s in samples if s not in chosen] + [s for s in samples if s in chosen]
    return ordered[:max(0, n)]


def qat_samples(samples: tuple[Sample, ...], paired: list[Sample], n: int) -> list[Sample]:
    """Up to n training samples for the quantization-aware fine-tune: none the gate compares on (the fine-tune
    learns FP32's answers on its images, so agreement there would flatter it), spread over the classes."""
    compared = set(paired)
    return calibration_samples(tuple(s for s in samples if s not in compared), n, seed=0) if n > 0 else []


def robustness_summary(gate: GateReport, reports: tuple[RobustnessReport, ...]) -> dict[str, Any] | None:
    """The stored robustness figures of each file (and of model.onnx, the deliverable), with the full tables,
    for metrics.json; None when the stage did not run."""
    if not reports:
        return None
    fp32, int8 = (robustness_metrics(r) for r in reports)
    return {"model-fp32.onnx": fp32, "model-int8.onnx": int8, "model.onnx": int8 if gate.passed else fp32,
            "tables": summaries(reports)}


def gate_summary(gate: GateReport) -> dict[str, Any]:
    """The gate's decision and its numbers, for metrics.json."""
    evidence = gate.evidence
    return {"precision": gate.precision, "refused_because": gate.reason,
            "recipe": gate.best_attempt.recipe if gate.attempts else None,
            "min_agreement": gate.options.min_agreement, "mcnemar_alpha": gate.options.alpha,
            **(evidence.as_dict() if evidence else {}),
            "fp32_ms_this_cpu": gate.fp32_ms, "int8_ms_this_cpu": gate.int8_ms, "speedup_this_cpu": gate.speedup}


def attempt_summary(attempt: Attempt) -> dict[str, Any]:
    return {"recipe": attempt.recipe, "calibration_images": attempt.calibration_images,
            "val_top1": attempt.val_top1, "cpu_top1": attempt.cpu_top1, "refused_because": attempt.refused,
            "seconds": attempt.seconds, **attempt.evidence.as_dict()}


def calibration_samples(samples: tuple[Sample, ...], n: int, seed: int) -> list[Sample]:
    """Up to n training samples, as even across classes as the data allow, in a seeded order."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample.label, []).append(sample)
    queues = [iter(rng.permutation(len(members)).tolist()) for members in by_class.values()]
    chosen: list[Sample] = []
    while len(chosen) < min(n, len(samples)):
        for members, queue in zip(by_class.values(), queues):
            index = next(queue, None)
            if index is not None and len(chosen) < n:
                chosen.append(members[index])
    return chosen


def _copy(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}


class Checkpoint:
    """OUT/checkpoint.pt: the network now and at its best epoch, the optimizer, and where training is.
    Written atomically by rank 0 (``TrainOptions.checkpoint_every``); read by every rank to resume."""

    def __init__(self, path: Path, meta: dict[str, Any], world: World):
        self.path = path
        self.meta = meta
        self.world = world

    def fresh(self) -> dict[str, Any]:
        return {"stage": "head", "epoch": 0, "planned_epochs": None, "best_score": None, "best_stage": None,
                "stage_best": None, "bad_epochs": 0, "best_model": None, "optimizer": None, "history": [],
                "stages": [], "stage_seconds": 0.0}

    def save(self, net: nn.Module, state: dict[str, Any]) -> None:
        with atomic_path(self.path) as tmp:
            torch.save({"meta": self.meta, "model": net.state_dict(), **state}, tmp)

    def load(self, net: nn.Module) -> dict[str, Any]:
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a truncated or foreign file: say which and why, in one line
            raise EdgerecError(f"cannot resume from {self.path}: {str(exc).splitlines()[0][:120]}") from None
        differs = [k for k, v in self.meta.items() if saved.get("meta", {}).get(k) != v]
        if differs:
            raise EdgerecError(f"cannot resume from {self.path}: it was trained with other {', '.join(differs)}; "
                               "train without --resume or use another --out")
        net.load_state_dict(saved.pop("model"))
        saved.pop("meta")
        return saved


class _Phase:
    """Adds the wall seconds of a ``with`` block to seconds[name]."""

    def __init__(self, seconds: dict[str, float], name: str):
        self.seconds, self.name = seconds, name

    def __enter__(self) -> None:
        self.begin = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self.name] = self.seconds.get(self.name, 0.0) + time.perf_counter() - self.begin
