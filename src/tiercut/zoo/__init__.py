"""The model zoo: the standard models of the partitioning literature, in pure PyTorch, and
the registry of names users type, and transformers models from their configs (``hf``, the
``hf:NAME`` specs; transformers imported only then). Imports ``tiercut.errors`` only.
"""
import importlib

from .hf import hf_model
from .registry import InputSpec, ZooEntry, as_inputs, entry, names, parse_input, register, resolve

__all__ = ["InputSpec", "ZooEntry", "as_inputs", "entry", "hf_model", "names", "parse_input",
           "register", "resolve"]

# One module per model family; each registers its models when imported.
_FAMILIES = (
    "alexnet", "vgg", "resnet", "mobilenet", "squeezenet", "googlenet", "densenet",
    "efficientnet", "vit", "minilm", "digits",
)
for _family in _FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")
