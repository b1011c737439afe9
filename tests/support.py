"""Test helpers shared by every test module: project copies, doit runs, recording shims.

Only what needs a Docker engine or a cluster (docker, k3d, kubectl, tilt) is replaced,
by *recording shims*: small executables put first on PATH that append each call (argv,
cwd, selected env) to a JSON-lines log and answer through an optional handler, so tests
can assert exactly what was run, in which order.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

#: set by .ci/run: a missing real tool is then a test failure, never a skip
REQUIRE_TOOLS = os.environ.get("RAIBID_REQUIRE_TOOLS") == "1"


def tracked_files(repo: Path = REPO) -> list[str]:
    """The files of the project: what git tracks (the index), plus work in progress: untracked,
    not ignored files inside the project's tracked top-level directories. Never anything
    inside a virtualenv (a directory holding ``pyvenv.cfg``) or other untracked top-level
    junk, so a ``.venv`` made in the checkout is not copied into every test project."""
    def ls(*args: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", *args], cwd=repo, capture_output=True,
                             check=True).stdout
        return [p for p in out.decode().split("\0") if p]

    cached = ls("--cached")
    top_dirs = {p.split("/", 1)[0] for p in cached if "/" in p}
    others = ls("--others", "--exclude-standard")
    venvs = tuple(p[: -len("pyvenv.cfg")] for p in others + cached
                  if p == "pyvenv.cfg" or p.endswith("/pyvenv.cfg"))
    wip = [p for p in others if "/" in p and p.split("/", 1)[0] in top_dirs
           and not p.startswith(venvs)]
    if "" in venvs:  # the checkout itself is a venv: only what git tracks
        wip = []
    return [p for p in sorted(set(cached) | set(wip)) if (repo / p).is_file()]


def copy_project(dst: Path, repo: Path = REPO) -> Path:
    """Copy the project (see :func:`tracked_files`; no build output, no .doit.db, no venv)
    into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for rel in tracked_files(repo):
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target)
    tools = repo / ".tools"
    if tools.is_dir():  # the Go-built tools, if `doit tools` installed them
        (dst / ".tools").symlink_to(tools, target_is_directory=True)
    return dst


def env_for(project: Path, extra: dict | None = None, path_first: list[Path] | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(project)
    env.pop("RAIBID_DEPLOY_ROOT", None)
    if path_first:
        env["PATH"] = os.pathsep.join([str(p) for p in path_first] + [env.get("PATH", "")])
    if extra:
        env.update(extra)
    return env


def run_doit(project: Path, *args: str, env: dict | None = None, timeout: float = 600,
             check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m doit ARGS`` in ``project`` the way a user would, capturing output."""
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=project,
                          env=env or env_for(project), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


_SHIM = r'''#!{python}
import json, os, sys
NAME = {name!r}
DIR = os.path.dirname(os.path.abspath(__file__))
log = os.path.join(DIR, "calls.jsonl")
rec = {{"tool": NAME, "argv": sys.argv[1:], "cwd": os.getcwd(),
        "env": {{k: v for k, v in os.environ.items() if k in {env_keys!r}}}}}
if not sys.stdin.isatty() and {read_stdin!r}:
    try:
        rec["stdin"] = sys.stdin.read()
    except Exception:
        pass
with open(log, "a") as fh:
    fh.write(json.dumps(rec) + "\n")
handler = os.path.join(DIR, NAME + "_handler.py")
if os.path.exists(handler):
    state_file = os.path.join(DIR, "state.json")
    state = json.load(open(state_file)) if os.path.exists(state_file) else {{}}
    ns = {{}}
    exec(compile(open(handler).read(), handler, "exec"), ns)
    code = ns["handle"](sys.argv[1:], state, rec) or 0
    json.dump(state, open(state_file, "w"))
    sys.exit(code)
'''


class Shims:
    """A directory of recording shims. Put :attr:`bin` first on PATH."""

    ENV_KEYS = ("DOCKER_BUILDKIT", "KUBECONFIG", "RAIBID_ENV", "TILT_PORT", "DOCKER_HOST")

    def __init__(self, root: Path):
        self.bin = Path(root)
        self.bin.mkdir(parents=True, exist_ok=True)
        self.log = self.bin / "calls.jsonl"

    def add(self, name: str, handler: str | None = None, read_stdin: bool = False) -> "Shims":
        """Install a shim for ``name``; ``handler`` is Python source defining
        ``handle(argv, state, rec) -> exit_code`` (print to answer; ``state`` persists)."""
        exe = self.bin / name
        exe.write_text(_SHIM.format(python=sys.executable, name=name, env_keys=list(self.ENV_KEYS),
                                    read_stdin=read_stdin))
        exe.chmod(0o755)
        if handler is not None:
            (self.bin / f"{name}_handler.py").write_text(textwrap.dedent(handler))
        return self

    def state(self) -> dict:
        f = self.bin / "state.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def set_state(self, **values) -> None:
        state = self.state()
        state.update(values)
        (self.bin / "state.json").write_text(json.dumps(state))

    def calls(self, name: str | None = None) -> list[list[str]]:
        """The argv of every recorded call (of ``name`` only, when given), in order."""
        return [r["argv"] for r in self.records() if name is None or r["tool"] == name]

    def records(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def clear(self) -> None:
        if self.log.exists():
            self.log.unlink()


def tool_or_fail(name: str):
    """For tests that need a real tool: fail in CI (RAIBID_REQUIRE_TOOLS=1), skip elsewhere."""
    import pytest

    from tasks import tools

    path = tools.which(name)
    if path is None:
        msg = f"real tool {name!r} is not installed (run `doit tools`, see `doit doctor`)"
        if REQUIRE_TOOLS:
            pytest.fail(msg)
        pytest.skip(msg)
    return path
