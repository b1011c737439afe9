"""deploy.json: the one home of the deploy settings, read by doit, jsonnet, the Tiltfile and
the k3d config, and checked with a line and a fix for every problem."""
from __future__ import annotations

import json
import subprocess

import pytest

from support import REPO, tool_or_fail
from tasks import settings
from tasks.settings import SettingsError, loads

GOOD = {
    "project": "raibid-ci",
    "namespace": "raibid-system",
    "cluster": "raibid-ci",
    "registry": "raibid-registry.localhost",
    "registry_port": 5111,
    "kubernetes_version": "1.33.0",
    "environments": {
        "local": {"kind": "local"},
        "qa": {"kind": "remote", "context": "qa-ctx", "namespace": "qa-ns"},
        "prod": {"kind": "remote", "context": "prod-ctx", "confirm_apply": True},
    },
}
ON_DISK = ["local", "prod", "qa"]


def text(doc: dict) -> str:
    return json.dumps(doc, indent=2)


def error(doc: dict | str, on_disk=ON_DISK) -> SettingsError:
    with pytest.raises(SettingsError) as e:
        loads(doc if isinstance(doc, str) else text(doc), on_disk=on_disk)
    return e.value


def with_env(name: str, value) -> dict:
    doc = json.loads(json.dumps(GOOD))
    doc["environments"][name] = value
    return doc


def line_of(doc_text: str, needle: str) -> int:
    return next(i for i, line in enumerate(doc_text.splitlines(), 1) if needle in line)


def test_the_projects_settings_load_and_name_exactly_the_environments_on_disk():
    s = settings.load(REPO / "deploy.json")
    assert sorted(s.environments) == settings.environments_on_disk(REPO)
    local = [e for e in s.envs.values() if e.local]
    assert len(local) == 1 and local[0].context == s.kube_context == f"k3d-{s.cluster}"
    assert all(e.context and e.context != s.kube_context for e in s.envs.values() if not e.local)


def test_environment_properties_and_their_defaults():
    s = loads(text(GOOD), on_disk=ON_DISK)
    assert s.environments == ("local", "qa", "prod")  # deploy.json's order
    assert s.env("local").context == "k3d-raibid-ci" and s.env("local").image_policy == "any"
    assert s.env("qa").namespace == "qa-ns" and s.env("qa").image_policy == "pinned"
    assert not s.env("qa").confirm_apply and s.env("prod").confirm_apply
    assert s.local_env().name == "local"
    assert s.registry_push == "localhost:5111" and s.registry_pull == "k3d-raibid-registry.localhost:5111"


@pytest.mark.parametrize("env, value, needle, message", [
    ("qa", {"kind": "remote"}, '"qa"', "is remote: it needs the kube context"),
    ("local", {"kind": "local", "context": "x"}, '"context": "x"', "is local: its context is the project's k3d cluster"),
    ("qa", {"kind": "cloud", "context": "x"}, '"kind": "cloud"', "'kind' must be one of local, remote"),
    ("qa", {"kind": "remote", "context": "c", "confirm": True}, '"confirm"', "unknown key 'confirm'"),
    ("qa", {"kind": "remote", "context": "c", "image_policy": "latest"}, '"image_policy"', "'image_policy' must be one of"),
    ("qa", {"kind": "remote", "context": "c", "confirm_apply": "yes"}, '"confirm_apply"', "must be true or false"),
    ("qa", {"kind": "remote", "context": "c", "namespace": "Q_A"}, '"Q_A"', "'namespace' must be a Kubernetes name"),
])
def test_a_bad_environment_is_named_at_its_line_with_the_fix(env, value, needle, message):
    doc = with_env(env, value)
    e = error(doc)
    [p] = e.problems
    assert message in p.message and p.fix
    assert p.line == line_of(text(doc), needle)
    assert str(e).startswith("deploy.json: 1 problem found\ndeploy.json:")


def test_an_unknown_key_suggests_the_known_one():
    doc = dict(GOOD, namespase="x")
    [p] = error(doc).problems
    assert "unknown key 'namespase'" in p.message and "did you mean 'namespace'" in p.fix
    assert p.line == line_of(text(doc), '"namespase"')


@pytest.mark.parametrize("key, bad", [("registry", "http://reg:5000"), ("registry", "Registry"),
                                      ("registry", "reg istry"), ("registry", "a/b"), ("registry_port", 70000),
                                      ("registry_port", True), ("namespace", "Raibid_System"),
                                      ("cluster", ""), ("kubernetes_version", "banana"),
                                      ("kubernetes_version", 1.33)])
def test_bad_top_level_values_are_named(key, bad):
    doc = dict(GOOD, **{key: bad})
    [p] = error(doc).problems
    assert repr(key) in p.message and p.fix and p.line == line_of(text(doc), f'"{key}"')


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _outside_the_validator() -> list[str]:
    """A version just below and just above what the installed kubernetes-validate knows."""
    known = settings.supported_kubernetes_versions()
    (lo_major, lo), (hi_major, hi) = _minor(known[0]), _minor(known[-1])
    return [f"{lo_major}.{lo - 1}.0", f"{hi_major}.{hi + 1}.0"]


@pytest.mark.parametrize("version", [*_outside_the_validator(), "v1.33", "2.0.0", "1.33.0.1", ""])
def test_kubernetes_version_must_be_one_the_validator_knows(version):
    known = settings.supported_kubernetes_versions()
    [p] = error(dict(GOOD, kubernetes_version=version)).problems
    assert "kubernetes_version" in p.message
    if version:
        assert f"knows {known[0]} to {known[-1]}" in p.message   # the supported range, from kubernetes-validate


def test_supported_kubernetes_versions_load():
    known = settings.supported_kubernetes_versions()
    assert known and known == tuple(sorted(known, key=_minor))
    for version in (f"{known[0]}.0", f"{known[len(known) // 2]}.0", f"{known[-1]}.2", known[-1]):
        assert loads(text(dict(GOOD, kubernetes_version=version)), on_disk=ON_DISK).kubernetes_version == version


def test_invalid_json_names_line_and_column():
    broken = text(GOOD).replace('"cluster": "raibid-ci",', '"cluster": "raibid-ci"')
    [p] = error(broken).problems
    assert "not valid JSON" in p.message and p.line == line_of(broken, '"registry"') and p.column


def test_environments_must_match_the_folders_on_disk():
    e = error(GOOD, on_disk=["local", "prod", "staging"])
    messages = [p.message for p in e.problems]
    assert any("'qa' has no Tanka environment" in m for m in messages)
    assert any("tanka/environments/staging/ has no entry" in m for m in messages)


def test_only_one_environment_may_be_local():
    doc = with_env("qa", {"kind": "local"})
    [p] = error(doc).problems
    assert "are all local" in p.message


def test_a_missing_file_is_one_message(tmp_path):
    with pytest.raises(SettingsError, match="file not found"):
        settings.load(tmp_path / "deploy.json", on_disk=[])


def test_current_rereads_when_a_new_environment_appears(project, monkeypatch):
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    assert "qa" not in settings.current().environments
    (project / "tanka" / "environments" / "qa").mkdir()
    (project / "tanka" / "environments" / "qa" / "main.jsonnet").write_text("{}\n")
    with pytest.raises(SettingsError, match="tanka/environments/qa/ has no entry"):
        settings.current()


def tk_eval(project, expr: str):
    tk = tool_or_fail("tk")
    probe = project / "tanka" / "settings_probe.jsonnet"
    probe.write_text(expr)
    proc = subprocess.run([tk, "eval", probe.name], cwd=project / "tanka", capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_jsonnet_reads_the_settings_file_itself(project):
    """config.libsonnet imports deploy.json: a namespace, project or version changed there is
    what jsonnet sees, with no copy to update."""
    doc = json.loads((project / "deploy.json").read_text())
    doc.update(namespace="other-ns", project="other", kubernetes_version="1.32.0")
    doc["environments"]["prod"]["namespace"] = "prod-ns"
    (project / "deploy.json").write_text(json.dumps(doc))
    got = tk_eval(project, "local c = import 'raibid/config.libsonnet';\n"
                  "{ l: c.new('local'), p: c.new('prod') }\n")
    assert (got["l"]["namespace"], got["l"]["project"], got["l"]["kubeVersion"]) == ("other-ns", "other", "1.32.0")
    assert got["p"]["namespace"] == "prod-ns"


def test_an_environment_without_settings_fails_loudly_in_jsonnet(project):
    tk = tool_or_fail("tk")
    probe = project / "tanka" / "probe.jsonnet"
    probe.write_text("(import 'raibid/environment.libsonnet').new('qa').metadata\n")
    proc = subprocess.run([tk, "eval", probe.name], cwd=project / "tanka", capture_output=True, text=True)
    assert proc.returncode != 0 and 'environment qa has no entry in deploy.json "environments"' in proc.stderr


def test_a_broken_tracker_never_blocks_a_deploy_task(project):
    """plan.yaml is the tracker only: a typo in a milestone fails plan:check (and `doit plan`),
    while the deploy tasks load and run, and `doit list` still lists them."""
    from support import run_doit

    plan = project / "plan.yaml"
    plan.write_text(plan.read_text().replace("target_day:", "target_dya:", 1))
    r = run_doit(project, "cluster:check")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_doit(project, "list")
    assert r.returncode == 0 and "apply" in r.stdout and "tasks are listed by name" in r.stderr
    r = run_doit(project, "plan:check")
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "plan.yaml:" in out and "target_dya" in out and "Traceback" not in out
    r = run_doit(project, "plan")
    assert r.returncode == 2 and "plan.yaml:" in r.stderr


def test_the_image_tag_policy_follows_image_policy_not_the_name(project, monkeypatch):
    from tasks import manifests

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    pod = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "reg/x:latest"}]}}}}

    def tag_rules(env):
        return [v for v in manifests.policy_violations([pod], env) if v.rule == "image-tag"]

    assert tag_rules("staging") and not tag_rules("local")
    doc = json.loads((project / "deploy.json").read_text())
    doc["environments"]["staging"]["image_policy"] = "any"
    doc["environments"]["local"]["image_policy"] = "pinned"
    (project / "deploy.json").write_text(json.dumps(doc))
    assert not tag_rules("staging") and tag_rules("local")


# --------------------------------------------------------------------------- hostile input


def _bounded(e: SettingsError, limit: int = 4000) -> str:
    """Every problem is reported at a line, in a message of bounded length."""
    msg = str(e)
    assert len(msg) < limit and all(p.line >= 1 for p in e.problems), msg[:limit]
    for p in e.problems:
        assert f"deploy.json:{p.line}" in msg
    return msg


@pytest.mark.parametrize("number", ["9" * 5000, "-" + "9" * 5000, "1" + "0" * 40],
                         ids=["5000-digits", "negative", "41-digits"])
def test_a_huge_number_is_named_at_its_line(number):
    doc = text(GOOD).replace('"registry_port": 5111', f'"registry_port": {number}')
    [p] = error(doc).problems
    assert p.line == line_of(doc, '"registry_port"')
    assert "'registry_port' must be a port" in p.message
    _bounded(error(doc))


@pytest.mark.parametrize("opener, closer", [("[", "]"), ('{"a": ', "}")])
def test_deep_nesting_is_named_at_its_line(opener, closer):
    deep = opener * 20_000 + "1" + closer * 20_000
    doc = text(GOOD).replace('"kind": "local"', '"kind": ' + deep)
    [p] = error(doc).problems
    assert p.line == line_of(doc, '"kind": ' + opener[0]) and p.column
    assert "nested more than" in p.message
    _bounded(error(doc))


@pytest.mark.parametrize("size", [200_000, 20_000_000])
def test_a_huge_key_or_value_is_rejected_fast_with_a_short_message(size):
    import time

    for doc in (dict(GOOD, **{"x" * size: 1}), dict(GOOD, project="x" * size),
                with_env("e" * size, {"kind": "remote"})):
        start = time.monotonic()
        e = error(doc)
        assert time.monotonic() - start < 2, "slow"
        _bounded(e)


@pytest.mark.parametrize("key, value", [
    ("project", "raibid-ci\n"), ("namespace", "raibid-system\n"), ("cluster", "raibid-ci\n"),
    ("registry", "raibid-registry.localhost\n"), ("kubernetes_version", "1.33.0\n")])
def test_a_trailing_newline_is_not_part_of_a_name(key, value):
    doc = dict(GOOD, **{key: value})
    [p] = error(doc).problems
    assert repr(key) in p.message and p.line == line_of(text(doc), f'"{key}"')


def test_a_trailing_newline_is_not_part_of_an_environment_or_its_namespace():
    doc = with_env("qa", {"kind": "remote", "context": "qa-ctx", "namespace": "qa-ns\n"})
    [p] = error(doc).problems
    assert "'namespace' must be a Kubernetes name" in p.message
    doc = json.loads(json.dumps(GOOD))
    doc["environments"]["qa\n"] = doc["environments"].pop("qa")
    assert any("environment name 'qa\\n'" in p.message for p in error(doc).problems)
    doc = with_env("qa", {"kind": "remote", "context": "qa-ctx\n"})
    [p] = error(doc).problems
    assert "context" in p.message and p.line == line_of(text(doc), '"context": "qa-ctx\\n"')


def test_a_duplicate_key_is_named_at_its_second_line():
    doc = text(GOOD).replace('"registry_port": 5111,',
                             '"registry_port": 5111,\n  "registry_port": 5112,')
    [p] = error(doc).problems
    assert "duplicate key 'registry_port'" in p.message and "first at line" in p.message
    assert p.line == line_of(doc, '"registry_port": 5112')
    doc = text(GOOD).replace('"kind": "local"', '"kind": "local",\n      "kind": "remote"')
    assert any("duplicate key 'kind'" in p.message and p.line == line_of(doc, '"kind": "remote"')
               for p in error(doc).problems)


def test_a_file_that_is_not_utf8_or_too_large_is_named_at_its_line(tmp_path):
    f = tmp_path / "deploy.json"
    f.write_bytes(text(GOOD).encode().replace(b"raibid-system", b"raibid-\xffsystem"))
    with pytest.raises(SettingsError) as e:
        settings.load(f, on_disk=ON_DISK)
    [p] = e.value.problems
    assert (p.line, p.column) == (line_of(text(GOOD), '"namespace"'), 24), str(e.value)
    f.write_text(text(GOOD).replace('"project"', '"x": "' + "x" * 20_000_000 + '",\n  "project"'))
    with pytest.raises(SettingsError) as e:
        settings.load(f, on_disk=ON_DISK)
    [p] = e.value.problems
    assert p.line == 2 and "larger than" in p.message
    _bounded(e.value)
