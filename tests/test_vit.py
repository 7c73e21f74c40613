"""ViT-Tiny/16: the published size and cost, the class-logit shape, and an fx trace equal to the
eager model."""
import torch
from torch.utils.flop_counter import FlopCounterMode

from tiercut import zoo
from tiercut.zoo import vit


def _built():
    entry = zoo.entry("vit_tiny")
    assert entry.factory is vit.vit_tiny
    return entry, entry.build(), entry.example_inputs()


def test_params_and_macs_match_timm():
    entry, model, inputs = _built()
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / entry.params - 1) <= 0.02, params
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    counted_macs = counter.get_total_flops() / 2  # the counter reports 2 FLOPs per multiply-add
    assert abs(counted_macs / entry.macs - 1) <= 0.02, counted_macs


def test_fx_trace_equals_eager_and_gives_class_logits():
    _, model, inputs = _built()
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        expected = model(*inputs)
        assert expected.shape == (1, 1000)
        assert torch.equal(traced(*inputs), expected)
