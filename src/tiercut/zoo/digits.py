"""A small CNN for scikit-learn's 8x8 handwritten digits, with weights trained by tiercut.

``benchmarks/train_digits.py`` trains it (fixed seed, fixed held-out split) and writes
``weights/digits_cnn.safetensors``, shipped in the package; the factory loads it with
safetensors (no pickles). ``digits_data`` gives the same split the training used, so the
held-out part is data the weights never saw.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .registry import register

WEIGHTS = Path(__file__).parent / "weights" / "digits_cnn.safetensors"
SPLIT_SEED = 0  # the held-out split is fixed: train_digits.py and calibration agree on it
HELD_OUT = 0.3  # fraction of the 1797 images held out


class DigitsCNN(nn.Module):
    """(batch, 1, 8, 8) images scaled to [0, 1] -> (batch, 10) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)  # 8x8 -> 4x4
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        x = self.flatten(self.relu3(self.conv3(x)))
        return self.fc2(self.relu4(self.fc1(x)))


def digits_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_held_out, y_held_out): images (n, 1, 8, 8) in [0, 1], int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits data needs scikit-learn: pip install scikit-learn") from None
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_held = int(round(HELD_OUT * len(y)))
    held, train = order[:n_held], order[n_held:]
    return x[train], y[train], x[held], y[held]


def has_trained_weights() -> bool:
    return WEIGHTS.is_file()


@register("digits_cnn", (1, 1, 8, 8),
          "small CNN on scikit-learn's 8x8 digits, weights trained by benchmarks/train_digits.py")
def digits_cnn() -> nn.Module:
    model = DigitsCNN()
    if WEIGHTS.is_file():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(WEIGHTS)), strict=True)
    else:
        warnings.warn(f"digits_cnn: no trained weights at {WEIGHTS}; run "
                      "benchmarks/train_digits.py (using seeded random weights)", stacklevel=2)
    return model
