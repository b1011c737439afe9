"""The test helpers themselves: a test project is a copy of the project, nothing else."""
from __future__ import annotations

import shutil
import subprocess

from support import REPO, copy_project


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_copy_project_copies_the_project_not_an_untracked_venv_or_junk(tmp_path):
    repo = tmp_path / "checkout"
    (repo / "tasks").mkdir(parents=True)
    (repo / "tasks" / "core.py").write_text("# tracked\n")
    (repo / "README.md").write_text("# tracked\n")
    shutil.copy2(REPO / ".gitignore", repo / ".gitignore")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    # the usual habit: a venv in the checkout (big), another under an unusual name, junk
    for venv in (".venv", "venv", "py311"):
        site = repo / venv / "lib" / "python3.11" / "site-packages"
        site.mkdir(parents=True)
        (repo / venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
        (site / "big.so").write_bytes(b"\0" * (8 << 20))
    (repo / "scratch.txt").write_text("notes\n")
    (repo / "tasks" / "wip.py").write_text("# not yet added: work in progress is tested\n")
    (repo / "tasks" / "inner" / ".venv").mkdir(parents=True)
    (repo / "tasks" / "inner" / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")

    dst = copy_project(tmp_path / "copy", repo=repo)

    copied = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert copied == [".gitignore", "README.md", "tasks/core.py", "tasks/wip.py"]
    size = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    assert size < 1 << 20


def test_gitignore_ignores_virtualenvs_and_tool_caches():
    for path in (".venv/bin/python", "venv/bin/python", ".tox/py/x", ".mypy_cache/x", ".ruff_cache/x"):
        proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO)
        assert proc.returncode == 0, f".gitignore does not ignore {path}"


# --------------------------------------------------------------------------- the doit runners

_DODO = '''
import os, subprocess, sys
from doit.exceptions import TaskFailed

def task_hello():
    """Say hello, also from a child process."""
    def hello():
        print("hello from python")
        os.environ["LEAKED_BY_TASK"] = "1"
        sys.path.append("/leaked/by/task")
        subprocess.run(["sh", "-c", "echo from-a-child; echo child-err >&2"])
    return {"actions": [hello], "verbosity": 2}

def task_broken():
    """Fail the doit way."""
    return {"actions": [lambda: TaskFailed("broken on purpose")]}

def task_pid():
    """Print the process id doit runs in."""
    return {"actions": [lambda: print("pid", os.getpid())], "verbosity": 2}

def task_crash():
    """A task creator's SystemExit (what a plan error used to do), when asked."""
    if os.environ.get("CRASH"):
        raise SystemExit("crashed while loading")
    return {"actions": None}
'''


def _scratch(tmp_path, name="p"):
    project = tmp_path / name
    project.mkdir()
    (project / "dodo.py").write_text(_DODO)
    return project


def test_in_process_doit_answers_like_a_child_process(tmp_path):
    from support import doit_here, env_for, run_doit_process

    for args in (["list"], ["hello"], ["broken"], ["nosuchtask"]):
        a = _scratch(tmp_path, "a" + args[0])
        b = _scratch(tmp_path, "b" + args[0])
        env = env_for(a)
        child = run_doit_process(a, *args, env=env)
        here = doit_here(b, *args, env=env)
        assert (here.returncode, here.stdout, here.stderr) == (child.returncode, child.stdout, child.stderr), args
    hello = doit_here(_scratch(tmp_path, "c"), "hello", env=env_for(a))
    assert "hello from python" in hello.stdout and "from-a-child" in hello.stdout
    assert "child-err" in hello.stderr
    assert doit_here(_scratch(tmp_path, "d"), "broken").returncode == 1


def test_in_process_doit_leaves_this_process_as_it_found_it(tmp_path):
    import os
    import sys

    from support import doit_here, env_for
    from tasks import core

    before = (os.getcwd(), dict(os.environ), list(sys.path), sys.excepthook, sys.modules.get("dodo"),
              list(core.CI_CHECKS), sys.stdout, sys.stderr)
    project = _scratch(tmp_path)
    assert doit_here(project, "hello").returncode == 0
    crash = doit_here(project, "list", env=env_for(project, {"CRASH": "1"}))
    # SystemExit from a task creator: the message and status a child process ends with
    assert crash.returncode == 1 and "crashed while loading" in crash.stderr
    after = (os.getcwd(), dict(os.environ), list(sys.path), sys.excepthook, sys.modules.get("dodo"),
             list(core.CI_CHECKS), sys.stdout, sys.stderr)
    assert after == before


def test_a_project_with_changed_task_modules_runs_in_a_child_process(project):
    from support import run_doit

    core = project / "tasks" / "core.py"
    core.write_text(core.read_text().replace('"""Run every offline check', '"""CHANGED IN THE COPY. Run every offline check'))
    assert "CHANGED IN THE COPY" in run_doit(project, "list").stdout


def test_run_doit_stays_in_process_only_where_a_child_would_import_these_tasks(tmp_path, project):
    import os

    from support import REPO, env_for, run_doit

    def pid(project, env):
        return int(run_doit(project, "pid", env=env, check=True).stdout.split("pid ")[1].split()[0])

    scratch = _scratch(tmp_path, "s")
    with_repo = env_for(scratch)
    with_repo["PYTHONPATH"] = str(REPO)  # like test_commands' mini projects
    assert pid(scratch, with_repo) == os.getpid()
    (project / "dodo.py").write_text(_DODO)  # a copy: its own, identical tasks/
    assert pid(project, env_for(project)) == os.getpid()
    assert pid(scratch, env_for(scratch)) != os.getpid()  # no tasks package on its path: a child
    (project / "tasks" / "core.py").write_text((project / "tasks" / "core.py").read_text() + "# changed\n")
    assert pid(project, env_for(project)) != os.getpid()


def test_a_killed_test_session_leaves_no_control_plane_running(tmp_path):
    """conftest's watcher stops the session's control plane once the test process has gone,
    also when it was killed before its fixtures' teardown could run."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import _stop_when_gone
    from tasks.controlplane import ControlPlane

    cp = ControlPlane(tmp_path / "cp")
    cp.dir.mkdir()
    pid = cp.spawn("sleeper", ["sleep", "300"])  # stands for etcd, kube-apiserver, ...
    session = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    _stop_when_gone(session.pid, cp.dir)
    time.sleep(1.5)
    assert cp.alive("sleeper")          # the session lives: its control plane runs
    session.send_signal(signal.SIGKILL)  # no teardown
    session.wait()
    deadline = time.monotonic() + 20
    while cp.alive("sleeper") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not cp.alive("sleeper"), f"pid {pid} still runs after the test session was killed"


GROUPED = """\
import os
import pytest


@pytest.fixture
def controlplane():  # stands in for the session's: the grouping is by the fixture's name
    return None


@pytest.mark.parametrize("n", range(6))
def test_grouped(n, controlplane):
    with open(f"ran-{n}", "w") as fh:
        fh.write(os.environ.get("PYTEST_XDIST_WORKER", "none"))
"""


def test_the_control_plane_tests_share_one_worker(tmp_path):
    """tests/conftest.py puts every test that uses ``controlplane`` into one xdist group; a
    pytest and pytest-xdist that ignore the group (pytest 9.2 with xdist 3.8: pytest's node
    ids changed under xdist) spread them over the workers, each of which then starts a
    control plane of its own. This runs six such tests under ``-n 2`` with this project's
    conftest as a plugin."""
    import os
    import sys

    (tmp_path / "test_grouped.py").write_text(GROUPED)
    # without hypothesis's plugin: each of the three processes would import it (~1 s of CPU)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
                           "-p", "conftest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                           "--rootdir", str(tmp_path),
                           "-c", os.devnull, str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    workers = {(tmp_path / f"ran-{n}").read_text() for n in range(6)}
    assert len(workers) == 1 and workers != {"none"}, workers
