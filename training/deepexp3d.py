"""DeepExp3D expression regressor (Koujan et al., FG 2020): a ResNet from an aligned face crop to the
55 ICT-FaceKit expression blendshape weights in [0, 1].

Plain torch.nn (no torchvision): ResNet-18 (BasicBlock) and ResNet-50 (Bottleneck), trained from
scratch. The network takes what the runtime has at hand, the aligned crop resized to S x S, as
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
ARCHITECTURES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    'resnet18': ('basic', (2, 2, 2, 2)),
    'resnet50': ('bottleneck', (3, 4, 6, 3)),
}
SHORT_NAMES = {'resnet18': 'r18', 'resnet50': 'r50'}


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


class DeepExp3D(nn.Module):
    """ResNet regressor: (N, 3, S, S) BGR 0..255 -> (N, n_outputs) expression weights in [0, 1]."""

    def __init__(self, arch: str = 'resnet18', n_outputs: int = 55) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f'unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}')
        self.arch, self.n_outputs = arch, n_outputs
        kind, depths = ARCHITECTURES[arch]
        block = BasicBlock if kind == 'basic' else Bottleneck
        # x * scale + shift == (x / 255 - mean) / std, per channel in RGB order (after the flip)
        std, mean = torch.tensor(IMAGENET_STD_RGB), torch.tensor(IMAGENET_MEAN_RGB)
        self.register_buffer('scale', (1.0 / (255.0 * std)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('shift', (-mean / std).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, c_in = [], 64
        for index, depth in enumerate(depths):
            width = 64 * 2 ** index
            blocks = []
            for k in range(depth):
                blocks.append(block(c_in, width, 2 if k == 0 and index > 0 else 1))
                c_in = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, n_outputs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init; each residual branch's last BN starts at zero so every block starts as identity,
        which makes training from scratch (no ImageNet weights here) markedly more stable."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():  # second pass: modules() lists a block before its BNs
            if isinstance(module, (BasicBlock, Bottleneck)):
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

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(self.stem(self.normalise(image)))).flatten(1)
        return torch.sigmoid(self.head(features))


def model_id(arch: str, input_size: int) -> str:
    """Default model id / file stem, e.g. deepexp3d_r18_128."""
    return f'deepexp3d_{SHORT_NAMES.get(arch, arch)}_{input_size}'
