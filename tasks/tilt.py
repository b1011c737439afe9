"""Tilt tasks: ``tilt:check`` (the Tiltfile loaded by the pinned Tilt, ``tilt alpha
tiltfile-result``, for every environment, and its result checked), ``tilt:server-binary``
(the host build behind the server's live reload, run by the Tiltfile's local_resource) and
``tilt:takeover`` (run by the Tiltfile under ``tilt up``/``tilt ci`` only)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from doit.exceptions import TaskFailed

from . import atomic, core, kube, paths, tools
from .charts import charts_present
from .tanka import digest_file


def tiltfile() -> Path:
    return paths.root() / "Tiltfile"


# --------------------------------------------------------------------------- tilt:check

#: Kubernetes kinds Tilt treats as workloads by itself (the Tiltfile adds ScaledJob)
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
#: the lines a clean load prints (with -v); anything else is Tilt warning about something
#: it dropped or ignored (an unused image, an unknown dependency...)
CLEAN_LOAD = ("Loading Tiltfile at: ", "Successfully loaded Tiltfile")


def tilt_environments() -> list[str]:
    """The environments the Tiltfile deploys: those of kind local (the project's cluster)."""
    return [e for e in core.environments() if kube.is_local(e)]


def _kubeconfig(path: Path, context: str) -> Path:
    """A kubeconfig naming ``context`` (on an address nothing listens on): a load needs the
    context's name, never a cluster."""
    import yaml

    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": context, "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": context, "user": {}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
    }))
    return path


def tiltfile_result(env: str, context: str | None = None, kube_context: str | None = None,
                    extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """``tilt alpha tiltfile-result`` on the Tiltfile for ``env``, with a kubeconfig whose
    current context is ``kube_context`` (default: the project's), ``--context`` when given."""
    import tempfile

    tilt = tools.which("tilt") or "tilt"
    with tempfile.TemporaryDirectory(prefix="tilt-check-") as tmp:
        run_env = tools.short_run_env({
            "KUBECONFIG": str(_kubeconfig(Path(tmp) / "kubeconfig", kube_context or core.settings().kube_context)),
            "RAIBID_SRC": str(paths.raibid_src()), **(extra_env or {})})
        argv = [tilt, "alpha", "tiltfile-result", "-v", "--file", str(tiltfile())]
        if context:
            argv += ["--context", context]
        return subprocess.run([*argv, "--", "--env", env], cwd=paths.root(), env=run_env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)


#: a document marker of a YAML stream, and a CustomResourceDefinition's top-level kind
_DOC_MARKER = re.compile(r"^---[ \t]*$", re.M)
_CRD_KIND = re.compile(r"^kind:[ \t]*['\"]?CustomResourceDefinition['\"]?[ \t]*$", re.M)


def _objects(text: str) -> list[dict]:
    """The objects of a YAML stream, but CustomResourceDefinitions: none of the checks looks
    at a CRD (not a workload, no pod, no image), and they are most of the text (skipped
    unparsed, by their top-level ``kind``; the rest through manifests' libyaml loader)."""
    from .manifests import yaml_docs

    return [o for doc in _DOC_MARKER.split(text or "") if not _CRD_KIND.search(doc)
            for o in yaml_docs(doc) if o]


def problems(result: dict, context: str) -> list[str]:
    """What is wrong with a Tiltfile load result (Tilt's JSON) that Tilt itself accepts."""
    from .manifests import pod_spec

    probs: list[str] = []
    manifests = {m["Name"]: m for m in result.get("Manifests") or []}
    # each resource's objects, parsed once (the CRDs make most of the text)
    objects_of = {name: _objects((m.get("DeployTarget") or {}).get("yaml")) for name, m in manifests.items()}
    # every workload is a resource of its own, labelled (never lost in "uncategorized")
    for o in objects_of.get("uncategorized", []):
        if o.get("kind") in WORKLOAD_KINDS | {"ScaledJob"}:
            probs.append(f"{o['kind']} {o['metadata']['name']} is in no resource (k8s_resource/k8s_kind)")
    for name, m in manifests.items():
        if name != "uncategorized" and not m.get("Labels"):
            probs.append(f"resource {name} has no label (it would show under 'unlabeled')")
        for d in m.get("ResourceDependencies") or []:
            if d not in manifests:
                probs.append(f"resource {name} depends on unknown resource {d}")
    # port forwards: each local port once, each to a port a container of the resource declares
    seen: dict[int, str] = {}
    for name, m in manifests.items():
        dt = m.get("DeployTarget") or {}
        declared = {p.get("containerPort") for o in objects_of[name]
                    for c in (pod_spec(o) or {}).get("containers") or [] for p in c.get("ports") or []}
        for f in (dt.get("portForwardTemplateSpec") or {}).get("forwards") or []:
            port = f.get("localPort")
            if port in seen:
                probs.append(f"local port {port} forwarded by both {seen[port]} and {name}")
            seen[port] = name
            target = f.get("containerPort") or port
            if declared and target not in declared:
                probs.append(f"resource {name} forwards {port} to container port {target}, "
                             f"which none of its containers declares ({sorted(declared)})")
    # images: every image target is built for a resource that deploys it; a ScaledJob gets
    # its image through the locator; a live update syncs inside the build context and, when
    # the container runs Tilt's restart wrapper, ends by touching the file it watches
    for name, m in manifests.items():
        dt = m.get("DeployTarget") or {}
        kinds = {o.get("kind") for o in objects_of[name]}
        if "ScaledJob" in kinds:
            paths_ = [loc.get("path") for loc in dt.get("imageLocators") or []
                      if "scaledjob" in ((loc.get("objectSelector") or {}).get("kindRegexp") or "").lower()]
            if not paths_:
                probs.append(f"resource {name}: no image locator for ScaledJob (k8s_kind): its image is not injected")
            if not m.get("ImageTargets"):
                probs.append(f"resource {name}: the ScaledJob's image is not built by Tilt")
        for it in m.get("ImageTargets") or []:
            lu = it.get("LiveUpdateSpec") or {}
            ctx = (it.get("BuildDetails") or {}).get("context") or ""
            base = lu.get("basePath") or ""
            for s in lu.get("syncs") or []:
                local = os.path.join(base, s.get("localPath", ""))
                if ctx and not (local + "/").startswith(ctx.rstrip("/") + "/"):
                    probs.append(f"image {it['selector']}: live update syncs {s['localPath']}, "
                                 f"outside its build context {ctx}")
            command = (it.get("overrideCommand") or {}).get("command") or []
            if command[:1] == ["/tilt-restart-wrapper"]:
                watched = next((a.split("=", 1)[1] for a in command if a.startswith("--watch_file=")), "")
                execs = [" ".join(e.get("args") or []) for e in lu.get("execs") or []]
                if not execs or not execs[-1].endswith("> " + watched):
                    probs.append(f"image {it['selector']}: the restart wrapper watches {watched or '?'} "
                                 f"but the live update's last step does not write it")
    # buttons: each starts a command, sits on a resource that exists, and talks to the
    # project's context
    objects = result.get("ObjectSet") or {}
    cmds = next((v for k, v in objects.items() if k.endswith("=cmds")), {})
    buttons = next((v for k, v in objects.items() if k.endswith("=uibuttons")), {})
    started = {b for c in cmds.values() for b in ((c["spec"].get("startOn") or {}).get("uiButtons") or [])}
    for bname, b in buttons.items():
        loc = b["spec"].get("location") or {}
        if loc.get("componentType") == "Resource" and loc.get("componentID") not in manifests:
            probs.append(f"button {bname} sits on unknown resource {loc.get('componentID')}")
        if bname not in started:
            probs.append(f"button {bname} starts no command")
    for cname, c in cmds.items():
        text = " ".join(c["spec"].get("args") or [])
        for ctx in re.findall(r"--context[ =](\S+)", text):
            if ctx != context:
                probs.append(f"command {cname} talks to context {ctx}, not the project's {context}")
    return probs


def summary(result: dict) -> str:
    manifests = [m for m in result.get("Manifests") or [] if m["Name"] != "uncategorized"]
    images = {it["selector"] for m in manifests for it in m.get("ImageTargets") or []}
    buttons = next((v for k, v in (result.get("ObjectSet") or {}).items() if k.endswith("=uibuttons")), {})
    return f"{len(manifests)} resources, {len(images)} image builds, {len(buttons)} buttons"


def check_tiltfile():
    """Load the Tiltfile with the real Tilt for every environment; fail naming every problem.
    The loads run at once (one Tilt process each, waited on by threads): the check takes the
    time of the slowest load, not of all of them."""
    from concurrent.futures import ThreadPoolExecutor

    context = core.settings().kube_context
    accepted = tilt_environments()
    envs = core.environments()
    with ThreadPoolExecutor(max_workers=len(envs) or 1) as pool:
        results = list(pool.map(tiltfile_result, envs))
    failures, lines = [], []
    for env, proc in zip(envs, results):
        if env not in accepted:
            # refused, and clearly: the message names the environment as remote
            if proc.returncode == 5 and f"--env {env} is a remote environment" in proc.stderr:
                lines.append(f"  {env}: refused, as it should be (remote: its context is not {context})")
            else:
                failures.append(f"--env {env}: expected the Tiltfile to refuse it (remote: its context is not "
                                f"{context}); tilt said (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
            continue
        if proc.returncode != 0:
            failures.append(f"--env {env}: the real Tilt rejects the Tiltfile (exit {proc.returncode}):\n"
                            f"{proc.stderr.strip()[-3000:]}")
            continue
        result = json.loads(proc.stdout)
        probs = problems(result, context)
        warned = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(CLEAN_LOAD)]
        if warned:
            probs.append("Tilt warns:\n    " + "\n    ".join(warned[:20]))
        if probs:
            failures.append(f"--env {env}:\n  - " + "\n  - ".join(probs))
        else:
            lines.append(f"  {env}: {summary(result)}")
    if failures:
        return TaskFailed("Tiltfile check failed (tilt alpha tiltfile-result):\n" + "\n".join(failures))
    print("Tiltfile loaded by the real Tilt:\n" + "\n".join(lines))
    return None


def task_tilt_check():
    """Load the Tiltfile with the pinned Tilt (`tilt alpha tiltfile-result`) per environment; check its result."""
    if not charts_present():
        # like tanka:manifests: the Tiltfile deploys the render, which needs the charts
        return {
            "basename": "tilt:check",
            "actions": [core.skip_action("tilt:check: charts are not vendored (tanka/charts/): the Tiltfile "
                                         "is checked against the rendered manifests, so it is skipped. "
                                         "Run `doit vendor:charts` (needs network once), then `doit` again.")],
            "uptodate": [False],
            "verbosity": 2,
            "meta": {"tools": ("tilt",)},  # what it needs once it can run (doit doctor)
        }
    envs = tilt_environments()
    # what a load reads: the Tiltfile, deploy.json, each environment's main.jsonnet and render
    # (its digest, written by render:<env>), every Dockerfile (it builds an image of each),
    # and this checker
    from . import docker, settings

    deps = [tiltfile(), settings.file(), Path(__file__), *(docker.dockerfile(n) for n in docker.images())]
    deps += [paths.tanka() / "environments" / e / "main.jsonnet" for e in core.environments()]
    deps += [digest_file(e) for e in envs]
    return tools.needs({
        "basename": "tilt:check",
        "actions": [check_tiltfile],
        "file_dep": [str(p) for p in deps],
        "task_dep": [f"render:{e}" for e in envs],
        "verbosity": 2,
    }, "tilt")


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
        ctx = core.settings().kube_context
        proc = kube.run(kube.kubectl_argv(ctx, exe=kubectl) + [
            "get", "nodes", "-o", "jsonpath={.items[0].status.nodeInfo.architecture}"],
            capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    import platform

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
    env = kube.local_env()
    if env is None:
        return TaskFailed("deploy.json declares no environment of kind \"local\": Tilt has nothing to take over")
    if not kube.forget_applied(env):
        return TaskFailed("could not delete the deploy record (is the cluster running? `doit cluster`)")
    print(f"Tilt deploys {env} now: `doit up` will deploy its own images again")
    return None


def task_tilt_takeover():
    """Hand the deployment to Tilt: forget what `apply:local` recorded, so `doit up` redeploys later."""
    return tools.needs({"basename": "tilt:takeover", "actions": [take_over], "uptodate": [False],
                        "verbosity": 2}, "kubectl")
