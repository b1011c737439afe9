"""Benchmarks of the cluster/Tilt workstream. Prints numbers; asserts nothing.

    python bench/tilt.py            # from the project root

Measured in a temporary copy of the project with the stand-in charts and the recording
shims for docker, k3d and kubectl (real tk and helm), so the numbers are doit's own
overhead plus the live checks' process starts (a real cluster answers more slowly):
- `doit up` first run, and a no-op second run (target: well under a second);
- `doit cluster` on a running cluster (one live k3d question + one kubectl);
- `doit tilt:check`: the real pinned Tilt loads the Tiltfile for every environment
  (`tilt alpha tiltfile-result`; the render is up to date), and one such load alone.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support import FIXTURES, Shims, copy_project, env_for, run_doit  # noqa: E402
from tanka_fixtures import install_charts, kubectl_shim  # noqa: E402


def timed(fn, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        project = copy_project(tmp / "project")
        install_charts(project)
        shims = Shims(tmp / "shims")
        shims.add("docker", (FIXTURES / "shims" / "docker_handler.py").read_text())
        shims.add("k3d", (FIXTURES / "shims" / "k3d_handler.py").read_text())
        kubectl_shim(shims)
        env = env_for(project, {"RAIBID_SRC": str(FIXTURES / "raibid-ci")}, path_first=[shims.bin])

        def up():
            r = run_doit(project, "up", env=env)
            assert r.returncode == 0, r.stdout + r.stderr

        t = time.perf_counter()
        up()
        print(f"doit up, first run (cluster created, render, builds, push, apply): {time.perf_counter() - t:.2f} s")
        med, best = timed(up, 7)
        print(f"doit up, no-op second run: median {med:.3f} s, best {best:.3f} s (7 runs)")
        med, best = timed(lambda: run_doit(project, "cluster", env=env), 7)
        print(f"doit cluster, running cluster: median {med:.3f} s, best {best:.3f} s (7 runs)")

        def check():
            run_doit(project, "forget", "tilt:check", env=env, check=True)
            r = run_doit(project, "tilt:check", env=env)
            assert r.returncode == 0, r.stdout + r.stderr

        check()  # the render it needs is up to date after `doit up`
        med, best = timed(check, 5)
        print(f"doit tilt:check (real Tilt, every environment): median {med:.2f} s, best {best:.2f} s (5 runs)")

        os.environ["RAIBID_DEPLOY_ROOT"] = str(project)
        os.environ["RAIBID_SRC"] = str(FIXTURES / "raibid-ci")
        from tasks import tilt

        med, best = timed(lambda: tilt.tiltfile_result("local"), 5)
        print(f"one Tiltfile load (tilt alpha tiltfile-result --env local): median {med:.2f} s, best {best:.2f} s (5 runs)")


if __name__ == "__main__":
    main()
