"""Speed of the test suite. Prints numbers; asserts nothing.

    python bench/suite.py                       # the whole suite (tests/)
    python bench/suite.py tests/test_tanka.py   # a subset: any pytest arguments
    python bench/suite.py --top 40 tests/...    # how many slowest tests to print (default 25)
    python bench/suite.py -n0                   # in one process (pytest-xdist off): CPU per test

The suite runs as `pytest` runs it: in pytest-xdist workers (pyproject.toml's addopts, one per
core; the control-plane tests share one worker). Per-test CPU time is measured only in one
process (``-n0``); in parallel, the total CPU time counts every worker once it has ended.

Target (issue #9): the whole suite <= 60 s on an idle 2-core machine. The machine this runs
on is usually shared, so the load average before and after is printed next to the times,
and the CPU time over the usable cores: no scheduling gets the suite's wall time below it.

Prints the total wall time (pytest start to finish, collection and session fixtures
included), the time by test file (setup + call + teardown of its tests: what a file costs),
the session-level set-up that no single test pays for, and the slowest tests.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's tasks/, not an installed one's
from tasks.core import usable_cores  # noqa: E402

#: issue #9's target for the whole suite on an idle 2-core machine
TARGET_S = 60.0


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its children that have ended."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class _Timings:
    """A pytest plugin collecting each test's phase durations, CPU time and outcome."""

    def __init__(self):
        self.phases: dict[str, dict[str, float]] = defaultdict(dict)
        self.cpu: dict[str, float] = {}
        self.outcome: dict[str, str] = {}
        self.collect_s = 0.0
        self._t_collect = None

    def pytest_collection(self, session):
        self._t_collect = time.perf_counter()

    def pytest_collection_finish(self, session):
        self.collect_s = time.perf_counter() - self._t_collect

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        c0 = cpu_seconds()
        yield
        self.cpu[item.nodeid] = cpu_seconds() - c0

    def pytest_runtest_logreport(self, report):
        self.phases[report.nodeid][report.when] = report.duration
        if report.when == "call" or report.outcome != "passed":
            self.outcome[report.nodeid] = report.outcome


def _cpu(seconds: float | None, serial: bool) -> str:
    """A CPU time for the tables: measured in one process only (see the module's doc)."""
    return f"{seconds or 0:.1f}" if serial else "-"


def main(argv: list[str]) -> int:
    top = 25
    if argv[:1] == ["--top"]:
        top, argv = int(argv[1]), argv[2:]
    args = argv or ["tests"]
    os.chdir(ROOT)
    plugin = _Timings()
    serial = "-n0" in args or ("-n", "0") in zip(args, args[1:])
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), cpu_seconds()
    code = pytest.main(["-q", "-p", "no:cacheprovider", *args], plugins=[plugin])
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    load1 = os.getloadavg()[0]

    per_test = {node: sum(ph.values()) for node, ph in plugin.phases.items()}
    by_file: dict[str, list[float]] = defaultdict(list)
    for node, secs in per_test.items():
        by_file[node.split("::", 1)[0]].append(secs)
    in_tests = sum(per_test.values())
    outcomes = defaultdict(int)
    for o in plugin.outcome.values():
        outcomes[o] += 1

    print()
    print(f"suite: {' '.join(args)}   pytest exit code {code}")
    print(f"wall time          {wall:8.1f} s   ({len(per_test)} tests: "
          + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) + ")")
    print(f"cpu time           {cpu:8.1f} s   (user+system of pytest and its ended children: "
          f"the measure to compare on a loaded machine)")
    cores = usable_cores()
    print(f"cpu floor          {cpu / cores:8.1f} s   (the cpu time over the {cores} usable cores: the least wall "
          f"time this much work takes here; target {TARGET_S:.0f} s)")
    print(f"collection         {plugin.collect_s:8.1f} s")
    print(f"inside tests       {in_tests:8.1f} s   (setup+call+teardown, session fixtures "
          f"charged to the first test that asks" + (")" if serial else "; summed over the workers)"))
    if serial:
        print(f"outside tests      {wall - in_tests - plugin.collect_s:8.1f} s   (start-up, reporting)")
    print(f"load average       {load0:8.2f} before, {load1:.2f} after ({cores} usable cores)")
    print()
    cpu_by_file: dict[str, float] = defaultdict(float)
    for node, secs in plugin.cpu.items():
        cpu_by_file[node.split("::", 1)[0]] += secs
    print(f"{'by file':<40} {'tests':>5} {'wall s':>8} {'share':>6} {'mean':>6} {'cpu s':>8}")
    for f, times in sorted(by_file.items(), key=lambda kv: -sum(kv[1])):
        s = sum(times)
        print(f"{f:<40} {len(times):5d} {s:8.1f} {100 * s / max(in_tests, 1e-9):5.1f}% "
              f"{s / len(times):6.2f} {_cpu(cpu_by_file.get(f), serial):>8}")
    print()
    print(f"slowest {top} tests (wall: total = setup / call / teardown; cpu)")
    for node, secs in sorted(per_test.items(), key=lambda kv: -kv[1])[:top]:
        ph = plugin.phases[node]
        print(f"{secs:7.2f} = {ph.get('setup', 0):6.2f} {ph.get('call', 0):6.2f} "
              f"{ph.get('teardown', 0):6.2f}  cpu {_cpu(plugin.cpu.get(node), serial):>6}  {node}")
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
