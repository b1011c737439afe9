"""Tilt tasks: ``tilt:check`` (the Tiltfile evaluated offline) and ``tilt:server-binary``
(the host build behind the server's live reload, run by the Tiltfile's local_resource)."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

from . import atomic, core, paths, tools


def tiltfile() -> Path:
    return paths.root() / "Tiltfile"


# --------------------------------------------------------------------------- tilt:check


def check_tiltfile():
    """Evaluate the Tiltfile with recording builtins; fail naming every problem."""
    from doit.exceptions import TaskFailed

    from .tiltcheck import TiltfileError, check

    manifests = paths.build() / "manifests" / "local"
    if not manifests.is_dir():
        return TaskFailed(f"{paths.rel(manifests)} is missing: the Tiltfile deploys the rendered "
                          f"manifests; run `doit render:local`")
    try:
        rec = check(tiltfile(), args={}, env={"RAIBID_SRC": str(paths.raibid_src())})
    except TiltfileError as e:
        return TaskFailed(str(e))
    res = rec.of("k8s_resource")
    print(f"Tiltfile: {len(res)} resources, {len(rec.of('docker_build'))} image builds, "
          f"{len(rec.of('cmd_button'))} buttons: evaluates cleanly")
    return None


def task_tilt_check():
    """Check the Tiltfile offline: evaluate it with a real Starlark interpreter and Tilt's checks."""
    from .tanka import charts_present, digest_file

    if not charts_present():
        # like tanka:manifests: the Tiltfile deploys the render, which needs the charts
        return {
            "basename": "tilt:check",
            "actions": [core.skip_action("tilt:check: charts are not vendored (tanka/charts/): the Tiltfile "
                                         "is checked against the rendered manifests, so it is skipped. "
                                         "Run `doit vendor:charts` (needs network once), then `doit` again.")],
            "uptodate": [False],
            "verbosity": 2,
        }
    root = paths.root()
    # what the evaluation reads: the Tiltfile, plan.yaml, the rendered manifests (their
    # digest, written by render:local), the Dockerfiles it names, and the evaluator
    deps = [tiltfile(), root / "plan.yaml", digest_file("local"), Path(__file__).with_name("tiltcheck.py"),
            paths.docker() / "server.Dockerfile", paths.docker() / "agent.Dockerfile"]
    return {
        "basename": "tilt:check",
        "actions": [check_tiltfile],
        "file_dep": [str(p) for p in deps],
        "task_dep": ["render:local"],
        "verbosity": 2,
    }


core.offline_check("tilt:check")


# --------------------------------------------------------------------------- tilt:server-binary

_ARCH = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


def dev_dir() -> Path:
    """The build context of the server's dev image (Dockerfile target ``dev``)."""
    return paths.build() / "tilt" / "server"


def cluster_arch() -> str:
    """The cluster nodes' architecture: recorded by `doit cluster`, else asked, else the host's."""
    try:
        arch = json.loads((paths.build() / "cluster.json").read_text()).get("arch")
        if arch:
            return arch
    except (OSError, ValueError):
        pass
    kubectl = tools.which("kubectl")
    if kubectl:
        from .core import plan_or_exit

        ctx = plan_or_exit().settings.kube_context
        proc = subprocess.run([kubectl, "--context", ctx, "get", "nodes", "-o",
                               "jsonpath={.items[0].status.nodeInfo.architecture}"],
                              capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    return platform.machine()


def rust_target() -> str:
    """``RAIBID_DEV_TARGET``, else the Linux glibc target of the cluster's architecture.

    glibc, as the dev image expects (Debian slim with OpenSSL 3, docker/server.Dockerfile
    target ``dev``): on a Linux host of the same architecture that is the host's own
    target, so plain incremental ``cargo build`` works without a cross toolchain.
    """
    if os.environ.get("RAIBID_DEV_TARGET"):
        return os.environ["RAIBID_DEV_TARGET"]
    arch = cluster_arch()
    return f"{_ARCH.get(arch, arch)}-unknown-linux-gnu"


def cargo_manifests_digest(src: Path) -> str:
    """sha256 over Cargo.lock and every Cargo.toml of the workspace (target/ excluded)."""
    h = hashlib.sha256()
    files = [src / "Cargo.lock"] + sorted(p for p in src.rglob("Cargo.toml")
                                          if "target" not in p.relative_to(src).parts)
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _write_if_changed(path: Path, data: bytes, mode: int | None = None) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic.write_bytes(path, data)
    if mode is not None:
        path.chmod(mode)
    return True


def build_server_binary():
    """cargo build (incremental, dev profile) for the cluster, then refresh build/tilt/server."""
    from doit.exceptions import TaskFailed

    src = paths.raibid_src()
    if not (src / "Cargo.toml").is_file():
        return TaskFailed(f"{src}/Cargo.toml not found: set RAIBID_SRC to the raibid-ci Cargo workspace "
                          f"(default ../raibid-ci)")
    cargo = os.environ.get("RAIBID_CARGO", "cargo").split()
    if shutil.which(cargo[0]) is None:
        return TaskFailed(f"missing tool: {cargo[0]} (the Rust toolchain builds the server for live "
                          f"reload)\n  install: https://rustup.rs, then `rustup target add {rust_target()}`")
    target = rust_target()
    argv = [*cargo, "build", "--package", "raibid-server", "--bin", "raibid-server", "--target", target]
    print("$ " + " ".join(argv), flush=True)
    proc = subprocess.run(argv, cwd=src)
    if proc.returncode != 0:
        return TaskFailed(f"cargo build failed for {target}. If the target is missing: "
                          f"`rustup target add {target}`; to cross-compile from macOS set "
                          f"RAIBID_CARGO='cargo zigbuild'; RAIBID_DEV_TARGET overrides the target.")
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR") or src / "target")
    if not target_dir.is_absolute():
        target_dir = src / target_dir
    binary = target_dir / target / "debug" / "raibid-server"
    if not binary.is_file():
        return TaskFailed(f"cargo reported success but {binary} is missing")
    out = dev_dir()
    changed = _write_if_changed(out / "raibid-server", binary.read_bytes(), 0o755)
    manifests = _write_if_changed(out / "cargo-manifests.sha256",
                                  (cargo_manifests_digest(src) + "\n").encode())
    print(f"{paths.rel(out / 'raibid-server')}: {'updated' if changed else 'unchanged'}"
          + ("; Cargo manifests changed: full image rebuild" if manifests else ""))
    return None


def task_tilt_server_binary():
    """Build raibid-server on the host for the cluster (incremental cargo) for Tilt's live reload."""
    task = {
        "basename": "tilt:server-binary",
        "actions": [build_server_binary],
        "uptodate": [False],  # cargo is the judge of what is out of date
        "verbosity": 2,
    }
    return tools.needs(task, "cargo") if "RAIBID_CARGO" not in os.environ else task


# --------------------------------------------------------------------------- tilt:takeover


def take_over():
    from doit.exceptions import TaskFailed

    from .up import ENV, forget_applied

    if not forget_applied():
        return TaskFailed("could not delete the deploy record (is the cluster running? `doit cluster`)")
    print(f"Tilt deploys {ENV} now: `doit up` will deploy its own images again")
    return None


def task_tilt_takeover():
    """Hand the deployment to Tilt: forget what `apply:local` recorded, so `doit up` redeploys later."""
    return tools.needs({"basename": "tilt:takeover", "actions": [take_over], "uptodate": [False],
                        "verbosity": 2}, "kubectl")
