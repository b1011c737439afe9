"""The test control plane itself (tasks/controlplane.py) and validate's server-side dry-run
against it: real etcd, kube-apiserver, controller-manager, scheduler and kwok."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from support import copy_built, copy_project, env_for, run_doit, tool_or_fail

from tasks import controlplane as cpmod
from tasks.settings import environments_on_disk


def _environ(pid: int) -> dict:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_the_control_plane_schedules_a_job_on_the_fake_node_and_answers_every_context(controlplane):
    cp = controlplane
    contexts = [c["name"] for c in yaml.safe_load(cp.kubeconfig.read_text())["contexts"]]
    assert {"k3d-raibid-ci", "raibid-staging", "raibid-prod"} <= set(contexts)
    for p in cp.processes():  # none of them can see the user's kubeconfig
        env = _environ(p["pid"])
        assert env["HOME"] == str(cp.dir) and env["KUBECONFIG"] == str(cp.kubeconfig), p["name"]
    ns = "cp-smoke"
    cp.kubectl("create", "namespace", ns, check=True)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "hello", "namespace": ns},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "busybox"}]}}}}
    cp.kubectl("apply", "-f", "-", input=json.dumps(job), check=True)
    deadline = time.monotonic() + 60
    pods = []
    while time.monotonic() < deadline:
        pods = json.loads(cp.kubectl("-n", ns, "get", "pods", "-l", "job-name=hello", "-o", "json",
                                     check=True).stdout)["items"]
        if pods and pods[0]["status"].get("phase") == "Running":
            break
        time.sleep(0.5)
    assert pods and pods[0]["status"]["phase"] == "Running", pods
    assert pods[0]["spec"]["nodeName"] == cpmod.FAKE_NODE
    cp.kubectl("delete", "namespace", ns, "--wait=false", check=True)


def test_what_the_api_server_calls_itself_stays_on_loopback(controlplane):
    """A webhook (the KEDA chart's admission webhooks, its metrics APIService) is called by
    the API server at its Service's cluster IP: on the test control plane that is a
    loopback address, where nothing serves it, so the call fails at once and never leaves
    this machine."""
    import ipaddress

    cp = controlplane
    ns = "cp-loopback"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hook", "namespace": ns},
           "spec": {"ports": [{"port": 443}]}}
    hook = {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "raibid-test-loopback"},
            "webhooks": [{"name": "loopback.raibid.test", "admissionReviewVersions": ["v1"],
                          "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 5,
                          "clientConfig": {"service": {"name": "hook", "namespace": ns}},
                          "objectSelector": {"matchLabels": {"raibid.test/hooked": "yes"}},
                          "rules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                     "operations": ["CREATE"], "resources": ["configmaps"]}]}]}
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "c", "namespace": ns, "labels": {"raibid.test/hooked": "yes"}}}
    cp.kubectl("create", "namespace", ns, check=True)
    try:
        cp.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                        "items": [svc, hook]}), check=True)
        ip = cp.kubectl("-n", ns, "get", "service", "hook", "-o", "jsonpath={.spec.clusterIP}",
                        check=True).stdout
        assert ipaddress.ip_address(ip).is_loopback, ip
        for _ in range(50):  # the API server sees the new webhook within a moment
            proc = cp.kubectl("create", "-f", "-", input=json.dumps(cm))
            if proc.returncode != 0:
                break
            cp.kubectl("-n", ns, "delete", "configmap", "c", check=True)
            time.sleep(0.1)
        refused = f"dial tcp {ip}:443: connect: connection refused"
        assert proc.returncode != 0 and refused in proc.stderr, proc.stderr
    finally:
        cp.kubectl("delete", "validatingwebhookconfiguration", hook["metadata"]["name"],
                   "--ignore-not-found", check=True)
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=True)


def test_stop_stops_what_it_started_and_leaves_a_reused_pid_alone(tmp_path):
    cp = cpmod.ControlPlane(tmp_path / "cp")
    cp.dir.mkdir()
    ours = cp.spawn("sleeper", ["sleep", "300"])
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        state = cp.state()
        # a recorded pid whose start time does not match is some other process now
        state["processes"].append({"name": "gone", "pid": stranger.pid, "start": "1", "argv0": "sleep"})
        cp._save(state)
        assert cp.stop() == ["sleeper"]
        assert cpmod._start_time(ours) is None
        assert stranger.poll() is None  # not ours: still running
        assert cp.processes() == []
    finally:
        stranger.kill()
        stranger.wait()


def test_doit_controlplane_start_and_stop_under_build_without_touching_home(tmp_path):
    for name in cpmod.TOOLS:
        tool_or_fail(name)
    project = copy_project(tmp_path / "project")
    home = tmp_path / "home"
    home.mkdir()
    env = env_for(project, {"HOME": str(home)})
    env.pop("KUBECONFIG", None)
    env.pop(cpmod.ENV_VAR, None)
    started = run_doit(project, "controlplane:start", "--contexts", "k3d-raibid-ci", env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "control plane ready in" in started.stdout
        kubeconfig = project / "build" / "controlplane" / "kubeconfig"
        assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
        nodes = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "c"),
                                "--context", "k3d-raibid-ci", "get", "nodes", "-o", "name"],
                               capture_output=True, text=True, env=env)
        assert nodes.stdout.strip() == f"node/{cpmod.FAKE_NODE}", nodes.stderr
        again = run_doit(project, "controlplane:start", env=env, check=True)
        assert "already running" in again.stdout
    finally:
        stopped = run_doit(project, "controlplane:stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    pids = [p["pid"] for p in json.loads((project / "build/controlplane/state.json").read_text())["processes"]]
    assert pids == []
    assert not (home / ".kube").exists()


@pytest.fixture(scope="module")
def rendered(stack, tmp_path_factory):
    """A copy of the session's ``stack``, its validates forgotten (they ran offline there)."""
    project = copy_built(stack, tmp_path_factory.mktemp("dryrun") / "project")
    run_doit(project, "forget", *(f"validate:{e}" for e in environments_on_disk(project)), check=True)
    return project


def test_validate_dry_runs_the_render_server_side(rendered, controlplane):
    """Every environment's render, with objects outside its namespace (the KEDA chart's
    RoleBinding in kube-system) and cluster-scoped ones, is accepted."""
    from tasks import tools
    from tasks.render import rendered_objects

    for env in ("local", "staging"):
        objs = rendered_objects(rendered / "build" / "manifests" / env)
        assert {o["metadata"].get("namespace") for o in objs} - {None, "raibid-system"}, env
        assert [o for o in objs if not o["metadata"].get("namespace")
                and o["kind"] not in ("Namespace", "CustomResourceDefinition")], env
    proc = run_doit(rendered, "validate:local", "validate:staging", check=True)
    pinned = tools.TOOLS["kube-apiserver"].version  # tools/kube-apiserver/go.mod
    out = proc.stdout + proc.stderr
    assert out.count(f"server-side dry-run accepted by kube-apiserver {pinned}") == 2, out


def test_the_dry_run_moves_every_namespace_and_keeps_cluster_scoped_names():
    """dry_run_namespaces: each namespaced object moves into the dry-run's namespace for
    its own (the environment's or another, as kube-system), with a Namespace for each;
    one naming none goes to the environment's (returned); cluster-scoped objects keep
    their names."""
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "raibid-system"}},
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "c", "namespace": "raibid-system"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "keda-operator-auth-reader", "namespace": "kube-system"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "keda-operator"}}]
    out, default = cpmod.dry_run_namespaces(objs, "raibid-system", "staging")
    assert default == "dryrun-staging-raibid-system"
    assert [(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in out] == [
        ("Namespace", "dryrun-staging-raibid-system", None),
        ("ConfigMap", "c", "dryrun-staging-raibid-system"),
        ("RoleBinding", "keda-operator-auth-reader", "dryrun-staging-kube-system"),
        ("ClusterRole", "keda-operator", None),
        ("Namespace", "dryrun-staging-kube-system", None)]
    assert objs[2]["metadata"]["namespace"] == "kube-system"  # the render is not changed


def test_validate_reports_what_the_api_server_rejects_and_schemas_accept(rendered, controlplane, tmp_path):
    project = tmp_path / "project"
    copy_built(rendered, project)
    # a ConfigMap key the API server's validation rejects; a JSON schema accepts any string key
    # (in the source: an edited render is rendered again before validate reads it)
    lib = project / "tanka/lib/raibid/secrets.libsonnet"
    source = lib.read_text()
    assert "k8s.configMap('raibid-config', {" in source
    lib.write_text(source.replace("k8s.configMap('raibid-config', {",
                                  "k8s.configMap('raibid-config', { 'not a valid key!': 'x',"))
    proc = run_doit(project, "validate:local")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "objects valid (Kubernetes" in out  # the schemas passed it
    assert "the API server rejects the render" in out and "not a valid key!" in out
    assert "Traceback" not in out


def test_validate_without_the_control_plane_says_what_it_skipped(rendered, tmp_path):
    project = tmp_path / "project"
    copy_built(rendered, project)
    # only tk, helm and jb installed: the control plane's binaries are missing
    tools = project / ".tools"
    tools.unlink()
    (tools / "bin").mkdir(parents=True)
    from tasks import tools as toolmod

    for name in ("tk", "helm", "jb"):
        (tools / "bin" / name).symlink_to(toolmod.which(name))
    env = env_for(project)
    env.pop(cpmod.ENV_VAR, None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "kube-apiserver").exists())
    proc = run_doit(project, "validate:local", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "server-side dry-run skipped: the control plane is not installed (kube-apiserver" in out
    assert "doit tools control-plane" in out
    assert not (project / "build" / "controlplane-validate-local").exists()


def test_validate_without_a_running_control_plane_skips_the_dry_run_and_starts_none(rendered, tmp_path):
    """The tools are installed but no control plane runs: validate stays an offline check (no
    API server started per run) and says how to include the dry-run, once a run."""
    project = tmp_path / "project"
    copy_built(rendered, project)
    env = env_for(project)
    env.pop(cpmod.ENV_VAR, None)
    proc = run_doit(project, *(f"validate:{e}" for e in environments_on_disk(project)), env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # said once for the run, not once per environment
    assert out.count("server-side dry-run skipped: no control plane is running (`doit controlplane:start`") == 1
    assert not any(p.name.startswith("controlplane") for p in (project / "build").iterdir())


def test_components_get_distinct_ports_and_a_component_that_exited_is_named(tmp_path):
    """Ports are chosen all at once (a CI run once gave the API server's port to the
    controller manager too: it could not listen, and its health check was answered by the
    API server); a component that exits while the control plane starts is named with its log."""
    from tasks.controlplane import ControlPlane, ControlPlaneError, free_ports

    ports = free_ports(200)
    assert len(set(ports)) == 200
    cp = ControlPlane(tmp_path / "cp")
    cp.spawn("quitter", ["sh", "-c", "echo cannot listen; exit 1"])
    deadline = time.monotonic() + 10
    while cp.alive("quitter") and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ControlPlaneError, match=r"quitter exited while starting(.|\n)*cannot listen"):
        cp.require_alive()
    pid = cp.processes()[0]["pid"]
    cp.stop()
    assert not Path(f"/proc/{pid}").exists()  # collected, no zombie left

    # a process that exits at once is usually gone (a zombie, or collected) before spawn()
    # records it: it is not taken for a running one
    for n in range(5):
        cp.spawn(f"instant{n}", ["true"])
        pid = cp.processes()[-1]["pid"]
        deadline = time.monotonic() + 10
        while cpmod._start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not cp.alive(f"instant{n}")
    cp.stop()
