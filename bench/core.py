"""Benchmarks of the task-graph core. Prints numbers; asserts nothing.

    python bench/core.py            # from the project root

Targets (issue #2): `doit list` <= 0.35 s and a no-op default run <= 0.5 s (median, this
2-core machine); plan analysis of synthetic plans of 1k / 5k / 10k items with 4 needs
each, 10k <= 2 s, roughly linear growth.
"""
from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed_command(argv, runs=7) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def synthetic_plan_text(n: int, edges: int = 4, seed: int = 7) -> str:
    rnd = random.Random(seed)
    lines = ["workstreams:"] + [f"  - {{id: w{k}, title: W{k}}}" for k in range(6)] + ["items:"]
    for i in range(n):
        needs = sorted(rnd.sample(range(i), min(i, edges)))
        lines.append(f"  - {{id: {i}, title: item {i}, workstream: w{i % 6}, "
                     f"estimate_days: {rnd.choice([0.5, 1, 1.5, 2])}, needs: {needs}, tasks: [t{i}]}}")
    return "\n".join(lines) + "\n"


def main() -> None:
    from tasks.graph import analyse
    from tasks.plan import loads
    from tasks.report import PlanView

    doit = [sys.executable, "-m", "doit"]
    subprocess.run(doit, cwd=ROOT, capture_output=True)  # warm: the no-op run needs a first run
    med, best = timed_command(doit + ["list"])
    print(f"doit list                 median {med:.3f} s  (best {best:.3f} s)   target <= 0.35 s")
    med, best = timed_command(doit)
    print(f"doit (no-op default run)  median {med:.3f} s  (best {best:.3f} s)   target <= 0.5 s")

    import networkx  # noqa: F401  (imported once, as in a real process; not part of the analysis)

    print("plan analysis (critical path, waves, schedule, forecast), 4 needs per item:")
    base = None
    for n in (1_000, 5_000, 10_000):
        text = synthetic_plan_text(n)
        t = time.perf_counter()
        plan = loads(text)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        a = analyse(plan)
        t_an = time.perf_counter() - t
        t = time.perf_counter()
        PlanView.build(plan).to_json()
        t_view = time.perf_counter() - t
        per = t_an / n * 1e6
        base = base or per
        print(f"  {n:>6} items: analysis {t_an:.3f} s ({per:.0f} us/item, x{per / base:.2f} of 1k)  "
              f"load+check {t_load:.3f} s  full view {t_view:.3f} s  "
              f"critical path {len(a.critical_path)} items / {a.length_days:g} days, {len(a.waves)} waves")
    print("  target: 10k analysis <= 2 s, roughly linear")


if __name__ == "__main__":
    main()
