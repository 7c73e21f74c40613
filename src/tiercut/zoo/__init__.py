"""The model zoo: the standard models of the partitioning literature, in pure PyTorch, and
the registry of names users type. Imports ``tiercut.errors`` only.
"""
import importlib

from .registry import InputSpec, ZooEntry, entry, names, register, resolve

__all__ = ["InputSpec", "ZooEntry", "entry", "names", "register", "resolve"]

# One module per model family; each registers its models when imported.
_FAMILIES = (
    "alexnet", "vgg", "resnet", "mobilenet", "squeezenet", "googlenet", "densenet",
    "efficientnet", "vit", "minilm", "digits",
)
for _family in _FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")
