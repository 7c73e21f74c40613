"""The zoo CNNs against their published figures: parameter count, multiply-accumulates at
224x224 (conv/linear/matmul, as torchvision's table counts them), and output shape."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tiercut import zoo

CNNS = (
    "alexnet", "vgg16", "resnet18", "resnet50", "mobilenet_v2", "squeezenet1_1", "googlenet",
    "densenet121", "efficientnet_b0",
)
TOLERANCE = 0.02


@pytest.mark.parametrize("name", CNNS)
def test_cnn_matches_published_size(name):
    entry = zoo.entry(name)
    model = entry.build()
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / entry.params - 1) <= TOLERANCE, (
        f"{name}: {params:,} parameters, published {entry.params:,}"
    )
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        out = model(*entry.example_inputs())
    macs = counter.get_total_flops() / 2  # the counter reports 2 FLOPs per multiply-add
    assert abs(macs / entry.macs - 1) <= TOLERANCE, (
        f"{name}: {macs / 1e9:.3f} GMACs, published {entry.macs / 1e9:.3f}"
    )
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()
