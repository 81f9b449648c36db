"""DeepExp3D expression regressor (Koujan et al., FG 2020): a CNN from an aligned face crop to the
55 ICT-FaceKit expression blendshape weights in [0, 1].

Plain torch.nn (no torchvision): ResNet-18 (BasicBlock), ResNet-50 (Bottleneck) and MobileNetV2
(inverted residuals with depthwise convolutions, width x1.0 or x0.5: 5-10x cheaper per face on a
CPU), trained from scratch. The network takes what the runtime has at hand, the aligned crop resized to S x S, as
(N, 3, S, S) float32 **BGR, raw 0..255**; its first operation flips to RGB and applies the ImageNet
mean/std, so the ONNX model needs no preprocessing beyond resize and transpose. Global average
pooling makes any S >= 32 work; a sigmoid head keeps every weight in [0, 1].
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# ResNets: block kind and blocks per stage; MobileNetV2: ('inverted', width multiplier).
ARCHITECTURES: dict[str, tuple[str, tuple]] = {
    'resnet18': ('basic', (2, 2, 2, 2)),
    'resnet50': ('bottleneck', (3, 4, 6, 3)),
    'mobilenetv2': ('inverted', (1.0,)),
    'mobilenetv2_050': ('inverted', (0.5,)),
}
SHORT_NAMES = {'resnet18': 'r18', 'resnet50': 'r50', 'mobilenetv2': 'mnv2', 'mobilenetv2_050': 'mnv2x05'}
# MobileNetV2's stages (Sandler et al. 2018, table 2): expansion t, channels c, repeats n, stride s.
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Convolution ('same' padding, no bias: BN follows) + batch norm."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out))


class _Residual(nn.Module):
    """relu(body(x) + shortcut(x)); subclasses build `body`, this adds the shortcut."""
    expansion = 1

    def __init__(self, body: nn.Sequential, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = body
        self.shortcut = conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.body[-1][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class BasicBlock(_Residual):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut; ResNet-18/34."""
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        c_out = width * self.expansion
        super().__init__(nn.Sequential(conv_bn(c_in, width, 3, stride), nn.ReLU(inplace=True),
                                       conv_bn(width, c_out, 3)), c_in, c_out, stride)


class Bottleneck(_Residual):
    """1x1 reduce, 3x3 (strided, as in ResNet v1.5), 1x1 expand x4, plus shortcut; ResNet-50."""
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        c_out = width * self.expansion
        super().__init__(nn.Sequential(conv_bn(c_in, width, 1), nn.ReLU(inplace=True),
                                       conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
                                       conv_bn(width, c_out, 1)), c_in, c_out, stride)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), linear 1x1 project; a shortcut
    when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        expand = [conv_bn(c_in, hidden, 1), nn.ReLU6(inplace=True)] if expansion != 1 else []
        depthwise = nn.Sequential(nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                                  nn.BatchNorm2d(hidden))
        self.body = nn.Sequential(*expand, depthwise, nn.ReLU6(inplace=True), conv_bn(hidden, c_out, 1))
        self.residual = stride == 1 and c_in == c_out

    def last_bn(self) -> nn.BatchNorm2d:
        return self.body[-1][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def divisible(channels: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of `divisor`, never down by more than 10 % (MobileNet's rule)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def resnet_layers(kind: str, depths: tuple[int, ...]) -> tuple[nn.Module, nn.Module, int]:
    """Stem, stages and output channels of a ResNet."""
    block = BasicBlock if kind == 'basic' else Bottleneck
    stem = nn.Sequential(conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
    stages, c_in = [], 64
    for index, depth in enumerate(depths):
        width = 64 * 2 ** index
        blocks = []
        for k in range(depth):
            blocks.append(block(c_in, width, 2 if k == 0 and index > 0 else 1))
            c_in = width * block.expansion
        stages.append(nn.Sequential(*blocks))
    return stem, nn.Sequential(*stages), c_in


def mobilenet_v2_layers(width: float) -> tuple[nn.Module, nn.Module, int]:
    """Stem, stages (ending in the 1x1 feature convolution) and output channels of a MobileNetV2."""
    c_in = divisible(32 * width)
    stem = nn.Sequential(conv_bn(3, c_in, 3, 2), nn.ReLU6(inplace=True))
    stages = []
    for expansion, channels, repeats, stride in MOBILENET_V2_STAGES:
        c_out = divisible(channels * width)
        stages.append(nn.Sequential(*(InvertedResidual(c_in if k == 0 else c_out, c_out, stride if k == 0 else 1,
                                                       expansion) for k in range(repeats))))
        c_in = c_out
    features = divisible(1280 * max(1.0, width))
    stages.append(nn.Sequential(conv_bn(c_in, features, 1), nn.ReLU6(inplace=True)))
    return stem, nn.Sequential(*stages), features


class DeepExp3D(nn.Module):
    """CNN regressor: (N, 3, S, S) BGR 0..255 -> (N, n_outputs) expression weights in [0, 1]."""

    def __init__(self, arch: str = 'resnet18', n_outputs: int = 55) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f'unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}')
        self.arch, self.n_outputs = arch, n_outputs
        kind, shape = ARCHITECTURES[arch]
        # x * scale + shift == (x / 255 - mean) / std, per channel in RGB order (after the flip)
        std, mean = torch.tensor(IMAGENET_STD_RGB), torch.tensor(IMAGENET_MEAN_RGB)
        self.register_buffer('scale', (1.0 / (255.0 * std)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('shift', (-mean / std).view(1, 3, 1, 1), persistent=False)
        self.stem, self.stages, self.n_features = mobilenet_v2_layers(*shape) if kind == 'inverted' \
            else resnet_layers(kind, shape)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(self.n_features, n_outputs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init; each residual branch's last BN starts at zero so every block starts as identity,
        which makes training from scratch (no ImageNet weights here) markedly more stable."""
        residual_blocks = (BasicBlock, Bottleneck, InvertedResidual)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():  # second pass: modules() lists a block before its BNs
            if isinstance(module, residual_blocks) and getattr(module, 'residual', True):
                nn.init.zeros_(module.last_bn().weight)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def set_output_prior(self, mean_target: Sequence[float] | np.ndarray, eps: float = 1e-3) -> None:
        """Start the sigmoid head at the training set's mean weights (bias = logit(mean)): the first
        steps then learn deviations instead of pulling 55 sigmoids from 0.5 down to mostly ~0."""
        p = torch.as_tensor(np.clip(np.asarray(mean_target, np.float64), eps, 1.0 - eps), dtype=torch.float32)
        with torch.no_grad():
            self.head.bias.copy_(torch.log(p / (1.0 - p)))

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """BGR 0..255 -> RGB, ImageNet mean/std."""
        return image[:, [2, 1, 0]] * self.scale + self.shift

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """(N, n_features) pooled backbone features."""
        return self.pool(self.stages(self.stem(self.normalise(image)))).flatten(1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.features(image)))


def model_id(arch: str, input_size: int) -> str:
    """Default model id / file stem, e.g. deepexp3d_r18_128."""
    return f'deepexp3d_{SHORT_NAMES.get(arch, arch)}_{input_size}'
