"""The local k3d cluster: ``cluster`` (create or start, only when needed) and ``cluster:delete``.

Whether the cluster exists and runs is asked live (``k3d cluster list -o json``) every
time, never remembered: a cluster deleted or stopped behind doit's back is noticed. The
digest of ``cluster/k3d.yaml`` is recorded when doit creates the cluster
(``build/cluster.json``); a later change of the file is reported with the command that
recreates the cluster, never acted upon silently (recreating loses the cluster's data).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from . import atomic, core, paths, tools

#: how long to wait for the nodes to become Ready
READY_TIMEOUT = "180s"


def config_file() -> Path:
    return paths.root() / "cluster" / "k3d.yaml"


def state_file() -> Path:
    """What doit recorded about the cluster it created (never trusted for liveness)."""
    return paths.build() / "cluster.json"


def settings():
    from .core import plan_or_exit

    return plan_or_exit().settings


def config_digest() -> str:
    return hashlib.sha256(config_file().read_bytes()).hexdigest()


def recorded() -> dict:
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return {}


def config_problems() -> list[str]:
    """What is wrong with cluster/k3d.yaml, checked against plan.yaml's settings."""
    import yaml

    cfg = config_file()
    where = paths.rel(cfg)
    if not cfg.exists():
        return [f"{where} is missing: it defines the k3d cluster"]
    try:
        data = yaml.safe_load(cfg.read_text())
    except yaml.YAMLError as e:
        return [f"{where}: not valid YAML: {e}"]
    if not isinstance(data, dict):
        return [f"{where}: expected a k3d Simple config (a mapping)"]
    s = settings()
    probs = []

    def want(what, got, expected, fix):
        if got != expected:
            probs.append(f"{where}: {what} is {got!r}, plan.yaml settings say {expected!r}; {fix}")

    want("apiVersion", data.get("apiVersion"), "k3d.io/v1alpha5", "write `apiVersion: k3d.io/v1alpha5`")
    want("kind", data.get("kind"), "Simple", "write `kind: Simple`")
    want("metadata.name", (data.get("metadata") or {}).get("name"), s.cluster,
         "the cluster name must match settings.cluster (the kube context is k3d-<name>)")
    reg = ((data.get("registries") or {}).get("create") or {})
    want("registries.create.name", reg.get("name"), s.registry,
         "the registry name must match settings.registry (images are pulled as k3d-<name>:<port>)")
    want("registries.create.hostPort", str(reg.get("hostPort")), str(s.registry_port),
         "the registry port must match settings.registry_port (images are pushed to localhost:<port>)")
    if not str((data.get("kubeAPI") or {}).get("hostPort") or "").isdigit():
        probs.append(f"{where}: kubeAPI.hostPort is not set; fix the API port (e.g. \"6550\") so the "
                     f"kubeconfig entry survives restarts")
    image = str(data.get("image") or "")
    if ":" not in image or image.endswith(":latest"):
        probs.append(f"{where}: image {image!r} is not pinned; use a rancher/k3s:v1.33.x-k3s1 tag")
    return probs


def check_config():
    from doit.exceptions import TaskFailed

    probs = config_problems()
    if probs:
        return TaskFailed("\n".join(probs))
    print(f"{paths.rel(config_file())}: agrees with plan.yaml (cluster {settings().cluster})")
    return None


# --------------------------------------------------------------------------- live state


def live_state(name: str) -> str:
    """``missing``, ``stopped`` or ``running``, asked from k3d now.

    A cluster with some nodes down counts as ``stopped`` (``k3d cluster start`` brings
    every node up). Raises RuntimeError when k3d cannot answer.
    """
    exe = tools.which("k3d")
    if exe is None:
        raise RuntimeError("k3d is not installed")
    proc = subprocess.run([exe, "cluster", "list", "-o", "json"], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"`k3d cluster list` failed: {(proc.stderr or proc.stdout).strip()}")
    try:
        clusters = json.loads(proc.stdout or "[]")
    except ValueError as e:
        raise RuntimeError(f"`k3d cluster list -o json` printed no JSON: {e}") from None
    for c in clusters or []:
        if c.get("name") != name:
            continue
        servers, servers_up = c.get("serversCount", 0), c.get("serversRunning", 0)
        agents, agents_up = c.get("agentsCount", 0), c.get("agentsRunning", 0)
        if servers and servers_up >= servers and agents_up >= agents:
            return "running"
        return "stopped"
    return "missing"


def _kubectl(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    argv = [tools.which("kubectl") or "kubectl", "--context", settings().kube_context, *args]
    proc = subprocess.run(argv, capture_output=capture, text=True)
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip() if capture else ""
        raise RuntimeError(f"`kubectl {' '.join(args)}` failed ({proc.returncode}) {err}")
    return proc


def namespace_exists(ns: str) -> bool:
    return _kubectl("get", "namespace", ns, "-o", "name", check=False).returncode == 0


def config_warning() -> str | None:
    """A warning when cluster/k3d.yaml changed since doit created the cluster, else None."""
    rec = recorded().get("config_digest")
    if not rec or not config_file().exists() or rec == config_digest():
        return None
    name = settings().cluster
    return (f"warning: {paths.rel(config_file())} changed since the cluster {name!r} was created "
            f"(digest in {paths.rel(state_file())}); the cluster still runs the old configuration.\n"
            f"  It is not recreated automatically (that deletes its data). To apply the change:\n"
            f"    doit cluster:delete cluster")


def _warn_config() -> None:
    msg = config_warning()
    if msg:
        sys.stderr.write(msg + "\n")


def cluster_ready(task=None, values=None) -> bool:
    """uptodate: the cluster runs and holds the namespace (asked live, every run)."""
    if tools.missing(("docker", "k3d", "kubectl")):
        return False  # the action's tool check names what is missing
    s = settings()
    try:
        state = live_state(s.cluster)
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return False
    if state != "running":
        return False
    _warn_config()
    return namespace_exists(s.namespace)


# --------------------------------------------------------------------------- actions


def _run(argv: list[str]) -> None:
    print("$ " + " ".join(argv), flush=True)
    proc = subprocess.run(argv)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed with exit code {proc.returncode}")


def ensure_cluster():
    """Create or start the cluster as needed, wait for Ready nodes, set context and namespace."""
    from doit.exceptions import TaskFailed

    s = settings()
    cfg = config_file()
    probs = config_problems()
    if probs:
        return TaskFailed("\n".join(probs))
    try:
        state = live_state(s.cluster)
        k3d = tools.which("k3d")
        if state == "missing":
            digest = config_digest()
            _run([k3d, "cluster", "create", "--config", str(cfg)])
            info = {"name": s.cluster, "config": paths.rel(cfg), "config_digest": digest,
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        else:
            info = recorded() or {"name": s.cluster, "config_digest": None,
                                  "note": "created outside doit: its k3d config is unknown"}
            if state == "stopped":
                _run([k3d, "cluster", "start", s.cluster])
            _warn_config()
        # make the context current and present in the default kubeconfig
        _run([k3d, "kubeconfig", "merge", s.cluster, "--kubeconfig-merge-default",
              "--kubeconfig-switch-context"])
        _run([tools.which("kubectl") or "kubectl", "--context", s.kube_context, "wait",
              "--for=condition=Ready", "nodes", "--all", f"--timeout={READY_TIMEOUT}"])
        if not namespace_exists(s.namespace):
            _kubectl("create", "namespace", s.namespace)
            print(f"created namespace {s.namespace}")
        arch = _kubectl("get", "nodes", "-o", "jsonpath={.items[0].status.nodeInfo.architecture}",
                        check=False).stdout.strip()
        if arch:
            info["arch"] = arch
        atomic.write_text(state_file(), json.dumps(info, indent=2, sort_keys=True) + "\n")
    except RuntimeError as e:
        return TaskFailed(str(e))
    print(f"cluster {s.cluster} is ready (context {s.kube_context}, namespace {s.namespace})")
    return None


def delete_cluster():
    from doit.exceptions import TaskFailed

    s = settings()
    try:
        if live_state(s.cluster) == "missing":
            print(f"cluster {s.cluster} does not exist: nothing to delete")
        else:
            _run([tools.which("k3d"), "cluster", "delete", s.cluster])
    except RuntimeError as e:
        return TaskFailed(str(e))
    state_file().unlink(missing_ok=True)
    return None


# --------------------------------------------------------------------------- tasks


def task_cluster():
    """Create or start the local k3d cluster (only when missing or stopped) and wait until ready."""
    return tools.needs({
        "actions": [ensure_cluster],
        "uptodate": [cluster_ready],
        "verbosity": 2,
    }, "docker", "k3d", "kubectl")


def task_cluster_check():
    """Check cluster/k3d.yaml offline: a k3d Simple config that agrees with plan.yaml's settings."""
    return {
        "basename": "cluster:check",
        "actions": [check_config],
        "file_dep": [str(config_file()), str(paths.plan_file())],
        "verbosity": 1,
    }


core.offline_check("cluster:check")


def task_cluster_delete():
    """Delete the local k3d cluster and everything in it (`doit cluster` creates it again)."""
    return tools.needs({
        "basename": "cluster:delete",
        "actions": [delete_cluster],
        "uptodate": [False],
        "verbosity": 2,
    }, "docker", "k3d")
