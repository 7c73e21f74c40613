"""The testbed end to end (servers, emulated links, plans measured), and the CPU cap."""
import os
import subprocess
import sys

import pytest

from tiercut.measure import cpucap
from tiercut.testbed import Setting, report, run_testbed


def test_plans_run_for_real_behind_emulated_links():
    settings = [Setting("fast", 200e6, 0.002)]
    full_speed = {"device": 1.0, "edge": 1.0, "cloud": 1.0}
    runs = run_testbed("squeezenet1_1", settings, requests=2, min_requests=1, budget_s=5.0,
                       caps=full_speed, profile_repeat=2, log=lambda _: None)
    speeds = runs[0].speeds
    assert set(speeds) == {"device", "edge", "cloud"} and all(v > 0 for v in speeds.values())
    assert all(r.speeds is speeds for r in runs)  # one setting: one measurement for its plans
    assert [r.label for r in runs] == ["chosen", "all-device", "all-cloud"]
    for run in runs:  # measure() checks every answer equals the whole model's
        assert run.fallbacks == 0 and len(run.measured_s) >= 1
        assert all(s > 0 for s in run.measured_s)
    cloud = next(r for r in runs if r.label == "all-cloud")
    # the input crosses a 2 ms link and the answer comes back: at least both delays
    assert min(cloud.measured_s) >= 2 * 0.002
    (row,) = report(runs)
    assert row["setting"] == "fast" and row["requests"] >= 1
    assert row["predicted_ms"] == pytest.approx(runs[0].plan.total_s * 1e3)


BUSY = """
import time
end = time.monotonic() + 1.0
while time.monotonic() < end:
    pass
print(time.process_time())
"""


@pytest.mark.skipif(not cpucap.available(), reason="CPU caps need root and cgroups")
def test_cpu_cap_limits_a_busy_process():
    with cpucap.CpuCap(0.2) as cap:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()\n" + BUSY],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        cap.add(proc.pid)
        out, _ = proc.communicate("go\n", timeout=30)
    cpu_seconds = float(out)
    assert cpu_seconds < 0.45  # about 0.2 of each wall second; uncapped it would be ~1


def test_cpu_cap_refuses_bad_fractions():
    with pytest.raises(cpucap.CpuCapError, match=r"fraction of one CPU in \(0, 64\]"):
        cpucap.CpuCap(0.0)


@pytest.mark.skipif(not cpucap.available(), reason="CPU caps need root and cgroups")
def test_cpu_cap_holds_one_thread_and_not_the_rest_of_its_process():
    import threading
    import time

    def busy_cpu_seconds() -> float:  # a second of wall time spinning; the thread's CPU time
        start, end = time.thread_time(), time.monotonic() + 1.0
        while time.monotonic() < end:
            pass
        return time.thread_time() - start

    with cpucap.CpuCap(0.2) as cap:
        pool = cpucap.capped_executor(cap)
        tid = pool.submit(threading.get_native_id).result()
        with open(f"/proc/self/task/{tid}/cgroup") as f:
            assert cap.path.name in f.read()  # the pool's thread moved itself under the cap
        capped = pool.submit(busy_cpu_seconds).result()
        pool.shutdown()
        with open(f"/proc/self/task/{threading.get_native_id()}/cgroup") as f:
            assert cap.path.name not in f.read()  # this thread was left where it was
    assert capped < 0.45  # about 0.2 of each wall second; uncapped it would be ~1


PRINT_A_NEW_THREADS_CPUS = """
import os, sys, threading
sys.stdin.readline()  # pinned by now
seen = []
t = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))
t.start(); t.join()
print(seen[0], sorted(os.sched_getaffinity(0)))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="pinning shows only with CPU affinity (Linux) and 2 CPUs or more")
def test_pin_holds_a_process_and_the_threads_it_starts_later():
    proc = subprocess.Popen([sys.executable, "-c", PRINT_A_NEW_THREADS_CPUS],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    cpu = max(os.sched_getaffinity(0))
    cpucap.pin(proc.pid, {cpu})
    assert os.sched_getaffinity(proc.pid) == {cpu}
    out, _ = proc.communicate("go\n", timeout=30)
    assert out.split() == [f"[{cpu}]"] * 2  # a thread started after the pin, and the main one


def test_cpu_lists_parse_and_bad_ones_are_named():
    assert cpucap.parse_cpus("1") == {1}
    assert cpucap.parse_cpus("0,2") == {0, 2}
    assert cpucap.parse_cpus(" 0-2,5") == {0, 1, 2, 5}
    for bad, said in (("a", "'a' is not a CPU number"), ("3-1", "'3-1' is not a range"),
                      ("-1", "'-1' is not a"), ("1,,2", "'' is not a CPU number")):
        with pytest.raises(cpucap.CpuCapError, match=said):
            cpucap.parse_cpus(bad)
    with pytest.raises(cpucap.CpuCapError, match=r"CPUs \[4096\] do not exist here"):
        cpucap.pin(os.getpid(), {4096})


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="pinning shows only with CPU affinity (Linux) and 2 CPUs or more")
def test_a_spawned_server_runs_on_the_cpus_it_is_given():
    from tiercut.runtime.launch import spawn

    cpu = max(os.sched_getaffinity(0))
    with spawn(["squeezenet1_1"], cpus=[cpu]) as server:
        threads = os.listdir(f"/proc/{server.process.pid}/task")
        assert len(threads) > 1  # gRPC's and torch's threads too
        assert all(os.sched_getaffinity(int(t)) == {cpu} for t in threads)
