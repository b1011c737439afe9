"""raibid-ci's real binaries with the local render's environment (tests/realci.py is the
scenario): builds raibid-server and raibid-agent from RAIBID_SRC, runs them on loopback
against a redis-server and a git smart-HTTP server, presses "Send test job" and shows what
the agent did with that job. Prints what happened and timings; asserts nothing.

    RAIBID_SRC=/path/to/raibid-ci python bench/realci.py

Needs cargo (the build fetches crates from crates.io once), git, redis-server and the
default `doit tools` (tk, helm, tilt). The same run, asserted: `python -m pytest -m realci`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(HERE))

import realci  # noqa: E402

from tasks import tools  # noqa: E402
from tasks.controlplane import ControlPlaneError  # noqa: E402


def main() -> int:
    src = os.environ.get("RAIBID_SRC")
    if not src or not (Path(src) / "crates" / "agent").is_dir():
        print("set RAIBID_SRC to a raibid-ci checkout (one with crates/agent)")
        return 2
    missing = [t for t in ("cargo", "git", "redis-server", "redis-cli", "tk", "helm", "tilt")
               if tools.which(t) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (`doit tools` for tk, helm, tilt; see `doit doctor`)")
        return 2
    with tempfile.TemporaryDirectory(prefix="realci-") as tmp:
        try:
            r = realci.run(Path(src), Path(tmp))
        except subprocess.CalledProcessError as e:
            cmd = " ".join(map(str, e.cmd))
            print(f"failed: {cmd} exited with {e.returncode} (its output is above)")
            return 1
        except (ControlPlaneError, AssertionError) as e:
            print(f"failed: {e}")
            return 1
    print(f"ports (127.0.0.1): {r.ports}")
    for problem in r.contract_problems:
        print(f"CONTRACT: {problem}")
    for route, (status, body) in r.server.items():
        print(f"server {route}: HTTP {status} {body[:300]}")
    print(f"button's job: {r.job}")
    print("git server requests:")
    for line in r.git_requests:
        print("  " + line)
    print("agent log (from the XADD on):")
    seen = False
    for m in r.agent_log:
        seen = seen or m.startswith(("Received", "Processing job"))
        if seen:
            print("  " + m[:300])
    print(f"job status in Redis: {r.status}")
    for what, seconds in r.timings.items():
        print(f"{what:34s} {seconds:8.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
