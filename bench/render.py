"""Render timings: a full render + validate of every environment, a no-op run, and a
one-library change. Prints numbers; asserts nothing.

    python bench/render.py

Runs in a temporary copy of the working tree with the stand-in charts of the tests
(tests/fixtures/charts), so it needs tk and helm but no network.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))

from support import copy_project, run_doit  # noqa: E402
from tanka_fixtures import install_charts  # noqa: E402

TASKS = ["validate:local", "validate:staging", "validate:prod"]


def timed(project: Path, *args: str) -> float:
    t0 = time.perf_counter()
    run_doit(project, *args, check=True)
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = copy_project(Path(tmp) / "project")
        install_charts(project)
        print(f"full render + validate (3 envs): {timed(project, *TASKS):6.2f} s")
        print(f"no-op run:                       {timed(project, *TASKS):6.2f} s")
        lib = project / "tanka/lib/raibid/server.libsonnet"
        lib.write_text(lib.read_text() + "\n// changed\n")
        print(f"one library changed (no output change): {timed(project, *TASKS):6.2f} s")
        lib.write_text(lib.read_text().replace("terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 45"))
        print(f"one library changed (output changes):   {timed(project, *TASKS):6.2f} s")
        t0 = time.perf_counter()
        run_doit(project, "list", check=True)
        print(f"doit list:                       {time.perf_counter() - t0:6.2f} s")


if __name__ == "__main__":
    main()
