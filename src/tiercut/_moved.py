"""Old module paths of 0.1.0, kept for one release: each answers with its new module's
names and a DeprecationWarning that says where to import from.

A shim is registered in ``sys.modules`` when tiercut is imported, instead of a file per old
path at the package's top (the clutter the new layout removes). Registering it up front also
keeps ``tiercut.trace`` and ``tiercut.split`` the functions they are: an ``import
tiercut.trace`` that had to load a module would set the package's ``trace`` to that module.
The shims import nothing until a name is looked up on them.
"""
from __future__ import annotations

import importlib
import sys
import types
import warnings

# old path -> new path
MOVED = {
    "tiercut.trace": "tiercut.graph.trace",
    "tiercut.flops": "tiercut.graph.flops",
    "tiercut.split": "tiercut.graph.split",
    "tiercut.profile": "tiercut.measure.profile",
    "tiercut.profiler": "tiercut.measure.profiler",
    "tiercut.predict": "tiercut.measure.predict",
    "tiercut.host": "tiercut.measure.host",
    "tiercut.alloc": "tiercut.measure.alloc",
    "tiercut.cpucap": "tiercut.measure.cpucap",
    "tiercut.plot": "tiercut.measure.plot",
    "tiercut.calibrate": "tiercut.codecs.calibrate",
    "tiercut.cli_runtime": "tiercut.cli.serve",
    "tiercut.cli_simulate": "tiercut.cli.simulate",
    "tiercut.cli_link": "tiercut.cli.link",
    "tiercut.cli_calibrate": "tiercut.cli.calibrate",
    "tiercut.planner.flags": "tiercut.cli.plan_flags",
    "tiercut.sim.costs": "tiercut.adapt.costs",
}
# package attributes that are not the old module of the same name
KEEP_ATTRIBUTE = {"tiercut": {"trace", "split"}}


class MovedModule(types.ModuleType):
    """Stands at an old path; every lookup warns and is answered by the new module."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__(old, f"Moved to {new}; this path goes in tiercut 0.2.")
        self.__dict__["_new"] = new

    def __getattr__(self, name: str):  # noqa: ANN204
        if name.startswith("__") and name != "__all__":
            raise AttributeError(name)
        new = self.__dict__["_new"]
        warnings.warn(f"{self.__name__} moved to {new}: import {name} from {new} (the old "
                      "path goes in tiercut 0.2)", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        if name == "__all__" and not hasattr(module, "__all__"):
            return [n for n in vars(module) if not n.startswith("_")]
        return getattr(module, name)

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(self.__dict__["_new"]))


def install(package_name: str) -> None:
    """Register the shims whose parent is ``package_name`` (called from its ``__init__``)."""
    package = sys.modules[package_name]
    for old, new in MOVED.items():
        parent, _, leaf = old.rpartition(".")
        if parent != package_name or old in sys.modules:
            continue
        shim = MovedModule(old, new)
        sys.modules[old] = shim
        if leaf not in KEEP_ATTRIBUTE.get(parent, ()):
            setattr(package, leaf, shim)


def forward(module_name: str, moved: dict[str, str]):  # noqa: ANN201
    """A module ``__getattr__`` for names that left ``module_name`` when it was split:
    ``moved`` maps each name to its new module. Use as
    ``__getattr__ = forward(__name__, {"spawn": "tiercut.runtime.launch"})``."""

    def __getattr__(name: str):  # noqa: ANN202
        new = moved.get(name)
        if new is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        warnings.warn(f"{module_name}.{name} moved to {new}: import it from there (the old "
                      "path goes in tiercut 0.2)", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)

    return __getattr__
