"""The project's doit database (tasks/dbbackend.py) is relocatable: a copied or moved
checkout runs nothing that did not change; a changed input still runs; a database written
with absolute paths (doit's own JSON backend) still works."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from support import REPO, doit_here, env_for

PYPROJECT = """\
[tool.doit]
dep_file = ".doit.db"
backend = "json-atomic"

[tool.doit.plugins.backend]
json-atomic = "tasks.dbbackend:AtomicJsonDB"
"""

# one task with absolute file_deps (as the project's tasks give them), one with relative ones;
# each action appends its name to ran.txt
DODO = '''\
import os

def _log(name):
    with open("ran.txt", "a") as fh:
        fh.write(name + "\\n")

def task_absolute():
    return {"actions": [(_log, ["absolute"])], "file_dep": [os.path.abspath("in.txt"), os.path.abspath("sub/two.txt")]}

def task_relative():
    return {"actions": [(_log, ["relative"])], "file_dep": ["in.txt"]}
'''


@pytest.fixture
def mini(tmp_path) -> Path:
    d = tmp_path / "a" / "mini"
    (d / "sub").mkdir(parents=True)
    (d / "pyproject.toml").write_text(PYPROJECT)
    (d / "dodo.py").write_text(DODO)
    (d / "in.txt").write_text("hello\n")
    (d / "sub" / "two.txt").write_text("two\n")
    return d


def run(d: Path, *args: str) -> list[str]:
    """Run doit in ``d``; the tasks whose actions ran."""
    log = d / "ran.txt"
    log.unlink(missing_ok=True)
    env = env_for(d)
    env["PYTHONPATH"] = str(REPO)  # the tasks package (its backend), with this dodo.py
    doit_here(d, *args, env=env, check=True)
    return sorted(log.read_text().split()) if log.exists() else []


def test_a_copied_project_runs_nothing_until_an_input_changes(mini, tmp_path):
    assert run(mini) == ["absolute", "relative"]
    assert run(mini) == []
    text = (mini / ".doit.db").read_text()
    assert str(mini) not in text  # no path of this place in the database
    copy = tmp_path / "b" / "elsewhere"
    shutil.copytree(mini, copy)  # modification times kept
    assert run(copy) == []
    (copy / "sub" / "two.txt").write_text("changed\n")
    assert run(copy) == ["absolute"]
    (copy / "in.txt").write_text("changed too\n")
    assert run(copy) == ["absolute", "relative"]
    assert run(copy) == []
    assert run(mini) == []  # the original is untouched by its copy


def test_a_database_with_absolute_paths_still_works(mini, tmp_path):
    assert run(mini, "--backend", "json") == ["absolute", "relative"]  # doit's own: absolute keys
    assert str(mini / "in.txt") in (mini / ".doit.db").read_text()
    copy = tmp_path / "b" / "elsewhere"
    shutil.copytree(mini, copy)
    assert run(mini) == []                       # same place: read as it is
    assert run(copy) == ["absolute"]             # another place: its absolute paths are changed
    assert run(copy) == []
    db = json.loads((copy / ".doit.db").read_text())
    assert sorted(db["absolute"]["deps:"]) == ["<root>/in.txt", "<root>/sub/two.txt"]


def test_a_run_that_changes_nothing_leaves_the_database_alone(mini):
    """A group task (no actions) runs on every doit, and doit saves it with the same values:
    the database is not rewritten for that (a no-op writes nothing, and fsyncs nothing)."""
    (mini / "dodo.py").write_text(DODO + '\ndef task_all():\n    return {"actions": None, '
                                  '"task_dep": ["absolute", "relative"]}\n')
    assert run(mini) == ["absolute", "relative"]
    db = mini / ".doit.db"
    before = db.stat()
    assert run(mini) == []
    after = db.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    (mini / "in.txt").write_text("changed\n")  # a changed input is saved again
    assert run(mini) == ["absolute", "relative"]
    assert db.stat().st_mtime_ns != before.st_mtime_ns
    assert json.loads(db.read_text())["relative"]["in.txt"]
