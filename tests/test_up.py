"""`doit up` end to end against recording shims for docker, k3d and kubectl, with the
real tk and helm rendering the stand-in charts: the chain runs in order, a second run
executes nothing, a recreated cluster is redeployed, a missing tool stops it first.

The first test brings a fresh checkout up; the tests of what happens next start from a copy
of a project brought up once per module (``upped``: the session's rendered stack, then
`doit up`; a copy runs nothing that did not change), or from a copy of the session's
rendered stack (``rendered``); the preflight tests from a fresh checkout (``fresh``)."""
from __future__ import annotations

import subprocess

import pytest

from support import FIXTURES, Shims, copy_built, env_for, run_doit, tool_or_fail
from tanka_fixtures import install_charts, kubectl_shim

SHIMS = FIXTURES / "shims"
RAIBID_SRC = FIXTURES / "raibid-ci"


def add_shims(shims: Shims) -> Shims:
    shims.add("docker", (SHIMS / "docker_handler.py").read_text())
    shims.add("k3d", (SHIMS / "k3d_handler.py").read_text())
    return kubectl_shim(shims)


@pytest.fixture
def fresh(project, shims):
    """A fresh checkout (nothing rendered) with the stand-in charts, and the shims."""
    tool_or_fail("tk")
    tool_or_fail("helm")
    install_charts(project)
    return project, add_shims(shims)


@pytest.fixture
def rendered(stack_copy, shims):
    """A copy of the session's rendered and validated stack, and the shims."""
    return stack_copy, add_shims(shims)


@pytest.fixture(scope="module")
def brought_up(stack, tmp_path_factory):
    """The session's stack, copied and brought up once (`doit up` against the shims)."""
    base = tmp_path_factory.mktemp("up")
    project = copy_built(stack, base / "project")
    shims = add_shims(Shims(base / "shims"))
    r = up(project, shims)
    assert r.returncode == 0, r.stdout + r.stderr
    return base


@pytest.fixture
def upped(brought_up, tmp_path):
    """A private copy of a project that `doit up` brought up, and of its shims (the state of
    the cluster they model), with an empty call log."""
    copy_built(brought_up, tmp_path / "up")
    shims = Shims(tmp_path / "up" / "shims")
    shims.clear()
    return tmp_path / "up" / "project", shims


def up(project, shims, *args):
    env = env_for(project, {"RAIBID_SRC": str(RAIBID_SRC)}, path_first=[shims.bin])
    env.pop("GOGC", None)  # the runner's own is not a user's: doit's choice for kubectl is checked
    return run_doit(project, *(args or ("up",)), env=env)


def line(rec) -> str:
    return rec["tool"] + " " + " ".join(rec["argv"])


def first(lines, needle) -> int:
    for i, text in enumerate(lines):
        if needle in text:
            return i
    raise AssertionError(f"{needle!r} was never run; calls:\n  " + "\n  ".join(lines))


MUTATING = ("k3d cluster create", "k3d cluster start", "docker buildx build", "docker build ",
            "docker push", "docker tag", " apply ", "rollout status", "create namespace")


def test_up_runs_the_chain_in_order_then_does_nothing(fresh):
    project, shims = fresh
    r = up(project, shims)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = [line(rec) for rec in shims.records()]
    before_images = [
        first(calls, "docker info"),                               # preflight: the engine answers
        first(calls, "k3d cluster create --config"),               # cluster
        first(calls, "wait --for=condition=Ready nodes --all"),
        first(calls, "create namespace raibid-system"),
    ]
    assert before_images == sorted(before_images), calls
    images = sorted(p.name[: -len(".Dockerfile")] for p in (project / "docker").glob("*.Dockerfile"))
    apply = first(calls, "kubectl --context k3d-raibid-ci apply --server-side")  # apply:local
    for name in images:  # every image of docker/: built, then pushed to the k3d registry, before the apply
        build = first(calls, "docker buildx build --load -f " + str(project / "docker" / f"{name}.Dockerfile"))
        push = first(calls, f"docker push localhost:5111/raibid-{name}:")
        assert before_images[-1] < build < push < apply, (name, calls)
    rollouts = [first(calls, "rollout status statefulset/redis-master"),
                first(calls, "rollout status deployment/keda-operator"),
                first(calls, "rollout status deployment/raibid-server")]
    assert [apply] + rollouts == sorted([apply] + rollouts), calls
    assert (project / "build" / "manifests" / "local").is_dir()      # render:local ran
    state = shims.state()
    assert state["rollouts"] == ["statefulset/redis-master", "deployment/keda-operator",
                                 "deployment/raibid-server"]
    applied = state["configmaps"]["raibid-system/raibid-deploy-applied"]
    assert "k3d-raibid-registry.localhost:5111/raibid-server:" in applied["images"]
    assert "8081" not in r.stdout  # raibid-ci's server serves no metrics
    # every kubectl call is a short Go run: a lazier garbage collector (tools.short_run_env)
    from tasks.tools import SHORT_RUN_GOGC

    assert {rec["env"].get("GOGC") for rec in shims.records() if rec["tool"] == "kubectl"} == {SHORT_RUN_GOGC}
    for url in ("http://localhost:8080", "http://localhost:3000",
                "localhost:6379", "http://localhost:10350"):
        assert url in r.stdout

    # second run: every step asked (the cluster and the deploy live), nothing executed
    shims.clear()
    r = up(project, shims)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 executed" in r.stdout and "nothing to do, everything is up to date" in r.stdout
    assert "raibid-ci is up" not in r.stdout
    calls = [line(rec) for rec in shims.records()]
    assert not [c for c in calls if any(m in c for m in MUTATING)], calls
    assert any(c.startswith("k3d cluster list") for c in calls)              # asked, not remembered
    assert any("get configmap raibid-deploy-applied" in c for c in calls)


def test_a_cluster_deleted_behind_doits_back_is_created_and_redeployed(upped):
    project, shims = upped
    # `k3d cluster delete` by hand: no cluster, an empty registry, nothing deployed
    subprocess.run([str(shims.bin / "k3d"), "cluster", "delete", "raibid-ci"], check=True, capture_output=True)
    shims.clear()
    r = up(project, shims)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = [line(rec) for rec in shims.records()]
    assert first(calls, "k3d cluster create") < first(calls, "docker push localhost:5111/raibid-server:") \
        < first(calls, "kubectl --context k3d-raibid-ci apply --server-side") < first(calls, "rollout status")
    assert not [c for c in calls if "buildx build" in c]    # the images themselves did not change
    assert shims.state()["rollouts"][-1] == "deployment/raibid-server"


def test_a_stopped_cluster_is_started_and_nothing_else_reruns(upped):
    project, shims = upped
    state = shims.state()
    state["k3d"]["clusters"]["raibid-ci"]["running"] = False
    shims.set_state(**state)
    shims.clear()
    r = up(project, shims)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = [line(rec) for rec in shims.records()]
    assert "k3d cluster start raibid-ci" in calls
    assert not [c for c in calls if any(m in c for m in ("cluster create", "buildx build", "docker push",
                                                         " apply "))], calls
    # the cluster task ran, so up waits for the rollouts again
    assert [c for c in calls if "rollout status" in c]


def test_a_failed_rollout_is_waited_for_again_next_time(rendered):
    project, shims = rendered
    shims.set_state(rollout_fail=["raibid-server"])
    r = up(project, shims)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "deployment/raibid-server did not become ready within 300s" in out
    assert "describe deployment/raibid-server" in out
    shims.set_state(rollout_fail=[])
    shims.clear()
    r = up(project, shims)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = [line(rec) for rec in shims.records()]
    assert [c for c in calls if "rollout status" in c]          # up ran again ...
    assert not [c for c in calls if any(m in c for m in ("buildx build", "docker push", " apply "))]
    assert "1 executed" in r.stdout                                # ... and only up


def test_down_then_up_deploys_again(upped):
    project, shims = upped
    r = up(project, shims, "down")
    assert r.returncode == 0, r.stdout + r.stderr
    assert shims.state()["configmaps"] == {}
    assert not any(c[:2] == ["cluster", "delete"] for c in shims.calls("k3d"))
    shims.clear()
    r = up(project, shims)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = [line(rec) for rec in shims.records()]
    assert first(calls, "kubectl --context k3d-raibid-ci apply --server-side") < first(calls, "rollout status")


def test_up_without_docker_stops_first_with_one_message(fresh):
    project, shims = fresh
    (shims.bin / "docker").unlink()
    env = env_for(project, {"RAIBID_SRC": str(RAIBID_SRC)}, path_first=[shims.bin])
    env["PATH"] = str(shims.bin)  # k3d and kubectl shims only; tk/helm come from .tools/bin
    r = run_doit(project, "up", env=env)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert out.count("missing tool") == 1 and "nothing was run." in out
    assert "docker" in out and "docs.docker.com/engine/install" in out
    assert shims.records() == []                 # nothing started, nothing even asked
    assert not (project / "build").exists()


def test_up_names_every_missing_tool_at_once(fresh):
    project, shims = fresh
    for name in ("docker", "k3d"):
        (shims.bin / name).unlink()
    env = env_for(project, {"RAIBID_SRC": str(RAIBID_SRC)}, path_first=[shims.bin])
    env["PATH"] = str(shims.bin)
    r = run_doit(project, "up", env=env)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "missing tools: nothing was run." in out
    assert "- docker" in out and "- k3d" in out and "- kubectl" not in out
    assert shims.records() == []


def test_reset_local_deletes_the_cluster_and_brings_everything_up_anew(upped):
    """README's `reset-local`: `doit cluster:delete up`."""
    project, shims = upped
    shims.clear()
    r = up(project, shims, "cluster:delete", "up")
    assert r.returncode == 0, r.stdout + r.stderr
    calls = [line(rec) for rec in shims.records()]
    # the registry went with the cluster: pushed again (not rebuilt), then deployed
    assert first(calls, "k3d cluster create") < first(calls, "docker push localhost:5111/raibid-server:")
    assert not [c for c in calls if "buildx build" in c]
    assert first(calls, "k3d cluster delete raibid-ci") < first(calls, "k3d cluster create") \
        < first(calls, "kubectl --context k3d-raibid-ci apply --server-side") < first(calls, "rollout status")


def test_after_tilt_took_over_doit_up_deploys_again(upped):
    """Tilt replaces the images `doit up` deployed: the Tiltfile runs `doit tilt:takeover`,
    after which the deploy record is gone and `doit up` applies its own images again."""
    project, shims = upped
    shims.clear()
    r = up(project, shims, "tilt:takeover")
    assert r.returncode == 0, r.stdout + r.stderr
    assert shims.calls("kubectl") == [["--context", "k3d-raibid-ci", "-n", "raibid-system", "delete",
                                       "configmap", "raibid-deploy-applied", "--ignore-not-found"]]
    shims.clear()
    r = up(project, shims)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = [line(rec) for rec in shims.records()]
    assert first(calls, "kubectl --context k3d-raibid-ci apply --server-side") < first(calls, "rollout status")
    assert not [c for c in calls if "buildx build" in c or "docker push" in c]


def test_a_deploy_made_outside_up_is_waited_for_by_the_next_up(upped):
    project, shims = upped
    # a jsonnet change deployed with `doit apply:local` on its own
    lib = project / "tanka" / "environments" / "local" / "main.jsonnet"
    lib.write_text(lib.read_text().replace("server: { replicas: 1 }", "server: { replicas: 2 }"))
    assert up(project, shims, "apply:local").returncode == 0
    shims.clear()
    r = up(project, shims)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 executed" in r.stdout                       # only up: it waits for that deploy
    assert [c for c in shims.calls("kubectl") if "rollout" in c]


NO_ENGINE = '''
import sys
def handle(argv, state, rec):
    if argv[:1] == ["info"]:
        sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock\\n")
        return 1
    return 0
'''


def refused_by_preflight(fresh, docker_handler: str) -> tuple[str, list[str]]:
    """`doit up` with a docker shim of ``docker_handler``: refused before anything ran, as a
    tool that is installed but cannot work; its output and the docker calls it made."""
    project, shims = fresh
    shims.add("docker", docker_handler)
    r = up(project, shims)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "a tool is installed but cannot work: nothing was run." in out
    return out, [line(rec) for rec in shims.records()]


def test_up_with_a_docker_client_but_no_engine_stops_first(fresh):
    out, calls = refused_by_preflight(fresh, NO_ENGINE)
    assert "no engine answers: start Docker" in out
    assert calls == ["docker info --format {{.ServerVersion}}"]


def test_a_missing_tool_and_a_dead_engine_are_named_in_the_same_message(fresh):
    project, shims = fresh
    shims.add("docker", NO_ENGINE)
    (shims.bin / "k3d").unlink()
    r = up(project, shims)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert out.count("FAILED") == 1
    assert "missing tool: nothing was run." in out and "- k3d" in out
    assert "Also, a tool is installed but cannot work:" in out
    assert "no engine answers: start Docker" in out
    assert [line(rec) for rec in shims.records()] == ["docker info --format {{.ServerVersion}}"]


def test_up_without_the_raibid_ci_source_stops_before_creating_anything(fresh):
    project, shims = fresh
    env = env_for(project, {"RAIBID_SRC": str(project / "no-such-raibid-ci")}, path_first=[shims.bin])
    r = run_doit(project, "up", env=env)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert out.count("FAILED") == 1 and "FAILED up:tools" in out
    assert "no-such-raibid-ci does not exist" in out and "Set RAIBID_SRC" in out
    calls = [line(rec) for rec in shims.records()]
    assert not [c for c in calls if any(m in c for m in MUTATING)], calls
    assert not (project / "build" / "manifests").exists()


def test_up_says_why_it_runs_again(monkeypatch):
    """Its up-to-date check gives `doit info up` and the reporter a reason, not its repr
    (issue 25, C.13)."""
    import types

    from tasks import up

    monkeypatch.setattr(up, "deploy_digest", lambda env: "d1")
    check = up.StackSettled("local")
    ran = types.SimpleNamespace(name="apply:local", executed=True, actions=["x"], task_dep=[])
    group = types.SimpleNamespace(name="image", executed=True, actions=[], task_dep=[])
    check.tasks_dict = {"apply:local": ran, "image": group}
    task = types.SimpleNamespace(task_dep=["image"])
    assert check(task, {}) is False and "no record of a previous `doit up`" in check.reason
    assert check(task, {"settled": True, "deployed": "d0"}) is False
    assert check.reason == "the deploy changed since the last `doit up` (apply:local ran)"
    assert check(task, {"settled": True, "deployed": "d1"}) is True and check.reason == ""
    task.task_dep = ["image", "apply:local"]
    assert check(task, {"settled": True, "deployed": "d1"}) is False
    assert check.reason == "apply:local ran in this run"


NO_BUILDX = '''
import sys
def handle(argv, state, rec):
    if argv == ["--version"]:
        print("Docker version 28.2.2, build e6534b4")
        return 0
    if argv[:1] == ["info"]:
        print("20.10.24+dfsg1")
        return 0
    if argv[:2] == ["buildx", "version"]:
        sys.stderr.write("docker: unknown command: docker buildx\\n")
        return 1
    return 0
'''


def test_up_with_an_engine_but_no_buildx_stops_first_and_names_the_fix(fresh):
    """A 23+ client builds only through buildx: without it every image build would fail
    after the cluster was made (#20)."""
    out, calls = refused_by_preflight(fresh, NO_BUILDX)
    assert "the docker client has no buildx" in out and "apt-get install docker-buildx" in out
    assert set(calls) == {
        "docker info --format {{.ServerVersion}}", "docker buildx version", "docker --version"}
