"""The Tanka project and its tasks, with the real tk and helm and stand-in charts.

One session-scoped project (conftest.py: stack) renders and validates the three environments once; tests
that change files work on their own copies. apply and diff run against a real API
server in tests/test_deploy.py; here kubectl is a recording shim only where no cluster is
reached (tests/fixtures/shims/kubectl_handler.py).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from support import (FIXTURES, REPO, copy_built, copy_project, env_for, run_doit, tool_or_fail, tracked_files,
                     yaml_docs)
from tanka_fixtures import install_charts, kubectl_shim

from tasks.settings import environments_on_disk

ENVS = tuple(environments_on_disk(REPO))


def _fresh(dst: Path, charts: bool = True) -> Path:
    project = copy_project(dst)
    if charts:
        install_charts(project)
    return project


def objects(project: Path, env: str) -> list[dict]:
    out = []
    for f in sorted((project / "build" / "manifests" / env).glob("*.yaml")):
        out.extend(yaml_docs(f.read_text()))
    return out


def find(objs: list[dict], kind: str, name: str) -> dict:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def executed(proc: subprocess.CompletedProcess) -> list[str]:
    """Tasks the reporter says it ran (lines `ok <task> ...`)."""
    return [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("ok ")]


def with_tools(project: Path, **scripts: str) -> Path:
    """Replace the project's .tools/bin by real tk/helm/jb links plus ``scripts``
    (name -> shell script body), so a test can wrap one tool."""
    tools = project / ".tools"
    if tools.is_symlink():
        tools.unlink()
    bin_dir = tools / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("tk", "helm", "jb"):
        real = REPO / ".tools" / "bin" / name
        target = bin_dir / name
        if real.exists() and not target.exists():
            target.symlink_to(real)
    for name, body in scripts.items():
        target = bin_dir / name
        if target.exists() or target.is_symlink():
            target.unlink()
        target.write_text("#!/bin/sh\n" + body)
        target.chmod(0o755)
    return bin_dir


def _work_in(project: Path, monkeypatch) -> None:
    """The task modules of this process work in ``project``: its root, its directory, its
    .tools/bin first on PATH (all restored after the test)."""
    from tasks import tools

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    monkeypatch.setenv("PATH", os.environ["PATH"])
    monkeypatch.chdir(project)
    tools.activate()


# --------------------------------------------------------------------------- project shape


def test_tk_sees_the_environments_deploy_json_declares_in_their_namespaces(real_tools):
    """Inline environments: tk finds each one, with the namespace deploy.json gives it (no
    spec.json repeating it)."""
    from tasks import settings

    s = settings.load(REPO / "deploy.json")
    proc = subprocess.run(["tk", "env", "list", "--json"], cwd=REPO / "tanka", capture_output=True, text=True,
                          env=env_for(REPO, path_first=[REPO / ".tools" / "bin"]))
    assert proc.returncode == 0, proc.stderr
    listed = {e["metadata"]["name"]: e["spec"]["namespace"] for e in json.loads(proc.stdout)}
    assert listed == {f"environments/{name}": s.env(name).namespace for name in s.environments}
    assert not list((REPO / "tanka" / "environments").glob("*/spec.json"))


def test_helm_renders_for_the_kubernetes_version_validation_uses(real_tools):
    from tasks import settings

    proc = subprocess.run(["tk", "eval", "tests/test.libsonnet", "-e", "config.defaults.kubeVersion"],
                          cwd=REPO / "tanka", capture_output=True, text=True,
                          env=env_for(REPO, path_first=[REPO / ".tools" / "bin"]))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == settings.load(REPO / "deploy.json").kubernetes_version


def test_stand_in_charts_match_the_pins():
    chartfile = yaml.safe_load((REPO / "tanka" / "chartfile.yaml").read_text())
    for req in chartfile["requires"]:
        meta = yaml.safe_load((REPO / "tests" / "fixtures" / "charts" / req["directory"] / "Chart.yaml").read_text())
        assert str(meta["version"]) == str(req["version"]), req
        assert meta["name"] == req["chart"].split("/")[1]


# --------------------------------------------------------------------------- render + validate


def test_all_environments_render_and_validate(stack):
    for env in ENVS:
        out = stack / "build" / "manifests" / env
        assert len(list(out.glob("*.yaml"))) > 40, env
        deps = json.loads((stack / "build" / "manifests" / f"{env}.deps.json").read_text())["imports"]
        assert f"tanka/environments/{env}/main.jsonnet" in deps
        assert "tanka/lib/raibid/agent.libsonnet" in deps
    # a second run does nothing
    again = run_doit(stack, *(f"validate:{e}" for e in ENVS), check=True)
    assert executed(again) == [], again.stdout


def test_a_copy_of_a_rendered_project_runs_nothing_until_an_input_changes(stack_copy, stack):
    """doit's database holds paths relative to the project (tasks/dbbackend.py): a copied
    checkout (modification times kept) trusts what was rendered and validated where it came from."""
    assert str(stack) not in (stack_copy / ".doit.db").read_text()
    again = run_doit(stack_copy, *(f"validate:{e}" for e in ENVS), check=True)
    assert executed(again) == [], again.stdout
    digest = stack_copy / "build/manifests/staging.sha256"  # what validate:staging checks
    digest.write_text("0" * 64 + "\n")
    # not the digest of the render: it is rendered again, the same, so validate trusts it
    changed = run_doit(stack_copy, *(f"validate:{e}" for e in ENVS), check=True)
    assert executed(changed) == ["render:staging"], changed.stdout
    main = stack_copy / "tanka/environments/staging/main.jsonnet"
    main.write_text(main.read_text().replace("replicas: 2 },", "replicas: 3 },"))
    changed = run_doit(stack_copy, *(f"validate:{e}" for e in ENVS), check=True)
    assert executed(changed) == ["render:staging", "validate:staging"], changed.stdout


def test_key_objects_of_the_local_stack(stack):
    objs = objects(stack, "local")
    sj = find(objs, "ScaledJob", "raibid-agent")["spec"]
    assert (sj["minReplicaCount"], sj["maxReplicaCount"], sj["pollingInterval"]) == (0, 10, 10)
    (trigger,) = sj["triggers"]
    assert trigger["type"] == "redis-streams"
    assert trigger["metadata"]["stream"] == "raibid:jobs"
    assert trigger["metadata"]["consumerGroup"] == "raibid-agents"
    assert trigger["metadata"]["lagCount"] == "5"
    assert trigger["metadata"]["address"].startswith("redis-master.raibid-system.svc")
    assert sj["rollout"] == {"strategy": "gradual"}
    job = sj["jobTargetRef"]
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"
    agent = job["template"]["spec"]["containers"][0]
    assert agent["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    assert agent["image"] == "raibid-agent:dev"

    server = find(objs, "Deployment", "raibid-server")
    c = server["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["RAIBID_SERVER_HOST"]["value"] == "0.0.0.0"
    assert env["RAIBID_SERVER_PORT"]["value"] == "8080"
    assert env["RAIBID_LOG_FORMAT"]["value"] == "json"
    assert env["RAIBID_REDIS_URL"]["value"] == "redis://redis-master.raibid-system.svc.cluster.local:6379"
    assert env["RAIBID_GITEA_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "raibid-webhooks"
    assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080}
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    assert c["image"] == "raibid-server:dev"
    svc = find(objs, "Service", "raibid-server")
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("http", 8080)]
    # honest ports: the raibid-ci server serves no metrics (tests/fixtures/contract/server.json)
    contract = json.loads((REPO / "tests/fixtures/contract/server.json").read_text())
    assert contract["metrics"].startswith("none")
    assert not [p for p in c["ports"] + svc["spec"]["ports"] if "metric" in p["name"]]

    # the names the Tiltfile relies on
    assert find(objs, "Service", "redis-master")["spec"]["ports"][0]["port"] == 6379
    find(objs, "StatefulSet", "redis-master")
    assert find(objs, "Service", "gitea-http")["spec"]["ports"][0]["port"] == 3000
    find(objs, "Deployment", "keda-operator")
    for ctrl in ("source-controller", "kustomize-controller", "helm-controller", "notification-controller"):
        find(objs, "Deployment", ctrl)
    assert {o["metadata"]["name"] for o in objs if o["kind"] == "CustomResourceDefinition"} >= {
        "scaledjobs.keda.sh", "triggerauthentications.keda.sh",
        "gitrepositories.source.toolkit.fluxcd.io", "kustomizations.kustomize.toolkit.fluxcd.io"}
    repo = find(objs, "GitRepository", "raibid-gitops")["spec"]
    assert repo["ref"] == {"branch": "main"} and repo["interval"] == "1m"
    assert repo["url"].endswith("/raibid/raibid-gitops.git")
    ks = find(objs, "Kustomization", "raibid-gitops")["spec"]
    assert ks["sourceRef"]["name"] == "raibid-gitops" and ks["path"] == "./environments/local"
    # the chart hook Job and the image controllers are left out
    assert not [o for o in objs if o["kind"] == "Job"]
    assert not [o for o in objs if o["metadata"]["name"].startswith("image-")]


def test_environments_differ_where_it_matters(stack):
    local, staging, prod = (objects(stack, e) for e in ("local", "staging", "prod"))
    # HPA only in prod, and then the Deployment leaves replicas to it
    assert not [o for o in local + staging if o["kind"] == "HorizontalPodAutoscaler"]
    assert find(prod, "HorizontalPodAutoscaler", "raibid-server")["spec"]["minReplicas"] == 3
    assert "replicas" not in find(prod, "Deployment", "raibid-server")["spec"]
    assert find(staging, "Deployment", "raibid-server")["spec"]["replicas"] == 2
    assert find(local, "Deployment", "raibid-server")["spec"]["replicas"] == 1
    # Redis auth outside local
    for objs in (staging, prod):
        redis_env = {e["name"]: e for e in find(objs, "StatefulSet", "redis-master")["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert redis_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "raibid-redis"
        find(objs, "TriggerAuthentication", "raibid-agent-redis")
    assert not [o for o in local if o["kind"] == "TriggerAuthentication"]
    # persistence sizes
    size = lambda objs: find(objs, "StatefulSet", "redis-master")["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]  # noqa: E731
    assert (size(local), size(staging), size(prod)) == ("1Gi", "8Gi", "20Gi")
    # registry images with explicit versions outside local, never :latest
    for objs in (staging, prod):
        images = [c["image"] for o in objs if o["kind"] in ("Deployment", "StatefulSet")
                  for c in o["spec"]["template"]["spec"]["containers"]]
        assert images and all(":" in i.rsplit("/", 1)[-1] and not i.endswith(":latest") for i in images)
        assert find(objs, "Deployment", "raibid-server")["spec"]["template"]["spec"]["containers"][0]["image"] \
            == "git.raibid.internal/raibid/raibid-server:0.1.0"


def _ini(section: str) -> dict:
    return dict(line.strip().split("=", 1) for line in section.splitlines() if "=" in line)


def test_gitea_is_reached_where_the_images_are_pulled_from(stack):
    """Gitea's registry sends clients to ROOT_URL for a token: outside local, DOMAIN and
    ROOT_URL must be the registry host of our images (nodes cannot resolve *.svc)."""
    for env in ("staging", "prod"):
        objs = objects(stack, env)
        server = _ini(find(objs, "Secret", "gitea-inline-config")["stringData"]["server"])
        hosts = {find(objs, "Deployment", "raibid-server")["spec"]["template"]["spec"]["containers"][0]["image"].split("/")[0],
                 find(objs, "ScaledJob", "raibid-agent")["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0]["image"].split("/")[0]}
        assert hosts == {server["DOMAIN"]}, (env, hosts, server)
        assert server["ROOT_URL"] == f"https://{server['DOMAIN']}/"
        assert "svc.cluster.local" not in server["ROOT_URL"]


def test_server_pdb_keda_secret_access_and_gitea_ssh(stack):
    local, staging, prod = (objects(stack, e) for e in ("local", "staging", "prod"))
    # a PodDisruptionBudget where 2+ server replicas run, selecting exactly them
    # (the redis chart has its own, as the real one)
    assert not [o for o in local
                if o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == "raibid-server"]
    for objs in (staging, prod):
        pdb = find(objs, "PodDisruptionBudget", "raibid-server")["spec"]
        labels = find(objs, "Deployment", "raibid-server")["spec"]["template"]["metadata"]["labels"]
        assert pdb["maxUnavailable"] == 1 and pdb["selector"]["matchLabels"].items() <= labels.items()
    # KEDA reads Secrets only in its own namespace, where the Redis Secret is
    for objs in (staging, prod):
        role = find(objs, "ClusterRole", "keda-operator")
        assert not [r for r in role["rules"] if "secrets" in r.get("resources", [])]
        op = find(objs, "Deployment", "keda-operator")
        env = {e["name"]: e.get("value") for e in op["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["KEDA_RESTRICT_SECRET_ACCESS"] == "true"
        auth = find(objs, "TriggerAuthentication", "raibid-agent-redis")
        assert auth["metadata"]["namespace"] == op["metadata"]["namespace"]
    # gitea-ssh is a real ClusterIP Service, so its 22 -> 2222 mapping works
    ssh = find(staging, "Service", "gitea-ssh")["spec"]
    assert ssh.get("clusterIP") != "None"
    assert [(p["port"], p["targetPort"]) for p in ssh["ports"]] == [(22, 2222)]


def test_staging_and_prod_render_no_secret_values(stack):
    for env in ("staging", "prod"):
        secrets = [o for o in objects(stack, env) if o["kind"] == "Secret"]
        assert not [s for s in secrets if s["metadata"]["name"].startswith("raibid-")], env
        for s in secrets:  # what charts render is configuration, not credentials
            for key in {**s.get("stringData", {}), **s.get("data", {})}:
                assert not any(w in key.lower() for w in ("password", "token", "secret")), \
                    (env, s["metadata"]["name"], key)


def test_local_secrets_are_generated_not_from_the_repo(stack):
    generated = json.loads((stack / "tanka" / "environments" / "local" / "secrets.local.json").read_text())
    assert set(generated) == set(json.loads((REPO / "tanka/lib/raibid/secret-keys.json").read_text()))
    objs = objects(stack, "local")
    gitea = find(objs, "Secret", "raibid-gitea-admin")["stringData"]
    assert gitea == {"username": generated["giteaAdminUsername"], "password": generated["giteaAdminPassword"]}
    assert find(objs, "Secret", "raibid-webhooks")["stringData"]["gitea-webhook-secret"] == generated["giteaWebhookSecret"]
    # no generated value is in any file of the repository, and the file is never committed
    values = [v for k, v in generated.items() if k != "giteaAdminUsername"]
    for rel in tracked_files(REPO):
        text = (REPO / rel).read_text(errors="ignore")
        assert not any(v in text for v in values), rel
    ignored = subprocess.run(["git", "check-ignore", "-q", "tanka/environments/local/secrets.local.json"], cwd=REPO)
    assert ignored.returncode == 0
    assert ((stack / "tanka/environments/local/secrets.local.json").stat().st_mode & 0o077) == 0
    # gitea admin credentials come from the Secret, never a literal
    gitea_dep = find(objs, "Deployment", "gitea")
    init_env = {e["name"]: e for c in gitea_dep["spec"]["template"]["spec"]["initContainers"] for e in c.get("env", [])}
    assert init_env["GITEA_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "raibid-gitea-admin"


def test_secrets_local_keeps_existing_values_and_fills_gaps(project, real_tools):
    run_doit(project, "secrets:local", check=True)
    f = project / "tanka/environments/local/secrets.local.json"
    first = json.loads(f.read_text())
    again = run_doit(project, "secrets:local", check=True)
    assert executed(again) == []
    del first["githubWebhookSecret"]
    f.write_text(json.dumps(first))
    run_doit(project, "secrets:local", check=True)
    second = json.loads(f.read_text())
    assert {k: second[k] for k in first} == first
    assert second["githubWebhookSecret"] and len(second["githubWebhookSecret"]) >= 32


# --------------------------------------------------------------------------- validation catches


def test_validation_reports_every_violation_by_object_and_rule(stack):
    from tasks import manifests

    objs = objects(stack, "staging")
    assert manifests.validate_objects(objs, "staging", "1.33.0",
                                     manifests.crd_dir_index(stack / "build" / "crds")) == []
    server = find(objs, "Deployment", "raibid-server")
    c = server["spec"]["template"]["spec"]["containers"][0]
    del c["resources"]["limits"]
    del c["readinessProbe"]
    c["securityContext"]["allowPrivilegeEscalation"] = True
    c["image"] = "git.raibid.internal/raibid/raibid-server:latest"
    server["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot")
    c["securityContext"].pop("runAsNonRoot")
    c["securityContext"].pop("runAsUser")
    server["spec"]["template"]["spec"]["securityContext"].pop("runAsUser")
    sj = find(objs, "ScaledJob", "raibid-agent")
    sj["spec"]["pollingInterval"] = "ten"
    find(objs, "Service", "raibid-server")["spec"]["portz"] = []
    got = [str(v) for v in manifests.validate_objects(objs, "staging", "1.33.0",
                                     manifests.crd_dir_index(stack / "build" / "crds"))]
    expected_fragments = [
        "Deployment/raibid-server container server: resources.limits lacks cpu, memory [resources]",
        "Deployment/raibid-server container server: no readinessProbe [probes]",
        "Deployment/raibid-server container server: securityContext.allowPrivilegeEscalation is not false [no-privilege-escalation]",
        "Deployment/raibid-server container server: image 'git.raibid.internal/raibid/raibid-server:latest' uses :latest",
        "Deployment/raibid-server container server: neither runAsNonRoot: true nor a numeric non-zero runAsUser [non-root]",
        "ScaledJob/raibid-agent: spec.pollingInterval: 'ten' is not of type 'integer'",
        "Service/raibid-server: spec: Additional properties are not allowed ('portz' was unexpected)",
    ]
    for frag in expected_fragments:
        assert any(frag in line for line in got), (frag, got)
    assert len(got) == len(expected_fragments), got


def test_validate_task_fails_on_a_bad_render(stack_copy):
    lib = stack_copy / "tanka/lib/raibid/server.libsonnet"
    lib.write_text(lib.read_text().replace("    resources: cfg.server.resources,\n", ""))
    proc = run_doit(stack_copy, "validate:local")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Deployment/raibid-server container server: resources.requests lacks cpu, memory [resources]" in out
    assert "validate:local" in out


def test_validate_runs_again_when_kubernetes_validates_schemas_change(stack_copy, tmp_path, monkeypatch):
    """An upgrade or reinstall of kubernetes-validate (stood for by a copy of its schemas
    whose shared definitions differ) checks the render again; the same schemas do not."""
    from tasks import settings

    real = settings.kubernetes_schemas()
    chosen = settings.kubernetes_schema_dir(settings.load(stack_copy / settings.FILE).kubernetes_version)
    upgraded = tmp_path / "kubernetes-json-schema"
    upgraded.mkdir()
    for d in real.iterdir():
        if d != chosen:
            (upgraded / d.name).symlink_to(d)
    (upgraded / chosen.name).mkdir()
    for f in chosen.iterdir():
        (upgraded / chosen.name / f.name).symlink_to(f)
    defs = upgraded / chosen.name / "_definitions.json"
    defs.unlink()
    defs.write_text(json.dumps(json.loads((chosen / "_definitions.json").read_text()), indent=1))

    assert executed(run_doit(stack_copy, "validate:local", check=True)) == []
    monkeypatch.setattr(settings, "kubernetes_schemas", lambda: upgraded)
    settings.kubernetes_schema_dir.cache_clear()
    try:
        assert executed(run_doit(stack_copy, "validate:local", check=True)) == ["validate:local"]
        assert executed(run_doit(stack_copy, "validate:local", check=True)) == []
    finally:
        settings.kubernetes_schema_dir.cache_clear()


def test_crd_conversion_handles_kubernetes_extensions():
    from tasks.manifests import to_json_schema

    schema = to_json_schema({
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "note": {"type": "string", "nullable": True},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {"type": "string"}}},
        },
    })
    import jsonschema

    v = jsonschema.Draft7Validator(schema)
    assert not list(v.iter_errors({"port": 8080, "note": None, "free": {"a": "x", "b": 1}}))
    assert not list(v.iter_errors({"port": "http"}))
    assert list(v.iter_errors({"port": 1.5}))
    assert list(v.iter_errors({"unknown": 1}))


# --------------------------------------------------------------------------- incrementality


def test_a_copied_project_with_its_own_tools_keeps_its_renders(stack_copy, tmp_path):
    """A tk inside the project (.tools/bin, as `doit tools` builds it) is recorded relative
    to the root: a copy of the checkout does not render again."""
    real_tk = os.path.realpath(REPO / ".tools" / "bin" / "tk")
    with_tools(stack_copy, tk=f"exec '{real_tk}' \"$@\"\n")
    assert executed(run_doit(stack_copy, "render:local", check=True)) == ["render:local"]  # another tk
    copy = tmp_path / "copy"
    copy_built(stack_copy, copy)
    again = run_doit(copy, "render:local", check=True)
    assert executed(again) == [], again.stdout


def test_render_reruns_exactly_the_environments_that_import_a_change(stack_copy):
    project = stack_copy  # every environment rendered (conftest.py: stack)
    extra = project / "tanka/lib/raibid/staging-extra.libsonnet"
    extra.write_text("{ replicas: 2 }\n")
    main = project / "tanka/environments/staging/main.jsonnet"
    main.write_text(main.read_text().replace("server: { replicas: 2 },",
                                             "server: { replicas: (import 'raibid/staging-extra.libsonnet').replicas },"))
    renders = [f"render:{e}" for e in ENVS]
    first = run_doit(project, *renders, check=True)
    assert [t for t in executed(first) if t.startswith("render:")] == ["render:staging"]  # its main changed
    assert "tanka/lib/raibid/staging-extra.libsonnet" in (project / "build/manifests/staging.deps.json").read_text()

    assert [t for t in executed(run_doit(project, *renders, check=True)) if t.startswith("render:")] == []

    extra.write_text("{ replicas: 3 }\n")
    third = run_doit(project, *renders, check=True)
    assert [t for t in executed(third) if t.startswith("render:")] == ["render:staging"]
    dep = yaml.safe_load((project / "build/manifests/staging/apps-v1.Deployment-raibid-server.yaml").read_text())
    assert dep["spec"]["replicas"] == 3

    util = project / "tanka/lib/util.libsonnet"
    os.utime(util)  # a touch without a change is not a change
    assert [t for t in executed(run_doit(project, *renders, check=True)) if t.startswith("render:")] == []
    util.write_text(util.read_text() + "\n// a comment\n")
    fifth = run_doit(project, *renders, check=True)
    assert sorted(t for t in executed(fifth) if t.startswith("render:")) == sorted(renders)


def test_interrupted_render_keeps_the_previous_output_and_reruns(stack_copy):
    out = stack_copy / "build/manifests/local"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    marker = stack_copy / "tk-export-started"
    real_tk = REPO / ".tools/bin/tk"
    if not real_tk.exists():
        real_tk = Path(shutil.which("tk"))
    with_tools(stack_copy, tk=f"""case "$1" in
  export) touch '{marker}'; sleep 60;;
esac
exec '{real_tk}' "$@"
""")
    lib = stack_copy / "tanka/lib/raibid/server.libsonnet"
    lib.write_text(lib.read_text().replace("terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 31"))
    proc = subprocess.Popen([sys.executable, "-m", "doit", "render:local"], cwd=stack_copy,
                            env=env_for(stack_copy), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while not marker.exists():
            assert time.time() < deadline, "tk export never started"
            assert proc.poll() is None, "doit ended before tk export started"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # previous output intact
    assert [p for p in out.parent.iterdir() if p.name.startswith(".local.") and p.name.endswith(".tmp")]

    with_tools(stack_copy, tk=f"exec '{real_tk}' \"$@\"\n")
    again = run_doit(stack_copy, "render:local", check=True)
    assert "render:local" in executed(again)
    dep = yaml.safe_load((out / "apps-v1.Deployment-raibid-server.yaml").read_text())
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 31
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]  # stale temps swept


@pytest.mark.parametrize("user_gogc", [None, "50"])
def test_short_go_runs_collect_garbage_less_often_unless_the_user_says_otherwise(stack_copy, user_gogc):
    """tk (its export, its library tests, and the helm it runs) and Tilt's Tiltfile load get
    a lazier Go garbage collector (less CPU, the same output); a GOGC the user set is theirs."""
    from tasks.tools import SHORT_RUN_GOGC

    log = stack_copy / "go-gogc"
    real = {name: REPO / ".tools/bin" / name for name in ("tk", "tilt")}
    for name, path in real.items():
        if not path.exists():
            real[name] = Path(tool_or_fail(name))
    with_tools(stack_copy, **{name: f"""echo "{name} $1 ${{GOGC:-unset}}" >> '{log}'
exec '{path}' "$@"
""" for name, path in real.items()})
    before = (stack_copy / "build/manifests/local.sha256").read_text()
    lib = stack_copy / "tanka/lib/raibid/server.libsonnet"
    lib.write_text(lib.read_text() + "\n")
    env = env_for(stack_copy, {"RAIBID_SRC": str(FIXTURES / "raibid-ci")})
    env.pop("GOGC", None)
    run_doit(stack_copy, "render:local", "libtest:server", "tilt:check", check=True,
             env=env if user_gogc is None else {**env, "GOGC": user_gogc})
    calls = [line.split() for line in log.read_text().splitlines()]
    assert {("tk", "export"), ("tk", "eval"), ("tilt", "alpha")} <= {(tool, cmd) for tool, cmd, _ in calls}
    assert {gogc for _, _, gogc in calls} == {user_gogc or SHORT_RUN_GOGC}
    assert SHORT_RUN_GOGC != "100" and (stack_copy / "build/manifests/local.sha256").read_text() == before


def test_a_render_never_sweeps_what_a_render_of_another_environment_is_writing(stack_copy, monkeypatch):
    """Renders run at once (a parallel run, two doit processes): each sweeps only the
    leftovers of its own environment, so another's output is never cut short while tk
    writes it (which would leave a half-written render that is trusted)."""
    from tasks import render

    _work_in(stack_copy, monkeypatch)
    base = stack_copy / "build/manifests"
    writing = base / ".staging.k2j4x9_q.tmp"  # render:staging's output while tk writes it
    writing.mkdir()
    (writing / "v1.Namespace-raibid-system.yaml").write_text("kind: Namespace\n")
    for name in (".staging.sha256.a1b2c3d4.tmp", ".local.x.a1b2c3d4.tmp"):
        (base / name).write_text("partial\n")
    stale = base / ".local.deadbeef.tmp"  # a killed render:local's
    stale.mkdir()
    assert render.render("local") == {"digest": (base / "local.sha256").read_text().strip()}
    assert (writing / "v1.Namespace-raibid-system.yaml").is_file()
    assert (base / ".staging.sha256.a1b2c3d4.tmp").is_file() and (base / ".local.x.a1b2c3d4.tmp").is_file()
    assert not stale.exists()


def test_two_renders_of_one_environment_take_turns(stack_copy, monkeypatch):
    """A second render of an environment (another doit process) waits for the first: it
    would otherwise sweep the first one's output as stale while tk writes it."""
    import threading

    from tasks import atomic, render
    from tasks.tanka import env_dir

    _work_in(stack_copy, monkeypatch)
    base = stack_copy / "build/manifests"
    writing = base / ".local.k2j4x9_q.tmp"  # the first render's output while tk writes it
    result = []
    with atomic.locked(env_dir("local")):   # the first render holds its environment
        writing.mkdir()
        second = threading.Thread(target=lambda: result.append(render.render("local")), daemon=True)
        second.start()
        second.join(timeout=2)
        assert second.is_alive() and writing.is_dir()   # waiting, and nothing swept
        assert not [p for p in base.iterdir() if p.name.startswith(".local.") and p != writing]
        writing.rmdir()   # the first render is done with it
    second.join(timeout=120)
    assert result == [{"digest": (base / "local.sha256").read_text().strip()}]


@pytest.mark.parametrize("writes_done", [0, 1])
def test_a_render_interrupted_while_recording_it_is_rendered_and_validated_again(
        stack_copy, monkeypatch, writes_done):
    """Ctrl-C after the new manifests are in place, while the digest and the depfile are
    being written: the next run must not trust the render (validate and apply key on the
    digest, so a depfile newer than the digest would leave new manifests unvalidated)."""
    from tasks import atomic, render

    _work_in(stack_copy, monkeypatch)
    lib = stack_copy / "tanka/lib/raibid/server.libsonnet"
    lib.write_text(lib.read_text().replace("terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 32"))

    real_write = atomic.write_text
    written = []

    def interrupted_write(path, text):
        if len(written) == writes_done:
            raise KeyboardInterrupt
        written.append(path)
        real_write(path, text)

    monkeypatch.setattr(atomic, "write_text", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        render.render("local")
    monkeypatch.setattr(atomic, "write_text", real_write)
    out = stack_copy / "build/manifests/local"
    assert "terminationGracePeriodSeconds: 32" in (out / "apps-v1.Deployment-raibid-server.yaml").read_text()

    again = run_doit(stack_copy, "validate:local", check=True)
    assert {"render:local", "validate:local"} <= set(executed(again)), again.stdout
    assert (stack_copy / "build/manifests/local.sha256").read_text().strip() == render.dir_digest(out)


def test_a_render_not_as_render_wrote_it_renders_again_and_is_never_used(stack_copy, monkeypatch):
    """An image swapped in (its time kept), a file deleted, a stray file added, the digest
    file damaged, or doit's record forgotten: render:staging is not up to date, so it
    renders (restoring the render) before validate, publish or apply read it; and those
    refuse a directory that is not what render wrote, before anything else."""
    from tasks import deploy, gitops, render, tanka, validate

    _work_in(stack_copy, monkeypatch)
    out = stack_copy / "build/manifests/staging"
    record = stack_copy / "build/manifests/staging.sha256"
    values = {"digest": record.read_text().strip()}
    check = render.RenderUptodate("staging")
    assert check(None, values)

    server = out / "apps-v1.Deployment-raibid-server.yaml"
    text, st = server.read_text(), server.stat()

    def backdoor():
        server.write_text(text.replace("image: git.raibid.internal/raibid/raibid-server:0.1.0",
                                       "image: evil.example/backdoor:latest"))
        os.utime(server, ns=(st.st_atime_ns, st.st_mtime_ns))

    def restore():
        server.write_text(text)

    def stray():
        (out / "v1.ConfigMap-stray.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")

    def unstray():
        (out / "v1.ConfigMap-stray.yaml").unlink()

    def digest(content):
        def write():
            if record.is_dir():
                record.rmdir()
            else:
                record.unlink()
            if content is None:
                record.mkdir()
            else:
                record.write_bytes(content)
        return write

    edits = [(backdoor, restore, "build/manifests/staging/ is not what render:staging wrote"),
             (server.unlink, restore, "build/manifests/staging/ is not what render:staging wrote"),
             (stray, unstray, "build/manifests/staging/ is not what render:staging wrote"),
             (lambda: (out / "linked.yaml").symlink_to(stack_copy / "tanka"),  # a directory
              lambda: (out / "linked.yaml").unlink(), "build/manifests/staging/ is not what")]
    for garbage in (b"not-a-digest\n", b"\xff\xfe" * 32, None, b"0" * 64):
        edits.append((digest(garbage), digest(values["digest"].encode() + b"\n"),
                      "staging.sha256 is not the digest of build/manifests/staging/"))
    for edit, undo, reason in edits:
        edit()
        assert not check(None, values) and reason in check.reason, (edit, check.reason)
        problem = render.changed_since_render("staging")
        assert problem and "`doit render:staging` renders it again" in problem, edit
        for act in (lambda: validate._validate_action("staging", "1.33.0"),
                    lambda: gitops._publish_action("staging"),
                    lambda: deploy._apply_action("staging")):
            failed = act()
            assert failed is not None and problem in failed.message, (edit, failed)
        assert deploy.deploy_digest("staging") != deploy.deploy_digest("prod")  # no traceback
        undo()
        assert check(None, values), (edit, check.reason)
    assert render.changed_since_render("staging") is None
    assert tanka.read_digest("staging") == values["digest"]
    assert not check(None, {}) and "`doit forget`" in check.reason


# --------------------------------------------------------------------------- vendoring, fmt, libtests, ci


def test_vendor_charts_does_not_touch_the_network_when_charts_are_at_their_pins(tmp_path, real_tools):
    project = _fresh(tmp_path / "project")
    log = tmp_path / "helm-calls"
    with_tools(project, helm=f"echo \"$@\" >> '{log}'\nexit 1\n")
    run_doit(project, "vendor:charts", check=True)
    assert not log.exists()  # tk skipped every chart: helm (and the network) never ran
    chartfile = project / "tanka/chartfile.yaml"
    chartfile.write_text(chartfile.read_text().replace("version: 2.20.2", "version: 2.20.1"))
    proc = run_doit(project, "vendor:charts")
    assert proc.returncode != 0  # the pin changed: it really tries to pull (and the fake helm fails)
    assert "repo update" in log.read_text() or "pull" in log.read_text()
    assert "tk tool charts vendor" in proc.stdout + proc.stderr


def test_fmt_check_names_the_files_and_the_fix(project, real_tools):
    assert run_doit(project, "tanka:fmt").returncode == 0
    (project / "tanka/lib/ugly.libsonnet").write_text("{a:1,\n   b:   2}\n")
    proc = run_doit(project, "tanka:fmt")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "tanka/lib/ugly.libsonnet" in out and "tk fmt tanka/" in out
    # the fix runs as printed in the user's shell, whose PATH has no .tools/bin (nor any tk)
    fix = out.split("Fix (from the project root): ", 1)[1].splitlines()[0]
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if p and not os.access(os.path.join(p, "tk"), os.X_OK))
    shell = subprocess.run(["bash", "-c", fix], cwd=project, env={**os.environ, "PATH": path},
                           capture_output=True, text=True)
    assert shell.returncode == 0, (fix, shell.stderr)
    assert run_doit(project, "tanka:fmt").returncode == 0


def test_library_tests_pass_and_a_failure_is_readable(project, real_tools):
    proc = run_doit(project, *(f"libtest:{n}" for n in
                               ("libs", "redis", "gitea", "keda", "flux", "server", "agent", "secrets")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    suite = project / "tanka/tests/agent_test.jsonnet"
    suite.write_text(suite.read_text().replace("[sj.minReplicaCount, sj.maxReplicaCount], [0, 10]",
                                               "[sj.minReplicaCount, sj.maxReplicaCount], [0, 11]"))
    proc = run_doit(project, "libtest:agent")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "scales 0 to 10" in out and "expected [0, 11]" in out and "actual   [0, 10]" in out


def test_ci_runs_the_offline_checks_without_charts(project, real_tools):
    proc = run_doit(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = executed(proc)
    assert "tanka:fmt" in ran and "libtest:agent" in ran
    assert not [t for t in ran if t.startswith(("render:", "validate:"))]
    assert "doit vendor:charts" in proc.stdout
    # a skipped check does not look like a pass: the summary says what was not checked
    summary = proc.stdout.strip().splitlines()[-2:]
    assert " skipped in " in summary[0], summary
    assert "not checked" in summary[1] and "tanka:manifests" in summary[1], summary


def test_ci_renders_and_validates_when_the_charts_are_there(stack_copy):
    proc = run_doit(stack_copy, check=True)
    for env in ENVS:  # through tanka:manifests, a group task
        assert f"validate:{env}" in proc.stdout


# --------------------------------------------------------------------------- apply, diff


@pytest.mark.parametrize("task", ["diff:local", "apply:local", "diff:prod", "apply:prod"])
def test_a_missing_kube_context_is_named_with_what_to_do_before_anything_runs(project, shims, task):
    """In a fresh checkout (no charts vendored: vendoring would need the network) a diff or
    apply whose kube context is missing says so first: nothing is vendored, rendered,
    validated, diffed or applied."""
    kubectl_shim(shims)
    shims.set_state(contexts=["some-other-cluster"])
    env = env_for(project, path_first=[shims.bin])
    proc = run_doit(project, *([task, "--yes"] if task == "apply:prod" else [task]), env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    if task.endswith(":local"):
        assert "kube context 'k3d-raibid-ci' (deploy.json) is not in your kubeconfig" in out
        assert "`doit cluster` creates" in out
    else:
        assert "kube context 'raibid-prod' (deploy.json environments.prod.context) is not in your kubeconfig" in out
        assert "Add it to your kubeconfig" in out
    assert not [t for t in ("vendor:", "render:", "validate:", "secrets:") if t in out], out
    argvs = [r["argv"] for r in shims.records()]
    assert ["config", "view", "-o", "json"] in argvs
    assert not [a for a in argvs if {"apply", "diff"} & set(a)]  # nothing applied or diffed


def test_a_failing_render_names_the_error_and_keeps_the_previous_output(stack_copy):
    out = stack_copy / "build/manifests/local"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    lib = stack_copy / "tanka/lib/raibid/agent.libsonnet"
    lib.write_text(lib.read_text().replace("pollingInterval: cfg.agent.pollingInterval,",
                                           "pollingInterval: cfg.agent.noSuchSetting,"))
    proc = run_doit(stack_copy, "render:local")
    assert proc.returncode != 0
    out_text = proc.stdout + proc.stderr
    assert "tk export" in out_text and "noSuchSetting" in out_text and "agent.libsonnet" in out_text
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_missing_tool_is_named_before_anything_runs(tmp_path):
    project = _fresh(tmp_path / "project")
    bin_dir = with_tools(project)
    (bin_dir / "tk").unlink()
    env = env_for(project)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not (Path(p) / "tk").exists())
    proc = run_doit(project, "render:staging", env=env)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "missing tool" in out and "tk v0.32.0" in out
    assert not (project / "build" / "manifests" / "staging").exists()


# --------------------------------------------------------------------------- hardening (issue 11)


def _tk_wrapper(project: Path, export_body: str) -> None:
    """Wrap the real tk: ``export_body`` (sh) runs for `tk export`, everything else is tk."""
    real_tk = REPO / ".tools/bin/tk"
    if not real_tk.exists():
        real_tk = Path(shutil.which("tk"))
    with_tools(project, tk=f"""case "$1" in
  export) {export_body.format(tk=real_tk)};;
esac
exec '{real_tk}' "$@"
""")


def _touch_server_lib(project: Path, marker: str = "a comment") -> Path:
    lib = project / "tanka/lib/raibid/server.libsonnet"
    lib.write_text(lib.read_text() + f"\n// {marker}\n")
    return lib


def test_rendered_manifests_are_never_readable_by_others_even_while_written(stack_copy):
    """Secrets are rendered with plaintext stringData: the files are 0600 and the directory
    0700 from the moment tk writes them (not chmodded afterwards)."""
    log = stack_copy / "modes.txt"
    _tk_wrapper(stack_copy, "'{tk}' \"$@\"; rc=$?; stat -c '%a %n' \"$2\" \"$2\"/* > '" + str(log)
                + "'; exit $rc")
    _touch_server_lib(stack_copy)
    run_doit(stack_copy, "render:local", check=True)
    during = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert len(during) > 10 and any("v1.Secret-" in name for _, name in during)
    assert [(m, n) for m, n in during if int(m, 8) & 0o077] == []
    out = stack_copy / "build/manifests/local"
    after = [out, *out.iterdir()]
    assert [p.name for p in after if p.stat().st_mode & 0o077] == []


def test_the_local_secrets_file_is_private_from_creation(project, monkeypatch):
    from tasks import atomic, local_secrets

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    seen = []
    real_replace = atomic.os.replace

    def replace(src, dst):
        seen.append((Path(dst).name, os.stat(src).st_mode & 0o777))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    local_secrets.generate_local_secrets()
    f = local_secrets.local_secrets_file()
    assert seen == [("secrets.local.json", 0o600)]
    # an old world-readable file loses its mode when it is completed
    values = json.loads(f.read_text())
    del values["githubWebhookSecret"]
    f.write_text(json.dumps(values))
    f.chmod(0o644)
    seen.clear()
    local_secrets.generate_local_secrets()
    assert seen == [("secrets.local.json", 0o600)] and f.stat().st_mode & 0o777 == 0o600


_SECRETS_RACE = """
import os, sys, time
from pathlib import Path
from tasks import local_secrets
slow = local_secrets._generate_value
def generate(key):
    time.sleep(0.2)
    return slow(key)
local_secrets._generate_value = generate
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
local_secrets.generate_local_secrets()
"""


def test_two_concurrent_first_runs_generate_the_secrets_once(project):
    go = project / "go"
    env = env_for(project, {"RAIBID_DEPLOY_ROOT": str(project)})
    procs = [subprocess.Popen([sys.executable, "-c", _SECRETS_RACE, str(go)], cwd=project, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    time.sleep(1.0)
    go.touch()
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sorted("generated" in o for o in outs) == [False, True], outs
    f = project / "tanka/environments/local/secrets.local.json"
    assert f.stat().st_mode & 0o777 == 0o600


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_sigkill_of_doit_ends_its_tk_export(stack_copy):
    pidfile = stack_copy / "tk-export.pid"
    _tk_wrapper(stack_copy, "echo $$ > '" + str(pidfile) + "'; exec sleep 120")
    _touch_server_lib(stack_copy)
    proc = subprocess.Popen([sys.executable, "-m", "doit", "render:local"], cwd=stack_copy,
                            env=env_for(stack_copy), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    child = None
    try:
        deadline = time.time() + 60
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.time() < deadline and proc.poll() is None, "tk export never started"
            time.sleep(0.05)
        child = int(pidfile.read_text())
        os.kill(proc.pid, signal.SIGKILL)  # doit only, not its process group
        proc.wait(timeout=30)
        deadline = time.time() + 10
        while _alive(child) and time.time() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "tk export outlived the doit that started it"
    finally:
        for pid in [proc.pid] + ([child] if child else []):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_render_refuses_an_output_directory_outside_build_manifests(tmp_path, monkeypatch, real_tools):
    from tasks import local_secrets, render

    project = _fresh(tmp_path / "project")
    _work_in(project, monkeypatch)
    local_secrets.generate_local_secrets()
    env_dir = project / "tanka/environments/local"
    before = {p.name: p.read_bytes() for p in env_dir.iterdir()}
    for name in ("../../tanka/environments/local", "/etc", "a/b"):
        fail = render.render(name)
        assert fail is not None and "build/manifests" in fail.message, name
    assert {p.name: p.read_bytes() for p in env_dir.iterdir()} == before
    assert not (project / "build").exists() or not list((project / "build").rglob("*.json"))


def test_render_never_replaces_a_directory_it_did_not_create(tmp_path, real_tools):
    project = _fresh(tmp_path / "project")
    mine = project / "build/manifests/local"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine\n")
    proc = run_doit(project, "render:local")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert "build/manifests/local" in out and "not created by" in out, out
    assert (mine / "notes.txt").read_text() == "mine\n" and len(list(mine.iterdir())) == 1
    # once moved away, the render goes ahead
    mine.rename(project / "saved")
    run_doit(project, "render:local", check=True)


def test_a_render_of_an_older_version_is_still_replaced(stack_copy):
    """Renders made before the ownership mark are recognised by their recorded digest."""
    out = stack_copy / "build/manifests/local"
    for p in out.iterdir():
        if p.name.startswith("."):
            p.unlink()
    _touch_server_lib(stack_copy)
    proc = run_doit(stack_copy, "render:local", check=True)
    assert "render:local" in executed(proc)


def test_build_being_a_file_is_one_clear_message(project, real_tools):
    install_charts(project)
    (project / "build").write_text("")
    proc = run_doit(project, "render:local")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in out and "NotADirectoryError" not in out, out
    assert "build" in out and "not a directory" in out


def test_an_os_error_in_a_task_is_one_line_naming_the_path(stack_copy):
    digest = stack_copy / "build/manifests/local.sha256"
    digest.unlink()
    digest.mkdir()
    _touch_server_lib(stack_copy)
    proc = run_doit(stack_copy, "render:local")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in out, out
    assert "render:local" in out and "build/manifests/local.sha256" in out and "Is a directory" in out


@pytest.mark.parametrize("version", ["1.40.0", "banana", "1.24.0"])
def test_an_unsupported_kubernetes_version_is_one_clear_message(stack_copy, version):
    from tasks import manifests

    with pytest.raises(manifests.UnsupportedVersion) as err:
        manifests.validate_objects([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}],
                                   "local", version)
    from kubernetes_validate import utils

    newest = utils.major_minor(utils.latest_version())
    assert version in str(err.value) and f"to {newest}" in str(err.value)
    settings = stack_copy / "deploy.json"
    settings.write_text(settings.read_text().replace('"kubernetes_version": "1.33.0"', f'"kubernetes_version": "{version}"'))
    proc = run_doit(stack_copy, "validate:local")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in out and "VersionNotSupportedError" not in out, out
    assert version in out


def test_info_and_the_run_name_the_input_that_makes_a_render_run_again(stack_copy):
    _touch_server_lib(stack_copy)
    info = run_doit(stack_copy, "info", "render:local").stdout
    assert "<function" not in info
    assert "tanka/lib/raibid/server.libsonnet changed" in info, info
    run = run_doit(stack_copy, "render:local", check=True).stdout
    assert "tanka/lib/raibid/server.libsonnet changed" in run, run
    # a chart file and the tool are inputs too
    chart = next((stack_copy / "tanka/charts/redis").rglob("*.yaml"))
    chart.write_text(chart.read_text() + "\n# x\n")
    info = run_doit(stack_copy, "info", "render:local").stdout
    assert f"{chart.relative_to(stack_copy)} changed" in info, info
    run_doit(stack_copy, "render:local", check=True)
    _tk_wrapper(stack_copy, ":")
    info = run_doit(stack_copy, "info", "render:local").stdout
    assert "tool tk changed" in info, info


def test_help_of_a_render_says_what_it_needs_reads_writes_and_when_it_runs(project):
    out = run_doit(project, "help", "render:local", check=True).stdout
    assert out.startswith("render:local  Render the local environment")
    assert "tk export" in out                      # the creator's description
    assert "tools: tk, helm, git" in out
    assert "after: vendor:charts, secrets:local" in out
    assert "build/manifests/local.deps.json" in out
    assert "runs again when" in out and "depfile" in out


def test_help_of_every_task_says_when_it_runs_again(project):
    """Derived from what doit decides it by (uptodate, file_dep, targets, task_dep): a task of
    each kind says its own rule, not only the ones whose check has a docstring."""
    want = {
        "docs:check": "files it reads changed",          # file_dep only
        "diff:local": "every run",                      # uptodate: False
        "ci": "runs nothing, only the tasks it groups",  # task_dep only
        "cluster": "the cluster runs and holds the namespace",  # a documented check function
        "validate:local": "kubernetes_version",          # config_changed: its keys
        "apply:local": "holds the digest of this render",
        "render:local": "depfile",
    }
    for name, rule in want.items():
        out = run_doit(project, "help", name, check=True).stdout
        after = out.split("runs again when:", 1)
        assert len(after) == 2 and rule in after[1], (name, out)
