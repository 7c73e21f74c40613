"""`tiercut check MODEL`: does tiercut take this model? Capture, split at the cuts a planner
might choose, compare with the whole model, and say what works and what does not."""
from __future__ import annotations

from typing import List, Optional

import typer

from ..errors import TiercutError
from .common import _fail, _shape, console
from .profiling import INPUT_HELP


def check_cmd(
    model: str = typer.Argument(..., help="zoo name, hf:NAME (a transformers model from its "
                                "config), package.module:factory, or an ONNX file (.onnx)"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape",
                                              help="for module:factory models, e.g. 1,3,224,224"),
    input_flags: List[str] = typer.Option([], "--input", help=INPUT_HELP),
    leaf: List[str] = typer.Option([], "--leaf", help="a submodule kept whole on one tier "
                                   "(qualified name, e.g. head.postprocess); repeatable"),
    max_cuts: int = typer.Option(12, "--max-cuts", min=1, help="cuts to try at most"),
    tol: float = typer.Option(1e-5, "--tol", min=0.0,
                              help="largest relative difference a split may have"),
) -> None:
    """Capture MODEL, split it at the planner's cuts and at evenly spaced ones, and compare
    every split with the whole model. Exit 0 when all work, 1 when something failed."""
    from ..modelcheck import check_model, check_onnx, render
    from ..zoo import resolve

    if model.endswith(".onnx"):
        from .profiling import onnx_shapes

        try:
            shapes = onnx_shapes(model, input_shape, input_flags)
        except (TiercutError, OSError, ValueError) as exc:
            _fail(exc)
        report = check_onnx(model, max_cuts=max_cuts, tol=tol, input_shapes=shapes)
        console.print(render(report), highlight=False, markup=False)
        raise typer.Exit(0 if report.ok else 1)
    try:
        entry = resolve(model, _shape(input_shape), inputs=input_flags or None)
        net = entry.build()
        inputs = entry.example_inputs()
    except TiercutError as exc:
        _fail(exc)
    report = check_model(net, inputs, model, leaf_modules=entry.leaf_modules + tuple(leaf),
                         max_cuts=max_cuts, tol=tol)
    console.print(render(report), highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(1)
