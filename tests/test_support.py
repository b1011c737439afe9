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
