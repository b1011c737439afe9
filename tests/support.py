"""Test helpers shared by every test module: project copies, doit runs, recording shims.

Only what needs a Docker engine or a cluster (docker, k3d, kubectl, tilt) is replaced,
by *recording shims*: small executables put first on PATH that append each call (argv,
cwd, selected env) to a JSON-lines log and answer through an optional handler, so tests
can assert exactly what was run, in which order.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

#: RAIBID_TEST_DOIT=process runs every doit of the tests in a child process, as before the
#: in-process runner (to compare timings with bench/suite.py, or to rule the runner out)
PROCESS_RUNS = os.environ.get("RAIBID_TEST_DOIT") == "process"

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


@functools.lru_cache(maxsize=None)
def _session_files(repo: Path) -> tuple[str, ...]:
    """:func:`tracked_files` of ``repo``, asked of git once per session (a test session
    tests one state of the checkout)."""
    return tuple(tracked_files(repo))


def copy_project(dst: Path, repo: Path = REPO) -> Path:
    """Copy the project (see :func:`tracked_files`; no build output, no .doit.db, no venv)
    into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for rel in _session_files(Path(repo)):
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target)
    tools = repo / ".tools"
    if tools.is_dir():  # the Go-built tools, if `doit tools` installed them
        (dst / ".tools").symlink_to(tools, target_is_directory=True)
    return dst


def copy_built(src: Path, dst: Path) -> Path:
    """Copy a project that doit has worked in (build/, .doit.db, the .tools link kept as a
    link) to ``dst``: modification times are kept, so doit's record stays valid in the copy
    (tasks/dbbackend.py stores paths relative to the project)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def yaml_docs(text: str) -> list:
    """The non-empty documents of a YAML stream, read safely with libyaml when PyYAML has it
    (renders are large: PyYAML's pure-Python reader takes several times as long)."""
    import yaml

    return [d for d in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d]


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
             check: bool = False, process: bool | None = None) -> subprocess.CompletedProcess:
    """Run ``doit ARGS`` in ``project`` the way a user would, capturing output.

    In this process (:func:`doit_here`) unless the process boundary is the point or cannot be
    kept: ``process=True`` asks for ``python -m doit`` in a child process (exit codes of the
    CLI, what reaches stderr of a real process, signals, interrupts); a run whose child would
    import another ``tasks`` package than this checkout's (a test changed the copy's
    tasks/, or nothing on its path has one) also runs in a child process, since this process
    has already imported this checkout's. Same result type either way;
    ``timeout`` bounds a child process only."""
    if process is None:
        process = PROCESS_RUNS or not _same_tasks(project, env or env_for(project))
    if process:
        return run_doit_process(project, *args, env=env, timeout=timeout, check=check)
    return doit_here(project, *args, env=env, check=check)


def run_doit_process(project: Path, *args: str, env: dict | None = None, timeout: float = 600,
                     check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m doit ARGS`` in ``project`` as a child process, capturing output."""
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=project,
                          env=env or env_for(project), capture_output=True, text=True,
                          timeout=timeout)
    return _checked(proc, args, check)


def _checked(proc: subprocess.CompletedProcess, args, check: bool) -> subprocess.CompletedProcess:
    if check and proc.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def _same_tasks(project: Path, env: dict) -> bool:
    """Whether a ``python -m doit`` child in ``project`` would import the ``tasks`` package
    this process has imported (this checkout's): the first ``tasks`` package on its path
    (the project, then PYTHONPATH) holds the same modules (names, sizes and modification
    times: copy_project keeps them)."""
    def stamp(d: Path) -> set:
        return {(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in d.glob("*.py")}

    search = [str(project)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    for entry in search:
        pkg = Path(entry) / "tasks"
        if (pkg / "__init__.py").is_file():
            try:
                return pkg.resolve() == (REPO / "tasks").resolve() or stamp(pkg) == stamp(REPO / "tasks")
            except OSError:
                return False
    return False


def reset_task_state() -> None:
    """Forget what the task modules keep per process (a run in another project copy must not
    see it): the plan read by tasks.plan.current(), the image inputs of docker's
    up-to-date check and the notes validate has said once. CI_CHECKS (filled when the modules are imported) and the lru_caches of
    pure functions hold no project state."""
    from tasks import docker, plan, validate

    plan._CACHE.clear()
    docker._checked.clear()
    validate.SAID.clear()


@contextlib.contextmanager
def _fresh_process_ci_checks():
    from tasks import core

    saved = list(core.CI_CHECKS)
    core.CI_CHECKS[:] = fresh_ci_checks()
    try:
        yield
    finally:
        core.CI_CHECKS[:] = saved


def _exit_status(value) -> int:
    """The exit status of a process ending with ``sys.exit(value)`` (a text is printed)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    sys.stderr.write(f"{value}\n")
    return 1


#: ``python -m doit`` names itself after sys.argv[0], which is "-m" while doit.doit_cmd is
#: imported by runpy (so its messages say `Type "-m help"`)
_BIN_NAME = "-m"


@functools.lru_cache(maxsize=1)
def fresh_ci_checks() -> tuple[str, ...]:
    """tasks.core.CI_CHECKS as a fresh ``python -m doit`` process has it. Its order is the
    order dodo.py imports the task modules in; this process imported them in the order its
    tests did, so an in-process run borrows the fresh order (read once per session)."""
    code = "import dodo, json; from tasks import core; print(json.dumps(core.CI_CHECKS))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env_for(REPO),
                          capture_output=True, text=True, check=True)
    return tuple(json.loads(proc.stdout.splitlines()[-1]))


def doit_here(project: Path, *args: str, env: dict | None = None,
              check: bool = False) -> subprocess.CompletedProcess:
    """Run doit in this process as ``python -m doit ARGS`` would in ``project``: the same
    DoitMain, dodo.py loaded afresh from ``project`` (doit's DodoTaskLoader), its
    pyproject.toml config and plugins, ``env`` as the whole environment, the working
    directory and sys.path as a child would have them. stdout and stderr are captured at
    the file-descriptor level, so the output of the tools the tasks run is captured too.
    Everything the run changes in this process (environment, PATH edits of
    tools.activate(), working directory, sys.path, the dodo module, sys.excepthook, signal
    handlers, per-process task state) is put back afterwards.

    An exception escaping doit (a SystemExit from a task creator, or anything else) becomes
    the exit code and stderr text a child process would have had."""
    import io
    import signal
    import tempfile

    from doit import cmd_run
    from doit.doit_cmd import DoitMain

    env = dict(env or env_for(project))
    saved = dict(environ=dict(os.environ), cwd=os.getcwd(), path=list(sys.path),
                 streams=(sys.stdin, sys.stdout, sys.stderr), hook=sys.excepthook,
                 outfile=cmd_run.opt_outfile["default"], dodo=sys.modules.pop("dodo", None),
                 signals={s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)})
    for stream in saved["streams"][1:]:
        stream.flush()
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    fds = os.dup(1), os.dup(2)
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    devnull = open(os.devnull)
    sys.stdin = devnull
    sys.stdout = io.TextIOWrapper(open(os.dup(1), "wb", buffering=0), encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(open(os.dup(2), "wb", buffering=0), encoding="utf-8", write_through=True,
                                  errors="backslashreplace")
    cmd_run.opt_outfile["default"] = sys.stdout
    code = 0
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(project)
        # `python -m doit` with PYTHONPATH: the working directory, then PYTHONPATH first
        sys.path[:0] = [str(project)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        reset_task_state()
        main = DoitMain()
        main.BIN_NAME = _BIN_NAME
        with _fresh_process_ci_checks():
            code = _exit_status(main.run(list(args)))  # __main__ passes it to sys.exit
    except SystemExit as e:
        code = _exit_status(e.code)
    except BaseException as e:  # what the interpreter does with it: its excepthook, then exit
        sys.excepthook(type(e), e, e.__traceback__)
        code = -signal.SIGINT if isinstance(e, KeyboardInterrupt) else 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            stream.close()
        devnull.close()
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        sys.stdin, sys.stdout, sys.stderr = saved["streams"]
        sys.excepthook = saved["hook"]
        cmd_run.opt_outfile["default"] = saved["outfile"]
        for sig, handler in saved["signals"].items():
            signal.signal(sig, handler)
        os.chdir(saved["cwd"])
        sys.path[:] = saved["path"]
        sys.modules.pop("dodo", None)
        if saved["dodo"] is not None:
            sys.modules["dodo"] = saved["dodo"]
        os.environ.clear()
        os.environ.update(saved["environ"])
        reset_task_state()

    def text(f) -> str:
        f.seek(0)
        data = f.read().decode("utf-8", errors="replace")
        f.close()
        return data.replace("\r\n", "\n").replace("\r", "\n")  # as text=True reads a pipe

    proc = subprocess.CompletedProcess([sys.executable, "-m", "doit", *args], code,
                                       text(out), text(err))
    return _checked(proc, args, check)


_SHIM = r'''#!{python} -IS
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

    ENV_KEYS = ("DOCKER_BUILDKIT", "KUBECONFIG", "RAIBID_ENV", "TILT_PORT", "DOCKER_HOST", "GOGC")

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
