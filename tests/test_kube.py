"""tasks/kube.py (contexts, kubectl argv, the applied record) and the one failure style of
the deploy tasks' actions: a TaskFailed message, never a traceback or a SystemExit."""
from __future__ import annotations

import json

import pytest

from support import run_doit, tool_or_fail


@pytest.fixture
def no_context(project):
    """A project whose deploy.json gives the remote staging environment no kube context."""
    path = project / "deploy.json"
    data = json.loads(path.read_text())
    del data["environments"]["staging"]["context"]
    path.write_text(json.dumps(data, indent=2))
    return project


def test_kubectl_argv_is_built_in_one_place():
    from tasks import kube

    assert kube.kubectl_argv("ctx", exe="/k")[1:] == ["--context", "ctx"]
    assert kube.kubectl_argv("ctx", "/kc", "/cache", exe="/k") == [
        "/k", "--kubeconfig", "/kc", "--cache-dir", "/cache", "--context", "ctx"]
    assert kube.kubectl_argv(None, exe="/k") == ["/k"]  # the kubeconfig's own business


def test_the_control_plane_talks_through_kube_kubectl_argv(tmp_path, monkeypatch):
    """ControlPlane.kubectl is kube.kubectl_argv plus its arguments (one builder)."""
    from tasks import controlplane, kube

    seen = []
    monkeypatch.setattr(kube, "kubectl_argv", lambda *a, **kw: seen.append((a, kw)) or ["true"])
    cp = controlplane.ControlPlane(tmp_path / "cp")
    assert cp.kubectl("get", "nodes").returncode == 0
    assert seen == [((cp.context, str(cp.kubeconfig)), {"exe": cp.kubectl_exe()})]


def test_the_context_and_namespace_come_from_deploy_json(project, monkeypatch):
    from tasks import kube

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    data = json.loads((project / "deploy.json").read_text())
    data["cluster"] = "elsewhere"
    data["environments"]["staging"].update(context="ctx-s", namespace="ns-s")
    (project / "deploy.json").write_text(json.dumps(data))
    assert kube.context_of("staging") == "ctx-s" and kube.namespace_of("staging") == "ns-s"
    assert kube.env_kubectl("staging")[1:] == ["--context", "ctx-s", "-n", "ns-s"]
    local = kube.local_env()
    assert kube.is_local(local) and kube.context_of(local) == "k3d-elsewhere"


@pytest.mark.parametrize("task", ["apply:staging", "diff:staging", "render:local"])
def test_a_remote_environment_without_a_context_stops_every_task_with_one_message(no_context, task):
    proc = run_doit(no_context, task)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out and "SystemExit" not in out, out
    assert "deploy.json:" in proc.stderr and "environment 'staging' is remote: it needs the kube context" in proc.stderr


def test_a_failed_export_is_one_message_and_keeps_the_previous_render(project):
    """tk export fails (no charts are vendored here): the action returns TaskFailed, and the
    render it would have replaced is left as it was."""
    for name in ("tk", "helm"):
        tool_or_fail(name)
    from tasks.render import RENDER_MARK

    out_dir = project / "build/manifests/staging"
    out_dir.mkdir(parents=True)
    (out_dir / RENDER_MARK).write_text("render:staging\n")
    (out_dir / "v1.Namespace-old.yaml").write_text("kind: Namespace\n")
    proc = run_doit(project, "run", "--single", "render:staging")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert "`tk export` of tanka/environments/staging failed" in out, out
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([RENDER_MARK, "v1.Namespace-old.yaml"])


def _crd(plural: str, kind: str) -> dict:
    group = "kube-test.raibid.test"
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"plural": plural, "singular": plural[:-1], "kind": kind, "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


def test_server_side_apply_waits_for_new_crds_and_names_one_that_never_gets_established(controlplane):
    """A custom resource applied with its new CRD lands once the CRD is Established; a CRD
    the server never establishes (its kind is taken in its group) fails the apply after
    ``wait`` seconds, naming it, and nothing after it is applied."""
    from tasks import kube

    cp = controlplane
    kubectl = kube.kubectl_argv(cp.context, str(cp.kubeconfig), str(cp.dir / "kubecache"), exe=cp.kubectl_exe())
    widgets, clash = _crd("widgets", "Widget"), _crd("gadgets", "Widget")
    cr = {"apiVersion": "kube-test.raibid.test/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"n": 1}}
    try:
        ok, out = kube.server_side_apply(kubectl, [cr, widgets], "default")
        assert ok, out
        got = cp.kubectl("-n", "default", "get", "widgets.kube-test.raibid.test", "w", "-o", "json", check=True)
        assert json.loads(got.stdout)["spec"] == {"n": 1}
        # each object applied once: the CRD in the first step only
        assert out.count("widgets.kube-test.raibid.test serverside-applied") == 1, out
        assert out.count("widget.kube-test.raibid.test/w serverside-applied") == 1, out
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-test-after"}}
        ok, out = kube.server_side_apply(kubectl, [clash, cm], "default", wait=1)
        assert not ok
        assert "not Established after 1s: customresourcedefinition/gadgets.kube-test.raibid.test" in out, out
        assert "widgets" not in out.split("not Established", 1)[1]
        assert cp.kubectl("-n", "default", "get", "configmap", "kube-test-after", "--ignore-not-found",
                          check=True).stdout == ""
    finally:
        cp.kubectl("delete", "customresourcedefinition", widgets["metadata"]["name"], clash["metadata"]["name"],
                   "--ignore-not-found", "--wait=false", check=True)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable(project, tmp_path, monkeypatch):
    """The project's environments with a kubeconfig whose contexts name a loopback port
    nothing listens on."""
    from tasks import kube

    tool_or_fail("kubectl")
    port = _closed_port()
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    contexts = sorted({kube.context_of(e) for e in kube.core.environments()})
    config = {"apiVersion": "v1", "kind": "Config", "current-context": contexts[0],
              "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
              "users": [{"name": "u", "user": {"token": "t"}}],
              "contexts": [{"name": c, "context": {"cluster": "c", "user": "u"}} for c in contexts]}
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return port


def test_an_unreachable_cluster_is_named_with_its_context_and_server(unreachable, tmp_path):
    """Never with kubectl's --validate=false advice: validation is not what failed."""
    import subprocess

    from tasks import kube

    manifest = tmp_path / "cm.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "x"}}))
    proc = subprocess.run(kube.kubectl_argv("raibid-staging") + ["apply", "-f", str(manifest)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "--validate=false" in proc.stderr  # what kubectl says
    for output in (proc.stderr, ""):  # its output, or none (the problem asks the server itself)
        msg = kube.access_problem("staging", "applied", output)
        assert msg is not None and "--validate=false" not in msg, msg
        assert "does not answer" in msg and "'raibid-staging'" in msg, msg
        assert f"127.0.0.1:{unreachable}" in msg and "cluster-info" in msg, msg
    local = kube.access_problem(kube.local_env(), "applied")
    assert "Start it: `doit cluster`" in local, local


@pytest.mark.parametrize("action", ["diff", "apply"])
def test_diff_and_apply_name_the_context_of_an_unreachable_cluster(unreachable, monkeypatch,
                                                                   action):
    from tasks import deploy

    monkeypatch.setattr(deploy, "changed_since_render", lambda env: None)  # as rendered
    monkeypatch.setattr(deploy, "deploy_objects", lambda env: [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}])
    result = getattr(deploy, f"_{action}_action")("staging")
    msg = result.get_msg()
    want = f"{action}:staging: the cluster of staging does not answer (context 'raibid-staging'"
    assert msg.startswith(want), msg
    assert "--validate=false" not in msg


def test_a_missing_kubeconfig_is_named_as_such(project, tmp_path, monkeypatch):
    from tasks import kube

    tool_or_fail("kubectl")
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nonexistent"))
    msg = kube.context_problem("staging", "diffed")
    want = f"no kubeconfig: {tmp_path / 'nonexistent'} (KUBECONFIG) does not exist"
    assert msg.startswith(want), msg
    assert "'raibid-staging'" in msg and "nothing was diffed" in msg
    assert kube.access_problem("staging", "deleted").startswith("no kubeconfig: ")
