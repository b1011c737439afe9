"""``render:<env>``: ``tk export`` of an environment into build/manifests/<env>/, and the
depfile engine that decides when it must run again.

``render:<env>`` runs when a file the environment imports changed. The imports come
from the depfile ``build/manifests/<env>.deps.json`` that the previous render wrote
from ``tk tool imports`` (as Ninja does), with the state (mtime, size, sha256) of each
import (deploy.json included), of chartfile.yaml and every vendored chart file; no depfile means
render. The export parameters count too. The output directory is replaced
atomically; ``build/manifests/<env>.sha256`` is the digest of what was rendered, and
doit's database keeps it too: an output that is no longer what render wrote (a file
edited, added or removed, or its digest file) renders again, restoring it, and so does
``doit forget render:<env>``. validate, publish and apply key on that digest and check
the directory against it before they act (:func:`changed_since_render`).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

from doit.exceptions import TaskFailed

from . import atomic, core, paths, tools
from .charts import chart_files
from .kube import is_local
from .tanka import chartfile, depfile, digest_file, env_dir, manifests_dir, read_digest, tk

#: parameters of `tk export`; changing them re-renders
EXPORT_FORMAT = "{{.apiVersion}}.{{.kind}}-{{or .metadata.name .metadata.generateName}}"


def _file_state(path: Path) -> list:
    """``[mtime_ns, size, sha256]`` of a file (what the depfile records)."""
    st = path.stat()
    return [st.st_mtime_ns, st.st_size, hashlib.sha256(path.read_bytes()).hexdigest()]


def render_inputs(env: str, imports: list[str]) -> list[str]:
    """Project-relative inputs of a render: its imports (deploy.json among them, through
    config.libsonnet), chartfile.yaml and every file of the vendored charts."""
    extra = [chartfile()] + [Path(p) for p in chart_files()]
    return sorted(set(imports) | {paths.rel(p) for p in extra})


def read_depfile(env: str) -> dict | None:
    try:
        data = json.loads(depfile(env).read_text())
        return data if isinstance(data.get("files"), dict) else None
    except (OSError, ValueError, AttributeError):
        return None


#: the tools whose build decides what a render produces
RENDER_TOOLS = ("tk", "helm")


def render_params(env: str) -> dict:
    """The parameters of `tk export` (recorded in the depfile; a change renders again)."""
    return {"format": EXPORT_FORMAT, "out": paths.rel(manifests_dir(env))}


def tool_identity() -> dict[str, list]:
    """``name -> [path, size, mtime_ns]`` of the tk and helm a render runs: a rebuilt or
    another tool renders again (cheaper than asking each for its version). A tool inside
    the project (.tools/bin) is named relative to its root, so a copied checkout keeps its
    renders."""
    out = {}
    base = str(paths.root()) + os.sep
    for name in RENDER_TOOLS:
        exe = tools.which(name)
        if exe is None:
            out[name] = None
            continue
        real = os.path.realpath(exe)
        try:
            st = os.stat(real)
        except OSError:
            out[name] = None
            continue
        out[name] = [real[len(base):] if real.startswith(base) else real, st.st_size, st.st_mtime_ns]
    return out


class RenderUptodate:
    """A file the last render imported changed (its content, not only its time), a vendored
    chart file was added, removed or changed, tk or helm was rebuilt or replaced, the
    export parameters changed, the output is missing or not what render wrote (a file
    edited, added or removed), or `doit forget` dropped the record; the depfile
    build/manifests/<env>.deps.json records them. `doit info render:<env>` names which.

    The doit ``uptodate`` of render:<env>. Up to date while the depfile of the last render exists and no file in it changed
    (mtime and size first, content hash when they differ), the set of chart files, the
    export parameters and the tk/helm binaries are the same, and the output is there.
    Ninja's depfile rule: the imports of the *last* render decide, so adding or removing
    an import never forces a spurious render. ``doit info render:<env>`` prints
    :attr:`reason` (via ``str``), and the reporter shows it when the render runs.
    """

    def __init__(self, env: str):
        self.env = env
        self.reason = ""

    def __str__(self) -> str:
        return self.reason or f"the inputs of render:{self.env} (unchanged)"

    def __call__(self, task, values):
        self.reason = self.why(values)
        return not self.reason

    def why(self, values: dict) -> str:
        """Empty when the render is current; otherwise the first input that changed.
        ``values``: what doit saved of the last render (its digest)."""
        env = self.env
        recorded = read_depfile(env)
        if recorded is None:
            return f"no record of a previous render ({paths.rel(depfile(env))})"
        out = manifests_dir(env)
        if not out.is_dir():
            return f"{paths.rel(out)}/ is missing"
        if recorded.get("params") != render_params(env):
            return "the export parameters changed"
        tools_then, tools_now = recorded.get("tools") or {}, tool_identity()
        for name in RENDER_TOOLS:
            now = tools_now.get(name)
            if tools_then.get(name) != now:
                return f"tool {name} changed ({paths.rel(Path(now[0])) if now else 'missing'})"
        files = recorded["files"]
        base = str(paths.root()) + os.sep  # chart_files() are under the (resolved) root: no resolve() each
        charts_now = {p[len(base):] if p.startswith(base) else paths.rel(Path(p)) for p in chart_files()}
        charts_then = {p for p in files if p.startswith("tanka/charts/")}
        if charts_now != charts_then:
            added, removed = sorted(charts_now - charts_then), sorted(charts_then - charts_now)
            return (f"chart file {added[0]} was added" if added else f"chart file {removed[0]} was removed")
        for rel, (mtime_ns, size, sha) in files.items():
            f = base + rel  # a string, no Path: every doit start checks each file of each render
            try:
                st = os.stat(f)
            except OSError:
                return f"{rel} is missing"
            if (st.st_mtime_ns, st.st_size) == (mtime_ns, size):
                continue
            try:
                if st.st_size != size or hashlib.sha256(Path(f).read_bytes()).hexdigest() != sha:
                    return f"{rel} changed"
            except OSError:
                return f"{rel} cannot be read"
        # last, as the one read of the whole output per run: validate, publish and apply
        # trust the recorded digest, so the output must still be what this render wrote
        if not (values or {}).get("digest"):
            return (f"doit has no record of the last render:{env} (it failed, `doit forget`, "
                    "or a new .doit.db)")
        try:
            now = dir_digest(out)
        except OSError as e:
            return f"{paths.rel(out)}/ cannot be read ({e.strerror})"
        if now != values["digest"]:
            return (f"{paths.rel(out)}/ is not what render:{env} wrote "
                    "(a file edited, added or removed)")
        if read_digest(env) != now:
            return f"{paths.rel(digest_file(env))} is not the digest of {paths.rel(out)}/"
        return ""


def render_uptodate(env: str) -> RenderUptodate:
    return RenderUptodate(env)


def tk_imports(env: str) -> list[str] | TaskFailed:
    """``tk tool imports`` of an environment, as project-relative paths (a TaskFailed
    saying why when it fails).

    tk asks git for the repository root; outside a git checkout (a copied project) it
    gets a throwaway one, so the command works anywhere.
    """
    main = env_dir(env) / "main.jsonnet"
    env_vars = tools.short_run_env()
    with tempfile.TemporaryDirectory(prefix="tk-imports-") as tmp:
        try:
            probe = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=paths.tanka(),
                                   capture_output=True, text=True)
        except FileNotFoundError:
            return TaskFailed("`tk tool imports` needs git on PATH (install git)")
        if probe.returncode != 0:
            subprocess.run(["git", "init", "-q", "--bare", tmp], check=True, capture_output=True)
            env_vars.update(GIT_DIR=tmp, GIT_WORK_TREE=str(paths.tanka()))
        proc = tk("tool", "imports", str(main), env=env_vars)
    if proc.returncode != 0:
        return TaskFailed(f"`tk tool imports {paths.rel(main)}` failed:\n{proc.stderr.strip()}")
    rel_to_tanka = json.loads(proc.stdout)
    return sorted(paths.rel(paths.tanka() / p) for p in rel_to_tanka)


#: the file that marks a directory as made by render: only such a directory is ever replaced
RENDER_MARK = ".rendered-by-doit"


def dir_digest(directory: Path) -> str:
    """sha256 over the relative names and contents of every file in ``directory``
    (except the render's mark), in path order; any other entry but a directory (a link to
    a directory, a dangling link: render writes none) counts by its name. render:<env>'s
    up-to-date check hashes its output on every run: strings and os.walk, no Path per file."""
    base = str(directory)
    names = []
    for top, dirs, files in os.walk(base):
        rel = os.path.relpath(top, base)
        linked = [d for d in dirs if os.path.islink(os.path.join(top, d))]  # not walked into
        names += [n if rel == "." else os.path.join(rel, n)
                  for n in files + linked if n != RENDER_MARK]
    h = hashlib.sha256()
    for name in sorted(names, key=lambda n: n.split(os.sep)):
        h.update(name.encode() + b"\0")
        full = os.path.join(base, name)
        if os.path.isfile(full):
            with open(full, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
        else:
            h.update(b"not a file")
    return h.hexdigest()


def changed_since_render(env: str) -> str | None:
    """Why build/manifests/<env>/ is not the render render:<env> recorded (its digest file),
    None when it is: what validate checks, publish pushes and apply applies is only ever
    the render as written (read again here, when they act)."""
    out, recorded = manifests_dir(env), read_digest(env)
    if recorded is None:
        problem = f"{paths.rel(digest_file(env))} is missing or not a sha256"
    else:
        try:
            if dir_digest(out) == recorded:
                return None
            problem = (f"{paths.rel(out)}/ changed since render:{env} wrote it "
                       "(a file edited, added or removed)")
        except OSError as e:
            problem = f"{paths.rel(out)}/ cannot be read ({e.strerror})"
    return (f"{problem}: nothing was used. `doit render:{env}` renders it again "
            "(and so does any task that needs it)")


def output_refused(env: str) -> str | None:
    """Why render:<env> must not write its output, None when it may: it writes only its own
    files, directly in build/manifests/, and replaces only a directory it made."""
    base = paths.build() / "manifests"
    for p in (manifests_dir(env), depfile(env), digest_file(env)):
        if Path(env).name != env or env in ("", ".", "..") or p.parent != base:
            return (f"render:{env}: the output {p} would not be directly in "
                    f"{paths.rel(base)}/: nothing was written. An environment name is "
                    "one directory name (no '/' or '..').")
    for d in (paths.build(), base):
        if d.exists() and not d.is_dir():
            return (f"render:{env}: {paths.rel(d)} is not a directory (a file is in the "
                    f"way): move it away, then run `doit render:{env}` again")
    out = manifests_dir(env)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        return (f"render:{env}: {paths.rel(out)} is not a directory render made: move it "
                "away, then run the render again")
    if out.is_dir() and not (out / RENDER_MARK).is_file():
        try:
            legacy = read_digest(env) == dir_digest(out)  # made before the mark
        except OSError:
            legacy = False
        if not legacy:
            return (f"render:{env}: {paths.rel(out)}/ was not created by render:{env} "
                    "(it would be replaced): move it away, then run the render again")
    return None


class _ExportFailed(Exception):
    """Aborts :func:`atomic.replace_dir` inside :func:`render` (the previous output stays)."""


def render(env: str) -> TaskFailed | dict:
    """The action of render:<env>: ``tk export`` the environment into
    build/manifests/<env>/, atomically, and write its depfile and digest (returned too, for
    doit to keep: ``{"digest": ...}``). The output is
    private (0700 directory, 0600 files, from creation: local Secrets hold plaintext), and
    tk dies with doit. A refused output, or a failed ``tk tool imports`` or ``tk export``,
    is a TaskFailed saying which and why, and leaves the previous output as it was."""
    refused = output_refused(env)
    if refused:
        return TaskFailed(refused)
    # one render of an environment at a time (another doit process, a parallel run): its
    # leftovers are swept under the lock, so only a dead render's are, and never another
    # environment's temporary output while that render writes it
    with atomic.locked(env_dir(env)):
        atomic.sweep_stale_temps(manifests_dir(env).parent,
                                 owners=[p.name for p in (manifests_dir(env), digest_file(env), depfile(env))])
        return _render_locked(env)


def _render_locked(env: str) -> TaskFailed | dict:
    out = manifests_dir(env)
    # the inputs are recorded as they are before the export: a file edited while tk runs
    # makes the next run render again
    imports = tk_imports(env)
    if isinstance(imports, TaskFailed):
        return imports
    files = {rel: _file_state(paths.root() / rel) for rel in render_inputs(env, imports)}
    tool_ids = tool_identity()
    try:
        with atomic.replace_dir(out, mode=0o700) as tmp:
            proc = tk("export", str(tmp), str(env_dir(env)), "--format", EXPORT_FORMAT, "--log-level", "warn",
                      preexec_fn=atomic.child_setup(umask=0o077))
            if proc.returncode != 0:
                raise _ExportFailed(f"`tk export` of {paths.rel(env_dir(env))} failed:\n{proc.stderr.strip()}")
            digest = dir_digest(tmp)
            fd = os.open(tmp / RENDER_MARK, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, f"render:{env}\n".encode())
            os.close(fd)
    except _ExportFailed as e:
        return TaskFailed(str(e))
    # the depfile last: it is what render_uptodate trusts, so a run interrupted before it
    # is written renders again (validate and apply key on the digest, written first)
    atomic.write_text(digest_file(env), digest + "\n")
    atomic.write_text(depfile(env), json.dumps({"env": env, "imports": imports, "files": files,
                                                "params": render_params(env), "tools": tool_ids},
                                               indent=1, sort_keys=True) + "\n")
    count = sum(1 for _ in out.glob("*.yaml"))
    print(f"render:{env}: {count} objects in {paths.rel(out)}/ (digest {digest[:12]})")
    return {"digest": digest}


def task_render():
    """Render an environment with `tk export` into build/manifests/<env>/ (incremental)."""
    for env in core.environments():
        task = {
            "name": env,
            "doc": f"Render the {env} environment into build/manifests/{env}/ (re-runs only when an import changed)",
            "actions": [(render, [env])],
            "targets": [str(digest_file(env)), str(depfile(env))],
            "task_dep": ["vendor:charts"] + ([f"secrets:{env}"] if is_local(env) else []),
            "uptodate": [render_uptodate(env)],
            "verbosity": 1,
        }
        yield tools.needs(task, "tk", "helm", "git")


def rendered_objects(directory: Path) -> list[dict]:
    """The objects of a render directory (build/manifests/<env>/)."""
    from .manifests import load_dir

    return [o for _, o in load_dir(directory) if o.get("kind")]
