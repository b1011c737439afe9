"""The environment every render gives raibid-ci's server and agent, against the contract read
from raibid-ci's source (tests/fixtures/contract, tests/contract.py): each variable's form,
not only its name. The real binaries run with the local render's environment in
bench/realci.py (opt in: test_realci.py)."""
from __future__ import annotations

import re

import pytest

import contract
from support import REPO

from tasks.settings import environments_on_disk

ENVS = tuple(environments_on_disk(REPO))


@pytest.mark.parametrize("form, good, bad", [
    ("host", ["redis-master.raibid-system.svc.cluster.local", "127.0.0.1", "gitea"],
     ["http://gitea", "gitea:3000", "gitea/x", "", "-a.b", "1.2.3.4:5"]),
    ("host:port", ["gitea-http.raibid-system.svc.cluster.local:3000", "127.0.0.1:1"],
     ["http://gitea-http.raibid-system.svc.cluster.local:3000", "gitea", "gitea:0", "gitea:65536",
      "gitea:3000/", "gitea:x"]),
    ("ip", ["0.0.0.0", "127.0.0.1", "[::]"], ["localhost", "::", "1.2.3", ""]),
    ("port", ["1", "8080", "65535"], ["0", "65536", "-1", "80a", "", "٣"]),
    ("positive-integer", ["1", "10485760"], ["0", "-1", "1.5", "", str(2**64)]),
    ("bool", ["true", "false"], ["True", "1", "yes", ""]),
    ("log-format", ["json", "text"], ["JSON", "pretty"]),
    ("env-filter", ["info", "raibid_agent=debug,tower_http=warn", "raibid_server"],
     ["info debug", "a=loud", "", "info,"]),
    ("redis-url", ["redis://r.ns.svc.cluster.local:6379", "redis://:a%2Fb@h:6379/0", "redis://h"],
     ["http://h:6379", "redis://:a/b@h:6379", "redis://h:x", "h:6379", "redis://h:6379/x"]),
    ("url-safe", ["Ab9-._~"], ["a/b", "a@b", "a:b", "a%b", ""]),
    ("absolute-path", ["/workspace"], ["workspace", ""]),
    ("string", ["x"], [""]),
])
def test_forms_accept_what_raibid_ci_uses_and_reject_the_rest(form, good, bad):
    ok = contract.FORMS[form][0]
    assert [v for v in good if not ok(v)] == []
    assert [v for v in bad if ok(v)] == []


def test_every_variable_of_the_contract_has_a_known_form_and_where_it_was_read():
    for binary in contract.WORKLOADS:
        env = contract.load(binary)["env"]
        assert env, binary
        for name, spec in env.items():
            assert spec["form"] in contract.FORMS, (binary, name)
            where = r"crates/[a-z]+/src/[a-z/_]+\.rs:\d+(-\d+)?"
            assert re.match(where, spec["read"]), (binary, name)


CM = {"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"HOST": "h:1", "PORT": "1"}}
SECRET = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": "cHc="},
          "stringData": {"u": "x"}}


def test_resolution_follows_references_as_kubernetes_does():
    env = [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "HOST"}}},
           {"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
           {"name": "U", "valueFrom": {"secretKeyRef": {"name": "s", "key": "u"}}},
           {"name": "C", "valueFrom": {"secretKeyRef": {"name": "in-cluster", "key": "k"}}},
           {"name": "ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "URL", "value": "redis://:$(P)@$(A)/$(NONE)"}]
    values, problems = contract.resolve([CM, SECRET], env, {"metadata.name": "pod-1"})
    assert problems == []
    assert {k: v for k, v in values.items() if k != "C"} == {
        "A": "h:1", "P": "pw", "U": "x", "ID": "pod-1", "URL": "redis://:pw@h:1/$(NONE)"}
    assert isinstance(values["C"], contract.Unresolved)
    # a ConfigMap key the render lacks is a broken reference, not a value to skip
    missing = {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NO"}}}
    _, problems = contract.resolve([CM], [missing])
    assert problems == ["X: ConfigMap cfg has no key NO in the render"]


def test_check_names_the_variable_its_form_and_where_raibid_ci_reads_it():
    agent = contract.load("agent")
    url = "http://gitea-http.raibid-system.svc.cluster.local:3000"
    (problem,) = contract.check(agent, {"GITEA_HOST": url})
    assert problem.startswith(f"GITEA_HOST='{url}' is not host:port")
    assert "crates/agent/src/executor.rs:85-86" in problem
    assert contract.check(agent, {"GITEA_HOST": url.removeprefix("http://")}) == []
    assert contract.check(agent, {"REDIS_PASWORD": "x"}) == [
        "REDIS_PASWORD: not read by raibid-ci (not in the contract)"]
    # a Secret made in the cluster cannot be checked here; a ConfigMap value must be there
    assert contract.check(agent, {"REDIS_PASSWORD": contract.Unresolved("Secret s")}) == []
    assert contract.check(agent, {"REDIS_PORT": contract.Unresolved("ConfigMap c")}) != []


def test_loopback_moves_every_in_cluster_address_and_keeps_the_forms():
    values = {"REDIS_HOST": "r.ns.svc", "REDIS_PORT": "6379", "GITEA_HOST": "g.ns.svc:3000",
              "RAIBID_REDIS_URL": "redis://:pw@r.ns.svc:6379", "QUEUE_STREAM": "raibid:jobs"}
    moved = contract.loopback(values, {"r.ns.svc:6379": "127.0.0.1:7001",
                                       "g.ns.svc:3000": "127.0.0.1:7002"})
    assert moved == {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "7001",
                     "GITEA_HOST": "127.0.0.1:7002",
                     "RAIBID_REDIS_URL": "redis://:pw@127.0.0.1:7001",
                     "QUEUE_STREAM": "raibid:jobs"}


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("binary", sorted(contract.WORKLOADS))
def test_each_environments_render_gives_raibid_ci_values_of_the_forms_it_reads(stack, env, binary):
    values, problems = contract.rendered_env(stack / "build" / "manifests" / env, binary)
    assert problems == []
    assert contract.check(contract.load(binary), values) == []
    # what the checks above stand on: the values the ConfigMap gives were all there
    resolved = [n for n, v in values.items() if not isinstance(v, contract.Unresolved)]
    assert len(resolved) >= 6, values
    if binary == "agent":
        assert "GITEA_HOST" in resolved


def test_the_compose_stack_gives_raibid_ci_values_of_the_forms_it_reads():
    """docker/compose.yaml, interpolated as Compose does with docker/.env.example only."""
    from tasks import compose

    doc = compose.validate(REPO / "docker/compose.yaml", REPO / "docker/.env.example", environ={})
    for binary in contract.WORKLOADS:
        env = {k: str(v) for k, v in doc["services"][binary]["environment"].items()}
        assert contract.check(contract.load(binary), env) == [], binary


def test_a_loopback_redis_without_a_password_as_the_local_render_has(tmp_path):
    """bench/realci.py runs the binaries with the local render's env, whose Redis has no
    password: start_redis(None) starts one that answers without AUTH."""
    from support import tool_or_fail

    from tasks import controlplane

    tool_or_fail("redis-server")
    cp = controlplane.ControlPlane(tmp_path / "procs")
    try:
        port = controlplane.start_redis(cp, None)
        assert controlplane.redis_cli(port, None, "SET", "k", "v").stdout.strip() == "OK"
        assert "requirepass" not in (cp.dir / "redis.conf").read_text()
    finally:
        assert cp.stop() == ["redis-server"]
