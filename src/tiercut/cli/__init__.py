"""The ``tiercut`` command line: one module per command group, the typer app in ``main.py``.
May import every other tiercut package; nothing imports it."""
import importlib

# ``app``, and the other public names of 0.1.0's cli.py, are loaded on first use, so that
# ``python -m tiercut.cli.serve`` (how servers are spawned) starts without importing the other
# command groups.
_LAZY = {"app": "main", "console": "common", "models": "profiling", "profile": "profiling",
         "show": "profiling", "predict": "profiling", "plan_cmd": "plan", "testbed_cmd": "testbed"}


def __getattr__(name: str):  # noqa: ANN202
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
