"""RetinaFace with a MobileNet-0.25 backbone, in plain torch.nn.

The module layout (attribute names and Sequential indices) mirrors the public
`mobilenet0.25_Final.pth` checkpoint so that its state dict loads with strict=True.

Input: (N, 3, H, W) float32, BGR minus the mean (104, 117, 123), any H and W.
Outputs, concatenated over the three FPN levels (strides 8, 16, 32) in prior order
(level, then row, then column, then the two anchors of a cell):
    boxes      (N, P, 4)  box regression (dx, dy, dw, dh), to be decoded against the priors
    scores     (N, P)     face probability
    landmarks  (N, P, 10) five-landmark regression (x, y pairs), decoded like box centres
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

OUTPUT_NAMES = ('boxes', 'scores', 'landmarks')
ANCHORS_PER_CELL = 2
FPN_CHANNELS = 64
LEAKY_SLOPE = 0.1  # every leaky activation of the 0.25 model (channel counts <= 64 in FPN/SSH)


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
            act: bool = True) -> list[nn.Module]:
    """Convolution (no bias), batch norm and optionally a leaky ReLU, as a list of layers."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
    return layers


def depthwise_separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    """MobileNet-v1 block: 3x3 depthwise conv, then 1x1 pointwise conv, each with BN + leaky ReLU."""
    return nn.Sequential(*conv_bn(cin, cin, 3, stride, groups=cin), *conv_bn(cin, cout, 1))


class MobileNet025(nn.Module):
    """MobileNet-v1 at width 0.25, cut into the three stages whose outputs feed the FPN."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(  # stride 8, 64 channels
            nn.Sequential(*conv_bn(3, 8, stride=2)),
            depthwise_separable(8, 16, 1), depthwise_separable(16, 32, 2),
            depthwise_separable(32, 32, 1), depthwise_separable(32, 64, 2),
            depthwise_separable(64, 64, 1))
        self.stage2 = nn.Sequential(  # stride 16, 128 channels
            depthwise_separable(64, 128, 2), *(depthwise_separable(128, 128, 1) for _ in range(5)))
        self.stage3 = nn.Sequential(  # stride 32, 256 channels
            depthwise_separable(128, 256, 2), depthwise_separable(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        return [c3, c4, self.stage3(c4)]


class FPN(nn.Module):
    """Feature pyramid: 1x1 lateral convs, top-down nearest upsampling, 3x3 merge convs."""

    def __init__(self, in_channels: tuple[int, int, int], out: int) -> None:
        super().__init__()
        self.output1, self.output2, self.output3 = (nn.Sequential(*conv_bn(c, out, 1)) for c in in_channels)
        self.merge1 = nn.Sequential(*conv_bn(out, out))
        self.merge2 = nn.Sequential(*conv_bn(out, out))

    @staticmethod
    def _add_upsampled(fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        # Upsample to the exact size of `fine`: with odd sizes, 2x the coarse map would overshoot.
        return fine + F.interpolate(coarse, size=fine.shape[2:], mode='nearest')

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = self.output1(features[0]), self.output2(features[1]), self.output3(features[2])
        p4 = self.merge2(self._add_upsampled(p4, p5))
        p3 = self.merge1(self._add_upsampled(p3, p4))
        return [p3, p4, p5]


class SSH(nn.Module):
    """Single-stage context module: parallel 3x3, 5x5 and 7x7 receptive fields (stacked 3x3s)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half, quarter = channels // 2, channels // 4
        self.conv3X3 = nn.Sequential(*conv_bn(channels, half, act=False))
        self.conv5X5_1 = nn.Sequential(*conv_bn(channels, quarter))
        self.conv5X5_2 = nn.Sequential(*conv_bn(quarter, quarter, act=False))
        self.conv7X7_2 = nn.Sequential(*conv_bn(quarter, quarter))
        self.conv7x7_3 = nn.Sequential(*conv_bn(quarter, quarter, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5 = self.conv5X5_1(x)
        branch7 = self.conv7X7_2(branch5)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(branch5), self.conv7x7_3(branch7)], 1))


class Head(nn.Module):
    """1x1 conv predicting `values` numbers per anchor, flattened to (N, H*W*anchors, values)."""

    def __init__(self, channels: int, values: int) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(channels, ANCHORS_PER_CELL * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.values)


class RetinaFaceMobileNet(nn.Module):
    """RetinaFace detector: backbone -> FPN -> SSH per level -> class, box and landmark heads."""

    def __init__(self) -> None:
        super().__init__()
        self.body = MobileNet025()
        self.fpn = FPN((64, 128, 256), FPN_CHANNELS)
        self.ssh1, self.ssh2, self.ssh3 = (SSH(FPN_CHANNELS) for _ in range(3))
        self.ClassHead = nn.ModuleList(Head(FPN_CHANNELS, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(Head(FPN_CHANNELS, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(Head(FPN_CHANNELS, 10) for _ in range(3))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels = self.fpn(self.body(image))
        features = [ssh(level) for ssh, level in zip((self.ssh1, self.ssh2, self.ssh3), levels)]
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], 1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], 1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], 1)
        return boxes, F.softmax(logits, dim=-1)[..., 1], landmarks


def load_retinaface(weights_path: str) -> RetinaFaceMobileNet:
    """Build the network, load the checkpoint strictly (dropping any `module.` prefix), eval mode."""
    state = torch.load(weights_path, map_location='cpu', weights_only=True)
    state = state.get('state_dict', state)
    state = {key.removeprefix('module.'): value for key, value in state.items()}
    net = RetinaFaceMobileNet()
    net.load_state_dict(state, strict=True)
    return net.eval()
