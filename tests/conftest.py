import os
import shutil
from pathlib import Path

import pytest

from tasks.settings import environments_on_disk
from support import FIXTURES, REPO, Shims, copy_built, copy_project, env_for, run_doit, tool_or_fail

# tasks.tools looks for .tools/bin under the project root
os.environ.setdefault("RAIBID_DEPLOY_ROOT", str(REPO))


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh copy of this project's working tree (the files a clean clone has)."""
    return copy_project(tmp_path / "project")


#: every Tanka environment of the project (tanka/environments/*/main.jsonnet)
ENVS = tuple(environments_on_disk(REPO))


@pytest.fixture(scope="session")
def real_tools():
    return {name: tool_or_fail(name) for name in ("tk", "helm")}


@pytest.fixture(scope="session")
def stack(tmp_path_factory, real_tools) -> Path:
    """A project with the stand-in charts, every environment rendered and validated, made
    once per session. Tests read it; a test that changes files (or runs tasks that write)
    takes ``stack_copy``."""
    from tanka_fixtures import install_charts

    from tasks import controlplane as cpmod

    project = copy_project(tmp_path_factory.mktemp("stack") / "project")
    install_charts(project)
    # offline, whichever worker builds it: the session control plane (if this worker has
    # started it) would add a server-side dry-run of each environment; the tests of the
    # dry-run and of the deploy path validate their copies against it themselves
    env = env_for(project)
    env.pop(cpmod.ENV_VAR, None)
    run_doit(project, *(f"validate:{e}" for e in ENVS), env=env, check=True)
    return project


@pytest.fixture
def stack_copy(stack, tmp_path) -> Path:
    """A private copy of the rendered project (build/ and .doit.db included)."""
    return copy_built(stack, tmp_path / "project")


@pytest.fixture
def shims(tmp_path) -> Shims:
    """An empty directory of recording shims (add them with ``shims.add(name)``)."""
    return Shims(tmp_path / "shims")


@pytest.fixture
def src(tmp_path) -> Path:
    """A fresh copy of the std-only raibid-ci Cargo workspace fixture (no target/)."""
    dst = tmp_path / "raibid-ci"
    shutil.copytree(FIXTURES / "raibid-ci", dst, ignore=shutil.ignore_patterns("target"))
    return dst


def _environment_contexts() -> list[str]:
    """Every kube context of the environments (deploy.json), so the test control plane's
    kubeconfig answers to each of them (and to nothing real)."""
    from tasks import settings

    s = settings.load(REPO / settings.FILE)
    return list(dict.fromkeys(s.env(e).context for e in s.environments))


@pytest.fixture(scope="session")
def controlplane(tmp_path_factory):
    """A real control plane (etcd, kube-apiserver, controller-manager, scheduler and a kwok
    node) on loopback, started once per session; its kubeconfig (under the session's tmp
    directory) has a context for every environment. Fails in CI when a piece is missing."""
    from support import tool_or_fail
    from tasks import controlplane as cpmod

    for name in cpmod.TOOLS:
        tool_or_fail(name)
    cp = cpmod.start(tmp_path_factory.mktemp("controlplane"), contexts=_environment_contexts())
    _stop_when_gone(os.getpid(), cp.dir)
    # validate:<env> in the doit runs of this session dry-runs against it instead of starting its own
    os.environ[cpmod.ENV_VAR] = str(cp.dir)
    yield cp
    os.environ.pop(cpmod.ENV_VAR, None)
    cp.stop()


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    """A real Docker engine (the user's, else a private dockerd started once per session,
    see tests/engine.py) whose base images exist (stand-ins made offline where the real ones
    are missing), with the pinned buildx and compose as its client's plugins. Fails in CI
    when a piece is missing."""
    import engine as engmod
    from tasks import paths

    for name in ("docker", "dockerd", "debootstrap", *engmod.PLUGINS):
        if name != "dockerd" or not os.environ.get("DOCKER_HOST"):
            tool_or_fail(name)
    where = tmp_path_factory.mktemp("engine")
    config = engmod.docker_config(where / "docker-config", paths.tools_bin())
    eng, lock = engmod.start(config, where)
    try:
        if eng.pid is None and not engmod._answers(eng.env):
            pytest.fail("no Docker engine answers and none could be started (see `doit doctor`)")
        engmod.ensure_standins(eng, engmod.dockerfile_arg("RUST_VERSION"))
        yield eng
    finally:
        engmod.stop(eng)
        if lock is not None:
            lock.close()


@pytest.fixture(scope="session")
def real_node(controlplane) -> dict:
    """A real node (tasks/node.py: containerd, kubelet, kube-proxy in a network namespace of its
    own) joined to the session control plane, started once; what its state records."""
    from tasks import node

    for name in (*node.TOOLS, "ctr"):
        tool_or_fail(name)
    info = node.start(controlplane)
    yield info
    node.stop(controlplane)


#: a watcher of the test process: once it has gone (ended, or killed before its fixtures were
#: torn down: a timeout's SIGTERM, SIGKILL), it stops the control plane it was given
_WATCHER = """
import os, sys, time
pid, directory = int(sys.argv[1]), sys.argv[2]
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
from pathlib import Path
from tasks import controlplane
controlplane.stop(Path(directory))
"""


def _stop_when_gone(pid: int, directory: Path) -> None:
    """Stop the control plane in ``directory`` once process ``pid`` has gone, even when pytest
    is killed (its session teardown then never runs, and the control plane would run on)."""
    import subprocess
    import sys

    subprocess.Popen([sys.executable, "-c", _WATCHER, str(pid), str(directory)], cwd=REPO,
                     env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(autouse=True)
def _offline_unless_asked(request, monkeypatch):
    """A test that does not ask for the session control plane runs its ``validate:*``
    offline even on the worker where that control plane runs (its other tests interleave
    with the group's): ``server_dry_run`` is part of validate's up-to-date key, so a
    control plane appearing between two runs of one test would make the second run again."""
    if "controlplane" not in request.fixturenames:
        from tasks import controlplane as cpmod

        monkeypatch.delenv(cpmod.ENV_VAR, raising=False)


def pytest_itemcollected(item):
    """Every test that uses the session control plane (directly or through another fixture)
    joins one pytest-xdist group: under ``--dist loadgroup`` (pyproject.toml's addopts) those
    tests share one worker, so one control plane serves them all, while the other workers
    run the rest. The other tests' ``validate:*`` runs stay offline (no dry-run), as a user's do
    without ``doit controlplane:start``; the tests of the dry-run itself ask for it.

    Marked as each test is collected: xdist names a group's tests (``nodeid@group``) in its
    own ``pytest_collection_modifyitems``, which ran before this project's (a tryfirst
    conftest hook), so the group was never formed and a second control plane started."""
    if "controlplane" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.xdist_group("controlplane"))
    elif "engine" in getattr(item, "fixturenames", ()):  # one Docker engine, one worker
        item.add_marker(pytest.mark.xdist_group("engine"))


#: the opt-in marker: tests that build and run raibid-ci's real binaries (RAIBID_SRC)
OPT_IN = "realci"


def pytest_configure(config):
    config.addinivalue_line("markers", f"{OPT_IN}: builds and runs raibid-ci's real binaries from "
                                       f"RAIBID_SRC; deselected unless -m names it (-m {OPT_IN})")


def pytest_collection_modifyitems(config, items):
    """Deselect (not skip: a skip in CI is a defect) the opt-in tests unless ``-m`` names them."""
    if OPT_IN in (config.option.markexpr or ""):
        return
    opted = [i for i in items if i.get_closest_marker(OPT_IN)]
    if opted:
        config.hook.pytest_deselected(items=opted)
        items[:] = [i for i in items if not i.get_closest_marker(OPT_IN)]
