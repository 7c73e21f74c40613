"""EfficientNet-B0 (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019), in torchvision's layout: SiLU, squeeze-and-excitation, BatchNorm eps
1e-3. Stochastic depth is the identity at inference, so it is left out."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .blocks import ConvBNAct, init_weights
from .registry import register

# (expansion, kernel, first stride, in channels, out channels, repeats): the B0 baseline.
_B0 = (
    (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1),
)
_conv = partial(ConvBNAct, eps=1e-3, act=nn.SiLU)


class SqueezeExcitation(nn.Module):
    """Rescale channels by a gate computed from their global average (Hu et al. 2018)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.SiLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise conv, SE, linear 1x1 projection."""

    def __init__(self, expand: int, kernel: int, stride: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_ch == out_ch
        hidden = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv(in_ch, hidden, 1))
        layers += [
            _conv(hidden, hidden, kernel, stride, groups=hidden),
            # The SE bottleneck is a quarter of the block's *input* width, not the expanded one.
            SqueezeExcitation(hidden, max(1, in_ch // 4)),
            _conv(hidden, out_ch, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)


class EfficientNet(nn.Module):
    def __init__(self, settings: tuple = _B0, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        stages: list[nn.Module] = [_conv(3, settings[0][3], 3, 2)]
        for expand, kernel, stride, in_ch, out_ch, repeats in settings:
            stages.append(nn.Sequential(*(
                MBConv(expand, kernel, stride if i == 0 else 1, in_ch if i == 0 else out_ch, out_ch)
                for i in range(repeats)
            )))
        last_ch = 4 * settings[-1][4]
        stages.append(_conv(settings[-1][4], last_ch, 1))
        self.features = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_ch, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register("efficientnet_b0", (1, 3, 224, 224), "EfficientNet-B0 (Tan & Le 2019)", params=5_288_548, macs=0.39e9)
def efficientnet_b0() -> nn.Module:
    return init_weights(EfficientNet())
