"""The policies issue 13 added to validate:* and the password rules, on real inputs.

tests/fixtures/old-render/ holds objects of the staging and prod renders from before
(this repository at 6704059, stand-in charts): each policy must report them. The
current renders passing every policy is test_tanka.py's validate run.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from support import FIXTURES, copy_project, env_for, run_doit, tool_or_fail

OLD = FIXTURES / "old-render"
REDIS_HOST = "redis-master.raibid-system.svc.cluster.local"


def _old(env: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((OLD / f"{env}.yaml").read_text()) if d]


def _rules(violations) -> set[tuple[str, str, str]]:
    return {(v.kind, v.name, v.rule) for v in violations}


def test_the_old_staging_render_breaks_every_new_policy():
    from tasks import manifests

    objs = _old("staging")
    assert _rules(manifests.url_secret_violations(objs)) == {("Deployment", "raibid-server", "url-secret")}
    assert _rules(manifests.pdb_violations(objs)) == {("Deployment", "raibid-server", "pdb")}
    assert _rules(manifests.service_violations(objs)) == {("Service", "gitea-ssh", "service")}
    assert _rules(manifests.gitops_violations(objs)) == {("Kustomization", "raibid-ci", "gitops")}
    text = "\n".join(str(v) for v in manifests.gitops_violations(objs))
    assert "'./deploy'" in text
    # its targetNamespace would move objects of other namespaces: not what apply applies
    assert "sets targetNamespace: Flux would apply the published render changed" in text


def test_the_old_prod_render_needs_a_pdb_for_its_autoscaled_server():
    from tasks import manifests

    objs = _old("prod")
    assert "replicas" not in next(o for o in objs if o["kind"] == "Deployment")["spec"]  # the HPA owns it
    (v,) = manifests.pdb_violations(objs)
    assert (v.kind, v.name, v.rule) == ("Deployment", "raibid-server", "pdb") and "3 replicas" in v.detail
    assert _rules(manifests.url_secret_violations(objs)) == {("Deployment", "raibid-server", "url-secret")}


def test_policies_accept_the_fixed_shapes():
    from tasks import manifests

    objs = _old("staging")
    server = next(o for o in objs if o["kind"] == "Deployment")
    labels = server["spec"]["template"]["metadata"]["labels"]
    env = server["spec"]["template"]["spec"]["containers"][0]["env"]
    url = next(e for e in env if e["name"] == "RAIBID_REDIS_URL")
    url.pop("value")
    url["valueFrom"] = {"secretKeyRef": {"name": "raibid-redis", "key": "redis-url"}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "raibid-server", "namespace": "raibid-system"},
           "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {
               k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}}}}
    ssh = next(o for o in objs if o["kind"] == "Service")
    ssh["spec"].pop("clusterIP")
    repo = next(o for o in objs if o["kind"] == "GitRepository")
    repo["metadata"].setdefault("annotations", {})["raibid.dev/publish-path"] = "environments/staging"
    ks = next(o for o in objs if o["kind"] == "Kustomization")
    ks["spec"]["path"] = "./environments/staging"
    ks["spec"].pop("targetNamespace")
    objs.append(pdb)
    assert manifests.url_secret_violations(objs) + manifests.pdb_violations(objs) \
        + manifests.service_violations(objs) + manifests.gitops_violations(objs) == []
    # a path beside the published one is still refused
    ks["spec"]["path"] = "./environments/prod"
    (v,) = manifests.gitops_violations(objs)
    assert "./environments/staging/" in v.detail


@pytest.mark.parametrize("value", ["postgres://app:s3cret@db:5432/x", "redis://:$(REDIS_PASSWORD)@r:6379",
                                   "https://user:a/b@host/"])
def test_url_secret_sees_credentials_in_urls(value):
    from tasks import manifests

    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"URL": value}}
    assert _rules(manifests.url_secret_violations([cm])) == {("ConfigMap", "c", "url-secret")}
    ok = dict(cm, data={"URL": "redis://redis-master:6379", "MAIL": "git@example.com"})
    assert manifests.url_secret_violations([ok]) == []


def _probe(tmp_path: Path) -> Path:
    project = copy_project(tmp_path / "project")
    (project / "tanka/tests/url_probe.jsonnet").write_text(
        "local config = import 'raibid/config.libsonnet';\n"
        "local secrets = import 'raibid/secrets.libsonnet';\n"
        "function(password) secrets.redisUrl(config.new('staging', { redis: { auth: true } }), password)\n")
    return project


def test_the_server_parses_its_redis_url_whatever_the_password(tmp_path):
    """RAIBID_REDIS_URL comes from the Redis Secret, built by secrets.redisUrl with the
    password percent-encoded: a URL parser (the server's `url` crate decodes userinfo
    the same way) gets the host, the port and the exact password back."""
    tool_or_fail("tk")
    project = _probe(tmp_path)
    password = "a/b@c:d%e+f é"
    proc = subprocess.run(["tk", "eval", "tests/url_probe.jsonnet", "--tla-str", f"password={password}"],
                          cwd=project / "tanka", capture_output=True, text=True,
                          env=env_for(project, path_first=[project / ".tools" / "bin"]))
    assert proc.returncode == 0, proc.stderr
    url = json.loads(proc.stdout)
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port) == ("redis", REDIS_HOST, 6379)
    assert unquote(parts.password) == password and parts.username == ""
    # the same password pasted in unencoded (what `$(REDIS_PASSWORD)` expansion did) loses the host
    broken = urlsplit(f"redis://:{password}@{REDIS_HOST}:6379")
    assert broken.hostname != REDIS_HOST


def test_an_unsafe_local_password_is_refused_with_the_fix(tmp_path):
    tool_or_fail("tk")
    from tanka_fixtures import install_charts

    project = copy_project(tmp_path / "project")
    install_charts(project)
    keys = json.loads((project / "tanka/lib/raibid/secret-keys.json").read_text())
    values = {k: "Safe-Value_123" for k in keys}
    values["redisPassword"] = "abc/def@ghi"
    f = project / "tanka/environments/local/secrets.local.json"
    f.write_text(json.dumps(values))
    f.chmod(0o600)
    proc = run_doit(project, "render:local")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "redisPassword must use only A-Z a-z 0-9 - . _ ~" in out and "doit secrets:local" in out
    assert "Traceback" not in out


def test_generated_local_secrets_are_url_safe(tmp_path):
    tool_or_fail("tk")
    project = copy_project(tmp_path / "project")
    run_doit(project, "secrets:local", check=True)
    values = json.loads((project / "tanka/environments/local/secrets.local.json").read_text())
    safe = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    assert values and all(v and set(v) <= safe for v in values.values())


def test_the_documented_secret_workflow_makes_url_safe_passwords():
    """tanka/README.md's commands: no base64 (its `/` and `+` break the agent's URL)."""
    readme = (Path(__file__).resolve().parent.parent / "tanka" / "README.md").read_text()
    section = readme.split("## Secrets", 1)[1].split("\n## ", 1)[0]
    commands = "".join(section.split("```")[1::2])
    assert "openssl rand -hex" in commands and "redis-url" in commands
    assert "base64" not in commands
    assert "URL-safe" in section


# --------------------------------------------------------------------------- schemas


def _service(**spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"},
            "spec": {"ports": [{"port": 80}], **spec}}


@pytest.mark.parametrize("obj", [
    _service(portz=[]),                                                   # unknown field (strict)
    _service(ports=[{"port": "eighty"}]),                                 # wrong type
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
     "spec": {"replicas": "two", "selector": {}, "template": {}}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"},
     "rules": [{"verbs": "get"}]},                                        # a grouped apiVersion
    _service(),                                                           # valid
    # deep in shared definitions: a container's resources, a probe, labels, a CRD's schema
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": 1}},
     "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c"}]}}}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
     "spec": {"selector": {}, "template": {"spec": {"containers": [
         {"name": "c", "resources": {"limits": {"cpu": []}}, "readinessProbe": {"httpGet": {"port": 80, "pth": "/"}}}]}}}},
    {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "as.x.dev"},
     "spec": {"group": "x.dev", "scope": "Namespaced", "names": {"kind": "A", "plural": "as"},
              "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                  "type": "object", "properties": {"spec": {"type": "object", "properties": {
                      "a": {"type": "object", "properties": {"b": {"type": "string", "maxLength": "x"}}}}}}}}}]}},
])
def test_schema_check_reports_what_kubernetes_validate_reports(obj):
    """The schemas are read once per process, yet each object gets the error
    kubernetes-validate's own validate() gives it (its first one), or none."""
    import kubernetes_validate

    from tasks import manifests

    try:
        kubernetes_validate.validate(obj, "1.33", strict=True)
        expected = []
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.absolute_path) or "(root)"
        expected = [f"{path}: {err.message} (Kubernetes 1.33)"]
    got = manifests.schema_violations([obj], "1.33", {})
    assert [v.detail for v in got] == expected
    assert all(v.rule == "schema" for v in got)
    assert manifests.schema_violations([obj], "1.33", {}) == got   # the cached validator, again


def test_a_kind_without_a_schema_is_named_not_a_crash():
    from tasks import manifests

    objs = [{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
            {"kind": "ConfigMap", "metadata": {"name": "no-api-version"}}]
    got = manifests.schema_violations(objs, "1.33", {})
    assert [(v.kind, v.rule) for v in got] == [("Widget", "crd"), ("ConfigMap", "crd")]
    assert "no schema for example.com/v1 Widget" in got[0].detail


def test_the_validity_memo_never_hides_a_new_violation():
    """A (schema, object) pair found valid is remembered; a changed object is checked again,
    and the same object in another environment (only Tanka's environment label differs)
    shares the entry."""
    from tasks import manifests

    obj = _service()
    obj["metadata"]["labels"] = {"tanka.dev/environment": "aaa"}
    valid: set[str] = set()
    assert manifests.schema_violations([obj], "1.33", {}, valid) == []
    assert len(valid) == 1
    other_env = json.loads(json.dumps(obj))
    other_env["metadata"]["labels"]["tanka.dev/environment"] = "bbb"
    assert manifests.schema_violations([other_env], "1.33", {}, valid) == []
    assert len(valid) == 1
    broken = json.loads(json.dumps(obj))
    broken["spec"]["portz"] = []
    got = manifests.schema_violations([broken], "1.33", {}, valid)
    assert [v.rule for v in got] == ["schema"] and "portz" in got[0].detail
    assert len(valid) == 1                      # an invalid object is never remembered


def test_parsed_yaml_under_build_is_kept_and_a_damaged_entry_is_ignored(tmp_path, monkeypatch):
    from tasks import manifests

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(tmp_path))
    f = tmp_path / "build" / "manifests" / "x" / "a.yaml"
    f.parent.mkdir(parents=True)
    f.write_text("kind: A\nmetadata: {name: a}\n---\nkind: B\n")
    assert manifests.file_docs(f) == [{"kind": "A", "metadata": {"name": "a"}}, {"kind": "B"}]
    kept = list((tmp_path / "build" / ".cache" / "yaml").iterdir())
    assert len(kept) == 1
    kept[0].write_text(kept[0].read_text()[:-9])   # truncated: parsed again, and kept again
    assert manifests.file_docs(f)[1] == {"kind": "B"}
    assert manifests._read_entry(kept[0])[1] == {"kind": "B"}
    f.write_text("kind: C\n")                     # new text, new entry: never the old documents
    assert manifests.file_docs(f) == [{"kind": "C"}]
    f.write_text("when: 2024-01-02T03:04:05Z\n1: one\n")   # not JSON-exact: parsed each time
    docs = manifests.file_docs(f)
    assert docs[0][1] == "one" and not isinstance(docs[0]["when"], str)
    assert len(list((tmp_path / "build" / ".cache" / "yaml").iterdir())) == 2


def test_a_cache_entry_of_another_shape_is_a_miss_and_is_rewritten(tmp_path, monkeypatch):
    """issue 25, C.12: a `null` entry made every run fail with a TypeError."""
    from tasks import manifests

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(tmp_path))
    d = tmp_path / "build" / "manifests" / "x"
    d.mkdir(parents=True)
    plain, labelled = d / "a.yaml", d / "b.yaml"
    plain.write_text("kind: A\n")
    labelled.write_text("kind: B\nmetadata:\n  labels:\n    tanka.dev/environment: 0123456789abcdef0\n")
    want = {f: manifests.file_docs(f) for f in (plain, labelled)}
    kept = sorted((tmp_path / "build" / ".cache" / "yaml").iterdir())
    assert len(kept) == 2
    for damage in ("null", "{}", '{"kind": "A"}', "3", '"text"'):
        for k in kept:
            k.write_text(damage)
        for f in (plain, labelled):
            assert manifests.file_docs(f) == want[f], damage
        for k in kept:
            assert isinstance(manifests._read_entry(k), list)    # rewritten


def test_the_parsed_yaml_kept_in_build_is_bounded(tmp_path, monkeypatch):
    from tasks import manifests

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(tmp_path))
    monkeypatch.setattr(manifests, "DOCS_CACHE_FILES", 8)
    d = tmp_path / "build" / "manifests" / "x"
    d.mkdir(parents=True)
    first = d / "first.yaml"
    first.write_text("kind: First\n")
    manifests.file_docs(first)
    for i in range(12):
        f = d / f"{i}.yaml"
        f.write_text(f"kind: K{i}\n")
        manifests.file_docs(f)
        manifests.file_docs(first)   # used again and again: never the one removed
    kept = list((tmp_path / "build" / ".cache" / "yaml").iterdir())
    assert len(kept) <= 8
    assert any(manifests._read_entry(k) == [{"kind": "First"}] for k in kept)


def _crd_text(kind: str, field: str) -> str:
    return yaml.safe_dump({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                           "spec": {"group": "example.dev", "names": {"kind": kind}, "versions": [
                               {"name": "v1", "served": True, "schema": {"openAPIV3Schema": {
                                   "type": "object", "properties": {
                                       "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "spec": {
                                       "type": "object", "properties": {field: {"type": "string"}}}}}}}]}})


def test_the_compiled_crd_index_notices_every_change_to_the_crd_files(tmp_path):
    """build/crds/schemas.json is used only for exactly the files it was compiled from."""
    from tasks import manifests

    d = tmp_path / "crds"
    (d / "m").mkdir(parents=True)
    (d / "m" / "a.yaml").write_text(_crd_text("A", "size"))
    key = ("example.dev/v1", "A")

    def check(obj_field: str) -> list:
        obj = {"apiVersion": "example.dev/v1", "kind": "A", "metadata": {"name": "a"}, "spec": {obj_field: "x"}}
        return [v.rule for v in manifests.validate_objects([obj], "local", "1.33.0",
                                                           extra_index=manifests.crd_dir_index(d))]

    assert check("size") == [] and check("colour") == ["crd"]
    kept = d / manifests.CRD_INDEX_FILE
    assert [s[:2] for s in json.loads(kept.read_text())["schemas"]] == [list(key)]
    (d / "m" / "a.yaml").write_text(_crd_text("A", "colour"))      # changed text: compiled again
    assert check("colour") == [] and check("size") == ["crd"]
    (d / "m" / "b.yaml").write_text(_crd_text("B", "x"))           # an added file
    assert ("example.dev/v1", "B") in manifests.crd_dir_index(d)
    (d / "m" / "b.yaml").unlink()                                   # and removed again
    assert ("example.dev/v1", "B") not in manifests.crd_dir_index(d)
    kept.write_text(kept.read_text()[:40])                          # half-written: ignored, rewritten
    assert check("colour") == [] and check("size") == ["crd"]
    assert json.loads(kept.read_text())["schemas"]
    before = json.loads(kept.read_text())["digest"]
    (d / "m" / "a.yaml").rename(d / "m" / "c.yaml")                 # same text, another file: noticed
    assert key in manifests.crd_dir_index(d) and json.loads(kept.read_text())["digest"] != before
    assert manifests.crd_dir_index(tmp_path / "none") == {} and not (tmp_path / "none").exists()


def test_an_object_kept_once_for_every_environment_gets_its_own_label_and_text_back(tmp_path, monkeypatch):
    """The parsed-YAML cache keys a render's file without Tanka's environment label: each
    environment's file still reads as its own text, a change elsewhere is a new entry."""
    from tasks import manifests

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(tmp_path))
    d = tmp_path / "build" / "manifests"
    text = "kind: Deployment\nmetadata:\n  labels:\n    tanka.dev/environment: {env}\n  name: {name}\n"
    files = {}
    for env, name in (("a1" * 24, "x"), ("b2" * 24, "x"), ("c3" * 24, "y")):
        f = d / env[:2] / "obj.yaml"
        f.parent.mkdir(parents=True)
        f.write_text(text.format(env=env, name=name))
        files[f] = env
    for f, env in files.items():
        docs = manifests.file_docs(f)
        assert docs == list(yaml.safe_load_all(f.read_text()))
        assert docs[0]["metadata"]["labels"]["tanka.dev/environment"] == env
    assert len(list((tmp_path / "build" / ".cache" / "yaml").iterdir())) == 2   # x once, y once
    # the placeholder standing elsewhere too: never taken for the label
    odd = d / "odd.yaml"
    odd.write_text(text.format(env="d4" * 24, name="z") + "data: {k: raibid-env-label-placeholder}\n")
    assert manifests.file_docs(odd) == list(yaml.safe_load_all(odd.read_text()))
    for label in ("12" * 24, "e5" * 24 + "\n    other: '" + "f6" * 24 + "'"):  # all digits (an int); two values
        odd.write_text(text.format(env=label, name="z"))
        assert manifests.file_docs(odd) == list(yaml.safe_load_all(odd.read_text()))
    odd.write_text('kind: A\nmetadata:\n  labels:\n    tanka.dev/environment: ' + "a1" * 24 + '\n'
                   'note: "raibid-env-label-\\x70laceholder"\n')        # made by an escape: parsed as it is
    assert manifests.file_docs(odd) == list(yaml.safe_load_all(odd.read_text()))
    for elsewhere in ("script: |\n  tanka.dev/environment: " + "a1" * 24,       # inside a block scalar
                      "items:\n- tanka.dev/environment: " + "a1" * 24):         # a list item's key
        odd.write_text(text.format(env="a1" * 24, name="w") + elsewhere + "\n")
        assert manifests.file_docs(odd) == list(yaml.safe_load_all(odd.read_text()))
