"""Wall time of `tiercut profile MODEL` as a user runs it (process start to file written).

Goal for resnet50: under 60 s. Usage: python benchmarks/profile_time.py [MODEL]
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "resnet50"
    exe = shutil.which("tiercut") or str(Path(sys.executable).with_name("tiercut"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "host.json"
        t0 = time.perf_counter()
        subprocess.run([exe, "profile", model, "-o", str(out)], check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        size = out.stat().st_size
    print(f"tiercut profile {model}: {seconds:.1f} s wall (default settings), profile {size} bytes")


if __name__ == "__main__":
    main()
