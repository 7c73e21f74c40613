"""Users' own models: one loaded by `module:factory` path in the CLI tests, and one whose
split passes a Python int (a size) between stages."""
from torch import nn


def tiny_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


tiny_cnn.input_shape = (1, 3, 16, 16)


class UsesSize(nn.Module):
    """Reads ``y.size(0)``: a cut after the conv sends an int across, not only tensors."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(y.view(y.size(0), -1))
