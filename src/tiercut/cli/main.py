"""The ``tiercut`` typer app and the registration of every command group's commands.

The commands live one group to a module beside this one; what is heavy to import (the
runtime, the link emulator, plotting) they import when they run.
"""
from __future__ import annotations

import typer

from .calibrate import calibrate_cmd
from .check import check_cmd
from .cluster import cluster_app
from .dashboard import dashboard_cmd
from .link import link_cmd
from .plan import plan_cmd
from .profiling import models, predict, profile, show
from .serve import bench_cmd, infer_cmd, serve_cmd
from .simulate import simulate_cmd
from .testbed import testbed_cmd

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Run one neural network across device, edge and cloud.")

# in the order ``tiercut --help`` lists them
COMMANDS = (("models", models), ("profile", profile), ("show", show), ("predict", predict),
            ("check", check_cmd), ("plan", plan_cmd), ("testbed", testbed_cmd), ("serve", serve_cmd),
            ("infer", infer_cmd), ("bench", bench_cmd), ("link", link_cmd),
            ("simulate", simulate_cmd), ("calibrate", calibrate_cmd),
            ("dashboard", dashboard_cmd))
for _name, _command in COMMANDS:
    app.command(_name)(_command)
app.add_typer(cluster_app, name="cluster")


if __name__ == "__main__":
    app()
