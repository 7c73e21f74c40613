import random

import pytest
import torch

import tiercut.runtime  # noqa: F401  (its gRPC transport settings, before a test imports grpc)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    random.seed(0)
