"""The `cluster` task against recording k3d/kubectl shims: it asks k3d live every run and
creates, starts or leaves the cluster alone accordingly; a changed k3d.yaml is reported,
never acted upon; `cluster:delete` is separate from `cluster`."""
from __future__ import annotations

import json

import pytest

from support import FIXTURES, env_for, run_doit

SHIMS = FIXTURES / "shims"


@pytest.fixture
def cluster_shims(shims):
    shims.add("k3d", (SHIMS / "k3d_handler.py").read_text())
    shims.add("kubectl", (SHIMS / "kubectl_handler.py").read_text())
    shims.add("docker")
    return shims


def doit(project, shims, *args):
    return run_doit(project, *args, env=env_for(project, path_first=[shims.bin]))


def verbs(shims, tool):
    """Each call without the --context pair, as a space-joined string."""
    out = []
    for argv in shims.calls(tool):
        out.append(" ".join(a for i, a in enumerate(argv)
                            if a != "--context" and (i == 0 or argv[i - 1] != "--context")))
    return out


def test_missing_cluster_is_created_then_left_alone(project, cluster_shims):
    r = doit(project, cluster_shims, "cluster")
    assert r.returncode == 0, r.stdout + r.stderr
    k3d = verbs(cluster_shims, "k3d")
    assert k3d[0] == "cluster list -o json"
    generated = project / "build" / "cluster" / "k3d.yaml"
    assert f"cluster create --config {generated}" in k3d
    assert cluster_shims.state()["k3d"]["clusters"]["raibid-ci"]["running"] is True
    kubectl = verbs(cluster_shims, "kubectl")
    assert "wait --for=condition=Ready nodes --all --timeout=180s" in kubectl
    assert "create namespace raibid-system" in kubectl
    # every kubectl call names the cluster's context explicitly
    assert all(argv[:2] == ["--context", "k3d-raibid-ci"] for argv in cluster_shims.calls("kubectl"))
    info = json.loads((project / "build" / "cluster.json").read_text())
    assert info["name"] == "raibid-ci" and len(info["config_digest"]) == 64 and info["arch"] == "amd64"

    # second run: asked live again, found running with its namespace: nothing done
    cluster_shims.clear()
    r = doit(project, cluster_shims, "cluster")
    assert r.returncode == 0, r.stdout + r.stderr
    assert verbs(cluster_shims, "k3d") == ["cluster list -o json"]
    assert verbs(cluster_shims, "kubectl") == ["get namespace raibid-system -o name"]
    assert "0 executed" in r.stdout


def test_stopped_cluster_is_started_not_created(project, cluster_shims):
    cluster_shims.set_state(k3d={"clusters": {"raibid-ci": {"servers": 1, "agents": 1, "running": False}}},
                            namespaces=["default", "raibid-system"])
    r = doit(project, cluster_shims, "cluster")
    assert r.returncode == 0, r.stdout + r.stderr
    k3d = verbs(cluster_shims, "k3d")
    assert "cluster start raibid-ci" in k3d
    assert not any(c.startswith("cluster create") for c in k3d)
    assert not any(c.startswith("cluster delete") for c in k3d)
    assert "create namespace raibid-system" not in verbs(cluster_shims, "kubectl")


def test_cluster_deleted_behind_dois_back_is_recreated(project, cluster_shims):
    """Liveness is never remembered: a run after an outside `k3d cluster delete` creates it again."""
    assert doit(project, cluster_shims, "cluster").returncode == 0
    cluster_shims.set_state(k3d={"clusters": {}})
    cluster_shims.clear()
    r = doit(project, cluster_shims, "cluster")
    assert r.returncode == 0, r.stdout + r.stderr
    assert any(c.startswith("cluster create") for c in verbs(cluster_shims, "k3d"))


def test_running_cluster_is_untouched(project, cluster_shims):
    cluster_shims.set_state(k3d={"clusters": {"raibid-ci": {"servers": 1, "agents": 1, "running": True}}},
                            namespaces=["default", "raibid-system"])
    r = doit(project, cluster_shims, "cluster")
    assert r.returncode == 0, r.stdout + r.stderr
    assert verbs(cluster_shims, "k3d") == ["cluster list -o json"]
    assert verbs(cluster_shims, "kubectl") == ["get namespace raibid-system -o name"]


def test_changed_config_is_reported_never_recreated(project, cluster_shims):
    assert doit(project, cluster_shims, "cluster").returncode == 0
    cfg = project / "cluster" / "k3d.yaml"
    cfg.write_text(cfg.read_text().replace("agents: 1 ", "agents: 2 "))
    cluster_shims.clear()
    r = doit(project, cluster_shims, "cluster")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "cluster/k3d.yaml or the cluster settings of deploy.json changed since the cluster 'raibid-ci' was created" in out
    assert "doit cluster:delete cluster" in out
    assert verbs(cluster_shims, "k3d") == ["cluster list -o json"]
    # also when the cluster is stopped: started with the old config, and told so
    cluster_shims.set_state(k3d={"clusters": {"raibid-ci": {"servers": 1, "agents": 1, "running": False}}})
    cluster_shims.clear()
    r = doit(project, cluster_shims, "cluster")
    assert r.returncode == 0
    assert "doit cluster:delete cluster" in r.stdout + r.stderr
    k3d = verbs(cluster_shims, "k3d")
    assert "cluster start raibid-ci" in k3d and not any(c.startswith(("cluster create", "cluster delete")) for c in k3d)


def test_cluster_does_not_run_cluster_delete(project, cluster_shims):
    """`cluster` is a plain task, not a group: `doit cluster` never runs `cluster:delete`."""
    cluster_shims.set_state(k3d={"clusters": {"raibid-ci": {"servers": 1, "agents": 1, "running": True}}})
    for _ in range(2):
        r = doit(project, cluster_shims, "cluster")
        assert r.returncode == 0, r.stdout + r.stderr
    assert not any("delete" in c for c in verbs(cluster_shims, "k3d"))
    assert cluster_shims.state()["k3d"]["clusters"]["raibid-ci"]["running"] is True


def test_cluster_delete(project, cluster_shims):
    assert doit(project, cluster_shims, "cluster").returncode == 0
    cluster_shims.clear()
    r = doit(project, cluster_shims, "cluster:delete")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cluster delete raibid-ci" in verbs(cluster_shims, "k3d")
    assert cluster_shims.state()["k3d"]["clusters"] == {}
    assert not (project / "build" / "cluster.json").exists()


def test_missing_k3d_is_named_before_anything_runs(project, shims):
    shims.add("docker")
    shims.add("kubectl")
    env = env_for(project, path_first=[shims.bin])
    env["PATH"] = str(shims.bin)  # no k3d anywhere
    r = run_doit(project, "cluster", env=env)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "missing tool: nothing was run." in out and "k3d" in out and "install:" in out
    assert shims.calls() == []


def test_the_k3d_config_takes_its_names_from_deploy_json(project, cluster_shims):
    """cluster/k3d.yaml holds no name deploy.json owns; the config k3d reads is generated from
    both, so a cluster or registry renamed in deploy.json is what k3d creates."""
    import yaml

    settings = json.loads((project / "deploy.json").read_text())
    settings.update(cluster="other", registry="reg.localhost", registry_port=5000)
    (project / "deploy.json").write_text(json.dumps(settings))
    cluster_shims.set_state(contexts=["k3d-other"])
    r = doit(project, cluster_shims, "cluster")
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = yaml.safe_load((project / "build" / "cluster" / "k3d.yaml").read_text())
    assert cfg["metadata"]["name"] == "other"
    assert cfg["registries"]["create"]["name"] == "reg.localhost" and cfg["registries"]["create"]["hostPort"] == "5000"
    source = yaml.safe_load((project / "cluster" / "k3d.yaml").read_text())
    assert (cfg["servers"], cfg["image"]) == (source["servers"], source["image"])  # the rest from cluster/k3d.yaml
    assert all(argv[:2] == ["--context", "k3d-other"] for argv in cluster_shims.calls("kubectl"))


def test_cluster_config_is_checked_offline(project, cluster_shims):
    r = doit(project, cluster_shims, "cluster:check")
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = project / "cluster" / "k3d.yaml"
    cfg.write_text(cfg.read_text().replace("kind: Simple\n", "kind: Simple\nmetadata:\n  name: other\n")
                   .replace("rancher/k3s:v1.33.5-k3s1", "rancher/k3s:latest"))
    r = doit(project, cluster_shims, "cluster:check")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "cluster/k3d.yaml: metadata.name is set here, but deploy.json `cluster` decides it" in out
    assert "image 'rancher/k3s:latest' is not pinned" in out
    cfg.write_text(cfg.read_text().replace("metadata:\n  name: other\n", "")
                   .replace("rancher/k3s:latest", "rancher/k3s:v1.31.2-k3s1"))
    r = doit(project, cluster_shims, "cluster:check")
    assert r.returncode != 0 and "is not Kubernetes 1.33, the version deploy.json" in r.stdout + r.stderr
    # and `doit cluster` refuses it before creating anything
    r = doit(project, cluster_shims, "cluster")
    assert r.returncode != 0 and "is not Kubernetes 1.33" in r.stdout + r.stderr
    assert not any(c[:2] == ["cluster", "create"] for c in cluster_shims.calls("k3d"))
