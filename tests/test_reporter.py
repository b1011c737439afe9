"""The reporter (tasks/reporter.py) in a parallel run (`doit -n 2 -P process`): every task's
lines stay whole and its own, and Ctrl-C names every task that was under way."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support import REPO, env_for


DODO = '''\
from tasks.reporter import RichReporter

DOIT_CONFIG = {"reporter": RichReporter, "default_tasks": ["a", "b", "c"], "verbosity": 1}


class Stale:
    reason = "its input changed"

    def __call__(self, task, values):
        return False


def task_a():
    return {"actions": ["touch a.started; while [ ! -e b.started ]; do sleep 0.01; done; sleep %(sleep)s"],
            "uptodate": [Stale()]}


def task_b():
    return {"actions": ["touch b.started; while [ ! -e a.started ]; do sleep 0.01; done; sleep %(sleep)s"],
            "uptodate": [Stale()]}


def task_c():
    return {"actions": ["true"], "task_dep": ["a", "b"], "uptodate": [Stale()]}
'''


def _project(tmp_path: Path, sleep: str) -> Path:
    (tmp_path / "dodo.py").write_text(DODO % {"sleep": sleep})
    return tmp_path


def _env() -> dict:
    """A run with this checkout's tasks package, its output not forced into colour."""
    env = env_for(REPO)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    return env


def test_a_parallel_run_reports_each_task_on_its_own_lines(tmp_path):
    project = _project(tmp_path, "0")
    proc = subprocess.run([sys.executable, "-m", "doit", "-n", "2", "-P", "process"], cwd=project,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    # a and b ran at once (each waits for the other to start)
    assert lines.index("> b") < lines.index(next(ln for ln in lines if ln.startswith("ok a ")))
    for name in "abc":
        start = lines.index(f"> {name}")
        assert lines[start + 1] == "  because its input changed"   # its reason, right under it
        assert sum(ln.startswith(f"ok {name} ") for ln in lines) == 1
    assert lines.index("> c") > max(lines.index(ln) for ln in lines if ln.startswith(("ok a ", "ok b ")))
    assert lines[-1].startswith("done: 3 executed, 0 up to date in ")
    assert "Traceback" not in proc.stdout + proc.stderr


def test_ctrl_c_of_a_parallel_run_names_every_task_under_way(tmp_path):
    project = _project(tmp_path, "30")
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-n", "2", "-P", "process"], cwd=project,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not ((project / "a.started").exists() and (project / "b.started").exists()):
            assert time.monotonic() < deadline and proc.poll() is None, "a and b never ran at once"
            time.sleep(0.05)
        time.sleep(0.2)   # both reported as started
        os.killpg(proc.pid, signal.SIGINT)   # Ctrl-C reaches the whole foreground group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    line = next((ln for ln in out.splitlines() if ln.startswith("interrupted during ")), "")
    assert set(line.split(":")[0][len("interrupted during "):].split(", ")) == {"a", "b"}, out
    assert "they run again next time" in line
    assert "Traceback" not in out + err and "> c" not in out


def _task(name, skipped=False):
    from doit.task import Task

    task = Task(name, [lambda: None])
    task.values = {"skipped": "why"} if skipped else {}
    return task


def test_the_summary_counts_a_skipped_check_as_skipped_not_executed():
    import io

    from tasks.reporter import RichReporter

    out = io.StringIO()
    rep = RichReporter(out, {})
    rep.styled = False
    for name, skipped in (("a", False), ("b", False), ("c", True), ("d", True)):
        task = _task(name, skipped)
        rep.execute_task(task)
        rep.add_success(task)
    rep.skip_uptodate(_task("e"))
    rep.complete_run()
    done = next(line for line in out.getvalue().splitlines() if line.startswith("done:"))
    assert done.startswith("done: 2 executed, 1 up to date, 2 skipped in "), done
