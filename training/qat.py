"""Quantization-aware fine-tuning: teach the network to give FP32's answers through INT8 rounding.

Post-training quantization rounds a network that never saw rounding; where its INT8 copy disagrees with
FP32 too often for the gate (training.gate), a short fine-tune with the rounding simulated in the forward
pass ("fake quantization") moves the weights to where rounding changes fewer answers. What is simulated is
what ONNX Runtime's QDQ quantizer (training.quantize defaults) does to this network:

* every convolution but the stem, with its batch norm folded in (as the exported graph has it), gets signed
  8-bit weights per output channel, symmetric, in [-127, 127]; the classifier's weights the same per class;
* every activation the quantizer rounds (each convolution's output after ReLU6, each residual sum, the
  pooled features, the logits) becomes unsigned 8-bit over the range observed on the calibration images
  (MinMax, the range widened to include 0), fixed during the fine-tune;
* rounding is the straight-through estimator: forward rounds, backward passes the gradient.

The loss is distillation from the trained FP32 network (KL divergence of the fake-quantized network's
softmax from FP32's): the goal is an INT8 file that *agrees with model-fp32.onnx*, not a new classifier,
so the labels are not used. The fine-tuned weights are exported as a float contract file and quantized by
``training.quantize`` as usual (its calibration recomputes the activation ranges); the gate then compares
that INT8 file with the original model-fp32.onnx.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.models import EfficientNetLite, InGraphPreprocess, MBConv

WEIGHT_MAX = 127  # symmetric signed 8-bit weights, as onnxruntime quantizes them
REDUCED_WEIGHT_MAX = 63  # the 7-bit weights of QuantOptions(reduce_range=True)


@dataclass(frozen=True)
class QatOptions:
    """How long and how hard to fine-tune."""

    epochs: float = 1.0  # passes over the images (each image and its mirror image)
    lr: float = 1e-5  # Adam moves every weight by about lr per step; at 1e-4 the loss rose 40x in 2 steps
    batch_size: int = 32
    temperature: float = 1.0
    seed: int = 0
    weight_max: int = WEIGHT_MAX  # REDUCED_WEIGHT_MAX for a file quantized with reduce_range
    augment: bool = False  # distil on random crops with changed brightness and contrast, not only the photos


@dataclass(frozen=True)
class QatResult:
    steps: int
    images: int
    seconds: float
    first_loss: float  # mean distillation loss of the first 10% of steps
    last_loss: float  # and of the last 10%


def fake_quantize_weight(weight: torch.Tensor, limit: int = WEIGHT_MAX) -> torch.Tensor:
    """Per-output-channel symmetric rounding to [-limit, limit] with a straight-through gradient."""
    flat = weight.detach().flatten(1).abs().amax(1).clamp_min(1e-12)
    scale = (flat / limit).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -limit, limit)


class ActivationQuant(nn.Module):
    """u8 rounding of an activation over a fixed range; records the range first (``observing``)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("low", torch.tensor(0.0))
        self.register_buffer("high", torch.tensor(0.0))
        self.mode = "observe"  # observe | quantize | off

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "observe":
            self.low = torch.minimum(self.low, x.detach().min())
            self.high = torch.maximum(self.high, x.detach().max())
            return x
        if self.mode == "off":
            return x
        scale = float((self.high - self.low) / 255) or 1.0
        zero = int(round(float(-self.low) / scale))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


class FoldedConv(nn.Module):
    """A conv_bn block (pad, conv, batch norm, optional ReLU6) with the batch norm folded into the convolution."""

    def __init__(self, block: nn.Sequential, quantize_weights: bool = True):
        super().__init__()
        layers = list(block)
        self.pad = layers.pop(0) if isinstance(layers[0], nn.ZeroPad2d) else nn.Identity()
        conv, bn = layers[0], layers[1]
        self.relu6 = len(layers) > 2
        std = torch.sqrt(bn.running_var + bn.eps)
        factor = bn.weight / std
        self.weight = nn.Parameter((conv.weight * factor.view(-1, 1, 1, 1)).detach().clone())
        self.bias = nn.Parameter((bn.bias - bn.running_mean * factor).detach().clone())
        self.stride, self.groups = conv.stride, conv.groups
        self.quantize_weights = quantize_weights
        self.fake, self.limit = False, WEIGHT_MAX
        self.out = ActivationQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = fake_quantize_weight(self.weight, self.limit) if self.fake and self.quantize_weights else self.weight
        y = F.conv2d(self.pad(x), weight, self.bias, self.stride, groups=self.groups)
        if self.relu6:
            y = F.hardtanh(y, 0.0, 6.0)
        return self.out(y)


class FoldedMBConv(nn.Module):
    def __init__(self, block: MBConv):
        super().__init__()
        self.expand = FoldedConv(block.expand) if isinstance(block.expand, nn.Sequential) else nn.Identity()
        self.depthwise = FoldedConv(block.depthwise)
        self.project = FoldedConv(block.project)
        self.skip = block.skip
        self.out = ActivationQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return self.out(x + y) if self.skip else y


class FoldedNet(nn.Module):
    """EfficientNet-Lite with batch norms folded, able to fake-quantize as the INT8 file computes.

    A float NCHW classifier like EfficientNetLite (training.export.export_onnx takes either)."""

    def __init__(self, net: EfficientNetLite):
        super().__init__()
        self.stem = FoldedConv(net.stem, quantize_weights=False)  # the stem stays float (training.quantize)
        self.blocks = nn.Sequential(*(FoldedMBConv(b) for b in net.blocks))
        self.head = FoldedConv(net.head)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pool_out = ActivationQuant()
        self.classifier = copy.deepcopy(net.classifier)
        self.logits_out = ActivationQuant()
        self.fake, self.limit = False, WEIGHT_MAX

    def set_mode(self, mode: str, weight_max: int = WEIGHT_MAX) -> None:
        """observe (record activation ranges, float), quantize (fake INT8, weights within +-weight_max) or off
        (plain float)."""
        for module in self.modules():
            if isinstance(module, ActivationQuant):
                module.mode = mode
            if isinstance(module, (FoldedConv, FoldedNet)):
                module.fake, module.limit = mode == "quantize", weight_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool_out(self.pool(self.head(self.blocks(self.stem(x)))).flatten(1))
        weight = fake_quantize_weight(self.classifier.weight, self.limit) if self.fake else self.classifier.weight
        return self.logits_out(F.linear(x, weight, self.classifier.bias))


CROP_AREA = (0.3, 1.0)  # share of the photo a random crop keeps
CROP_ASPECT = (3 / 4, 4 / 3)
GAIN, OFFSET = 0.25, 25.0  # brightness and contrast: pixel * (1 +- GAIN) +- OFFSET


def augmented(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop of a fitted photo, resized back to its size, with changed contrast and brightness: the
    teacher labels whatever the student sees, so every such view is one more distillation example."""
    height, width = image.shape[:2]
    area = rng.uniform(*CROP_AREA) * height * width
    aspect = np.exp(rng.uniform(*np.log(CROP_ASPECT)))
    h = int(min(height, round(np.sqrt(area / aspect))))
    w = int(min(width, round(np.sqrt(area * aspect))))
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    crop = cv2.resize(image[top:top + h, left:left + w], (width, height), interpolation=cv2.INTER_LINEAR)
    gain, offset = 1 + rng.uniform(-GAIN, GAIN), rng.uniform(-OFFSET, OFFSET)
    return np.clip(crop * gain + offset, 0, 255).astype(np.uint8)


def qat_finetune(net: EfficientNetLite, images: np.ndarray, calibration: np.ndarray,
                 options: QatOptions | None = None) -> tuple[FoldedNet, QatResult]:
    """Fine-tune a fake-quantized copy of ``net`` to give ``net``'s outputs on ``images`` (uint8 NHWC BGR,
    fitted) and their mirror images; activation ranges from ``calibration``. Returns the float network
    (fake quantization off) to export, and what the fine-tune did."""
    options = options or QatOptions()
    start = time.perf_counter()
    teacher = net.eval()
    preprocess = InGraphPreprocess()
    student = FoldedNet(teacher).train()
    student.set_mode("observe")
    with torch.no_grad():
        for i in range(0, len(calibration), options.batch_size):
            student(preprocess(torch.from_numpy(calibration[i:i + options.batch_size])))
    student.set_mode("quantize", options.weight_max)
    optimizer = torch.optim.AdamW(student.parameters(), lr=options.lr, weight_decay=0.0)
    rng = np.random.default_rng(options.seed)
    views = len(images) * 2  # each image and its mirror image
    steps = max(1, round(options.epochs * views / options.batch_size))
    order = np.concatenate([rng.permutation(views) for _ in range(int(np.ceil(options.epochs)) + 1)])
    losses = []
    for step in range(steps):
        pick = order[step * options.batch_size:(step + 1) * options.batch_size]
        batch = images[pick % len(images)].copy()
        mirror = pick >= len(images)
        batch[mirror] = batch[mirror][:, :, ::-1]
        if options.augment:
            batch = np.stack([augmented(image, rng) for image in batch])
        x = preprocess(torch.from_numpy(batch))
        with torch.no_grad():
            target = F.softmax(teacher(x) / options.temperature, dim=1)
        for group in optimizer.param_groups:  # cosine decay to zero
            group["lr"] = options.lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        logits = student(x) / options.temperature
        loss = F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean") * options.temperature ** 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    student.set_mode("off")
    student.eval()
    tenth = max(1, steps // 10)
    return student, QatResult(steps, len(images), time.perf_counter() - start, float(np.mean(losses[:tenth])),
                              float(np.mean(losses[-tenth:])))
