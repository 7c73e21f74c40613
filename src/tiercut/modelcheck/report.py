"""The check's report as a few lines of text: what works, and what does not and why."""
from __future__ import annotations

from tiercut.modelcheck.check import CheckReport


def render(r: CheckReport) -> str:
    if r.error and not r.method:
        return f"{r.model}: capture FAILED\n  {r.error}"
    lines = [f"{r.model}: captured by {r.method}, {r.nodes} nodes, in {r.capture_s:.1f} s; "
             f"profiled in {r.profile_s:.1f} s"]
    if r.error:
        lines.append(f"  {r.error}")
    width = max([len(c.label) for c in r.cuts] + [3])
    for c in r.cuts:
        what = {"exact": "exact", "close": f"close ({c.max_rel:.1e})"}.get(c.status, "FAILED")
        lines.append(f"  {c.label:{width}}  device {c.device_nodes:5d}  {what}")
        if c.error:
            lines.append(f"  {'':{width}}  {c.error}")
    failed = sum(c.status == "failed" for c in r.cuts)
    exact = sum(c.status == "exact" for c in r.cuts)
    lines.append(f"{len(r.cuts)} cuts: {exact} exact, {len(r.cuts) - exact - failed} close, "
                 f"{failed} failed")
    return "\n".join(lines)
