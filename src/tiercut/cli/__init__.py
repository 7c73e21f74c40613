"""The ``tiercut`` command line: one module per command group, the typer app in ``main.py``.
May import every other tiercut package; nothing imports it."""


# ``app`` is loaded on first use, so that ``python -m tiercut.cli.serve`` (how servers are
# spawned) starts without importing the other command groups.
def __getattr__(name: str):  # noqa: ANN202
    if name == "app":
        from .main import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
