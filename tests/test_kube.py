"""tasks/kube.py (contexts, kubectl argv, the applied record) and the one failure style of
the deploy tasks' actions: a TaskFailed message, never a traceback or a SystemExit."""
from __future__ import annotations

import json

import pytest

from support import run_doit, tool_or_fail


@pytest.fixture
def no_context(project, monkeypatch):
    """A project whose staging environment names no kube context."""
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    spec = project / "tanka/environments/staging/spec.json"
    data = json.loads(spec.read_text())
    data["spec"]["contextNames"] = []
    spec.write_text(json.dumps(data, indent=2))
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


def test_a_spec_without_a_context_is_named_not_exited(no_context):
    from tasks import kube

    assert kube.context_of("staging") is None
    assert kube.applied_digest("staging") is None  # apply's uptodate: "run", never an exit
    problem = kube.context_problem("staging", "applied")
    assert problem.startswith("tanka/environments/staging/spec.json: spec.contextNames is empty")
    assert kube.forget_applied("staging") is False


@pytest.mark.parametrize("task, verb", [("apply:staging", "applied"), ("diff:staging", "diffed")])
def test_a_deploy_task_without_a_context_fails_with_one_message(no_context, task, verb):
    for name in ("tk", "helm", "kubectl"):
        tool_or_fail(name)
    proc = run_doit(no_context, "run", "--single", task)  # its own action, not the render below it
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out and "SystemExit" not in out, out
    assert (f"tanka/environments/staging/spec.json: spec.contextNames is empty: nothing was {verb}. "
            "Name the environment's kube context there.") in out, out


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


def test_an_unreadable_spec_makes_apply_run_and_say_why(project, monkeypatch):
    """apply's uptodate cannot answer: it says "run" (never raises); the action names the file."""
    from tasks import kube

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    (project / "tanka/environments/staging/spec.json").write_text("{ not json")
    assert kube.applied_digest("staging") is None
    assert kube.context_problem("staging", "applied").startswith(
        "tanka/environments/staging/spec.json cannot be read (")
    assert kube.check_context("staging", "applied")().message.startswith("tanka/environments/staging/spec.json")
