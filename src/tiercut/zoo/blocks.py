"""Small pieces the CNN families share: conv-BN-activation, and one deterministic init.

Every zoo CNN keeps torchvision's module names (so its state dict would load torchvision
weights) and is written for ``torch.fx.symbolic_trace``: nn modules for every layer, no
in-place ops, no size queries.
"""
from __future__ import annotations

from typing import Callable

from torch import nn


class ConvBNAct(nn.Sequential):
    """conv (no bias, "same" padding) -> BatchNorm -> activation; torchvision's
    ``Conv2dNormActivation``, with the same child names (0, 1, 2)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: Callable[[], nn.Module] | None = nn.ReLU,
        eps: float = 1e-5,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch, eps=eps),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


def init_weights(model: nn.Module) -> nn.Module:
    """He-normal convs, N(0, 0.01) linears, identity BatchNorm.

    The weights are random (no download), so what matters is that activations stay finite and
    of order one through depth. He init on fan-in does that; on fan-out (torchvision's choice)
    a depthwise conv's fan-out counts every output channel, which shrinks MobileNet's and
    EfficientNet's activations towards 1e-10 at the logits.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model
