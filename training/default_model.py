"""Build the embedded default: ImageNet EfficientNet-Lite0 as FP32 and INT8 contract files."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from edge.core.metadata import DatasetInfo, ModelInfo
from edge.core.model import Model
from edge.core.preprocess import Geometry
from edge.tools.robustness import RobustnessOptions, RobustnessReport
from edge.tools.robustness import compare as robustness_compare
from edge.tools.robustness import load_models as load_robustness_models
from edge.tools.robustness import metrics as robustness_metrics
from training.calibration import load_images, media_files
from training.export import ExportCheck, add_metrics, export_onnx
from training.models import CROP, create_model
from training.qat import QatOptions, QatResult, qat_finetune
from training.quantize import QuantOptions, QuantReport, compare, quantize_model

IMAGENET_DIR = Path(__file__).resolve().parent.parent / "edge" / "assets" / "imagenet"


@dataclass(frozen=True)
class DefaultModelOptions:
    out: Path
    calibration: list[Path]  # folders/files of real photos and videos
    check: list[Path]  # clear photos the INT8 file must label like FP32
    imagenet_dir: Path = IMAGENET_DIR
    arch: str = "efficientnet_lite0"
    quant: QuantOptions = field(default_factory=QuantOptions)
    distill: list[Path] = field(default_factory=list)  # unlabelled real photos/videos for the QAT fine-tune
    qat: QatOptions | None = None  # None: post-training quantization only


@dataclass(frozen=True)
class DefaultModelReport:
    fp32_path: Path
    int8_path: Path
    export: ExportCheck
    quant: QuantReport
    check_labels: list[tuple[str, str]]  # (FP32 label, INT8 label) per check image
    qat: QatResult | None = None  # what the distillation fine-tune did, when there was one
    qat_fp32_path: Path | None = None  # the fine-tuned float file that was quantized


def imagenet_labels(folder: Path) -> tuple[list[str], list[str]]:
    """(short names, WordNet ids) in class-index order; a name shared by two classes gets its id appended."""
    ids = folder.joinpath("imagenet_synsets.txt").read_text().split()
    lemmas = dict(line.split("\t", 1) for line in folder.joinpath("imagenet_synset_to_lemma.txt")
                  .read_text().splitlines() if line)
    names = [lemmas[i].split(",")[0].strip() for i in ids]
    counts = Counter(names)
    return [f"{n} ({i})" if counts[n] > 1 else n for n, i in zip(names, ids)], ids


def build_default_model(options: DefaultModelOptions) -> DefaultModelReport:
    labels, ids = imagenet_labels(options.imagenet_dir)
    net = create_model(options.arch, pretrained=True)
    size = net.arch.resolution
    geometry = Geometry(size, size, CROP)
    check = load_images(options.check, geometry)
    held_out = {p.name for p in media_files(options.check)}  # never calibrate on the photos we check with
    calibration_files = [p for p in media_files(options.calibration) if p.name not in held_out]
    calibration = load_images(calibration_files, geometry, min_side=160, min_contrast=25.0)
    info = ModelInfo(labels=labels, label_ids=ids, input_size=(size, size), crop=CROP, arch=options.arch,
                     precision="fp32", dataset=DatasetInfo("imagenet-1k", "ILSVRC2012", 1281167, 50000),
                     training={"weights": net.arch.weights_package})
    options.out.mkdir(parents=True, exist_ok=True)
    stem = f"{options.arch}_imagenet"
    fp32_path, int8_path = options.out / f"{stem}_fp32.onnx", options.out / f"{stem}_int8.onnx"
    export = export_onnx(net, info, fp32_path, check)
    if options.qat is None:
        quant = quantize_model(fp32_path, int8_path, calibration, check, options.quant)
        return DefaultModelReport(fp32_path, int8_path, export, quant,
                                  _labels_side_by_side(fp32_path, int8_path, check))
    distill_files = [p for p in media_files(options.distill) if p.name not in held_out]
    distill = load_images(distill_files, geometry, min_side=160, min_contrast=25.0)
    tuned_path = options.out / f"{stem}_qat_fp32.onnx"
    torch.manual_seed(options.qat.seed)
    folded, qat = qat_finetune(net, distill, calibration, options.qat)
    export_onnx(folded, _with_qat(info, qat, options.qat), tuned_path, check)
    quantize_model(tuned_path, int8_path, calibration, check, options.quant)
    # the figure that matters is INT8 against the ORIGINAL FP32 file, not against the fine-tuned one
    quant = compare(Model.load(fp32_path, device="cpu"), Model.load(int8_path, device="cpu"), check,
                    options.quant, len(calibration))
    return DefaultModelReport(fp32_path, int8_path, export, quant, _labels_side_by_side(fp32_path, int8_path, check),
                              qat, tuned_path)


def _with_qat(info: ModelInfo, result: QatResult, options: QatOptions) -> ModelInfo:
    """The file's training metadata says how its weights were fine-tuned (`edgerec info` shows it)."""
    qat = (f"distilled from FP32, {result.steps} steps ({options.epochs:g} epochs, lr {options.lr:g}, seed "
           f"{options.seed}) on {result.images} unlabelled photos and their mirror images"
           f"{' (random crops, brightness and contrast)' if options.augment else ''}, loss "
           f"{result.first_loss:.4f} -> {result.last_loss:.4f}")
    return replace(info, training={**info.training, "qat": qat})


def _labels_side_by_side(fp32_path: Path, int8_path: Path, images: np.ndarray) -> list[tuple[str, str]]:
    fp32, int8 = Model.load(fp32_path, device="cpu"), Model.load(int8_path, device="cpu")
    a, b = fp32.infer(images).argmax(1), int8.infer(images).argmax(1)
    return [(fp32.labels[i], int8.labels[j]) for i, j in zip(a, b)]


def store_robustness(path: Path, folder: Path, seed: int = 0) -> RobustnessReport:
    """Run the model file at ``path`` on ``folder`` (ImageNet-labelled photos, folder name = label) clean and
    under every camera corruption, as `edgerec evaluate --robustness` does, and store the figures in its
    metrics as `edgerec train` does; only the metadata changes, the graph is written back as it was."""
    models, workers = load_robustness_models([path], int32_sums=True)  # as ARM and VNNI x86 compute it
    report = robustness_compare(models, folder, RobustnessOptions(seed=seed, workers=workers))[0]
    add_metrics(path, robustness_metrics(report, int32_sums=models[0].info.precision == "int8"))
    return report
