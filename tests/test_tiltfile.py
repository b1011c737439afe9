"""The Tiltfile, evaluated by a real Starlark interpreter (starlark-pyo3) with recording
Tilt builtins (tasks/tiltcheck.py): what it declares, and that the checker catches what
Tilt would reject."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from support import FIXTURES
from tasks import tiltcheck

MANIFESTS = FIXTURES / "tilt" / "manifests"


def stage(project: Path, manifests: Path = MANIFESTS) -> Path:
    """The rendered manifests where `doit render:local` puts them."""
    dst = project / "build" / "manifests" / "local"
    shutil.copytree(manifests, dst, ignore=shutil.ignore_patterns("*.md"))
    for name in ("server", "agent"):  # the Docker workstream's files, when not merged yet
        df = project / "docker" / f"{name}.Dockerfile"
        if not df.exists():
            df.parent.mkdir(exist_ok=True)
            df.write_text("FROM scratch\n")
    (project / "tanka").mkdir(exist_ok=True)
    return project


@pytest.fixture
def staged(project):
    return stage(project)


@pytest.fixture
def rec(staged):
    return tiltcheck.check(staged / "Tiltfile", env={})


def test_context_registry_and_doit_bootstrap(rec):
    assert rec.one("allow_k8s_contexts")["contexts"] == ["k3d-raibid-ci"]
    reg = rec.one("default_registry")
    assert reg["host"] == "localhost:5111"
    assert reg["host_from_cluster"] == "k3d-raibid-registry.localhost:5111"
    assert rec.one("local")["command"] == "doit cluster render:local validate:local tilt:takeover"
    assert {c["path"] for c in rec.of("watch_file")} >= {"tanka/"}
    assert rec.one("config.define_string")["name"] == "env"
    # the bootstrap comes before anything reads the manifests
    order = [c.name for c in rec.calls]
    assert order.index("local") < order.index("listdir") < order.index("k8s_yaml")


def test_env_selects_the_rendered_environment(staged):
    shutil.copytree(staged / "build" / "manifests" / "local", staged / "build" / "manifests" / "staging")
    rec = tiltcheck.check(staged / "Tiltfile", args={"env": "staging"}, env={})
    assert rec.one("local")["command"] == "doit cluster render:staging validate:staging tilt:takeover"
    assert all("/build/manifests/staging/" in f for f in rec.one("k8s_yaml")["files"])


def test_scaledjob_kind_injects_the_agent_image(rec):
    k = rec.one("k8s_kind")
    assert k.args == {"kind": "ScaledJob", "api_version": "keda.sh/v1alpha1",
                      "image_json_path": "{.spec.jobTargetRef.template.spec.containers[*].image}",
                      "pod_readiness": "ignore"}
    scaledjob = rec.workloads()["raibid-agent"]
    assert rec.images_of(scaledjob) == ["raibid-agent:latest"]


def test_labels_and_dependencies(rec):
    res = rec.resources()
    for w in ("redis-master", "gitea", "keda-operator", "source-controller", "kustomize-controller"):
        assert res[w]["labels"] == ["infrastructure"], w
    for w in ("raibid-server", "raibid-agent"):
        assert res[w]["labels"] == ["applications"], w
    assert "redis-master" in res["raibid-server"]["resource_deps"]
    assert {"raibid-server", "keda-operator"} <= set(res["raibid-agent"]["resource_deps"])
    for flux in ("source-controller", "kustomize-controller", "helm-controller", "notification-controller"):
        assert res[flux]["resource_deps"] == ["gitea"]
    assert res["redis-master"]["resource_deps"] == [] and res["gitea"]["resource_deps"] == []
    # every workload of the manifests got a label (nothing lands unlabelled)
    assert set(res) == set(rec.workloads())


def test_crds_and_custom_resources_travel_with_their_operator(rec):
    res = rec.resources()
    assert set(res["keda-operator"]["objects"]) == {
        "scaledjobs.keda.sh:customresourcedefinition", "scaledobjects.keda.sh:customresourcedefinition",
        "triggerauthentications.keda.sh:customresourcedefinition"}
    assert "raibid-agent-redis:triggerauthentication:raibid-system" in res["raibid-agent"]["objects"]
    flux = set(res["source-controller"]["objects"])
    assert "gitrepositories.source.toolkit.fluxcd.io:customresourcedefinition" in flux
    assert "raibid-ci:gitrepository:raibid-system" in flux


def test_port_forwards_and_links(rec):
    res = rec.resources()
    fwd = {pf["local_port"]: (w, pf) for w, c in res.items() for pf in c["port_forwards"]}
    assert set(fwd) == {8080, 8081, 3000, 6379}
    assert fwd[8080][0] == fwd[8081][0] == "raibid-server"
    assert fwd[8080][1]["link_path"] == "/health" and fwd[8081][1]["link_path"] == "/metrics"
    assert fwd[3000][0] == "gitea" and fwd[6379][0] == "redis-master"
    assert all(pf["name"] for _, pf in fwd.values())


def test_image_builds_server_live_reload_agent_full(rec):
    builds = {c["ref"]: c for c in rec.of("docker_build")}
    server = builds["raibid-server"]
    base = builds["raibid-server-base"]
    assert base["target"] == "dev" and base["dockerfile"] == "docker/server.Dockerfile"
    assert base["context"] == server["context"] == "build/tilt/server"
    steps = server["live_update"]
    assert [s["_step"] for s in steps] == ["fall_back_on", "sync", "run"]
    assert steps[0]["files"] == ["build/tilt/server/cargo-manifests.sha256"]
    assert steps[1] == {"_step": "sync", "local": "build/tilt/server/raibid-server",
                        "remote": "/usr/local/bin/raibid-server"}
    assert rec.restart_wrapped == {"raibid-server": "/tmp/.restart-proc"}
    assert server["entrypoint"][-1] == "/usr/local/bin/raibid-server"
    # the host build: incremental cargo through doit, Cargo manifests watched, target/ ignored
    lr = rec.one("local_resource", name="server-binary")
    assert lr["cmd"] == "doit --db-file .doit.db.server-binary tilt:server-binary"
    assert {"../raibid-ci/Cargo.toml", "../raibid-ci/Cargo.lock", "../raibid-ci/crates"} <= set(lr["deps"])
    assert "../raibid-ci/target" in lr["ignore"]
    assert "server-binary" in rec.resources()["raibid-server"]["resource_deps"]
    # the agent: a full image build from the workspace, no live update (CRD-managed pods)
    agent = builds["raibid-agent"]
    assert agent["context"] == "../raibid-ci" and agent["dockerfile"] == "docker/agent.Dockerfile"
    assert agent["live_update"] == [] and "target" in agent["ignore"]


def test_raibid_src_from_the_environment(staged):
    rec = tiltcheck.check(staged / "Tiltfile", env={"RAIBID_SRC": "/src/raibid-ci"})
    assert rec.one("docker_build", ref="raibid-agent")["context"] == "/src/raibid-ci"
    assert "/src/raibid-ci/Cargo.lock" in rec.one("local_resource")["deps"]


def test_without_live_reload_the_server_is_built_from_source(staged):
    rec = tiltcheck.check(staged / "Tiltfile", args={"no-live-reload": True}, env={})
    builds = {c["ref"]: c for c in rec.of("docker_build")}
    assert set(builds) == {"raibid-server", "raibid-agent"}
    assert builds["raibid-server"]["context"] == "../raibid-ci" and builds["raibid-server"]["live_update"] == []
    assert rec.of("local_resource") == []
    assert "server-binary" not in rec.resources()["raibid-server"]["resource_deps"]


def test_buttons(rec):
    buttons = {c["name"]: c for c in rec.of("cmd_button")}
    assert set(buttons) == {"send-test-job", "trigger-agents", "reset-data"}
    send = " ".join(buttons["send-test-job"]["argv"])
    assert "XADD raibid:jobs" in send and "kubectl --context k3d-raibid-ci -n raibid-system exec" in send
    assert buttons["send-test-job"]["resource"] == "raibid-server"
    trig = buttons["trigger-agents"]
    assert trig["resource"] == "raibid-agent" and trig["inputs"][0]["name"] == "JOBS"
    assert "XADD raibid:jobs" in " ".join(trig["argv"])
    reset = buttons["reset-data"]
    assert reset["requires_confirmation"] is True and reset["location"] == "nav"
    r = " ".join(reset["argv"])
    assert "DEL raibid:jobs" in r and "XGROUP CREATE raibid:jobs raibid-agents" in r
    assert "delete jobs -l scaledjob.keda.sh/name=raibid-agent" in r
    # the password is read inside the Redis pod at run time (env or file from the Secret)
    for b in buttons.values():
        cmd = " ".join(b["argv"])
        assert "REDISCLI_AUTH=\"$P\"" in cmd and "REDIS_PASSWORD_FILE" in cmd
        assert " -a " not in cmd and "--pass" not in cmd


def test_no_credential_in_the_tiltfile(staged):
    text = (staged / "Tiltfile").read_text()
    literal = re.compile(r"(?i)(password|passwd|secret|token|api_?key)\w*\s*[=:]\s*['\"][^'\"$]{3,}['\"]")
    assert not literal.search(text)
    assert not re.search(r"redis-cli[^\n]*\s-a\s", text)
    assert not re.search(r"(?i)redis://:[^@$]+@", text)


# ---------------------------------------------------------------- the checker can fail


def write_tiltfile(project: Path, text: str) -> Path:
    (project / "Tiltfile").write_text(text)
    return project / "Tiltfile"


def test_unknown_builtin_is_an_error_with_its_line(staged):
    t = write_tiltfile(staged, "allow_k8s_contexts('k3d-raibid-ci')\n\nk8s_resoruce('redis-master')\n")
    with pytest.raises(tiltcheck.TiltfileError) as e:
        tiltcheck.check(t)
    assert "k8s_resoruce" in str(e.value) and "Tiltfile:3" in str(e.value)


def test_tilt_assembly_errors_are_reported(staged):
    t = write_tiltfile(staged, """
k8s_yaml(listdir('build/manifests/local'))
k8s_resource('no-such-workload', resource_deps=['ghost'])
k8s_resource('gitea', port_forwards=[port_forward(3000)])
k8s_resource('raibid-server', port_forwards=[port_forward(3000)])
docker_build('unused-image', '.', dockerfile='docker/server.Dockerfile')
docker_build('raibid-server', 'build/tilt/server', dockerfile='docker/server.Dockerfile',
             live_update=[sync('src/', '/app'), fall_back_on('Cargo.toml')])
""")
    with pytest.raises(tiltcheck.TiltfileError) as e:
        tiltcheck.check(t)
    msg = str(e.value)
    assert "no workload named 'no-such-workload'" in msg
    assert "unknown resource 'ghost'" in msg
    assert "local port 3000 forwarded by both 'gitea' and 'raibid-server'" in msg
    assert "docker_build('unused-image'): no workload uses this image" in msg
    assert "outside the build context" in msg
    assert "must be fall_back_on, then sync, then run" in msg


def test_scaledjob_image_needs_the_kind(staged):
    """Without k8s_kind Tilt cannot see the ScaledJob's image: the agent build is flagged."""
    t = write_tiltfile(staged, """
k8s_yaml(listdir('build/manifests/local'))
docker_build('raibid-agent', '.', dockerfile='docker/agent.Dockerfile')
""")
    with pytest.raises(tiltcheck.TiltfileError, match="docker_build\\('raibid-agent'\\): no workload"):
        tiltcheck.check(t)


def test_missing_manifests_fail_with_the_command_to_run(project):
    (project / "tanka").mkdir(exist_ok=True)
    with pytest.raises(tiltcheck.TiltfileError, match=r"no manifests in build/manifests/local: run `doit render:local`"):
        tiltcheck.check(project / "Tiltfile", env={})


# ---------------------------------------------------------------- `doit tilt:check`, on the real render


def test_tilt_check_task_evaluates_against_the_rendered_environment(project):
    """render:local (real tk + helm, stand-in charts) then the Tiltfile checked on its output."""
    from support import env_for, run_doit, tool_or_fail
    from tanka_fixtures import install_charts

    tool_or_fail("tk")
    tool_or_fail("helm")
    install_charts(project)
    env = env_for(project, {"RAIBID_SRC": str(FIXTURES / "raibid-ci")})
    r = run_doit(project, "tilt:check", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "render:local" in r.stdout and "evaluates cleanly" in r.stdout
    rec = tiltcheck.check(project / "Tiltfile", env={})
    res = rec.resources()
    assert set(res) == set(rec.workloads()) >= {"redis-master", "gitea", "keda-operator", "source-controller",
                                                "raibid-server", "raibid-agent"}
    assert rec.images_of(rec.workloads()["raibid-agent"]) == ["raibid-agent:dev"]
    # up to date until the Tiltfile (or what it reads) changes
    r = run_doit(project, "tilt:check", env=env)
    assert r.returncode == 0 and "0 executed" in r.stdout
    tf = project / "Tiltfile"
    tf.write_text(tf.read_text().replace("k8s_resource(w, **args)", "k8s_resource(w + '-typo', **args)"))
    r = run_doit(project, "tilt:check", env=env)
    assert r.returncode != 0
    assert "no workload named 'raibid-server-typo'" in r.stdout + r.stderr


def test_tilt_check_without_vendored_charts_says_it_is_skipped(project):
    from support import env_for, run_doit

    r = run_doit(project, "tilt:check", env=env_for(project))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "charts are not vendored" in r.stdout and "doit vendor:charts" in r.stdout
    assert not (project / "build" / "manifests").exists()


def test_every_doit_task_the_tiltfile_runs_exists(staged):
    """The Tiltfile calls doit by task name: a renamed task must not go unnoticed."""
    from support import env_for, run_doit

    rec = tiltcheck.check(staged / "Tiltfile", env={})
    commands = [c["command"] for c in rec.of("local")] + [c["cmd"] for c in rec.of("local_resource")]
    cited = [w for cmd in commands if cmd.startswith("doit ")
             for w in cmd.replace("--db-file .doit.db.server-binary", "").split()[1:]]
    assert cited == ["cluster", "render:local", "validate:local", "tilt:takeover", "tilt:server-binary"]
    # the database given is one git ignores (and never the shared .doit.db)
    from support import REPO
    import subprocess
    assert subprocess.run(["git", "check-ignore", "-q", ".doit.db.server-binary"], cwd=REPO).returncode == 0
    listed = run_doit(staged, "list", "--all", "--quiet", env=env_for(staged), check=True).stdout.split()
    assert set(cited) <= set(listed)
