"""The doit plugin commands and the status derivation.

The commands run in-process (``DoitMain`` with a ``ModuleTaskLoader``, as doit's own tests
do) on a tiny project; a subprocess only where the process boundary is the point (Ctrl-C,
the real project's start-up)."""
import contextlib
import importlib.util
import io
import itertools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import REPO, Shims, env_for, run_doit

MINI_PLAN = """\
# a small plan
workstreams:
  - {id: core, title: Core}
  - {id: docs, title: Docs}
items:
  - {id: 1, title: make a, workstream: core, estimate_days: 1, tasks: [a]}
  - {id: 2, title: make b from a, workstream: core, estimate_days: 2, needs: [1], tasks: [b]}
  - {id: 3, title: flaky, workstream: docs, estimate_days: 1, needs: [1], tasks: [flaky]}
  - {id: 4, title: planned only, workstream: docs, estimate_days: 1, needs: [2], tasks: [later]}
milestones:
  - {id: m1, title: Core done, items: [1, 2], target_day: 2}
success_criteria:
  must:
    - {text: b is built, tasks: [b]}
"""

MINI_DODO = '''\
"""A tiny task graph to check status derivation with real doit runs."""
import os
from tasks import tools
from tasks.reporter import RichReporter

DOIT_CONFIG = {"default_tasks": ["b"], "reporter": RichReporter}


def task_a():
    """Copy in.txt to a.txt."""
    return {"actions": ["cp in.txt a.txt"], "file_dep": ["in.txt"], "targets": ["a.txt"]}


def task_b():
    """Build b.txt from a.txt."""
    return {"actions": ["cat a.txt a.txt > b.txt"], "file_dep": ["a.txt"], "targets": ["b.txt"]}


def task_flaky():
    """Fail when FAIL is set."""
    return {"actions": ["test -z \\"$FAIL\\""], "file_dep": ["in.txt"], "verbosity": 2}


def task_needs_tools():
    """Needs two tools that are not installed; must touch nothing."""
    return tools.needs({"actions": ["touch touched.txt"], "targets": ["touched.txt"]},
                       "k3d", "tilt-ui")
'''


@pytest.fixture
def mini(tmp_path) -> Path:
    d = tmp_path / "mini"
    d.mkdir()
    shutil.copy(REPO / "pyproject.toml", d / "pyproject.toml")
    (d / "plan.yaml").write_text(MINI_PLAN)
    (d / "dodo.py").write_text(MINI_DODO)
    (d / "in.txt").write_text("hello\n")
    return d


def mini_env(d, **extra):
    env = env_for(d, extra)
    env["PYTHONPATH"] = str(REPO)   # the tasks package, with the mini dodo.py
    return env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


_modules = itertools.count()


def _fresh_dodo(path: Path):
    """A new module for the dodo file at ``path``, to exec: compiled from its source as the
    project loader does (a cached compile of a same-size rewrite within a second is stale)."""
    from tasks.loader import SourceLoader

    name = f"dodo_{next(_modules)}"
    spec = importlib.util.spec_from_file_location(name, path, loader=SourceLoader(name, str(path)))
    return importlib.util.module_from_spec(spec)


def doit(project: Path, *args: str, check: bool = False, dodo: Path | None = None, **env) -> Result:
    """``doit ARGS`` in-process in ``project``: its pyproject.toml, its dodo.py (loaded
    afresh: a test may rewrite it), ``env`` on top of the environment, output captured.
    A broken plan exits 2 by SystemExit, as the command line does."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.cmd_run import opt_outfile
    from doit.doit_cmd import DoitMain

    from tasks import plan as plan_mod

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        mp.setenv("RAIBID_DEPLOY_ROOT", str(project))
        mp.setenv("PATH", os.environ["PATH"])      # restored after: a dodo.py may prepend to it
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setitem(opt_outfile, "default", out)   # doit binds `run`'s output stream at import
        plan_mod._CACHE.clear()                    # a new process reads plan.yaml afresh
        module = _fresh_dodo(dodo or project / "dodo.py")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            module.__spec__.loader.exec_module(module)
            try:
                code = DoitMain(ModuleTaskLoader(module)).run(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
    result = Result(code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({code}):\n{result.stdout}\n{result.stderr}")
    return result


def statuses(d, *args, **env):
    proc = doit(d, "plan", "--format", "json", *args, check=True, **env)
    data = json.loads(proc.stdout)
    return {i["id"]: i["status"] for i in data["items"]}, data


def test_status_follows_the_build_state(mini):
    s, _ = statuses(mini)
    assert s == {1: "not run", 2: "not run", 3: "not run", 4: "not built"}

    doit(mini, "run", "a", check=True)
    s, _ = statuses(mini)
    assert s[1] == "done" and s[2] == "not run"

    doit(mini, "run", "b", "flaky", check=True)
    s, data = statuses(mini)
    assert s == {1: "done", 2: "done", 3: "done", 4: "not built"}
    assert data["success_criteria"][0]["status"] == "done"
    assert data["milestones"][0]["done"] is True

    (mini / "in.txt").write_text("changed\n")          # inputs changed since the runs
    s, _ = statuses(mini)
    assert s[1] == "stale" and s[3] == "stale"
    assert s[2] == "stale"                             # its dependency a is stale

    proc = doit(mini, "run", "flaky", FAIL="1")
    assert proc.returncode != 0
    s, _ = statuses(mini)
    assert s[3] == "not run"                           # a failure erases the success


def test_status_reads_only_doits_public_dependency_api(tmp_path):
    """StatusReader works with a Dependency that offers only its public methods (it read the
    private ``_get`` before)."""
    from doit.dependency import Dependency, JsonDB
    from doit.task import Task

    from tasks.status import StatusReader

    class Public:
        def __init__(self, dep):
            self._dep = dep

        def __getattr__(self, name):
            if name.startswith("_"):
                raise AttributeError(f"private doit API: {name}")
            return getattr(self._dep, name)

    (tmp_path / "in.txt").write_text("x")
    dep = Dependency(JsonDB, str(tmp_path / "db.json"))
    ran = Task("ran", ["true"], file_dep=[str(tmp_path / "in.txt")])
    never = Task("never", ["true"], file_dep=[str(tmp_path / "in.txt")])
    dep.save_success(ran)
    tasks = {"ran": ran, "never": never}
    reader = StatusReader(tasks, Public(dep))
    assert (reader.task("ran"), reader.task("never")) == ("done", "not run")
    (tmp_path / "in.txt").write_text("y")
    assert StatusReader(tasks, Public(dep)).task("ran") == "stale"
    dep.remove_success(ran)                       # what doit does when a task fails
    assert StatusReader(tasks, Public(dep)).task("ran") == "not run"


def test_plan_json_contract(mini):
    _, data = statuses(mini)
    assert set(data) >= {"items", "workstreams", "critical_path", "waves", "milestones"}
    item = data["items"][1]
    assert item == {"id": 2, "title": "make b from a", "workstream": "core", "needs": [1],
                    "estimate_days": 2.0, "tasks": ["b"], "status": "not run"}
    assert data["workstreams"] == [{"id": "core", "title": "Core", "items": [1, 2]},
                                   {"id": "docs", "title": "Docs", "items": [3, 4]}]
    assert data["critical_path"] == [1, 2, 4] and data["waves"] == [[1], [2, 3], [4]]
    m = data["milestones"][0]
    assert m["forecast_day"] == 3 and m["on_track"] is False and m["late_by_days"] == 1


def test_board_markdown_mermaid_dot(mini):
    board = doit(mini, "plan", check=True, COLUMNS="150").stdout
    for text in ("Migration plan", "Core", "Docs", "Critical path", "#1 -> #2 -> #4",
                 "wave 2", "Core done", "late by 1d", "not built", "b is built"):
        assert text in board, text
    md = doit(mini, "plan", "--format", "markdown", check=True).stdout
    assert md.startswith("# Deployment migration plan") and "| #2 ★ | make b from a |" in md
    assert "plan.yaml sha256:" in md and "```mermaid" in md
    head = md.splitlines()[2]   # made by this command, not by docs:plan
    assert head.startswith("<!-- Generated by `doit plan --format markdown` from plan.yaml and "
                           "the build state"), head
    mer = doit(mini, "plan", "--format", "mermaid", check=True).stdout
    assert mer.startswith("flowchart LR") and "i1 ==> i2" in mer and "i1 --> i3" in mer
    dot = doit(mini, "plan", "--format", "dot", check=True).stdout
    assert dot.startswith("digraph plan") and "i1 -> i2 [penwidth=3" in dot


def test_list_is_in_critical_path_order_with_docs(mini):
    out = doit(mini, "list", check=True).stdout.splitlines()
    names = [line.split()[0] for line in out]
    assert names == ["a", "b", "flaky", "needs_tools"]
    assert "Copy in.txt to a.txt." in out[0]
    by_name = doit(mini, "list", "--sort", "name", check=True).stdout
    assert [line.split()[0] for line in by_name.splitlines()][0] == "a"


def test_help_describes_a_task_from_its_creator(mini):
    (mini / "dodo.py").write_text(MINI_DODO + '''

def task_docs():
    """Build the docs.

    The long story: every page, checked."""
    for name in ("api", "guide"):
        yield tools.needs({"name": name, "actions": ["true"], "task_dep": ["a"]}, "k3d")
''')
    out = doit(mini, "help", "docs:api", check=True).stdout
    assert "The long story: every page, checked." in out      # the creator's docstring
    assert "tools: k3d" in out and "after: a" in out


def test_broken_plan_gives_file_line_and_fix_without_traceback(mini):
    (mini / "plan.yaml").write_text(MINI_PLAN.replace("needs: [1], tasks: [b]", "needs: [9], tasks: [b]"))
    for args in (["plan"], ["graph", "--format", "dot"]):
        proc = doit(mini, *args)
        assert proc.returncode == 2, args
        assert "plan.yaml:7: item 2 needs unknown item 9" in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
    # the task list does not depend on the tracker: listed by name, with a note
    proc = doit(mini, "list")
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 0 and names == sorted(names) and len(names) > 2
    assert "plan.yaml: 1 problem found" in proc.stderr and "plan:check" in proc.stderr


def test_missing_tools_fail_before_anything_runs(mini):
    from tasks import tools

    proc = doit(mini, "run", "needs_tools", PATH="/usr/bin:/bin")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "missing tools: nothing was run." in out
    for name in ("k3d", "tilt-ui"):
        tool = tools.TOOLS[name]
        assert f"{name} >= {tool.version}" in out and f"install: {tool.install}" in out
    assert not (mini / "touched.txt").exists()


def test_reporter_summary_and_noop_run(mini):
    first = doit(mini, check=True).stdout
    assert "ok a" in first and "ok b" in first and "2 executed" in first
    second = doit(mini, check=True).stdout
    assert "0 executed, 2 up to date" in second and "nothing to do" in second
    as_json = doit(mini, "run", "-r", "json", "a", check=True).stdout
    assert json.loads(as_json)["tasks"][0]["name"] == "a"


def test_graph_writes_pictures_or_text(mini):
    from tasks import tools
    proc = doit(mini, "graph", "--format", "dot", check=True)
    assert "digraph plan" in proc.stdout and "digraph tasks" in proc.stdout
    assert '"a" -> "b" [style=dashed]' in proc.stdout      # b's file_dep is a's target
    if tools.which("dot"):
        proc = doit(mini, "graph", check=True)
        svg = (mini / "build" / "graph" / "plan.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "#1 make a" in svg
        assert (mini / "build" / "graph" / "tasks.svg").exists()


def test_doctor_lists_every_tool_and_who_needs_it(mini):
    from tasks import tools

    out = doit(mini, "doctor", COLUMNS="200").stdout
    rows = {line.split()[0] for line in out.splitlines() if line.strip()}
    for name in tools.TOOLS:
        assert name in rows, name
    assert "needs_tools" in out        # k3d and tilt-ui are needed by that task


def test_a_broken_plan_stops_the_default_run_and_the_plan_commands(project):
    """The real project, started as a user starts it: a broken plan.yaml fails the default run
    (its plan:check) and the commands that show the plan, with the line; the task list stays."""
    plan = project / "plan.yaml"
    text = plan.read_text()
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if ln.startswith("  - id: ")
                and n > text.splitlines().index("workstreams:"))
    plan.write_text(text.replace(text.splitlines()[line - 1] + "\n",
                                 text.splitlines()[line - 1] + "\n    colour: red\n", 1))
    where = f"plan.yaml:{line + 1}: workstreams[0]: unknown key 'colour'"
    default = run_doit(project, "plan:check")           # as started from a shell
    assert default.returncode == 1 and where in default.stdout + default.stderr
    for proc in [doit(project, "plan"), doit(project, "graph", "--format", "dot")]:
        assert proc.returncode == 2 and where in proc.stderr
    listed = doit(project, "list")
    assert listed.returncode == 0 and "plan:check" in listed.stdout
    for proc in (default, listed):
        assert "Traceback" not in proc.stderr


def test_a_skipped_check_counts_as_not_run(mini):
    (mini / "dodo.py").write_text(MINI_DODO + '''

from tasks.core import skip_action


def task_later():
    """A check that cannot run yet."""
    return {"actions": [skip_action("later: skipped, nothing to check yet")]}
''')
    doit(mini, "run", "a", "later", check=True)
    s, _ = statuses(mini)
    assert s[1] == "done" and s[4] == "not run"     # ran, but only to say it was skipped


def test_ctrl_c_says_what_was_interrupted_without_a_traceback(mini):
    """A subprocess: the signal to the process group is the point. The child starts with
    SIGINT at its default, as a user's terminal has it: a shell that starts pytest in the
    background without job control makes it ignored, and an ignored SIGINT is inherited."""
    import signal
    import subprocess
    import sys
    import time

    (mini / "dodo.py").write_text(MINI_DODO + '''

def task_slow():
    """Takes a while, then writes slow.txt."""
    return {"actions": ["touch started.txt; sleep 30; touch slow.txt"], "file_dep": ["in.txt"],
            "targets": ["slow.txt"]}
''')
    proc = subprocess.Popen([sys.executable, "-m", "doit", "run", "a", "slow"], cwd=mini,
                            env=mini_env(mini), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while not (mini / "started.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)   # Ctrl-C reaches the whole foreground group
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "interrupted during slow" in out and "nothing to do" not in out
    assert "Traceback" not in out + err
    assert not (mini / "slow.txt").exists()
    # the interrupted task recorded nothing: the next run does it again
    (mini / "dodo.py").write_text((mini / "dodo.py").read_text().replace("sleep 30", "sleep 0"))
    again = doit(mini, "run", "slow", check=True)
    assert "ok slow" in again.stdout and (mini / "slow.txt").exists()


def test_the_doit_database_is_written_atomically(mini):
    doit(mini, "run", "a", check=True)
    db = json.loads((mini / ".doit.db").read_text())
    assert "a" in db
    assert [p.name for p in mini.iterdir() if p.name.startswith(".doit.db")] == [".doit.db"]


def test_plan_points_out_a_misspelt_task(mini):
    (mini / "plan.yaml").write_text(MINI_PLAN.replace("tasks: [b]}", "tasks: [bb]}", 1))
    proc = doit(mini, "plan", "--format", "json", check=True)
    assert "plan.yaml names task 'later', which does not exist (not built yet)" in proc.stderr
    json.loads(proc.stdout)   # the JSON stays clean on stdout
    (mini / "plan.yaml").write_text(MINI_PLAN.replace("tasks: [later]", "tasks: [flakyy]"))
    proc = doit(mini, "plan", check=True)
    assert "task 'flakyy', which does not exist - did you mean 'flaky'?" in proc.stderr


# --------------------------------------------------------------------------- issue 9: live checks

LIVE_PLAN = MINI_PLAN.replace("milestones:", """\
  - {id: 5, title: deployed, workstream: core, estimate_days: 1, tasks: [deployed]}
  - {id: 6, title: imaged, workstream: core, estimate_days: 1, tasks: [imaged]}
  - {id: 7, title: offline, workstream: core, estimate_days: 1, tasks: [offline]}
milestones:""")

LIVE_DODO = MINI_DODO + '''
import subprocess

from doit.tools import config_changed

from tasks.status import live


def cluster_answers():
    return subprocess.run(["kubectl", "get", "namespace", "mini"]).returncode == 0


def task_deployed():
    """Up to date while the cluster answers: a task that declares kubectl."""
    return tools.needs({"actions": ["true"], "uptodate": [cluster_answers, config_changed("v1")]},
                       "kubectl")


@live
def engine_has_image():
    return subprocess.run(["docker", "image", "inspect", "mini"]).returncode == 0


def task_imaged():
    """Up to date while the engine holds the image: a check marked live, no tool declared."""
    return {"actions": ["true"], "uptodate": [engine_has_image]}


def task_offline():
    """An offline check of a task that declares kubectl: asked without --live."""
    return tools.needs({"actions": ["true"], "uptodate": [config_changed(os.environ.get("V", "1"))]},
                       "kubectl")
'''


@pytest.fixture
def live_mini(mini, tmp_path):
    shims = Shims(tmp_path / "shims")
    for name in ("docker", "k3d", "kubectl"):
        shims.add(name, "def handle(argv, state, rec):\n    return state.get('exit', 0)\n")
    (mini / "plan.yaml").write_text(LIVE_PLAN)
    (mini / "dodo.py").write_text(LIVE_DODO)
    path = f"{shims.bin}:{mini_env(mini)['PATH']}"
    shims.set_state(exit=1)                 # nothing deployed yet: the tasks run
    doit(mini, "run", "deployed", "imaged", "offline", check=True, PATH=path)
    shims.set_state(exit=0)
    shims.clear()
    return mini, shims, path


def test_plan_asks_no_live_system_unless_live(live_mini):
    mini, shims, path = live_mini
    s, _ = statuses(mini, PATH=path)
    assert shims.records() == []                                     # nothing asked
    assert (s[5], s[6], s[7]) == ("unknown", "unknown", "done")
    board = doit(mini, "plan", check=True, PATH=path, COLUMNS="200").stdout
    assert "--live" in board and shims.records() == []
    doit(mini, "graph", "--format", "dot", check=True, PATH=path)
    assert shims.records() == []

    s, _ = statuses(mini, "--live", PATH=path)
    assert sorted(r["tool"] for r in shims.records()) == ["docker", "kubectl"]
    assert (s[5], s[6], s[7]) == ("done", "done", "done")

    shims.set_state(exit=1)                                          # the cluster and engine are gone
    s, _ = statuses(mini, "--live", PATH=path)
    assert (s[5], s[6]) == ("stale", "stale")
    s, _ = statuses(mini, PATH=path)
    assert (s[5], s[6]) == ("unknown", "unknown")
    for name, asks in (("deployed", True), ("imaged", True), ("offline", False)):
        out = doit(mini, "help", name, check=True, PATH=path).stdout
        assert ("asks a live system" in out) is asks, name


def test_without_live_the_offline_checks_still_count(live_mini):
    mini, shims, path = live_mini
    s, _ = statuses(mini, PATH=path, V="2")                          # offline's config changed
    assert s[7] == "stale"
    (mini / "dodo.py").write_text(LIVE_DODO.replace('config_changed("v1")', 'config_changed("v2")'))
    s, _ = statuses(mini, PATH=path)
    assert s[5] == "stale" and shims.records() == []                 # stale without asking the cluster


def test_the_real_plan_asks_no_live_system_unless_live(tmp_path):
    """The real project, every task with a success on record: `doit plan` calls no shim."""
    import inspect

    from doit.dependency import Dependency, JsonDB
    from doit.loader import load_tasks

    shims = Shims(tmp_path / "shims")
    for name in ("docker", "k3d", "kubectl"):
        shims.add(name)
    path = f"{shims.bin}:{mini_env(REPO)['PATH']}"
    db = tmp_path / "db.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        mp.setenv("PATH", path)
        module = _fresh_dodo(REPO / "dodo.py")
        module.__spec__.loader.exec_module(module)
        dep = Dependency(JsonDB, str(db))
        for task in load_tasks(dict(inspect.getmembers(module))):
            task.file_dep = set()            # a record without file states: its checks are asked
            dep.save_success(task)
        dep.close()
    args = ("plan", "--format", "json", "--db-file", str(db), "--backend", "json")
    doit(REPO, *args, "--live", check=True, PATH=path)
    assert {r["tool"] for r in shims.records()} >= {"k3d", "kubectl"}   # the checks are there to ask
    shims.clear()
    doit(REPO, *args, check=True, PATH=path)
    assert shims.records() == []


# --------------------------------------------------------------------------- issue 11: the doit database

def _db_state(d):
    st = (d / ".doit.db").stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def test_read_only_commands_never_rewrite_the_database(mini):
    import stat

    doit(mini, "run", "a", check=True)
    before = _db_state(mini)
    # a read-only checkout (effective for a non-root user; for root the database's inode and
    # mtime below show whether it was rewritten)
    mode = mini.stat().st_mode
    os.chmod(mini, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        for args in (["plan", "--format", "json"], ["plan"], ["doctor"], ["list"], ["graph", "--format", "dot"],
                     ["info", "a"]):
            proc = doit(mini, *args)
            assert "Traceback" not in proc.stdout + proc.stderr, args
            assert "PermissionError" not in proc.stdout + proc.stderr, args
            assert _db_state(mini) == before, args
    finally:
        os.chmod(mini, mode)
    assert [p.name for p in mini.iterdir() if p.name.startswith(".doit.db")] == [".doit.db"]
    doit(mini, "run", "b", check=True)   # a real run still records
    assert "b" in json.loads((mini / ".doit.db").read_text())


@pytest.mark.parametrize("damage", ["truncated", "nul", "random", "deep"])
def test_a_damaged_database_gives_one_short_message_with_the_fix(mini, damage):
    import random

    doit(mini, "run", "a", check=True)
    db = mini / ".doit.db"
    good = db.read_bytes()
    db.write_bytes({"truncated": good[: len(good) // 2], "nul": b"\0" * 4096,
                    "random": random.Random(11).randbytes(2048), "deep": b"[" * 100_000}[damage])
    for args in ([], ["run", "a"], ["plan"], ["list"]):
        proc = doit(mini, *args)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, args
        assert "Traceback" not in out and "interrupted" not in out, out
        assert ".doit.db is damaged" in proc.stderr and "rm .doit.db" in proc.stderr, out
        assert len(out.strip().splitlines()) <= 4, out


def test_a_database_directory_gets_a_hint(mini):
    (mini / ".doit.db").mkdir()
    proc = doit(mini, "run", "a")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out and "IsADirectoryError" not in out
    assert ".doit.db is a directory" in proc.stderr and "mv .doit.db" in proc.stderr


@pytest.mark.parametrize("err, fix", [(28, "(`df -h .`)"), (13, "(`chmod u+w .`)"), (30, "writable filesystem")])
def test_a_database_that_cannot_be_saved_is_one_error_after_the_summary(mini, monkeypatch, err, fix):
    """A full disk (ENOSPC), a read-only checkout (EACCES as a user, EROFS a read-only mount)
    while .doit.db is saved: the run's summary, then one error with the fix, exit 3; the same
    for a command without a summary (forget). Issue 25, C.12."""
    from tasks import dbbackend

    doit(mini, "run", "a", check=True)
    saved = (mini / ".doit.db").read_bytes()

    def fails(path, text, **kw):
        raise OSError(err, os.strerror(err), str(path))

    monkeypatch.setattr(dbbackend.atomic, "write_text", fails)
    (mini / "in.txt").write_text("changed\n")
    for args, summary in ((["run", "a"], True), ([], True), (["forget", "a"], False)):
        proc = doit(mini, *args)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 3, (args, out)
        assert "Traceback" not in out and "Error:" not in out.replace("ERROR:", ""), out
        assert f"ERROR: cannot save the build state to .doit.db: {os.strerror(err)}" in proc.stderr
        assert "\nfix: " in proc.stderr and fix in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 2, proc.stderr
        assert ("executed" in proc.stdout) is summary, out       # the summary is still shown
    assert (mini / ".doit.db").read_bytes() == saved


def test_a_full_disk_while_a_task_writes_its_output_is_one_line_naming_the_file(mini, monkeypatch):
    """Issue 25, C.12: a full disk while a task writes (render's depfile): the write reports
    ENOSPC without a file name (a write or an fsync), which reached the user as a traceback.
    The atomic writer names the file; the run then ends with the reporter's one line."""
    import errno

    (mini / "dodo.py").write_text(MINI_DODO + '''

def _write_depfile():
    from pathlib import Path

    from tasks import atomic

    atomic.write_text(Path("build/local.deps.json"), "{}")


def task_depfile():
    """Writes a depfile."""
    return {"actions": [_write_depfile]}
''')

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)     # a full disk reports at the flush to disk
    proc = doit(mini, "run", "depfile")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out
    assert "depfile: No space left on device: build/local.deps.json." in out, out
    assert not list((mini / "build").iterdir())                   # no temporary file left


@pytest.mark.parametrize("content", ["[1, 2, 3]", '{"a": 1}', '"text"', "null", '{"a": {"b": 1}, "c": []}'])
def test_a_database_of_the_wrong_shape_is_named_and_nothing_was_interrupted(mini, content):
    (mini / ".doit.db").write_text(content)
    for args in ([], ["plan", "--format", "json"]):
        proc = doit(mini, *args)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, args
        assert "interrupted" not in out and "Traceback" not in out and "TypeError" not in out, out
        assert ".doit.db is damaged" in proc.stderr and "not a JSON object of tasks" in proc.stderr, out


# --------------------------------------------------------------------------- issue 11: odd titles, big plans

ODD = {"make a": "[/] and [bold]loud[/bold]", "Core": "[red]Core | team", "Core done": "[/]",
       "b is built": "[bold]b[/] is | built"}


def test_titles_are_shown_literally_and_escaped_in_markdown(mini):
    text = MINI_PLAN
    for plain, odd in ODD.items():
        text = text.replace(plain, f'"{odd}"' if plain != "make a" else odd.join('""'), 1)
    (mini / "plan.yaml").write_text(text)
    board = doit(mini, "plan", COLUMNS="200")
    assert board.returncode == 0 and "Traceback" not in board.stdout + board.stderr, board.stderr
    for odd in ODD.values():
        assert odd in board.stdout, odd
    md = doit(mini, "plan", "--format", "markdown", check=True).stdout
    row = next(line for line in md.splitlines() if line.startswith("| #1"))
    assert "[/] and [bold]loud[/bold]" in row
    heading_row = next(line for line in md.splitlines() if line.startswith("| [red]Core"))
    assert heading_row.startswith(r"| [red]Core \| team | ")
    assert heading_row.replace(r"\|", "").count("|") == 4      # the table keeps its 3 columns
    for fmt in ("mermaid", "dot", "json"):
        proc = doit(mini, "plan", "--format", fmt)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, fmt


def test_an_unknown_option_value_is_doits_error_naming_the_choices(mini):
    """--format and --sort are doit ``choices``: doit rejects another value before anything
    is loaded (exit 3, like every command-line error of doit's), naming the choices."""
    from doit.cmdparse import CmdOption

    from tasks import cmd_graph, cmd_list, cmd_plan

    for args, opt in ((["plan", "--format", "xml"], cmd_plan.opt_plan_format),
                      (["graph", "--format", "xml"], cmd_graph.opt_graph_format),
                      (["list", "--sort", "xml"], cmd_list.opt_sort)):
        proc = doit(mini, *args)
        assert proc.returncode == 3 and proc.stdout == "", args
        assert "Provided 'xml'" in proc.stderr and "Traceback" not in proc.stderr, args
        for choice in CmdOption(opt).choices:
            assert f"'{choice}'" in proc.stderr, (args, choice)
        for choice in CmdOption(opt).choices:
            doit(mini, *args[:-1], choice, check=choice not in ("svg", "png"))


def big_plan(n: int, chain: bool) -> str:
    lines = ["# a big plan", "workstreams:"] + [f"  - {{id: w{k}, title: W{k}}}" for k in range(5)]
    lines.append("items:")
    for i in range(1, n + 1):
        needs = [i - 1] if chain and i > 1 else [j for j in (i // 2, i // 3) if j >= 1 and j != i]
        lines.append(f"  - {{id: {i}, title: item {i}, workstream: w{i % 5}, estimate_days: 1, "
                     f"needs: {sorted(set(needs))}, tasks: [{'ab'[i % 2]}]}}")
    lines += ["milestones:", f"  - {{id: all, title: All, items: {list(range(1, n + 1))}, target_day: 3}}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("chain", [False, True], ids=["shallow", "chain"])
def test_the_board_summarises_what_a_terminal_cannot_show(mini, chain):
    (mini / "plan.yaml").write_text(big_plan(3000, chain))
    board = doit(mini, "plan", check=True, COLUMNS="120").stdout
    lines = board.splitlines()
    assert len(lines) < 400 and max(len(line) for line in lines) <= 120
    assert "3000 items in 5 workstreams" in board
    assert "more items" in board and "--format json" in board     # says where the rest is
    assert "#1 " in board or "#1\n" in board
    data = json.loads(doit(mini, "plan", "--format", "json", check=True).stdout)
    assert len(data["items"]) == 3000 and len(data["schedule"]) == 3000   # the JSON keeps everything
    if chain:
        assert data["critical_path"] == list(range(1, 3001))
        assert "(3000 items)" in board
    names = [line.split()[0] for line in doit(mini, "list", check=True).stdout.splitlines()]
    assert sorted(names[:2]) == ["a", "b"]


def test_a_reader_that_stops_early_gets_no_traceback(mini):
    """`doit plan | head -1`: a subprocess, the closed pipe is the point. The output is larger
    than a pipe's buffer, so the command is still writing when the reader is gone."""
    import subprocess
    import sys

    (mini / "plan.yaml").write_text(big_plan(3000, chain=False))
    (mini / "dodo.py").write_text(MINI_DODO + '''

def task_many():
    """Many subtasks."""
    for n in range(3000):
        yield {"name": f"part-{n:04}", "actions": None, "doc": "one of many parts " * 3}


def task_wide():
    """Reads many files."""
    return {"actions": None, "file_dep": [f"in-{n:04}-{'x' * 40}.txt" for n in range(3000)]}
''')
    for args in (["plan", "--format", "json"], ["list", "--all"], ["info", "wide"]):
        proc = subprocess.Popen([sys.executable, "-m", "doit", *args], cwd=mini, env=mini_env(mini),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = proc.stdout.readline()
        proc.stdout.close()                       # the reader is gone
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
        assert first, args
        assert "Traceback" not in err and "BrokenPipeError" not in err, (args, err)


CHECKS_DODO = '''

class Settled:
    """Up to date while the stack settled. More words that are not shown."""

    def __call__(self, task, values):
        return False


class Explains:
    def __init__(self):
        self.reason = ""

    def __call__(self, task, values):
        self.reason = "the stack moved on"
        return False


def task_checked():
    """Checked by objects."""
    return {"actions": ["true"], "uptodate": [Settled(), Explains(), False]}
'''


def test_info_and_help_name_an_unknown_task_in_one_line(mini):
    """Issue 25, C.13: `doit info nosuch` was a KeyError traceback, `doit help nosuch` the
    general help with exit 0."""
    for args, what in ((["info", "nosuch"], "task"), (["info", "flaky2"], "task"),
                       (["help", "nosuch"], "task or command")):
        proc = doit(mini, *args)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 3 and "Traceback" not in out and "KeyError" not in out, out
        assert proc.stderr.startswith(f"ERROR: no {what} named {args[1]!r}"), out
        assert "doit list --all" in proc.stderr and len(proc.stderr.splitlines()) == 1, out
    assert "did you mean flaky?" in doit(mini, "info", "flaky2").stderr
    assert "did you mean plan?" in doit(mini, "help", "plna").stderr
    assert doit(mini, "help", "a", check=True).stdout.startswith("a  Copy in.txt")
    assert "PURPOSE" in doit(mini, "help", "info", check=True).stdout


def test_info_says_in_words_which_up_to_date_checks_said_no(mini):
    """Issue 25, C.13: `doit info up` showed `<tasks.up.StackSettled object at 0x...>`."""
    (mini / "dodo.py").write_text(MINI_DODO + CHECKS_DODO)
    out = doit(mini, "info", "checked").stdout
    assert " at 0x" not in out and "(args=" not in out, out
    assert "    - Settled: Up to date while the stack settled\n" in out
    assert "    - the stack moved on\n" in out
    assert "    - `uptodate: [False]`: it runs every time\n" in out


def test_an_unknown_option_names_the_commands_options_and_help_shows_its_help(mini):
    """Issue 25, C.13: an unknown option dumped doit's CmdOption objects."""
    for cmd in ("plan", "info", "list", "graph", "run"):
        proc = doit(mini, cmd, "--bogus")
        assert proc.returncode == 3 and "CmdOption" not in proc.stderr, proc.stderr
        said = f"ERROR: `doit {cmd}`: option --bogus not recognized; its options: "
        assert proc.stderr.startswith(said), proc.stderr
        assert f"`doit help {cmd}`" in proc.stderr and len(proc.stderr.splitlines()) == 1
        shown = doit(mini, cmd, "--help")
        assert shown.returncode == 0 and shown.stdout.startswith("PURPOSE"), shown


# --------------------------------------------------------------------------- issue 9: the task loader

def _tasks_of(project: Path, loader_cls=None, argv=("list",), read_source=True) -> tuple[object, list[tuple]]:
    """The loader pyproject.toml configures for ``project`` (or ``loader_cls``) and what it
    makes of its dodo.py, as ``doit ARGV`` loads it: each task as (name, doc, dependencies,
    targets, group, number of actions), in load order. Without ``read_source`` reading a
    creator's source (inspect.getsourcelines) fails."""
    import inspect
    import sys
    import types

    from doit.cmd_base import get_loader
    from doit.doit_cmd import DoitMain

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        mp.setenv("PATH", os.environ["PATH"])        # dodo.py puts .tools/bin first
        mp.setattr(sys, "path", list(sys.path))       # and doit puts the dodo's folder first
        mp.delitem(sys.modules, "dodo", raising=False)
        if not read_source:
            mp.setattr(inspect, "getsourcelines", lambda obj: pytest.fail(f"the source of {obj} was read"))
        main = DoitMain()
        loader = get_loader(main.config, loader_cls and loader_cls(), main.get_cmds())
        loader.setup({"dodoFile": "dodo.py", "cwdPath": None, "seek_file": False})
        cmd = types.SimpleNamespace(execute_tasks=argv[0] == "run")
        tasks = loader.load_tasks(cmd, list(argv[1:]))
        sys.modules.pop("dodo", None)
    return loader, [(t.name, t.doc, sorted(t.file_dep), list(t.task_dep), list(t.targets), t.subtask_of,
                     len(t.actions)) for t in tasks]


def test_the_project_loader_makes_the_tasks_doit_makes_in_the_same_order():
    """pyproject.toml's loader (ordering creators by their code objects, no tokenizing) loads
    the real dodo.py exactly as doit's own DodoTaskLoader does."""
    from doit.cmd_base import DodoTaskLoader

    from tasks.loader import Loader

    ours, got = _tasks_of(REPO, read_source=False)
    assert type(ours) is Loader
    _, want = _tasks_of(REPO, DodoTaskLoader)
    assert len(got) > 50 and got == want


ODD_CREATORS = '''

import functools
from doit import create_after, task_params


def _logged(f):
    @functools.wraps(f)
    def wrapper(*a, **kw):
        return f(*a, **kw)
    return wrapper


@_logged
def task_wrapped():
    """A creator under a decorator."""
    return {"actions": ["true"]}


def _group():
    class Group:  # not in the namespace itself: doit would take the class for a creator too
        def create_doit_tasks(self):
            """Tasks of an object."""
            yield {"basename": "grouped", "name": "one", "actions": ["true"]}

    return Group()


group = _group()


def task_zzz_first_line_later():
    """Defined last, named last."""
    return {"actions": None}
'''

PARAM_CREATORS = '''

@task_params([{"name": "who", "long": "who", "default": "world"}])
def task_greet(who):
    """Say hello."""
    return {"actions": [f"echo hello {who}"], "verbosity": 2}


@create_after(executed="a")
def task_later_made():
    """Made after a ran."""
    return {"actions": ["true"]}
'''


def test_the_checkouts_own_tasks_package_is_imported_not_the_installed_one(tmp_path):
    """One venv, checkout A installed (`pip install -e`), doit run in checkout B: the console
    script's path finds A's tasks/ first (here: PYTHONPATH, and -P keeps the current
    directory off the path, as the console script has it). B's is imported, as
    `python -m doit` would (issue 25, B.9). A fresh interpreter: it is what `import` does."""
    import subprocess
    import sys

    show = "import tasks, tasks.loader, tasks.paths; print(tasks.__file__, tasks.loader.__file__)"
    other = tmp_path / "other"
    shutil.copytree(REPO / "tasks", other / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", other / "pyproject.toml")
    env = {**mini_env(other), "PYTHONPATH": str(REPO)}
    for cwd, owner in ((other, other), (tmp_path, REPO), (REPO, REPO)):
        proc = subprocess.run([sys.executable, "-P", "-c", show], cwd=cwd, env=env,
                              capture_output=True, text=True, check=True)
        assert proc.stdout.split() == [str(owner / "tasks" / "__init__.py"),
                                       str(owner / "tasks" / "loader.py")], (cwd, proc.stdout)
    (other / "pyproject.toml").write_text("[project]\nname = 'something-else'\n")  # not ours
    proc = subprocess.run([sys.executable, "-P", "-c", show], cwd=other, env=env,
                          capture_output=True, text=True, check=True)
    assert proc.stdout.split()[0] == str(REPO / "tasks" / "__init__.py")


def test_a_same_size_edit_of_dodo_py_within_its_second_loads_the_new_tasks(mini, monkeypatch):
    """Python trusts __pycache__ while the source's size and modification second are unchanged:
    the project loader compiles dodo.py from its source (issue 25, E.17)."""
    import sys

    monkeypatch.setattr(sys, "dont_write_bytecode", False)   # as a user's python writes them
    second = (os.stat(mini / "dodo.py").st_mtime_ns // 10**9) * 10**9
    for name in ("one", "two"):                               # the same size each time
        (mini / "dodo.py").write_text(f'def task_{name}():\n    return {{"actions": ["true"]}}\n')
        os.utime(mini / "dodo.py", ns=(second, second))      # within the same second
        _, got = _tasks_of(mini)
        assert [t[0] for t in got] == [name]
    assert not (mini / "__pycache__").exists()


def test_the_loader_orders_decorated_and_object_creators_as_doit_does(mini):
    from doit.cmd_base import DodoTaskLoader

    (mini / "dodo.py").write_text(MINI_DODO + ODD_CREATORS)
    _, got = _tasks_of(mini, read_source=False)
    _, want = _tasks_of(mini, DodoTaskLoader)
    assert got == want
    assert [t[0] for t in got] == ["a", "b", "flaky", "needs_tools", "wrapped", "grouped", "grouped:one",
                                   "zzz_first_line_later"]


def test_task_params_and_create_after_still_work_with_the_project_loader(mini):
    """Such creators hand the load to doit's own loader: nothing doit supports is lost."""
    from doit.cmd_base import DodoTaskLoader

    (mini / "dodo.py").write_text(MINI_DODO + ODD_CREATORS + PARAM_CREATORS)
    for argv in (("list",), ("run", "greet", "--who", "Ana")):
        _, got = _tasks_of(mini, argv=argv)
        _, want = _tasks_of(mini, DodoTaskLoader, argv=argv)
        assert got == want
    proc = run_doit(mini, "greet", "--who", "Ana", env=mini_env(mini), check=True)
    assert "hello Ana" in proc.stdout
    proc = run_doit(mini, "a", "later_made", env=mini_env(mini), check=True)
    assert "ok later_made" in proc.stdout


def test_a_task_named_like_a_command_is_refused_by_the_project_loader(mini):
    (mini / "dodo.py").write_text(MINI_DODO + '''

def task_list():
    """Clashes with `doit list`."""
    return {"actions": ["true"]}
''')
    proc = run_doit(mini, "a", env=mini_env(mini))
    assert proc.returncode == 3
    assert "Task can't be called 'list' because this is a command name" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_run_in_the_tests_loads_with_the_project_loader_like_a_real_run(mini):
    """doit_here (the tests' in-process doit) uses the loader pyproject.toml configures: the
    names the loader recorded are the tasks `doit list --all` shows."""
    from tasks import loader

    proc = run_doit(mini, "list", "--all", "--quiet", "--sort", "definition", env=mini_env(mini), check=True)
    assert proc.stdout.split() == ["a", "b", "flaky", "needs_tools"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(mini)
        mp.delenv("RAIBID_DEPLOY_ROOT", raising=False)
        assert loader.loaded_task_names() == proc.stdout.split()


PARALLEL_DODO = '''\
import os, time

DOIT_CONFIG = {"default_tasks": ["a", "b"]}


def _meet(me, other):
    open(me + ".started", "w").close()
    deadline = time.monotonic() + float(os.environ["MEET_SECONDS"])
    while time.monotonic() < deadline and not os.path.exists(other + ".started"):
        time.sleep(0.01)
    with open(me + ".result", "w") as fh:
        fh.write("together" if os.path.exists(other + ".started") else "alone")


def task_a():
    return {"actions": [(_meet, ["a", "b"])]}


def task_b():
    return {"actions": [(_meet, ["b", "a"])]}
'''


def test_the_first_default_run_is_parallel_and_later_runs_and_named_tasks_are_not(tmp_path):
    """tasks/loader.py calls core.parallel_default: the first ``doit`` of a checkout (no
    build state: every check runs) runs one worker process per core; a later one (a few
    checks, or none) and ``doit a b`` (e.g. ``doit dev``: tilt up reads the terminal) run
    one task at a time."""
    import subprocess
    import sys

    (tmp_path / "pyproject.toml").write_text(  # the project's loader and backend
        '[tool.doit]\nloader = "dodo"\nbackend = "json-atomic"\n\n'
        '[tool.doit.plugins.loader]\ndodo = "tasks.loader:Loader"\n\n'
        '[tool.doit.plugins.backend]\njson-atomic = "tasks.dbbackend:AtomicJsonDB"\n')
    (tmp_path / "dodo.py").write_text(PARALLEL_DODO)
    env = dict(env_for(tmp_path), PYTHONPATH=str(REPO))

    def run(*args: str, meet: float = 0.5) -> str:
        """The first task's view: ``together`` when the second started within ``meet`` seconds
        of it (tasks run in parallel start together; one at a time, the first waits it out)."""
        for f in tmp_path.glob("*.started"):
            f.unlink()
        proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=tmp_path,
                              env={**env, "MEET_SECONDS": str(meet)}, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return (tmp_path / "a.result").read_text()

    from tasks.core import usable_cores

    assert run(meet=5) == ("together" if usable_cores() > 1 else "alone")  # a loaded machine starts workers late
    assert (tmp_path / ".doit.db").exists()
    assert run() == "alone"           # build state: one at a time
    assert run("a", "b") == "alone"
    (tmp_path / ".doit.db").unlink()
    assert run("a", "b") == "alone"   # named tasks, even without build state


def test_plan_agrees_with_doit_after_a_failed_run_is_repaired_by_hand(mini):
    """doit erases a task's record when it starts it; a run that then fails leaves none. A
    task whose own check decides (no file_dep, like render:<env>'s content-keyed depfile)
    is up to date again for doit once its input is put back by hand, and doit never runs it
    again: the plan must not call it "not run" forever."""
    (mini / "dodo.py").write_text(MINI_DODO + '''

def _same(task, values):
    import pathlib
    out = pathlib.Path("later.txt")
    return out.exists() and out.read_text() == pathlib.Path("in.txt").read_text()


def task_later():
    """Copy in.txt to later.txt, checked by content (no file_dep); fails when FAIL is set."""
    return {"actions": ['test -z "$FAIL" && cp in.txt later.txt'], "uptodate": [_same],
            "targets": ["later.txt"]}
''')
    doit(mini, "run", "later", check=True)
    assert statuses(mini)[0][4] == "done"
    (mini / "in.txt").write_text("edited\n")
    assert doit(mini, "run", "later", FAIL="1").returncode != 0   # its record is gone
    (mini / "in.txt").write_text("hello\n")                       # repaired by hand
    again = doit(mini, "run", "later", check=True).stdout
    assert "0 executed, 1 up to date" in again, again              # doit: nothing to do
    assert statuses(mini)[0][4] == "done"                          # and the plan agrees
    (mini / "in.txt").write_text("edited again\n")
    assert statuses(mini)[0][4] == "not run"   # out of date and no record: as before
