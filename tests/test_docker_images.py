"""image:* and push:* against the std-only raibid-ci fixture and a recording docker shim:
only what a real engine cannot show (the argv of the classic builder, the platform and
source checks that stop before any engine call, leftovers of interrupted writes). Builds,
the digest skip, pushes and failures run on a real engine: tests/test_images_engine.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support import FIXTURES, env_for, run_doit

HANDLER = (FIXTURES / "shims" / "docker_handler.py").read_text()


@pytest.fixture
def docker(shims):
    shims.add("docker", HANDLER)
    return shims


def env(project, shims, src, **extra):
    values = {"RAIBID_SRC": str(src), "RAIBID_PLATFORM": "linux/amd64"}
    values.update(extra)
    e = env_for(project, {k: v for k, v in values.items() if v is not None}, path_first=[shims.bin])
    for k, v in values.items():
        if v is None:
            e.pop(k, None)
    return e


def builds(shims):
    return shims.state().get("builds", [])


def record(project, name, suffix=".json"):
    return json.loads((project / "build" / "images" / f"{name}{suffix}").read_text())


def doit(project, *args, e):
    proc = run_doit(project, *args, env=e)
    return proc, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- builds


def test_classic_builder_with_buildkit_when_buildx_is_missing(project, docker, src):
    docker.set_state(buildx=False)
    proc, out = doit(project, "image:agent", e=env(project, docker, src))
    assert proc.returncode == 0, out
    (b,) = builds(docker)
    assert b["cli"] == "classic" and b["env_buildkit"] == "1"
    assert b["target"] == "runtime" and b["tags"] == [record(project, "agent")["tag"]]


def test_platform_defaults_to_the_host_and_is_overridable(project, docker, src):
    from tasks.docker import host_platform

    proc, out = doit(project, "image:server", e=env(project, docker, src, RAIBID_PLATFORM=None))
    assert proc.returncode == 0, out
    host = record(project, "server")
    assert builds(docker)[0]["platform"] == host["platform"] == host_platform()

    proc, out = doit(project, "image:server", e=env(project, docker, src, RAIBID_PLATFORM="linux/arm64"))
    assert proc.returncode == 0, out
    arm = record(project, "server")
    assert builds(docker)[-1]["platform"] == arm["platform"] == "linux/arm64"
    assert (arm["tag"] != host["tag"]) == (host_platform() != "linux/arm64")


def test_an_unsupported_platform_is_refused_before_docker_runs(project, docker, src):
    proc, out = doit(project, "image:server", e=env(project, docker, src, RAIBID_PLATFORM="linux/s390x"))
    assert proc.returncode != 0
    assert "RAIBID_PLATFORM=linux/s390x cannot be built" in out and "linux/arm64" in out
    assert builds(docker) == []


@pytest.mark.parametrize("case", ["missing", "no-workspace"])
def test_missing_source_gives_one_message_and_no_docker_call(project, docker, src, case):
    if case == "missing":
        where = src.parent / "nowhere"
        reason = "does not exist"
    else:
        where = src / "crates" / "server"  # a Cargo.toml without [workspace]
        reason = "has a Cargo.toml without a [workspace] table"
    proc, out = doit(project, "image:server", "image:agent", e=env(project, docker, src, RAIBID_SRC=str(where)))
    assert proc.returncode != 0
    assert out.count("nothing was built") == 1, out
    assert f"{where} {reason}" in out
    assert "Set RAIBID_SRC to the raibid-ci Cargo workspace" in out
    assert docker.calls("docker") == []
    assert not (project / "build" / "images").exists()


def test_missing_docker_names_the_tool_and_touches_nothing(project, src, tmp_path):
    path = [d for d in os.environ["PATH"].split(os.pathsep)
            if d and not (Path(d) / "docker").exists()]
    e = env_for(project, {"RAIBID_SRC": str(src), "PATH": os.pathsep.join(path)})
    proc, out = doit(project, "image:server", "push:server", e=e)
    assert proc.returncode != 0
    assert "missing tool: nothing was run" in out
    assert "docker >= 24.0" in out and "docs.docker.com/engine/install" in out
    assert not (project / "build" / "images").exists()


def test_a_build_sweeps_only_its_own_leftovers(project, docker, src):
    """A killed run's temporary files are removed by the next build of the same image; what
    another image's build or push (a parallel run: ``doit -n 2``) is writing beside it stays."""
    images = project / "build" / "images"
    images.mkdir(parents=True)
    own = [images / ".server.json.a1b2c3d4.tmp", images / ".server.cluster.json.a1b2c3d4.tmp"]
    others = [images / ".agent.json.e5f6a7b8.tmp", images / ".agent.cluster.json.e5f6a7b8.tmp",
              images / ".digest-cache.json.c9d0e1f2.tmp"]
    for f in own + others:
        f.write_text("{")
    proc, out = doit(project, "push:server", e=env(project, docker, src))
    assert proc.returncode == 0, out
    assert [f.name for f in own if f.exists()] == []
    assert [f.name for f in others if f.exists()] == [f.name for f in others]


# --------------------------------------------------------------------------- no engine


NO_ENGINE = '''
import sys
def handle(argv, state, rec):
    if argv[:1] == ["buildx"] and argv[1:2] == ["version"]:
        sys.stderr.write("docker: 'buildx' is not a docker command.\\n")
        return 1
    if argv[:1] == ["build"]:
        sys.stderr.write("ERROR: BuildKit is enabled but the buildx component is missing or broken.\\n")
        return 1
    sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                     "Is the docker daemon running?\\n")
    return 1
'''


def test_no_docker_engine_is_named_as_the_cause_and_nothing_is_built(project, shims, src):
    """A docker client without an engine (and without buildx): the message names the
    engine, as `doit up` does, not the classic builder's complaint about buildx."""
    from tasks import tools

    shims.add("docker", NO_ENGINE)
    for task in ("image:server", "push:server"):
        proc, out = doit(project, task, e=env(project, shims, src))
        assert proc.returncode != 0
        assert tools.TOOLS["docker"].live_hint in out, out
        assert "BuildKit is enabled" not in out and "Traceback" not in out
        assert [c for c in shims.calls("docker") if c[:1] in (["build"], ["push"], ["tag"])] == []
        assert not list((project / "build").glob("images/server*.json"))
