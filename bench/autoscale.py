"""Autoscaling timings on the test control plane: control plane start-up, memory, and the
time from XADD of 12 jobs to KEDA's first agent Job (tests/autoscale.py is the scenario).
Prints numbers; asserts nothing.

    python bench/autoscale.py

Needs the control-plane tools (`doit tools control-plane`, etcd-server, redis-server).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(HERE))

from autoscale import Autoscale  # noqa: E402
from support import copy_project, run_doit  # noqa: E402
from tanka_fixtures import install_charts  # noqa: E402

from tasks import controlplane  # noqa: E402

PUSHED = 12


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = copy_project(Path(tmp) / "project")
        install_charts(project)
        run_doit(project, "render:staging", check=True)
        t0 = time.perf_counter()
        cp = controlplane.start(Path(tmp) / "controlplane")
        print(f"control plane start-up (pki, etcd, apiserver, cm, scheduler, kwok node): "
              f"{time.perf_counter() - t0:6.2f} s")
        rss = cp.rss_mib()
        print("memory (RSS, MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items())
              + f"; total {sum(rss.values()):.0f}")
        s = Autoscale(cp, project)
        try:
            t1 = time.perf_counter()
            s.setup()
            print(f"redis + apply staging + KEDA operator ready: {time.perf_counter() - t1:6.2f} s")
            pushed = s.push(PUSHED)
            seen = s.watch(pushed, want=3, settle=0)
            print(f"XADD {PUSHED} jobs -> first agent Job: {seen['first_job_s']:6.2f} s "
                  f"(polling interval {s.polling_interval()} s)")
            rss = cp.rss_mib()
            print(f"memory with KEDA and Redis (RSS, MiB): total {sum(rss.values()):.0f} "
                  f"(keda-operator {rss.get('keda-operator', 0):.0f}, redis-server {rss.get('redis-server', 0):.0f})")
        finally:
            s.teardown()
            cp.stop()


if __name__ == "__main__":
    main()
