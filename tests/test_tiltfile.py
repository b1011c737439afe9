"""The Tiltfile, loaded by the real (pinned) Tilt: `tilt alpha tiltfile-result` prints what
Tilt assembled from it (resources, image targets, port forwards, API objects), and
`tilt down` shows what a load does to the machine. Only k3d, kubectl and doit itself are
recording shims here (to prove a load runs none of them)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from support import FIXTURES, REPO, Shims, env_for, run_doit, tool_or_fail, yaml_docs

MANIFESTS = FIXTURES / "tilt" / "manifests"
JOB_SCHEMA = FIXTURES / "contract" / "job.schema.json"
CONTEXT = "k3d-raibid-ci"
SRC = FIXTURES / "raibid-ci"


def stage(project: Path, env: str = "local", manifests: Path = MANIFESTS) -> Path:
    """The rendered manifests where `doit render:<env>` puts them."""
    shutil.copytree(manifests, project / "build" / "manifests" / env, ignore=shutil.ignore_patterns("*.md"))
    return project


def kubeconfig(path: Path, current: str) -> Path:
    """A kubeconfig naming the project's context and another one, ``current`` selected; the
    server is an address nothing listens on (a load must not need a cluster)."""
    contexts = sorted({CONTEXT, "kind-other", current})
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": c, "cluster": {"server": "https://127.0.0.1:9"}} for c in contexts],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": c, "context": {"cluster": c, "user": "u"}} for c in contexts],
    }))
    return path


def tilt(project: Path, *argv: str, env_name: str = "local", current: str = CONTEXT, context: str | None = None,
         extra_args: tuple[str, ...] = (), path_first=None, raibid_src: Path = SRC) -> subprocess.CompletedProcess:
    """Run the pinned tilt in ``project`` (``argv``: the subcommand), Tiltfile args after ``--``."""
    exe = tool_or_fail("tilt")
    env = env_for(project, {"KUBECONFIG": str(kubeconfig(project.parent / f"kubeconfig-{current}", current)),
                            "RAIBID_SRC": str(raibid_src), "HOME": str(project.parent / "home")},
                  path_first=path_first)
    args = [exe, *argv] + (["--context", context] if context else [])
    return subprocess.run([*args, "--", "--env", env_name, *extra_args], cwd=project, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)


def load(project: Path, **kw) -> dict:
    """The Tiltfile load result, as JSON; fails the test with Tilt's own error."""
    r = tilt(project, "alpha", "tiltfile-result", "-v", **kw)
    assert r.returncode == 0, r.stderr[-3000:]
    from tasks.tilt import CLEAN_LOAD

    # a clean load: Tilt warns about nothing it dropped (unused images, unknown dependencies)
    assert [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(CLEAN_LOAD)] == []
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    from support import copy_project

    return stage(copy_project(tmp_path_factory.mktemp("tilt") / "project"))


@pytest.fixture(scope="module")
def result(staged) -> dict:
    return load(staged)


def resources(result: dict) -> dict:
    return {m["Name"]: m for m in result["Manifests"]}


def objects(result: dict, plural: str) -> dict:
    return next((v for k, v in (result.get("ObjectSet") or {}).items() if k.endswith("=" + plural)), {})


def workload_names(manifests: Path = MANIFESTS) -> set[str]:
    kinds = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ScaledJob"}
    return {o["metadata"]["name"] for f in manifests.glob("*.yaml") for o in yaml_docs(f.read_text())
            if o and o.get("kind") in kinds}


# ---------------------------------------------------------------- what Tilt assembles


def test_resource_set_labels_and_dependencies(result):
    res = resources(result)
    # every workload of the render is a resource of its own; the rest (namespace...) only
    # in "uncategorized"; plus the host build of the server
    assert set(res) == workload_names() | {"server-binary", "uncategorized"}
    loose = [o["kind"] for o in yaml_docs(res["uncategorized"]["DeployTarget"]["yaml"]) if o]
    assert loose == ["Namespace"]
    for name in ("redis-master", "gitea", "keda-operator", "source-controller", "kustomize-controller"):
        assert res[name]["Labels"] == {"infrastructure": "infrastructure"}, name
    for name in ("raibid-server", "raibid-agent", "server-binary"):
        assert res[name]["Labels"] == {"applications": "applications"}, name
    deps = {n: set(m.get("ResourceDependencies") or []) for n, m in res.items()}
    assert deps["raibid-server"] == {"redis-master", "server-binary"}
    assert {"raibid-server", "keda-operator"} <= deps["raibid-agent"]
    assert deps["redis-master"] == deps["gitea"] == deps["source-controller"] - {"gitea"} == set()


def test_flux_controllers_wait_for_source_controller(result):
    """source-controller's resource brings the Flux CRDs: the other controllers wait for it."""
    res = resources(result)
    flux = {n for n in res if n.endswith("-controller")}
    assert flux >= {"source-controller", "kustomize-controller", "helm-controller", "notification-controller"}
    crds = [o["metadata"]["name"] for o in yaml_docs(res["source-controller"]["DeployTarget"]["yaml"])
            if o and o["kind"] == "CustomResourceDefinition"]
    assert "gitrepositories.source.toolkit.fluxcd.io" in crds
    for name in flux - {"source-controller"}:
        assert set(res[name]["ResourceDependencies"]) == {"gitea", "source-controller"}, name


def test_crds_and_custom_resources_travel_with_their_operator(result):
    res = resources(result)

    def kinds(name):
        return {(o["kind"], o["metadata"]["name"]) for o in yaml_docs(res[name]["DeployTarget"]["yaml"]) if o}

    assert {("CustomResourceDefinition", "scaledjobs.keda.sh"),
            ("CustomResourceDefinition", "triggerauthentications.keda.sh")} <= kinds("keda-operator")
    assert ("TriggerAuthentication", "raibid-agent-redis") in kinds("raibid-agent")
    assert ("GitRepository", "raibid-ci") in kinds("source-controller")


def test_image_targets_live_update_and_restart(result):
    res = resources(result)
    targets = {t["selector"]: t for t in res["raibid-server"]["ImageTargets"]}
    assert set(targets) == {"raibid-server-base", "raibid-server"}
    base, server = targets["raibid-server-base"], targets["raibid-server"]
    assert base["BuildDetails"]["target"] == "dev"
    assert base["BuildDetails"]["context"] == server["BuildDetails"]["context"]
    assert base["BuildDetails"]["context"].endswith("/build/tilt/server")
    # the child image: Tilt's restart wrapper watching the file the live update's last step writes
    command = server["overrideCommand"]["command"]
    assert command[0] == "/tilt-restart-wrapper" and command[-1] == "/usr/local/bin/raibid-server"
    watched = command[1].removeprefix("--watch_file=")
    assert "COPY --from=restart-helper /tilt-restart-wrapper /" in server["BuildDetails"]["dockerfileContents"]
    lu = server["LiveUpdateSpec"]
    assert lu["syncs"] == [{"localPath": "build/tilt/server/raibid-server", "containerPath": "/usr/local/bin/raibid-server"}]
    assert lu["execs"][-1]["args"] == ["sh", "-c", f"date > {watched}"]
    assert lu["stopPaths"] == ["build/tilt/server/cargo-manifests.sha256"]
    # the agent: a full build from the workspace, injected into the ScaledJob by the locator
    agent = res["raibid-agent"]
    [image] = agent["ImageTargets"]
    assert image["selector"] == "raibid-agent" and image["BuildDetails"]["context"] == str(SRC)
    assert not (image.get("LiveUpdateSpec") or {}).get("syncs")
    assert agent["DeployTarget"]["imageLocators"] == [{
        "objectSelector": {"apiVersionRegexp": "(?i)keda.sh/v1alpha1", "kindRegexp": "(?i)ScaledJob"},
        "path": "{.spec.jobTargetRef.template.spec.containers[*].image}"}]
    assert agent["DeployTarget"]["imageMaps"] == ["raibid-agent"]
    assert agent["DeployTarget"]["PodReadinessMode"] == "ignore"
    # the host build behind the live reload
    assert '"--db-file", ".doit.db.server-binary"' not in json.dumps(res["server-binary"])  # one shell string
    assert "tilt:server-binary" in json.dumps(res["server-binary"])


def test_port_forwards_and_links(result):
    fwd = {}
    for name, m in resources(result).items():
        for f in ((m.get("DeployTarget") or {}).get("portForwardTemplateSpec") or {}).get("forwards") or []:
            assert f["localPort"] not in fwd
            fwd[f["localPort"]] = (name, f.get("name"), f.get("path", ""))
    assert fwd == {8080: ("raibid-server", "API", "health"),
                   3000: ("gitea", "Gitea", ""), 6379: ("redis-master", "Redis", "")}


def test_a_forward_to_a_port_no_container_declares_is_a_problem(result):
    from tasks.tilt import problems

    assert problems(result, CONTEXT) == []
    broken = json.loads(json.dumps(result))
    server = next(m for m in broken["Manifests"] if m["Name"] == "raibid-server")
    server["DeployTarget"]["portForwardTemplateSpec"]["forwards"].append(
        {"localPort": 8081, "containerPort": 8081, "name": "metrics"})
    assert any("forwards 8081 to container port 8081, which none of its containers declares" in p
               for p in problems(broken, CONTEXT))


def test_the_checks_see_every_object_but_the_crds_they_skip_unparsed(result):
    """tilt:check skips CustomResourceDefinitions unparsed (most of the text, never checked):
    every other object of every resource is seen, also one whose text mentions the kind."""
    from tasks.manifests import yaml_docs
    from tasks.tilt import _objects, problems

    crds = 0
    for m in result["Manifests"]:
        text = (m.get("DeployTarget") or {}).get("yaml") or ""
        docs = [o for o in yaml_docs(text) if o]
        crds += sum(o["kind"] == "CustomResourceDefinition" for o in docs)
        assert _objects(text) == [o for o in docs if o["kind"] != "CustomResourceDefinition"], m["Name"]
    assert crds > 0   # the render's CRDs travel with their operators
    sneaky = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "sneaky", "annotations": {"note": "kind: CustomResourceDefinition\n---\n"}},
              "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    broken = json.loads(json.dumps(result))
    loose = next(m for m in broken["Manifests"] if m["Name"] == "uncategorized")["DeployTarget"]
    loose["yaml"] = loose["yaml"] + "\n---\n" + yaml.safe_dump(sneaky, default_style="|")
    assert "Deployment sneaky is in no resource (k8s_resource/k8s_kind)" in problems(broken, CONTEXT)


def test_raibid_src_and_no_live_reload(staged, tmp_path):
    other = tmp_path / "src"
    shutil.copytree(SRC, other, ignore=shutil.ignore_patterns("target"))
    res = resources(load(staged, raibid_src=other, extra_args=("--no-live-reload",)))
    [server] = res["raibid-server"]["ImageTargets"]
    assert server["BuildDetails"]["context"] == str(other) and "overrideCommand" not in server
    assert "server-binary" not in res and "server-binary" not in res["raibid-server"]["ResourceDependencies"]


# ---------------------------------------------------------------- context and environments


def test_another_current_context_is_refused_naming_both(staged):
    r = tilt(staged, "alpha", "tiltfile-result", current="kind-other")
    assert r.returncode == 5
    msg = " ".join(r.stderr.split())
    assert "the kube context is kind-other, but this project deploys to k3d-raibid-ci" in msg
    assert "kubectl config use-context k3d-raibid-ci" in msg and "doit dev" in msg
    # --context (what `doit dev` passes) targets the project's cluster whatever is current
    assert load(staged, current="kind-other", context=CONTEXT)["Manifests"]


def test_every_environment_runs_under_tilt_or_is_refused(staged):
    """Derived from deploy.json: the environment of kind local loads; the remote ones (their
    own clusters, their own registries) are refused, naming the way."""
    settings = json.loads((staged / "deploy.json").read_text())["environments"]
    assert "local" in settings and len(settings) > 1
    for env, props in settings.items():
        if not (staged / "build" / "manifests" / env).exists():
            stage(staged, env)  # a render is there: the refusal must not depend on its absence
        if props["kind"] == "local":
            assert load(staged, env_name=env)["Manifests"]
        else:
            r = tilt(staged, "alpha", "tiltfile-result", env_name=env)
            assert r.returncode == 5, (env, r.stdout[-500:])
            msg = " ".join(r.stderr.split())
            assert f"--env {env} is a remote environment (deploy.json: kind remote, context {props['context']})" in msg
            assert f"`doit apply:{env}`" in msg and "k3d-raibid-ci" in msg
    r = tilt(staged, "alpha", "tiltfile-result", env_name="nope")
    assert r.returncode == 5 and "--env nope: no such environment" in r.stderr
    assert "local" in r.stderr.split("Environments:")[-1]


def test_the_local_environment_is_found_by_its_kind_not_its_name(tmp_path):
    """Rename the local environment (folder and deploy.json entry): Tilt deploys it, by its kind."""
    from support import copy_project

    project = copy_project(tmp_path / "project")
    envs = project / "tanka" / "environments"
    main = envs / "local" / "main.jsonnet"
    (envs / "dev").mkdir()
    (envs / "dev" / "main.jsonnet").write_text(main.read_text().replace("environment.new('local'", "environment.new('dev'"))
    main.unlink()
    envs.joinpath("local").rmdir()
    settings = json.loads((project / "deploy.json").read_text())
    settings["environments"] = {("dev" if k == "local" else k): v for k, v in settings["environments"].items()}
    (project / "deploy.json").write_text(json.dumps(settings))
    stage(project, "dev")
    assert load(project, env_name="dev")["Manifests"]


def test_missing_render_is_named_with_the_command_to_run(tmp_path):
    from support import copy_project

    r = tilt(copy_project(tmp_path / "project"), "alpha", "tiltfile-result")
    assert r.returncode == 5
    assert "no manifests in build/manifests/local: run `doit render:local`" in r.stderr


# ---------------------------------------------------------------- loads change nothing


@pytest.fixture
def recording(tmp_path) -> Shims:
    """k3d, kubectl and doit as recording shims first on PATH: a load must run none of them."""
    shims = Shims(tmp_path / "shims")
    for name in ("k3d", "kubectl", "doit"):
        shims.add(name)
    return shims


def test_tilt_down_and_alpha_loads_create_nothing(staged, recording):
    """Under `tilt down` / `tilt alpha` the Tiltfile neither creates or starts the cluster
    nor drops doit's deploy record: no k3d, kubectl or doit runs."""
    r = tilt(staged, "down", context=CONTEXT, path_first=[recording.bin])
    # Tilt itself then fails to reach the (absent) cluster; the load ran all the same
    assert "Loading Tiltfile" in r.stdout + r.stderr and "127.0.0.1:9" in r.stdout + r.stderr
    load(staged, path_first=[recording.bin])
    assert recording.records() == []


def test_a_jsonnet_edit_reloads_the_tiltfile_once(result, staged):
    """Tilt reloads on any change to a file the load read. The load renders into
    build/manifests/ (under `tilt up`), so it must not watch them: only tanka/ (the sources)."""
    watched = [Path(f) for f in result["ConfigFiles"]]
    assert staged / "tanka" in watched
    assert not [f for f in watched if (staged / "build") in f.parents or f == staged / "build"]


# ---------------------------------------------------------------- the buttons


def redis_calls(log: Path) -> list[list[str]]:
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def pod(tmp_path) -> Shims:
    """kubectl that plays the Redis pod: it records its argv and runs what follows `--` with a
    recording redis-cli (so the button's quoting is exercised as in the pod)."""
    shims = Shims(tmp_path / "pod")
    shims.add("redis-cli")
    shims.add("kubectl", """
        import os, subprocess
        def handle(argv, state, rec):
            if "exec" in argv:
                return subprocess.run(argv[argv.index("--") + 1:], env={**os.environ, "REDIS_PASSWORD": "x"}).returncode
            return 0
    """)
    return shims


def run_button(result, name, staged, pod, env=None):
    cmd = objects(result, "cmds")["btn-" + name]["spec"]
    r = subprocess.run(cmd["args"], cwd=cmd.get("dir") or staged, capture_output=True, text=True,
                       env={**env_for(staged, env, path_first=[pod.bin])}, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return [c for c in pod.records() if c["tool"] == "redis-cli"], [c["argv"] for c in pod.records()
                                                                      if c["tool"] == "kubectl"]


def job_validator():
    import jsonschema

    checker = jsonschema.FormatChecker()
    assert "date-time" in checker.checkers  # rfc3339-validator installed: started_at is checked
    return jsonschema.Draft202012Validator(json.loads(JOB_SCHEMA.read_text()), format_checker=checker)


def test_button_payloads_are_jobs_raibid_ci_accepts(result, staged, pod):
    validator = job_validator()
    # the schema itself rejects what the buttons sent before (status "Pending", no started_at)
    assert list(validator.iter_errors({"id": "a", "repo": "r", "branch": "b", "commit": "c", "status": "Pending"}))
    buttons = objects(result, "uibuttons")
    assert set(buttons) == {"send-test-job", "trigger-agents", "reset-data"}
    assert {b["spec"]["location"]["componentID"] for b in buttons.values()} == {"raibid-server", "raibid-agent", "nav"}
    assert buttons["reset-data"]["spec"]["requiresConfirmation"] is True
    for name, jobs_env, count in (("send-test-job", None, 1), ("trigger-agents", {"JOBS": "3"}, 3)):
        pod.clear()
        redis, kubectl = run_button(result, name, staged, pod, jobs_env)
        assert len(redis) == count, redis
        ids = set()
        for call in redis:
            argv = call["argv"]
            assert argv[:4] == ["XADD", "raibid:jobs", "*", "job"] and len(argv) == 5
            job = json.loads(argv[4])
            errors = [e.message for e in validator.iter_errors(job)]
            assert errors == [], (name, job, errors)
            ids.add(job["id"])
        assert len(ids) == count
        assert all(k[:4] == ["--context", CONTEXT, "-n", "raibid-system"] for k in kubectl)
    pod.clear()
    redis, kubectl = run_button(result, "reset-data", staged, pod)
    assert [c["argv"] for c in redis] == [["DEL", "raibid:jobs"],
                                          ["XGROUP", "CREATE", "raibid:jobs", "raibid-agents", "$", "MKSTREAM"]]
    assert kubectl[-1] == ["--context", CONTEXT, "-n", "raibid-system", "delete", "jobs", "-l",
                           "scaledjob.keda.sh/name=raibid-agent", "--ignore-not-found"]


def test_buttons_follow_the_projects_context(tmp_path):
    """The context comes from deploy.json (cluster), not a literal: another cluster name moves
    the environment's context, the buttons and the refusal with it."""
    from support import copy_project

    project = stage(copy_project(tmp_path / "project"))
    settings = json.loads((project / "deploy.json").read_text())
    settings["cluster"] = "other-ci"
    (project / "deploy.json").write_text(json.dumps(settings))
    r = tilt(project, "alpha", "tiltfile-result")
    assert r.returncode == 5 and "this project deploys to k3d-other-ci" in " ".join(r.stderr.split())
    res = load(project, current="k3d-other-ci")
    for c in objects(res, "cmds").values():
        assert set(re.findall(r"--context (\S+)", " ".join(c["spec"]["args"]))) == {"k3d-other-ci"}


def test_no_credential_in_the_tiltfile():
    text = (REPO / "Tiltfile").read_text()
    literal = re.compile(r"(?i)(password|passwd|secret|token|api_?key)\w*\s*[=:]\s*['\"][^'\"$]{3,}['\"]")
    assert not literal.search(text)
    assert not re.search(r"redis-cli[^\n]*\s-a\s", text)
    assert not re.search(r"(?i)redis://:[^@$]+@", text)


def test_every_doit_task_the_tiltfile_runs_exists(staged):
    """The Tiltfile calls doit by task name: a renamed task must not go unnoticed."""
    text = (staged / "Tiltfile").read_text()
    commands = [c.replace("%s", "local") for c in re.findall(r"'(doit [^']*)'", text)]
    cited = [w for cmd in commands for w in cmd.replace("--db-file .doit.db.server-binary", "").split()[1:]]
    assert cited == ["cluster", "render:local", "validate:local", "tilt:takeover", "tilt:server-binary"]
    # the database given is one git ignores (and never the shared .doit.db)
    assert subprocess.run(["git", "check-ignore", "-q", ".doit.db.server-binary"], cwd=REPO).returncode == 0
    listed = run_doit(staged, "list", "--all", "--quiet", env=env_for(staged), check=True).stdout.split()
    assert set(cited) <= set(listed)


def test_a_project_venv_is_ignored():
    assert subprocess.run(["git", "check-ignore", "-q", ".venv/bin/python"], cwd=REPO).returncode == 0


# ---------------------------------------------------------------- `doit tilt:check`, on the real render


def test_tilt_check_runs_again_when_any_dockerfile_changes(stack_copy):
    """The Tiltfile builds an image of every docker/*.Dockerfile: a new one (or a change
    of any) makes the check run again, as a change of the Tiltfile does."""
    env = env_for(stack_copy, {"RAIBID_SRC": str(SRC)})
    run_doit(stack_copy, "tilt:check", env=env, check=True)

    def status() -> str:
        return run_doit(stack_copy, "list", "--status", "tilt:check", env=env, check=True).stdout.split()[0]

    assert status() == "U"
    docker = stack_copy / "docker"
    (docker / "foo.Dockerfile").write_text((docker / "agent.Dockerfile").read_text())
    assert status() == "R"


def test_tilt_check_task_loads_the_render_with_the_real_tilt(project):
    """render:local (real tk + helm, stand-in charts), then every environment through Tilt."""
    from tanka_fixtures import install_charts

    tool_or_fail("tk")
    tool_or_fail("helm")
    install_charts(project)
    env = env_for(project, {"RAIBID_SRC": str(SRC)})
    r = run_doit(project, "tilt:check", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "render:local" in out and "Tiltfile loaded by the real Tilt" in out
    assert re.search(r"local: \d+ resources, 3 image builds, 3 buttons", out)
    for env_name in ("staging", "prod"):
        assert f"{env_name}: refused" in out
    # up to date until the Tiltfile (or what it reads) changes
    r = run_doit(project, "tilt:check", env=env)
    assert r.returncode == 0 and "0 executed" in r.stdout
    tf = project / "Tiltfile"
    good = tf.read_text()
    # Tilt's own error (a dependency on a resource that does not exist)
    tf.write_text(good.replace("'resource_deps': deps +", "'resource_deps': ['ghost'] + deps +"))
    r = run_doit(project, "tilt:check", env=env)
    assert r.returncode != 0
    assert "Tilt warns:" in r.stdout and "dependency on unknown resource ghost" in r.stdout
    # what only the check sees: the restart wrapper never told to restart
    tf.write_text(good.replace("run('date > ' + RESTART_FILE)", "run('true')"))
    r = run_doit(project, "tilt:check", env=env)
    assert r.returncode != 0
    assert "the restart wrapper watches /tmp/.restart-proc but the live update's last step does not write it" \
        in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_tilt_check_without_vendored_charts_says_it_is_skipped(project):
    r = run_doit(project, "tilt:check", env=env_for(project))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "charts are not vendored" in r.stdout and "doit vendor:charts" in r.stdout
    assert not (project / "build" / "manifests").exists()
