"""Plans run for real on one machine: tier servers on loopback behind emulated links, the
device in this process, CPU caps for slower hosts; predicted against measured (``run``), and
the codec plans held to their calibrated bounds (``joint``), and a run of layers divided
across several edge servers (``divided``). Imports graph, zoo, measure, planner, link,
runtime and decompose; only the command line and the benchmarks import it.
"""
from .run import (CAPS, CLOUD_EXTRA_S, EDGE_CLOUD, SETTINGS, TIERS, OnRequest, Run, Setting,
                  link_proxies, links_for, measure, measure_speeds, plot, report, run_testbed,
                  scenario_for)

__all__ = ["CAPS", "CLOUD_EXTRA_S", "EDGE_CLOUD", "SETTINGS", "TIERS", "OnRequest", "Run",
           "Setting", "link_proxies", "links_for", "measure", "measure_speeds", "plot", "report",
           "run_testbed", "scenario_for"]
