"""The doit plugin commands and the status derivation, through real doit runs."""
import json
import shutil
from pathlib import Path

import pytest

from support import REPO, env_for, run_doit

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


def statuses(d, **extra):
    proc = run_doit(d, "plan", "--format", "json", env=mini_env(d, **extra), check=True)
    data = json.loads(proc.stdout)
    return {i["id"]: i["status"] for i in data["items"]}, data


def test_status_follows_the_build_state(mini):
    s, _ = statuses(mini)
    assert s == {1: "not run", 2: "not run", 3: "not run", 4: "not built"}

    run_doit(mini, "run", "a", env=mini_env(mini), check=True)
    s, _ = statuses(mini)
    assert s[1] == "done" and s[2] == "not run"

    run_doit(mini, "run", "b", "flaky", env=mini_env(mini), check=True)
    s, data = statuses(mini)
    assert s == {1: "done", 2: "done", 3: "done", 4: "not built"}
    assert data["success_criteria"][0]["status"] == "done"
    assert data["milestones"][0]["done"] is True

    (mini / "in.txt").write_text("changed\n")          # inputs changed since the runs
    s, _ = statuses(mini)
    assert s[1] == "stale" and s[3] == "stale"
    assert s[2] == "stale"                             # its dependency a is stale

    proc = run_doit(mini, "run", "flaky", env=mini_env(mini, FAIL="1"))
    assert proc.returncode != 0
    s, _ = statuses(mini)
    assert s[3] == "not run"                           # a failure erases the success


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
    env = mini_env(mini, COLUMNS="150")
    board = run_doit(mini, "plan", env=env, check=True).stdout
    for text in ("Migration plan", "Core", "Docs", "Critical path", "#1 -> #2 -> #4",
                 "wave 2", "Core done", "late by 1d", "not built", "b is built"):
        assert text in board, text
    md = run_doit(mini, "plan", "--format", "markdown", env=env, check=True).stdout
    assert md.startswith("# Deployment migration plan") and "| #2 ★ | make b from a |" in md
    assert "plan.yaml sha256:" in md and "```mermaid" in md
    mer = run_doit(mini, "plan", "--format", "mermaid", env=env, check=True).stdout
    assert mer.startswith("flowchart LR") and "i1 ==> i2" in mer and "i1 --> i3" in mer
    dot = run_doit(mini, "plan", "--format", "dot", env=env, check=True).stdout
    assert dot.startswith("digraph plan") and "i1 -> i2 [penwidth=3" in dot
    bad = run_doit(mini, "plan", "--format", "yaml", env=env)
    assert bad.returncode == 2 and "choose one of" in bad.stderr


def test_list_is_in_critical_path_order_with_docs(mini):
    out = run_doit(mini, "list", env=mini_env(mini), check=True).stdout.splitlines()
    names = [line.split()[0] for line in out]
    assert names == ["a", "b", "flaky", "needs_tools"]
    assert "Copy in.txt to a.txt." in out[0]
    by_name = run_doit(mini, "list", "--sort", "name", env=mini_env(mini), check=True).stdout
    assert [line.split()[0] for line in by_name.splitlines()][0] == "a"


def test_broken_plan_gives_file_line_and_fix_without_traceback(mini):
    (mini / "plan.yaml").write_text(MINI_PLAN.replace("needs: [1], tasks: [b]", "needs: [9], tasks: [b]"))
    for args in (["plan"], ["list"], ["graph", "--format", "dot"]):
        proc = run_doit(mini, *args, env=mini_env(mini))
        assert proc.returncode == 2, args
        assert "plan.yaml:7: item 2 needs unknown item 9" in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout


def test_missing_tools_fail_before_anything_runs(mini):
    proc = run_doit(mini, "run", "needs_tools", env=mini_env(mini, PATH="/usr/bin:/bin"))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "missing tools: nothing was run." in out
    assert "k3d >= v5.7.0" in out and "tilt-ui >= v0.33.0" in out and "install:" in out
    assert not (mini / "touched.txt").exists()


def test_reporter_summary_and_noop_run(mini):
    first = run_doit(mini, env=mini_env(mini), check=True).stdout
    assert "ok a" in first and "ok b" in first and "2 executed" in first
    second = run_doit(mini, env=mini_env(mini), check=True).stdout
    assert "0 executed, 2 up to date" in second and "nothing to do" in second
    as_json = run_doit(mini, "run", "-r", "json", "a", env=mini_env(mini), check=True).stdout
    assert json.loads(as_json)["tasks"][0]["name"] == "a"


def test_graph_writes_pictures_or_text(mini):
    from tasks import tools
    proc = run_doit(mini, "graph", "--format", "dot", env=mini_env(mini), check=True)
    assert "digraph plan" in proc.stdout and "digraph tasks" in proc.stdout
    assert '"a" -> "b" [style=dashed]' in proc.stdout      # b's file_dep is a's target
    if tools.which("dot"):
        proc = run_doit(mini, "graph", env=mini_env(mini), check=True)
        svg = (mini / "build" / "graph" / "plan.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "#1 make a" in svg
        assert (mini / "build" / "graph" / "tasks.svg").exists()


def test_doctor_lists_every_tool_and_who_needs_it(mini):
    proc = run_doit(mini, "doctor", env=mini_env(mini, COLUMNS="200"))
    out = proc.stdout
    for name in ("tk", "jb", "helm", "hadolint", "docker", "k3d", "kubectl", "tilt", "tilt-ui", "dot"):
        assert f"│ {name} " in out, name
    assert "needs_tools" in out        # k3d and tilt-ui are needed by that task


def test_a_broken_plan_stops_every_run_of_the_project(project):
    plan = project / "plan.yaml"
    plan.write_text(plan.read_text().replace("  - id: infra\n", "  - id: infra\n    colour: red\n", 1))
    for args in ([], ["list"], ["plan"]):
        proc = run_doit(project, *args)
        assert proc.returncode == 2, args
        assert "plan.yaml:23: workstreams[1]: unknown key 'colour'" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_skipped_check_counts_as_not_run(mini):
    (mini / "dodo.py").write_text(MINI_DODO + '''

from tasks.core import skip_action


def task_later():
    """A check that cannot run yet."""
    return {"actions": [skip_action("later: skipped, nothing to check yet")]}
''')
    run_doit(mini, "run", "a", "later", env=mini_env(mini), check=True)
    s, _ = statuses(mini)
    assert s[1] == "done" and s[4] == "not run"     # ran, but only to say it was skipped


def test_ctrl_c_says_what_was_interrupted_without_a_traceback(mini):
    import os
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
                            start_new_session=True)
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
    again = run_doit(mini, "run", "slow", env=mini_env(mini), check=True)
    assert "ok slow" in again.stdout and (mini / "slow.txt").exists()


def test_the_doit_database_is_written_atomically(mini):
    run_doit(mini, "run", "a", env=mini_env(mini), check=True)
    db = json.loads((mini / ".doit.db").read_text())
    assert "a" in db
    assert [p.name for p in mini.iterdir() if p.name.startswith(".doit.db")] == [".doit.db"]


def test_plan_points_out_a_misspelt_task(mini):
    (mini / "plan.yaml").write_text(MINI_PLAN.replace("tasks: [b]}", "tasks: [bb]}", 1))
    proc = run_doit(mini, "plan", "--format", "json", env=mini_env(mini), check=True)
    assert "plan.yaml names task 'later', which does not exist (not built yet)" in proc.stderr
    json.loads(proc.stdout)   # the JSON stays clean on stdout
    (mini / "plan.yaml").write_text(MINI_PLAN.replace("tasks: [later]", "tasks: [flakyy]"))
    proc = run_doit(mini, "plan", env=mini_env(mini), check=True)
    assert "task 'flakyy', which does not exist - did you mean 'flaky'?" in proc.stderr


# --------------------------------------------------------------------------- issue 11: the doit database

def _db_state(d):
    st = (d / ".doit.db").stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def test_read_only_commands_never_rewrite_the_database(mini):
    import os
    import stat

    run_doit(mini, "run", "a", env=mini_env(mini), check=True)
    before = _db_state(mini)
    # a read-only checkout (effective for a non-root user; for root the database's inode and
    # mtime below show whether it was rewritten)
    mode = mini.stat().st_mode
    os.chmod(mini, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        for args in (["plan", "--format", "json"], ["plan"], ["doctor"], ["list"], ["graph", "--format", "dot"],
                     ["info", "a"]):
            proc = run_doit(mini, *args, env=mini_env(mini))
            assert "Traceback" not in proc.stdout + proc.stderr, args
            assert "PermissionError" not in proc.stdout + proc.stderr, args
            assert _db_state(mini) == before, args
    finally:
        os.chmod(mini, mode)
    assert [p.name for p in mini.iterdir() if p.name.startswith(".doit.db")] == [".doit.db"]
    run_doit(mini, "run", "b", env=mini_env(mini), check=True)   # a real run still records
    assert "b" in json.loads((mini / ".doit.db").read_text())


@pytest.mark.parametrize("damage", ["truncated", "nul", "random", "deep"])
def test_a_damaged_database_gives_one_short_message_with_the_fix(mini, damage):
    import random

    run_doit(mini, "run", "a", env=mini_env(mini), check=True)
    db = mini / ".doit.db"
    good = db.read_bytes()
    db.write_bytes({"truncated": good[: len(good) // 2], "nul": b"\0" * 4096,
                    "random": random.Random(11).randbytes(2048), "deep": b"[" * 100_000}[damage])
    for args in ([], ["run", "a"], ["plan"], ["list"]):
        proc = run_doit(mini, *args, env=mini_env(mini))
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, args
        assert "Traceback" not in out and "interrupted" not in out, out
        assert ".doit.db is damaged" in proc.stderr and "rm .doit.db" in proc.stderr, out
        assert len(out.strip().splitlines()) <= 4, out


def test_a_database_directory_gets_a_hint(mini):
    (mini / ".doit.db").mkdir()
    proc = run_doit(mini, "run", "a", env=mini_env(mini))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out and "IsADirectoryError" not in out
    assert ".doit.db is a directory" in proc.stderr and "mv .doit.db" in proc.stderr


@pytest.mark.parametrize("content", ["[1, 2, 3]", '{"a": 1}', '"text"', "null", '{"a": {"b": 1}, "c": []}'])
def test_a_database_of_the_wrong_shape_is_named_and_nothing_was_interrupted(mini, content):
    (mini / ".doit.db").write_text(content)
    for args in ([], ["plan", "--format", "json"]):
        proc = run_doit(mini, *args, env=mini_env(mini))
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
    env = mini_env(mini, COLUMNS="200")
    board = run_doit(mini, "plan", env=env)
    assert board.returncode == 0 and "Traceback" not in board.stdout + board.stderr, board.stderr
    for odd in ODD.values():
        assert odd in board.stdout, odd
    md = run_doit(mini, "plan", "--format", "markdown", env=env, check=True).stdout
    row = next(line for line in md.splitlines() if line.startswith("| #1"))
    assert "[/] and [bold]loud[/bold]" in row
    heading_row = next(line for line in md.splitlines() if line.startswith("| [red]Core"))
    assert heading_row.startswith(r"| [red]Core \| team | ")
    assert heading_row.replace(r"\|", "").count("|") == 4      # the table keeps its 3 columns
    for fmt in ("mermaid", "dot", "json"):
        proc = run_doit(mini, "plan", "--format", fmt, env=env)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, fmt


def test_an_unknown_format_is_an_error_on_stderr(mini):
    for args in (["plan", "--format", "xml"], ["graph", "--format", "xml"]):
        proc = run_doit(mini, *args, env=mini_env(mini))
        assert proc.returncode == 2 and proc.stdout == "", args
        assert "unknown --format 'xml'" in proc.stderr and "choose" in proc.stderr


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
    env = mini_env(mini, COLUMNS="120")
    board = run_doit(mini, "plan", env=env, check=True).stdout
    lines = board.splitlines()
    assert len(lines) < 400 and max(len(line) for line in lines) <= 120
    assert "3000 items in 5 workstreams" in board
    assert "more items" in board and "--format json" in board     # says where the rest is
    assert "#1 " in board or "#1\n" in board
    data = json.loads(run_doit(mini, "plan", "--format", "json", env=env, check=True).stdout)
    assert len(data["items"]) == 3000 and len(data["schedule"]) == 3000   # the JSON keeps everything
    if chain:
        assert data["critical_path"] == list(range(1, 3001))
        assert "(3000 items)" in board
    names = [line.split()[0] for line in run_doit(mini, "list", env=env, check=True).stdout.splitlines()]
    assert sorted(names[:2]) == ["a", "b"]
