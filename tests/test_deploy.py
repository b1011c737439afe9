"""The deploy path against a real control plane (tests/conftest.py ``controlplane``):
``apply:local`` from an empty cluster, its applied-record ConfigMap and the "already holds
it" skip, ``diff:local``, ``down``, the ``--yes`` guard of an environment with ``confirm_apply`` (prod) and ``doit up``'s deploy
step. kubectl is the real one; only docker and k3d (they need a Docker engine) are shims.
Every kubectl and doit call names the control plane's kubeconfig (KUBECONFIG), never ~/.kube.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest
import yaml

from autoscale import NS, delete_pods_and_claims, rendered, reset
from support import FIXTURES, copy_built, env_for, run_doit

SHIMS = FIXTURES / "shims"


@pytest.fixture(scope="module")
def project(tmp_path_factory, stack) -> Path:
    """One project for the module: a copy of the session's ``stack`` (stand-in charts, every
    environment rendered and validated offline; the copy keeps doit's record, so the
    ``validate:<env>`` each apply and diff depends on is up to date in it)."""
    return copy_built(stack, tmp_path_factory.mktemp("deploy") / "project")


#: the hostPath volumes that stand in for k3d's local-path storage (the claims of the local stack)
VOLUMES = [{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"raibid-test-pv-{i}"},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/raibid-pv-{i}"}}}
           for i in range(2)]


def volumes(cp) -> None:
    """:data:`VOLUMES` exist and each is bound or Available: one whose claim was deleted (a
    reset, ``down``) is Released, and made Available again by dropping its claimRef. A claim
    is bound when it is created, if a volume is Available then; a claim that found none waits
    for the PV controller's next resync (15 s)."""
    from tasks.kube import object_list

    cp.kubectl("apply", "-f", "-", input=object_list(VOLUMES), check=True)
    for v in live_all(cp, VOLUMES).values():
        if v["status"].get("phase") == "Released":
            cp.kubectl("patch", "persistentvolume", v["metadata"]["name"], "--type=json",
                       "-p", '[{"op": "remove", "path": "/spec/claimRef"}]', check=True)


def empty(cp, keep_crds: bool = False) -> None:
    """An empty cluster (:func:`autoscale.reset`, ``keep_crds`` as there) with :func:`volumes`
    for the claims of the local stack applied next (bound as they are created: a ``doit up``
    after it finds the StatefulSet ready, instead of waiting for the resync that binds a
    waiting claim)."""
    reset(cp, keep_crds=keep_crds)
    volumes(cp)


def doit_env(project: Path, cp, path_first=None) -> dict:
    """The environment of a doit run against ``cp``: its kubeconfig, as a user's own cluster
    would be named, and no ``$RAIBID_CONTROLPLANE``, as a user deploying has none running:
    the validate each apply and diff depends on stays offline, as ``stack`` ran it (with it,
    validate's up-to-date key changes and every environment is dry-run again, seconds each;
    the server-side dry-run has tests of its own in test_controlplane, and the applies here
    are checked by the same API server for real)."""
    from tasks import controlplane as cpmod

    env = env_for(project, {"KUBECONFIG": str(cp.kubeconfig), "KUBECACHEDIR": str(cp.dir / "kubecache")},
                  path_first=path_first)
    env.pop(cpmod.ENV_VAR, None)
    return env


def executed(proc) -> list[str]:
    return [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("ok ")]


def key(obj: dict) -> tuple:
    """What names an object on the server: API group, kind, namespace and name."""
    group = obj["apiVersion"].rpartition("/")[0]
    meta = obj["metadata"]
    return group, obj["kind"], meta.get("namespace") or "", meta["name"]


def live_all(cp, objects: list[dict]) -> dict[tuple, dict | None]:
    """Each of ``objects`` as the server has it (by :func:`key`; None when it does not exist),
    asked with one ``kubectl get -f -``."""
    from tasks.kube import object_list

    proc = cp.kubectl("get", "-f", "-", "-o", "json", "--ignore-not-found", "--show-managed-fields",
                      input=object_list(objects), check=True)
    found = {key(o): o for o in (json.loads(proc.stdout)["items"] if proc.stdout.strip() else [])}
    return {key(o): found.get(key(o)) for o in objects}


def live(cp, obj: dict) -> dict | None:
    """The object as the server has it, None when it does not exist."""
    return live_all(cp, [obj])[key(obj)]


def record(cp) -> dict | None:
    proc = cp.kubectl("-n", NS, "get", "configmap", "raibid-deploy-applied", "-o", "json", "--ignore-not-found",
                      check=True)
    return json.loads(proc.stdout)["data"] if proc.stdout.strip() else None


def ours(obj: dict) -> list[dict]:
    """The managedFields entries of the apply (field manager raibid-deploy)."""
    return [m for m in obj["metadata"].get("managedFields", []) if m["manager"] == "raibid-deploy"]


def local_applied(project: Path, cp, env: dict) -> None:
    """The cluster holds what ``apply:local`` deploys, from whatever state a test before left
    (tests stay order-independent; in file order they reuse the state): when the applied
    record says local, ``apply:local`` brings it up to date (nothing to do, or an update);
    otherwise (another environment's objects, or a stack half gone) from an empty namespace
    (the CRDs, the same charts' in every environment, are kept: the apply takes them over)."""
    rec = record(cp)
    if not (rec and rec["environment"] == "local"):
        empty(cp, keep_crds=True)
    run_doit(project, "apply:local", env=env, check=True)
    assert record(cp)["environment"] == "local"


@contextlib.contextmanager
def pushed_image(project: Path, name: str, ref: str):
    """``build/images/<name>.cluster.json`` says ``ref`` was pushed to the k3d registry, as
    ``push:<name>`` writes it; what was there before (a ``doit up`` pushes) is put back."""
    images = project / "build" / "images"
    images.mkdir(parents=True, exist_ok=True)
    pushed = images / f"{name}.cluster.json"
    before = pushed.read_text() if pushed.exists() else None
    pushed.write_text(json.dumps({"name": name, "ref": ref}))
    try:
        yield
    finally:
        if before is None:
            pushed.unlink()
        else:
            pushed.write_text(before)


def test_apply_local_from_an_empty_cluster_then_a_second_apply_changes_nothing(project, controlplane):
    cp = controlplane
    env = doit_env(project, cp)
    empty(cp)
    objects = rendered(project, "local")
    assert {o["kind"] for o in objects} >= {"CustomResourceDefinition", "ScaledJob", "GitRepository"}
    # and objects outside the environment's namespace (the KEDA chart's RoleBinding in kube-system)
    assert {o["metadata"].get("namespace") for o in objects} - {None, NS}

    before = run_doit(project, "diff:local", env=env, check=True)
    # it asked a cluster without the CRDs (nothing before it applied them: validate is done)
    assert cp.kubectl("get", "customresourcedefinitions", "-o", "name", check=True).stdout == ""
    # custom resources whose CRD the apply creates first are listed, not an error
    assert "would be created" in before.stdout and "+ ScaledJob/raibid-agent" in before.stdout
    for o in objects:  # every custom resource of the render, whatever its name
        if o["kind"] in ("ScaledJob", "Kustomization", "GitRepository"):
            assert f"+ {o['kind']}/{o['metadata']['name']}" in before.stdout, before.stdout

    first = run_doit(project, "apply:local", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "apply:local" in executed(first)
    now = live_all(cp, objects)
    applied_at = time.monotonic()
    for o in objects:  # every rendered object is on the server, applied server-side by us
        got = now[key(o)]
        assert got is not None, f"{o['kind']}/{o['metadata']['name']} was not applied"
        assert [m["operation"] for m in ours(got)] == ["Apply"], got["metadata"].get("managedFields")
        assert "kubectl.kubernetes.io/last-applied-configuration" not in (got["metadata"].get("annotations") or {})
    rec = record(cp)
    assert rec["environment"] == "local" and len(rec["digest"]) == 64

    after = run_doit(project, "diff:local", env=env, check=True)
    assert "diff:local: no differences" in after.stdout, after.stdout

    # the cluster holds the digest: the next apply is up to date without applying
    skipped = run_doit(project, "apply:local", env=env, check=True)
    assert "apply:local" not in executed(skipped)

    # forced again (record deleted): the same objects applied again change nothing, compared
    # with the objects as the first apply left them (the diffs and the skipped apply between
    # must not have changed them either)
    state = {key(o): (now[key(o)]["metadata"].get("generation"), ours(now[key(o)])) for o in objects}
    cp.kubectl("-n", NS, "delete", "configmap", "raibid-deploy-applied", check=True)
    # managedFields times have one-second resolution (the diffs above took longer than that)
    time.sleep(max(0.0, 1.1 - (time.monotonic() - applied_at)))
    again = run_doit(project, "apply:local", env=env, check=True)
    assert "apply:local" in executed(again)
    assert record(cp)["digest"] == rec["digest"]
    now = live_all(cp, objects)
    for o in objects:
        got = now[key(o)]
        assert (got["metadata"].get("generation"), ours(got)) == state[key(o)], \
            f"{o['kind']}/{o['metadata']['name']} changed on a second apply"


def test_a_new_image_is_shown_by_diff_then_applied(project, controlplane):
    cp = controlplane
    env = doit_env(project, cp)
    local_applied(project, cp, env)
    ref = "k3d-raibid-registry.localhost:5111/raibid-server:abc123"
    images = project / "build" / "images"
    with pushed_image(project, "server", ref):
        diff = run_doit(project, "diff:local", env=env, check=True)
        assert ref in diff.stdout and "differs" in diff.stdout
        applied = run_doit(project, "apply:local", env=env, check=True)
        assert "apply:local" in executed(applied)
        server = live(cp, {"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": "raibid-server", "namespace": NS}})
        assert [c["image"] for c in server["spec"]["template"]["spec"]["containers"]] == [ref]
        # the record holds every pushed image's ref (the agent's too, if a doit up pushed it)
        refs = {f.name.split(".")[0]: json.loads(f.read_text())["ref"] for f in images.glob("*.cluster.json")}
        assert refs["server"] == ref and json.loads(record(cp)["images"]) == refs


def test_an_apply_the_server_rejects_changes_nothing_after_the_crds_and_leaves_no_record(
        project, controlplane, tmp_path):
    """A render the API server rejects (a ConfigMap key its validation refuses, which the
    schemas accept) over the applied local stack: the apply fails naming the object, none
    of the objects after the CRDs and Namespaces is changed (the dry-run refused them
    first), and the cluster keeps no record of the render applied before, so applying
    that render again is not skipped as up to date."""
    cp = controlplane
    local_applied(project, cp, doit_env(project, cp))
    bad = copy_built(project, tmp_path / "project")
    # in the source: an edited render is rendered again before anything reads it
    lib = bad / "tanka/lib/raibid"
    for name, before, after in (
            ("secrets.libsonnet", "k8s.configMap('raibid-config', {",
             "k8s.configMap('raibid-config', { 'not a valid key!': 'x',"),
            ("server.libsonnet", "      labels=cfg.labels('server'),\n",
             "      labels=cfg.labels('server') + { 'raibid.test/changed': 'yes' },\n")):
        source = (lib / name).read_text()
        assert before in source, name
        (lib / name).write_text(source.replace(before, after, 1))
    proc = run_doit(bad, "apply:local", env=doit_env(bad, cp))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "not a valid key!" in out and "nothing was recorded" in out, out
    assert "Traceback" not in out
    assert record(cp) is None
    server = live(cp, {"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "raibid-server", "namespace": NS}})
    assert "raibid.test/changed" not in server["metadata"]["labels"]
    again = run_doit(project, "apply:local", env=doit_env(project, cp), check=True)
    assert "apply:local" in executed(again) and record(cp)["environment"] == "local"


def test_pushed_images_replace_the_renders_own_images_whatever_their_tag():
    """What apply:local deploys once images are pushed: the validated render's objects with
    each ``raibid-<name>`` image (any tag or digest, containers and init containers, a
    ScaledJob's pod template too) replaced by the pushed ref; other images, other objects
    and the render's objects themselves left alone; a pushed image no container runs is an
    error naming it."""
    import copy

    from doit.exceptions import TaskFailed

    from tasks.deploy import with_images

    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "raibid-server"},
                  "spec": {"template": {"spec": {
                      "initContainers": [{"name": "init", "image": "raibid-server:old"}],
                      "containers": [{"name": "server", "image": "raibid-server:dev"},
                                     {"name": "side", "image": "docker.io/library/busybox:1.36"},
                                     {"name": "look-alike", "image": "other/raibid-server-x:dev"}]}}}}
    scaledjob = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob", "metadata": {"name": "raibid-agent"},
                 "spec": {"jobTargetRef": {"template": {"spec": {"containers": [
                     {"name": "agent", "image": "raibid-agent@sha256:" + "0" * 64}]}}}}}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                 "data": {"image": "raibid-server:dev"}}
    objects = [deployment, scaledjob, configmap]
    before = copy.deepcopy(objects)
    pushed = {"server": "reg:5111/raibid-server:abc", "agent": "reg:5111/raibid-agent:def"}

    out = with_images(objects, pushed, "local")
    assert objects == before  # the render's objects are not changed
    pod = out[0]["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["initContainers"] + pod["containers"]] == [
        "reg:5111/raibid-server:abc", "reg:5111/raibid-server:abc", "docker.io/library/busybox:1.36",
        "other/raibid-server-x:dev"]
    assert out[1]["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0]["image"] == "reg:5111/raibid-agent:def"
    assert out[2] == configmap

    failed = with_images(objects, {**pushed, "foo": "reg:5111/raibid-foo:1"}, "local")
    assert isinstance(failed, TaskFailed)
    assert "runs raibid-foo, though push:foo pushed it" in str(failed)
    assert "give foo its default 'raibid-foo:dev' in tanka/lib/raibid/config.libsonnet defaults.images" in str(failed)


def test_the_local_environment_deploys_the_pushed_refs_of_the_images_of_docker_only(tmp_path, monkeypatch):
    """image_overrides: the ref push:<name> recorded for each docker/<name>.Dockerfile (the
    record of an image whose Dockerfile was removed stays unused, not an error at the next
    apply); a remote environment none at all."""
    from support import copy_project

    from tasks import deploy

    project = copy_project(tmp_path / "project")
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    images = project / "build" / "images"
    images.mkdir(parents=True)
    for name in ("server", "gone"):
        (images / f"{name}.cluster.json").write_text(json.dumps({"name": name, "ref": f"reg:5111/raibid-{name}:1"}))
    assert not (project / "docker" / "gone.Dockerfile").exists()
    assert deploy.image_overrides("local") == {"server": "reg:5111/raibid-server:1"}
    assert deploy.image_overrides("prod") == {} and deploy.image_overrides("staging") == {}


def test_up_deploys_to_the_cluster_and_waits_for_real_rollouts(project, controlplane, shims):
    """``doit up`` with docker and k3d shimmed: the deploy step and the rollout waits are real
    (kwok's node runs the Pods; two hostPath volumes stand in for k3d's local-path storage)."""
    cp = controlplane
    rec = record(cp)
    if not (rec and rec["environment"] == "local"):  # the local stack (another image, say) can stay
        reset(cp, keep_crds=True)  # no objects of another environment (their changes would be refused)
    volumes(cp)  # after a reset; or the claims of the stack kept are bound to them
    shims.add("docker", (SHIMS / "docker_handler.py").read_text())
    shims.add("k3d", (SHIMS / "k3d_handler.py").read_text())
    # the k3d shim's cluster exists and runs, so `doit cluster` only checks it
    shims.set_state(k3d={"clusters": {"raibid-ci": {"running": True}}})
    env = doit_env(project, cp, path_first=[shims.bin])
    env["RAIBID_SRC"] = str(FIXTURES / "raibid-ci")
    up = run_doit(project, "up", env=env, timeout=900)
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    assert "apply:local" in executed(up) and "raibid-ci is up" in up.stdout
    rec = record(cp)
    assert rec is not None and rec["environment"] == "local"
    # the pushed images are what runs
    pushed = json.loads((project / "build" / "images" / "server.cluster.json").read_text())["ref"]
    server = live(cp, {"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "raibid-server", "namespace": NS}})
    assert server["spec"]["template"]["spec"]["containers"][0]["image"] == pushed
    assert server["status"].get("readyReplicas") == server["spec"]["replicas"]
    second = run_doit(project, "up", env=env, timeout=900)
    assert second.returncode == 0 and "apply:local" not in executed(second)


def test_down_deletes_the_stack_and_its_record_and_keeps_the_cluster(project, controlplane):
    cp = controlplane
    env = doit_env(project, cp)
    local_applied(project, cp, env)
    down = run_doit(project, "down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert record(cp) is None
    # the ScaledJob went before its CRD; the CRD and the namespace are being deleted
    custom = ("ScaledJob", "GitRepository", "Kustomization", "TriggerAuthentication")  # their CRDs are gone
    objects = rendered(project, "local")
    now = live_all(cp, [o for o in objects if o["kind"] not in custom])
    for o in objects:
        got = now.get(key(o))
        assert got is None or got["metadata"].get("deletionTimestamp"), f"{o['kind']}/{o['metadata']['name']}"
    assert cp.kubectl("get", "nodes", "-o", "name", check=True).stdout.strip()  # the cluster keeps running
    # once the namespace and the CRDs are gone nothing of the stack is left (the empty
    # cluster test_apply_local applies to) and the next apply:local runs (not up to date);
    # the Pods and claims the namespace still holds (no rendered object) are deleted here,
    # or the namespace controller waits for their grace period
    delete_pods_and_claims(cp)
    left = [o for o in objects if o["kind"] not in custom]  # the CRDs and the namespace too
    gone = {key(o): None for o in left}
    deadline = time.monotonic() + 120
    while (now := live_all(cp, left)) != gone and time.monotonic() < deadline:
        time.sleep(0.25)
    assert now == gone, [k for k, v in now.items() if v is not None]
    status = run_doit(project, "list", "--status", "apply:local", env=env, check=True)
    assert status.stdout.split()[:2] == ["R", "apply:local"], status.stdout


def test_apply_prod_is_refused_without_yes_and_applied_with_it(project, controlplane):
    """prod has ``confirm_apply`` in deploy.json: apply:prod refuses without --yes. It is a
    remote environment: it deploys the images its render names, never the refs pushed to
    this machine's k3d registry for the local one (its cluster could not pull them), and a
    push does not make it deploy again."""
    cp = controlplane
    env = doit_env(project, cp)
    reset(cp, keep_crds=True)  # no objects of another environment (their changes would be refused)
    with pushed_image(project, "server", "k3d-raibid-registry.localhost:5111/raibid-server:abc123"):
        refused = run_doit(project, "apply:prod", env=env)
        assert refused.returncode != 0
        assert "run `doit apply:prod --yes`" in refused.stdout + refused.stderr
        assert cp.kubectl("get", "namespace", NS, "--ignore-not-found", "-o", "name", check=True).stdout == ""
        run_doit(project, "apply:prod", "--yes", env=env, check=True)
    rec = record(cp)
    assert rec["environment"] == "prod" and json.loads(rec["images"]) == {}
    assert live(cp, {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob",
                     "metadata": {"name": "raibid-agent", "namespace": NS}}) is not None
    server = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "raibid-server", "namespace": NS}}
    want = [c["image"] for c in next(o for o in rendered(project, "prod") if key(o) == key(server))
            ["spec"]["template"]["spec"]["containers"]]
    assert [c["image"] for c in live(cp, server)["spec"]["template"]["spec"]["containers"]] == want
    with pushed_image(project, "server", "k3d-raibid-registry.localhost:5111/raibid-server:def456"):
        again = run_doit(project, "apply:prod", "--yes", env=env, check=True)
    assert "apply:prod" not in executed(again)


def test_served_kinds_knows_every_served_version_of_a_group_and_nothing_unserved(controlplane):
    """What diff and down ask the server first (kube.served_kinds): a kind in its group's
    preferred version, in another version the group serves, and in a group not served."""
    from tasks import kube

    cp = controlplane
    kubectl = kube.kubectl_argv(cp.context, str(cp.kubeconfig), str(cp.dir / "kubecache"), exe=cp.kubectl_exe())
    asked = [("apps/v1", "Deployment"), ("v1", "Namespace"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
             ("autoscaling/v1", "HorizontalPodAutoscaler"), ("nope.raibid.test/v1", "Nope")]
    served = kube.served_kinds(kubectl, [{"apiVersion": v, "kind": k, "metadata": {"name": "x"}} for v, k in asked])
    assert served[("apps/v1", "Deployment")] is True and served[("v1", "Namespace")] is False
    assert served[("autoscaling/v2", "HorizontalPodAutoscaler")] is True
    assert served[("autoscaling/v1", "HorizontalPodAutoscaler")] is True  # not the group's preferred version
    assert {v for v, _ in served} == {"apps/v1", "v1", "autoscaling/v2", "autoscaling/v1"}  # only what was asked



def test_each_object_keeps_its_own_namespace_and_only_a_namespaced_one_gets_the_default():
    """What apply and diff send kubectl (no ``--namespace``, which kubectl refuses for an
    object of another namespace, as the KEDA chart's RoleBinding in kube-system): an object
    naming a namespace keeps it; one naming none gets the environment's if its kind is
    namespaced (by the render's own CRDs first, which discovery may not list yet), else
    stays cluster-scoped; the render's objects themselves are not changed."""
    import copy

    from tasks import kube

    def crd(kind, scope):
        return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{kind.lower()}s.raibid.test"},
                "spec": {"group": "raibid.test", "scope": scope, "names": {"kind": kind},
                         "versions": [{"name": "v1", "served": True},
                                      {"name": "v0", "served": False}]}}

    def obj(api, kind, name, ns=None):
        return {"apiVersion": api, "kind": kind,
                "metadata": {"name": name, **({"namespace": ns} if ns else {})}}

    rbac = "rbac.authorization.k8s.io/v1"
    crds = [crd("Widget", "Namespaced"), crd("ClusterWidget", "Cluster")]
    objects = [obj(rbac, "RoleBinding", "auth-reader", "kube-system"), obj("v1", "ConfigMap", "c"),
               obj(rbac, "ClusterRole", "r"), obj("raibid.test/v1", "Widget", "w"),
               obj("raibid.test/v1", "ClusterWidget", "cw"),
               obj("raibid.test/v1", "Widget", "there", "other")]
    before = copy.deepcopy(objects)
    scopes = kube.crd_scopes(crds)
    assert scopes == {("raibid.test/v1", "Widget"): True,
                      ("raibid.test/v1", "ClusterWidget"): False}
    namespaced = {**scopes, ("v1", "ConfigMap"): True, (rbac, "ClusterRole"): False}
    out = kube.in_own_namespaces(objects, "raibid-system", namespaced)
    assert [o["metadata"].get("namespace") for o in out] == [
        "kube-system", "raibid-system", None, "raibid-system", None, "other"]
    assert objects == before
    # kinds the apply's own CRDs define need no discovery (a kubectl that cannot run is not run)
    only_crs = [o for o in objects if o["apiVersion"] == "raibid.test/v1"] + objects[:1]
    assert kube.namespaced_kinds(["/nonexistent/kubectl"], only_crs, crds) == scopes


def test_server_side_apply_puts_each_object_in_its_own_namespace_and_all_or_none_of_the_rest(
        controlplane):
    """kube.server_side_apply against the real API server: an object naming a namespace
    other than the environment's (the KEDA chart's RoleBinding in kube-system) is applied
    there, a namespaced one naming none in the environment's, a cluster-scoped one as it
    is; and when the server rejects one object, none of the objects after the CRDs and
    Namespaces is applied (the stack is not left half applied)."""
    from tasks import kube

    cp = controlplane
    kubectl = kube.kubectl_argv(cp.context, str(cp.kubeconfig), str(cp.dir / "kubecache"),
                                exe=cp.kubectl_exe())
    ns = "raibid-test-own-ns"
    rb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
          "metadata": {"name": "raibid-test-auth-reader", "namespace": "kube-system"},
          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                      "name": "extension-apiserver-authentication-reader"},
          "subjects": [{"kind": "ServiceAccount", "name": "keda-operator", "namespace": ns}]}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "raibid-test-own-ns"}, "rules": []}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "raibid-test-cm"},
          "data": {"a": "1"}}
    cm_there = {**cm, "metadata": {**cm["metadata"], "namespace": ns}}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    try:
        ok, out = kube.server_side_apply(kubectl, [rb, cm, role, namespace], ns)
        assert ok, out
        assert live(cp, rb) is not None and live(cp, role) is not None
        assert live(cp, cm_there)["data"] == {"a": "1"}
        assert "(server dry run)" not in out  # the dry-run before the apply is not reported

        bad = {**cm, "metadata": {"name": "raibid-test-bad", "namespace": ns},
               "data": {"not a key!": "x"}}
        changed = {**cm, "data": {"a": "2"}}
        other = {**cm, "metadata": {"name": "raibid-test-other", "namespace": "kube-system"}}
        ok, out = kube.server_side_apply(kubectl, [changed, bad, other, namespace], ns)
        assert not ok and "not a key!" in out and "none of the 3 objects" in out, out
        assert "(server dry run)" not in out  # what the dry-run accepted is not listed as applied
        assert live(cp, cm_there)["data"] == {"a": "1"}
        assert live(cp, other) is None and live(cp, bad) is None
    finally:
        cp.kubectl("delete", "rolebinding", "-n", "kube-system", rb["metadata"]["name"],
                   "--ignore-not-found", check=True)
        cp.kubectl("delete", "clusterrole", role["metadata"]["name"], "--ignore-not-found",
                   check=True)
        cp.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=True)


def test_reset_deletes_an_apiservice_served_from_the_namespace(controlplane):
    """autoscale.reset with an APIService served from the namespace (the KEDA chart's
    metrics API, unavailable here: nothing runs its Pods) and another served from elsewhere
    (an earlier test's stack): the namespace still goes (while any APIService is
    unavailable the namespace controller finishes no namespace), and so do both."""
    from tasks.kube import object_list

    cp = controlplane
    ns = "raibid-test-aggregated"
    api = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
           "metadata": {"name": "v1beta1.aggregated.raibid.test"},
           "spec": {"group": "aggregated.raibid.test", "version": "v1beta1",
                    "insecureSkipTLSVerify": True, "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                    "service": {"name": "metrics", "namespace": ns, "port": 443}}}
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
               {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "metrics", "namespace": ns},
                "spec": {"ports": [{"port": 443}]}},
               api]
    other = {**api, "metadata": {"name": "v1beta1.elsewhere.raibid.test"},
             "spec": {**api["spec"], "group": "elsewhere.raibid.test",
                      "service": {"name": "metrics", "namespace": "raibid-test-elsewhere",
                                  "port": 443}}}
    try:
        cp.kubectl("apply", "-f", "-", input=object_list(objects + [other]), check=True)
        name = api["metadata"]["name"]
        cp.kubectl("wait", "--for=condition=Available=False", f"apiservice/{name}", "--timeout=60s",
                   timeout=90, check=True)
        started = time.monotonic()
        reset(cp, namespace=ns, keep_crds=True)
        assert time.monotonic() - started < 60
        assert live(cp, api) is None and live(cp, other) is None
        left = cp.kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name", check=True)
        assert left.stdout == ""
    finally:
        cp.kubectl("delete", "apiservice", api["metadata"]["name"], other["metadata"]["name"],
                   "--ignore-not-found", check=True)
