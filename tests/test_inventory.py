"""Inventories derived from what is on disk or declared, each tested the way a contributor
extends it (CONTRIBUTING.md): in a scratch copy of the project, adding only the files the
recipe names.

- images: one per docker/<name>.Dockerfile (tasks/docker.py images(); the Tiltfile globs the
  same directory; main.libsonnet accepts the image keys config.libsonnet declares);
- charts: the stand-ins the tests install are the charts tanka/chartfile.yaml pins;
- components: every rendered object carries ``raibid.dev/component`` (stamped by
  main.libsonnet's stack, Helm-rendered objects included) and Tilt groups by it.

Real tk, helm and Tilt; docker is the recording shim of tests/test_docker_images.py.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from support import REPO, copy_project, env_for, run_doit, tool_or_fail, yaml_docs
from tanka_fixtures import chart_directories, install_charts
from test_tiltfile import MANIFESTS, load, resources, stage, tilt

LABEL = "raibid.dev/component"


def rendered(project: Path, env: str = "local") -> list[dict]:
    from tasks.render import rendered_objects

    return rendered_objects(project / "build" / "manifests" / env)


def component(obj: dict) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL)


def tk_eval(project: Path, expr: str) -> subprocess.CompletedProcess:
    """Evaluate a jsonnet expression with the project's libraries (real tk)."""
    tool_or_fail("tk")
    probe = project / "tanka" / "tests" / "probe.jsonnet"
    probe.write_text(expr + "\n")
    return subprocess.run(["tk", "eval", str(probe.relative_to(project / "tanka"))], cwd=project / "tanka",
                          capture_output=True, text=True, env=env_for(project, path_first=[REPO / ".tools" / "bin"]))


# --------------------------------------------------------------------------- images


def add_image(project: Path, name: str) -> None:
    """Recipe step 1 of "add an image": docker/<name>.Dockerfile and its ignore file."""
    docker = project / "docker"
    (docker / f"{name}.Dockerfile").write_text((docker / "agent.Dockerfile").read_text() + f"# the {name} image\n")
    shutil.copy2(docker / "agent.Dockerfile.dockerignore", docker / f"{name}.Dockerfile.dockerignore")


def test_the_images_are_the_dockerfiles(project, monkeypatch):
    from tasks import docker

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    assert docker.images() == ("agent", "server")
    add_image(project, "foo")
    (project / "docker" / ".Dockerfile").write_text("FROM scratch\n")  # no name: not an image
    assert docker.images() == ("agent", "foo", "server")


def test_a_new_dockerfile_gets_image_and_push_tasks(project, shims, src):
    from test_docker_images import HANDLER, env, record

    add_image(project, "foo")
    e = env(project, shims.add("docker", HANDLER), src)
    listed = run_doit(project, "list", "--all", "--quiet", env=e, check=True).stdout.split()
    assert {"image:foo", "push:foo"} <= set(listed)
    proc = run_doit(project, "push:foo", env=e)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [build] = shims.state()["builds"]
    assert build["file"] == str(project / "docker" / "foo.Dockerfile") and build["target"] == "runtime"
    tag = record(project, "foo")["tag"]
    assert tag.startswith("raibid-foo:") and build["tags"] == [tag]
    assert record(project, "foo", ".cluster.json")["ref"].endswith("/" + tag)


def test_push_with_unreadable_registry_settings_fails_as_a_task(project, shims, monkeypatch):
    """push:<name> reads the registry from deploy.json: broken settings are the task's failure
    (TaskFailed naming the file and line), never a SystemExit out of the action or its
    up-to-date check."""
    from doit.exceptions import TaskFailed

    from tasks import docker
    from test_docker_images import HANDLER

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    monkeypatch.setenv("PATH", f"{shims.add('docker', HANDLER).bin}:{env_for(project)['PATH']}")
    (project / "build" / "images").mkdir(parents=True)
    docker.record_path("server").write_text(json.dumps({"name": "server", "tag": "raibid-server:abc"}))
    docker.cluster_record_path("server").write_text(json.dumps({"name": "server", "ref": "x"}))
    (project / "deploy.json").write_text('{"registry": [\n')
    assert docker.pushed_current("server") is False
    failed = docker.push_image("server")
    assert isinstance(failed, TaskFailed)
    assert "deploy.json:" in str(failed) and "nothing was pushed" in str(failed)
    assert [c for c in shims.calls("docker") if c[:1] in (["tag"], ["push"])] == []


def test_the_image_overrides_are_the_configured_images(project):
    """main.libsonnet's images() takes the keys of config.libsonnet's defaults.images: a typo
    is refused naming the known images and where to add one; an image added there is accepted.
    And every Dockerfile has its configured image (and back), so `doit push:<name>`'s ref has
    a place in the render."""
    from tasks import docker

    configured = json.loads(tk_eval(project, "(import 'raibid/config.libsonnet').defaults.images").stdout)
    assert tuple(sorted(configured)) == docker.images()

    typo = tk_eval(project, "(import 'raibid/main.libsonnet').images({ severs: 'x' })")
    assert typo.returncode != 0
    assert "unknown key(s) severs; the images are agent, server (config.libsonnet defaults.images" in typo.stderr
    config = project / "tanka" / "lib" / "raibid" / "config.libsonnet"
    text = config.read_text()
    assert "      agent: 'raibid-agent:dev',\n" in text
    config.write_text(text.replace("      agent: 'raibid-agent:dev',\n",
                                   "      agent: 'raibid-agent:dev',\n      foo: 'raibid-foo:dev',\n", 1))
    ok = tk_eval(project, "(import 'raibid/main.libsonnet').images({ foo: 'reg/raibid-foo:1' })")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"foo": "reg/raibid-foo:1"}


FOO_LIB = """\
// raibid/foo.libsonnet: a Deployment running the foo image.
local k8s = import 'k8s.libsonnet';

{
  new(cfg):: {
    deployment: k8s.deployment(cfg.name('foo'), cfg.selector('foo'), {
      containers: [{ name: 'foo', image: cfg.images.foo }],
    }, labels=cfg.labels('foo')),
  },
}
"""


def add_component(project: Path, name: str, lib: str) -> None:
    """The "add it to the stack" step of both recipes: raibid/<name>.libsonnet and its line
    in main.libsonnet's components."""
    raibid = project / "tanka" / "lib" / "raibid"
    (raibid / f"{name}.libsonnet").write_text(lib)
    main = raibid / "main.libsonnet"
    text = main.read_text()
    anchor = "    agent: $.agent.new(cfg),\n"
    assert anchor in text
    main.write_text(text.replace(anchor, anchor + f"    {name}: (import '{name}.libsonnet').new(cfg),\n", 1))


def test_adding_an_image_by_the_recipe_reaches_the_render_and_tilt(project, monkeypatch):
    """CONTRIBUTING.md "Add an image": the Dockerfile, its default in config.libsonnet, a
    component using it. Nothing else: the render carries it, Tilt builds and deploys it,
    and apply:local deploys the ref ``push:<name>`` records for it."""
    tool_or_fail("helm")
    install_charts(project)
    add_image(project, "foo")
    config = project / "tanka" / "lib" / "raibid" / "config.libsonnet"
    config.write_text(config.read_text().replace(
        "      agent: 'raibid-agent:dev',\n", "      agent: 'raibid-agent:dev',\n      foo: 'raibid-foo:dev',\n", 1))
    add_component(project, "foo", FOO_LIB)
    run_doit(project, "render:local", check=True)
    [deployment] = [o for o in rendered(project) if o["kind"] == "Deployment" and o["metadata"]["name"] == "raibid-foo"]
    assert component(deployment) == "foo"

    res = resources(load(project))
    [target] = res["raibid-foo"]["ImageTargets"]
    assert target["selector"] == "raibid-foo"
    assert target["BuildDetails"]["dockerfileContents"] == (project / "docker" / "foo.Dockerfile").read_text()
    # a component the Tiltfile does not list: its default grouping
    assert res["raibid-foo"]["Labels"] == {"infrastructure": "infrastructure"}

    from tasks import deploy

    images = project / "build" / "images"
    images.mkdir(parents=True, exist_ok=True)
    (images / "foo.cluster.json").write_text(json.dumps({"name": "foo", "ref": "reg:5111/raibid-foo:abc"}))
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    [deployed] = [o for o in deploy.deploy_objects("local") if o["kind"] == "Deployment"
                  and o["metadata"]["name"] == "raibid-foo"]
    assert [c["image"] for c in deployed["spec"]["template"]["spec"]["containers"]] == ["reg:5111/raibid-foo:abc"]


# --------------------------------------------------------------------------- charts


def test_the_stand_in_charts_are_the_pinned_charts(project):
    """install_charts installs a stand-in for every chart of chartfile.yaml (a chart added
    there is installed from tests/fixtures/charts/<directory>), and a chart without a
    stand-in is named with where to add it."""
    pinned = chart_directories(project)
    assert pinned and len(set(pinned)) == len(pinned), pinned
    chartfile = project / "tanka" / "chartfile.yaml"
    chartfile.write_text(chartfile.read_text() + "  - chart: example/hello\n    version: 0.1.0\n    directory: hello\n")
    with pytest.raises(FileNotFoundError, match=r"pins a chart in hello/ but there is no stand-in .*fixtures/charts/hello"):
        install_charts(project, stand_ins=project / "tests" / "fixtures" / "charts")
    add_stand_in(project)
    charts = install_charts(project, stand_ins=project / "tests" / "fixtures" / "charts")
    assert sorted(p.name for p in charts.iterdir()) == sorted(pinned + ["hello"])


HELLO_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
  namespace: {{ .Release.Namespace }}
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: docker.io/library/nginx:1.27
"""

HELLO_LIB = """\
// raibid/hello.libsonnet: the hello chart.
local helm = (import 'helm.libsonnet').new(std.thisFile);

{
  new(cfg):: helm.template('hello', '../../charts/hello', {
    namespace: cfg.namespace,
    kubeVersion: cfg.kubeVersion,
  }),
}
"""


def add_stand_in(project: Path) -> None:
    """A stand-in for the hello chart, where the recipe puts it (tests/fixtures/charts/)."""
    hello = project / "tests" / "fixtures" / "charts" / "hello"
    shutil.copytree(REPO / "tanka" / "tests" / "charts" / "mini", hello)
    meta = hello / "Chart.yaml"
    meta.write_text(meta.read_text().replace("name: mini", "name: hello"))
    (hello / "templates" / "deployment.yaml").write_text(HELLO_DEPLOYMENT)


def test_adding_a_chart_by_the_recipe_is_rendered_labelled_and_grouped(project):
    """CONTRIBUTING.md "Add a chart": chartfile.yaml, a stand-in, a library and its line in
    main.libsonnet. Its objects carry their component label and Tilt makes a resource of its
    workload with no Tiltfile edit."""
    tool_or_fail("helm")
    chartfile = project / "tanka" / "chartfile.yaml"
    chartfile.write_text(chartfile.read_text() + "  - chart: example/hello\n    version: 0.1.0\n    directory: hello\n")
    add_stand_in(project)
    install_charts(project, stand_ins=project / "tests" / "fixtures" / "charts")
    add_component(project, "hello", HELLO_LIB)
    run_doit(project, "render:local", check=True)
    hello = [o for o in rendered(project) if o["metadata"]["name"].startswith("hello-")]
    assert sorted(o["kind"] for o in hello) == ["ConfigMap", "Deployment"]
    assert {component(o) for o in hello} == {"hello"}
    res = resources(load(project))
    assert res["hello-web"]["Labels"] == {"infrastructure": "infrastructure"}


# --------------------------------------------------------------------------- the component label


@pytest.fixture(scope="module")
def render(tmp_path_factory) -> Path:
    """A project with the local environment rendered (real tk + helm, stand-in charts)."""
    tool_or_fail("tk")
    tool_or_fail("helm")
    project = copy_project(tmp_path_factory.mktemp("inventory") / "project")
    install_charts(project)
    run_doit(project, "render:local", check=True)
    return project


def test_every_rendered_object_carries_its_component(render):
    objs = rendered(render)
    assert len(objs) > 40
    assert [(o["kind"], o["metadata"]["name"]) for o in objs if not component(o)] == []
    by = {(o["kind"], o["metadata"]["name"]): component(o) for o in objs}
    # our own objects and the charts' alike, whatever their names say
    assert by[("Deployment", "raibid-server")] == "server" and by[("ScaledJob", "raibid-agent")] == "agent"
    assert by[("StatefulSet", "redis-master")] == "redis" and by[("Deployment", "keda-operator")] == "keda"
    assert by[("CustomResourceDefinition", "scaledjobs.keda.sh")] == "keda"
    assert by[("GitRepository", "raibid-gitops")] == by[("Deployment", "source-controller")] == "flux"
    assert by[("ConfigMap", "raibid-config")] == "config" and by[("Namespace", "raibid-system")] == "namespace"
    # a chart's own app.kubernetes.io/component is left as the chart set it
    redis = next(o for o in objs if o["kind"] == "StatefulSet")
    assert redis["metadata"]["labels"].get("app.kubernetes.io/component") == "master"


def test_tilt_groups_the_render_by_component(render):
    """Each workload is a resource; the workloads of one component share its UI label, the
    others of a component wait for its main one, which carries the component's CRDs and
    custom resources; nothing of a component is left in "uncategorized"."""
    from tasks.tilt import WORKLOAD_KINDS

    objs = rendered(render)
    res = resources(load(render))
    workloads = {}
    for o in objs:
        if o["kind"] in WORKLOAD_KINDS | {"ScaledJob"}:  # Tilt's workloads, and KEDA's (k8s_kind)
            workloads.setdefault(component(o), []).append(o["metadata"]["name"])
    for comp, names in workloads.items():
        labels = {json.dumps(res[n]["Labels"]) for n in names}
        assert len(labels) == 1, (comp, labels)
    crd_groups = {o["spec"]["group"] for o in objs if o["kind"] == "CustomResourceDefinition"}
    custom = [o for o in objs if o["kind"] == "CustomResourceDefinition" or o["apiVersion"].split("/")[0] in crd_groups]
    assert custom
    carried = {}
    for name, m in res.items():
        for o in yaml_docs((m.get("DeployTarget") or {}).get("yaml") or ""):
            carried[(o["kind"], o["metadata"]["name"])] = name
    for o in custom:
        owner = carried[(o["kind"], o["metadata"]["name"])]
        assert owner != "uncategorized" and owner in workloads[component(o)], (o["kind"], o["metadata"]["name"])


def labelled(obj: dict, comp: str) -> dict:
    obj["metadata"] = {**obj["metadata"], "namespace": "raibid-system", "labels": {LABEL: comp}}
    return obj


def workload(name: str, comp: str, image: str) -> dict:
    pod = {"labels": {"app": name}}
    return labelled({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                     "spec": {"selector": {"matchLabels": pod["labels"]},
                              "template": {"metadata": pod, "spec": {"containers": [{"name": "c", "image": image}]}}}},
                    comp)


ODD = [
    workload("stream-exporter", "redis", "docker.io/oliver006/redis_exporter:v1.62.0"),
    workload("keda-mirror", "gitea", "docker.io/library/busybox:1.36"),
    labelled({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "nightly"},
              "spec": {"scaleTargetRef": {"name": "raibid-server"}, "triggers": []}}, "agent"),
]


def test_objects_land_in_their_labelled_component_whatever_their_names(tmp_path):
    """A workload named after nothing (stream-exporter) or after another component
    (keda-mirror, labelled gitea), and a custom resource named after nothing, go where their
    label says."""
    project = stage(copy_project(tmp_path / "project"))
    import yaml

    (project / "build" / "manifests" / "local" / "odd.yaml").write_text(yaml.safe_dump_all(ODD))
    res = resources(load(project))
    assert res["stream-exporter"]["Labels"] == res["redis-master"]["Labels"] == {"infrastructure": "infrastructure"}
    assert set(res["stream-exporter"]["ResourceDependencies"]) == {"redis-master"}  # redis' main workload
    assert set(res["keda-mirror"]["ResourceDependencies"]) == {"gitea"}
    assert "keda-mirror" not in (res["raibid-agent"].get("ResourceDependencies") or [])
    agent = {(o["kind"], o["metadata"]["name"]) for o in yaml_docs(res["raibid-agent"]["DeployTarget"]["yaml"])}
    assert ("ScaledObject", "nightly") in agent


def test_an_unlabelled_object_is_a_warning_naming_the_stamp(tmp_path):
    project = stage(copy_project(tmp_path / "project"))
    (project / "build" / "manifests" / "local" / "loose.yaml").write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: loose, namespace: raibid-system}
        """))
    r = tilt(project, "alpha", "tiltfile-result", "-v")  # -v: Tilt's warnings, as `doit tilt:check` reads them
    assert r.returncode == 0, r.stderr[-2000:]
    msg = " ".join(r.stderr.split())
    assert "1 rendered objects carry no raibid.dev/component label" in msg and "loose:configmap" in msg
    assert "tanka/lib/raibid/main.libsonnet" in msg


def test_the_tilt_fixture_is_labelled_like_the_render():
    """The stand-in render the Tilt tests load carries the label on every object, as the
    real render does (test_every_rendered_object_carries_its_component)."""
    objs = [o for f in MANIFESTS.glob("*.yaml") for o in yaml_docs(f.read_text())]
    assert objs and [o["metadata"]["name"] for o in objs if not component(o)] == []
