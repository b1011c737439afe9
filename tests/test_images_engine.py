"""image:* and push:* with a real Docker engine (#20): the session's engine (tests/engine.py:
the user's, or a private dockerd), BuildKit through the pinned buildx, the fixture workspace
tests/fixtures/raibid-ci as the context, the stand-in base images, and the pinned
distribution registry on loopback. No docker shim."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from support import REPO, env_for, run_doit, tool_or_fail

IMAGES = ("server", "agent")


def env(project, engine, src, **extra):
    return env_for(project, {"RAIBID_SRC": str(src), "RAIBID_PLATFORM": "linux/amd64",
                             # the private engine has no bridge network (tests/engine.py)
                             "RAIBID_BUILD_NETWORK": "host", **engine.env, **extra})


def record(project, name, suffix=".json"):
    return json.loads((project / "build" / "images" / f"{name}{suffix}").read_text())


def doit(project, *args, e):
    proc = run_doit(project, *args, env=e, timeout=1800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def inspect(engine, ref) -> dict:
    return json.loads(engine.docker("image", "inspect", ref).stdout)[0]


@pytest.fixture
def built(engine, project, src):
    """Both images built from the fixture workspace: (project, src, env)."""
    e = env(project, engine, src)
    out = doit(project, "image:server", "image:agent", e=e)
    assert out.count("building raibid-") == 2, out
    return project, src, e


def test_both_images_build_and_carry_user_labels_and_healthcheck(engine, built):
    project, _, _ = built
    for name in IMAGES:
        rec = record(project, name)
        assert set(rec) == {"name", "tag", "image_id", "digest", "platform"}
        assert rec["tag"] == f"raibid-{name}:{rec['digest'][:12]}"
        assert rec["platform"] == "linux/amd64"
        img = inspect(engine, rec["tag"])
        assert img["Id"] == rec["image_id"]
        assert img["Architecture"] == "amd64" and img["Os"] == "linux"
        cfg = img["Config"]
        assert cfg["User"] == "10001:10001", "the images run as their own non-root user"
        assert cfg["Labels"]["org.opencontainers.image.title"] == f"raibid-{name}"
        assert cfg["Labels"]["org.opencontainers.image.version"] == "0.1.0"
        source = cfg["Labels"]["org.opencontainers.image.source"]
        assert source == "https://example.invalid/raibid-ci"
        assert cfg["Entrypoint"] == [f"/usr/local/bin/raibid-{name}"]
    assert "Healthcheck" in inspect(engine, record(project, "server")["tag"])["Config"]
    # the binary is an x86-64 executable the image's own libc runs
    out = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "/bin/bash",
                        record(project, "agent")["tag"], "-c",
                        "id -u; head -c 20 /usr/local/bin/raibid-agent | od -An -tx1 | head -1")
    uid, elf = out.stdout.split("\n", 1)
    assert uid == "10001" and elf.split()[:4] == ["7f", "45", "4c", "46"]


def _server_env(stack) -> dict:
    """The plain (non-secret) environment the rendered local Deployment gives raibid-server."""
    from contract import rendered_env

    values, _ = rendered_env(stack / "build" / "manifests" / "local", "server")
    return {k: str(v) for k, v in values.items() if isinstance(v, (str, int))}


def test_the_server_runs_with_the_deployments_env_and_its_healthcheck_passes(engine, built, stack):
    project, _, _ = built
    denv = _server_env(stack)
    assert denv["RAIBID_SERVER_HOST"] == "0.0.0.0"
    argv = ["run", "-d", "--network", "none", "--health-interval", "1s"]
    for k, v in denv.items():
        argv += ["-e", f"{k}={v}"]
    cid = engine.docker(*argv, record(project, "server")["tag"]).stdout.strip()
    try:
        probe = (f"exec 3<>/dev/tcp/127.0.0.1/{denv['RAIBID_SERVER_PORT']} && printf "
                 f"'GET /health/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3")
        deadline, status, answer = time.monotonic() + 60, "", ""
        while time.monotonic() < deadline:
            status = engine.docker("inspect", "--format", "{{.State.Health.Status}}",
                                   cid).stdout.strip()
            answer = engine.docker("exec", cid, "/bin/bash", "-c", probe, check=False).stdout
            if status == "healthy" and "200" in answer:
                break
            time.sleep(0.5)
        assert status == "healthy", engine.docker("logs", cid, check=False).stderr
        assert answer.startswith("HTTP/1.1 200")
        user = engine.docker("exec", cid, "id", "-u").stdout.strip()
        assert user == "10001"
        # it listens on every address of its network namespace, as the Deployment asks
        listening = engine.docker("exec", cid, "cat", "/proc/net/tcp").stdout
        port = f"{int(denv['RAIBID_SERVER_PORT']):04X}"
        assert f"00000000:{port}" in listening
    finally:
        engine.docker("rm", "-f", cid, check=False)


def _built(out: str) -> list[str]:
    return [ln.split()[1] for ln in out.splitlines() if ln.startswith("building raibid-")]


def test_the_digest_tag_skips_a_second_build_until_an_input_changes(engine, built):
    project, src, e = built
    first = {n: record(project, n)["tag"] for n in IMAGES}
    out = doit(project, "image:server", "image:agent", e=e)
    assert _built(out) == [] and "up to date" in out, "unchanged inputs, image present"

    # an image gone from the engine is built again (from BuildKit's cache), same tag
    engine.docker("rmi", first["agent"])
    out = doit(project, "image:server", "image:agent", e=e)
    assert _built(out) == [first["agent"]]
    assert inspect(engine, first["agent"])["Id"] == record(project, "agent")["image_id"]

    # a change to an ignored file changes nothing
    (src / "target").mkdir()
    (src / "target" / "x").write_text("build output")
    assert _built(doit(project, "image:server", "image:agent", e=e)) == []

    # a Dockerfile change rebuilds that image only
    df = project / "docker" / "server.Dockerfile"
    df.write_text(df.read_text() + "# a comment\n")
    out = doit(project, "image:server", "image:agent", e=e)
    assert _built(out) == [record(project, "server")["tag"]] != [first["server"]]
    assert record(project, "agent")["tag"] == first["agent"]

    # a source change rebuilds both (they share the context) with new tags; the server's
    # binary changed, so did its image
    main = src / "crates" / "server" / "src" / "main.rs"
    main.write_text(main.read_text().replace('"404 Not Found"', '"404 Not found"'))
    old_id = record(project, "server")["image_id"]
    out = doit(project, "image:server", "image:agent", e=e)
    assert len(_built(out)) == 2
    for n in IMAGES:
        rec = record(project, n)
        assert rec["tag"] != first[n] and inspect(engine, rec["tag"])["Id"] == rec["image_id"]
    assert record(project, "server")["image_id"] != old_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """The pinned distribution registry on 127.0.0.1 (storage in ``root``), stopped by pid."""

    def __init__(self, root: Path, port: int):
        self.root, self.port, self.proc = root, port, None

    def start(self):
        exe = tool_or_fail("registry")
        cfg = self.root / "config.yml"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(f"version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem:\n"
                       f"    rootdirectory: {self.root / 'data'}\n"
                       f"http:\n  addr: 127.0.0.1:{self.port}\n")
        log = open(self.root / "registry.log", "ab")
        self.proc = subprocess.Popen([exe, "serve", str(cfg)], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert self.proc.poll() is None, (self.root / "registry.log").read_text()
                time.sleep(0.1)
        raise AssertionError("the registry did not listen within 20 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tags(self, repo: str) -> list[str]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/{repo}/tags/list",
                                        timeout=10) as r:
                return json.loads(r.read()).get("tags") or []
        except urllib.error.HTTPError as e:
            if e.code == 404:  # no such repository (yet)
                return []
            raise


@pytest.fixture
def registry(tmp_path):
    reg = Registry(tmp_path / "registry", _free_port()).start()
    yield reg
    reg.stop()


def test_push_reaches_a_real_registry_and_pushes_again_when_it_lost_the_tag(engine, built,
                                                                           registry):
    project, _, e = built
    settings = json.loads((project / "deploy.json").read_text())
    settings["registry_port"] = registry.port
    (project / "deploy.json").write_text(json.dumps(settings, indent=2) + "\n")
    registry.stop()  # no registry: the push fails, names it, and records nothing
    proc = run_doit(project, "push:server", env=e)
    assert proc.returncode != 0 and "Is the k3d registry running?" in proc.stdout + proc.stderr
    assert not (project / "build" / "images" / "server.cluster.json").exists()
    registry.start()
    out = doit(project, "push:server", e=e)
    tag = record(project, "server")["tag"]
    assert f"docker push localhost:{registry.port}/{tag}" in out
    assert registry.tags("raibid-server") == [tag.split(":")[1]]
    assert record(project, "server", ".cluster.json")["ref"] == \
        f"k3d-raibid-registry.localhost:{registry.port}/{tag}"

    out = doit(project, "push:server", e=e)
    assert "docker push" not in out, "the registry holds the tag (asked live): no push"

    # a recreated registry is empty: the live check sees it and the image is pushed again
    registry.stop()
    shutil.rmtree(registry.root / "data")
    registry.start()
    assert registry.tags("raibid-server") == []
    out = doit(project, "push:server", e=e)
    assert f"docker push localhost:{registry.port}/{tag}" in out
    assert registry.tags("raibid-server") == [tag.split(":")[1]]


def _get(port: int, path: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_compose_up_waits_for_a_healthy_stack_and_down_leaves_nothing(engine, built, tmp_path):
    """docker/compose.yaml with the images image:* built (tagged as compose names them: the
    private engine has no bridge network to build in), Redis and the server on a network
    of their own, published on free loopback ports only."""
    import engine as engmod
    import yaml

    project, src, e = built
    compose = yaml.safe_load((project / "docker" / "compose.yaml").read_text())
    engmod.ensure_redis(engine, compose["services"]["redis"]["image"])
    for name in IMAGES:
        engine.docker("tag", record(project, name)["tag"], compose["services"][name]["image"])
    server_port, redis_port = _free_port(), _free_port()
    cenv = {**e, "RAIBID_SERVER_PUBLISH": f"127.0.0.1:{server_port}",
            "REDIS_PUBLISH": f"127.0.0.1:{redis_port}"}
    name = f"raibid-test-{os.getpid()}"
    base = ["compose", "-p", name, "-f", str(project / "docker" / "compose.yaml"),
            "--env-file", str(project / "docker" / ".env.example")]
    try:
        proc = engine.docker(*base, "up", "--wait", "--no-build", check=False, timeout=300,
                             env=cenv, cwd=project)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ps = engine.docker(*base, "ps", "--format", "json", env=cenv, cwd=project).stdout
        rows = [json.loads(line) for line in ps.splitlines() if line.strip()]
        rows = rows[0] if rows and isinstance(rows[0], list) else rows
        assert {r["Service"]: r["Health"] for r in rows} == {"redis": "healthy",
                                                              "server": "healthy"}
        assert _get(server_port, "/health/live") == 200
        ping = engine.docker(*base, "exec", "-T", "redis", "redis-cli", "ping", env=cenv,
                             cwd=project)
        assert ping.stdout.strip() == "PONG"
    finally:
        down = engine.docker(*base, "down", "-v", check=False, env=cenv, cwd=project)
    assert down.returncode == 0, down.stdout + down.stderr
    label = f"label=com.docker.compose.project={name}"
    for kind in ("container", "network", "volume"):
        left = engine.docker(kind, "ls", *(["-a"] if kind == "container" else []), "-q",
                             "--filter", label).stdout.split()
        assert left == [], f"{kind}s left by `down -v`: {left}"


@pytest.mark.parametrize("edit, cause", [
    (lambda t: "# syntax=docker.io/docker/dockerfile:1.7\n" + t,
     "the Dockerfile frontend docker.io/docker/dockerfile:1.7 (a `# syntax=` line) cannot be "
     "pulled"),
    (lambda t: t.replace("FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim",
                         "FROM docker.io/raibid-test/no-such-base:1"),
     "the base image docker.io/raibid-test/no-such-base:1 cannot be pulled"),
], ids=["frontend", "base-image"])
def test_a_failed_build_says_why_in_one_line(engine, project, src, edit, cause):
    dockerfile = project / "docker" / "server.Dockerfile"
    dockerfile.write_text(edit(dockerfile.read_text()))
    proc = run_doit(project, "image:server", env=env(project, engine, src))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    (line,) = [ln for ln in out.splitlines() if "docker build of raibid-server:" in ln]
    assert cause in line, out[-3000:]
    assert not (project / "build" / "images" / "server.json").exists()
    # and the next run, with the Dockerfile fixed, builds it
    shutil.copyfile(REPO / "docker" / "server.Dockerfile", dockerfile)
    doit(project, "image:server", e=env(project, engine, src))
    assert (project / "build" / "images" / "server.json").exists()


def test_a_build_without_a_network_names_the_setting(engine, project, src):
    """The private engine has no bridge network: a build without RAIBID_BUILD_NETWORK says so."""
    if engine.pid is None:
        pytest.skip("the user's engine has its own networks")  # the private one in CI
    proc = run_doit(project, "image:agent", env=env(project, engine, src, RAIBID_BUILD_NETWORK=""))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "no bridge network for the build's RUN steps: set RAIBID_BUILD_NETWORK=host" in out


def test_the_pinned_toolchain_builds_whatever_rust_toolchain_toml_says(engine, project, src):
    """A workspace's rust-toolchain.toml (raibid-ci's says "stable") cannot switch the
    image's toolchain: here it names one that exists nowhere, so rustup would fail."""
    import engine as engmod

    (src / "rust-toolchain.toml").write_text('[toolchain]\nchannel = "0.0.1"\n')
    doit(project, "image:server", "image:agent", e=env(project, engine, src))
    want = engmod.dockerfile_arg("RUST_VERSION")
    for name in IMAGES:
        out = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "/bin/bash",
                            record(project, name)["tag"], "-c",
                            f"grep -a -o -m1 'rustc version [0-9.]*' /usr/local/bin/raibid-{name}")
        assert out.stdout.strip().startswith(f"rustc version {want}."), out.stdout
