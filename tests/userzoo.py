"""A user's own model, loaded by `module:factory` path in the CLI tests."""
from torch import nn


def tiny_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


tiny_cnn.input_shape = (1, 3, 16, 16)
