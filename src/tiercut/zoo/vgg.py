"""VGG-16, configuration D without batch norm (Simonyan & Zisserman, "Very Deep Convolutional
Networks for Large-Scale Image Recognition", ICLR 2015), in torchvision's layout."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import init_weights
from .registry import register

# Output channels of each 3x3 conv; "M" is a 2x2 max pool.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _features(cfg: tuple) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU()]
            in_ch = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, cfg: tuple, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = _features(cfg)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register("vgg16", (1, 3, 224, 224), "VGG-16 (Simonyan & Zisserman 2015)", params=138_357_544, macs=15.47e9)
def vgg16() -> nn.Module:
    return init_weights(VGG(_VGG16))
