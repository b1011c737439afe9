"""The input digest, the Dockerfile contracts, hadolint (real) and the compose validation."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from support import FIXTURES, REPO, env_for, run_doit, tool_or_fail

HANDLER = (FIXTURES / "shims" / "docker_handler.py").read_text()


@pytest.fixture
def here(project, src, monkeypatch):
    """Run tasks.docker in-process against the project copy and the fixture."""
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    monkeypatch.setenv("RAIBID_SRC", str(src))
    monkeypatch.setenv("RAIBID_PLATFORM", "linux/amd64")
    for k in ("RAIBID_IMAGE_VERSION", "RAIBID_IMAGE_REVISION", "RAIBID_IMAGE_SOURCE"):
        monkeypatch.delenv(k, raising=False)
    return project


def tags():
    from tasks.docker import image_inputs

    return {n: image_inputs(n).tag for n in ("server", "agent")}


# --------------------------------------------------------------------------- digest


def test_digest_follows_exactly_the_inputs(here, src, monkeypatch):
    base = tags()
    assert base == tags(), "same inputs, same tags"
    assert all(re.fullmatch(rf"raibid-{n}:[0-9a-f]{{12}}", t) for n, t in base.items())

    for ignored in ("target/release/raibid-server", ".git/index", "build/out.txt", "crates/server/target/x",
                    ".env", "docs/guide.md", "tanka/main.jsonnet", "Tiltfile"):
        p = src / ignored
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("ignored")
    assert tags() == base, "files the ignore file excludes are not inputs"

    (src / "crates" / "agent" / "src" / "extra.rs").write_text("// new file\n")
    t1 = tags()
    assert t1["server"] != base["server"] and t1["agent"] != base["agent"]

    ds = here / "docker" / "server.Dockerfile.dockerignore"
    ds.write_text(ds.read_text() + "crates/agent/src/extra.rs\n")
    t2 = tags()
    assert t2["server"] != t1["server"], "the ignore file is an input"
    assert t2["agent"] == t1["agent"]

    monkeypatch.setenv("RAIBID_IMAGE_VERSION", "9.9.9")
    t3 = tags()
    assert t3["server"] != t2["server"] and t3["agent"] != t2["agent"], "build args are inputs"
    monkeypatch.delenv("RAIBID_IMAGE_VERSION")
    assert tags() == t2

    monkeypatch.setenv("RAIBID_PLATFORM", "linux/arm64")
    assert tags()["server"] != t2["server"], "the platform is an input"
    monkeypatch.setenv("RAIBID_PLATFORM", "linux/amd64")

    main = src / "crates" / "server" / "src" / "main.rs"
    main.chmod(0o755)
    assert tags()["server"] != t2["server"], "the executable bit reaches the image, so it is an input"
    main.chmod(0o644)
    assert tags() == t2

    (src / "crates" / "agent" / "src" / "extra.rs").unlink()
    assert tags()["agent"] == base["agent"], "removing the new file restores the old tag"


def test_content_change_with_same_size_and_mtime_is_seen_after_the_racy_window(here, src):
    """The stat cache never trusts an entry hashed while its mtime was too recent."""
    from tasks.docker import DigestCache, context_digest, digest_cache_path, ignore_patterns, ignorefile

    f = src / "crates" / "common" / "src" / "lib.rs"
    old = os.stat(f)
    pats = ignore_patterns(ignorefile("server"))
    first = context_digest(src, pats)
    cached = json.loads(digest_cache_path().read_text())
    assert str(f) in cached, "an old file is cached"
    f.write_text(f.read_text().replace("Reads", "Finds"))  # same size
    os.utime(f, ns=(old.st_atime_ns, old.st_mtime_ns))
    # same (size, mtime): the cache (correctly, by design) answers for it ...
    assert context_digest(src, pats) == first
    # ... and a fresh cache sees the new content
    assert context_digest(src, pats, DigestCache(src.parent / "fresh.json")) != first


def test_dockerignore_rules_are_dockers(tmp_path):
    from tasks.docker import context_files

    root = tmp_path / "ctx"
    for rel in ("a.rs", "target/x", "crates/c/target/y", "docs/keep.md", "docs/drop.md", "deep/a/b/c.tmp",
                "raibid-server", "x.tmp"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)
    pats = ["**/target", "docs", "!docs/keep.md", "**/*.tmp"]
    assert context_files(root, pats) == ["a.rs", "docs/keep.md", "raibid-server"]


def test_the_ignore_files_exclude_build_output_and_keep_the_dev_binary(tmp_path):
    from tasks.docker import context_files, ignore_patterns

    root = tmp_path / "ctx"
    for rel in ("Cargo.toml", "Cargo.lock", "crates/server/src/main.rs", "crates/server/build.rs",
                "target/release/raibid-server", "crates/server/target/debug/x", ".git/HEAD", "build/images/x",
                ".env", "raibid-server"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)
    for name in ("server", "agent"):
        kept = context_files(root, ignore_patterns(REPO / "docker" / f"{name}.Dockerfile.dockerignore"))
        assert kept == ["Cargo.lock", "Cargo.toml", "crates/server/build.rs", "crates/server/src/main.rs",
                        "raibid-server"], name


# --------------------------------------------------------------------------- Dockerfiles


def stages(path: Path) -> dict[str, list[str]]:
    """Instructions per stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("#")))
    out, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = re.match(r"FROM\s+(?:--platform=\S+\s+)?(\S+)\s+AS\s+(\S+)", line, re.I)
        if m:
            current = m.group(2)
            out[current] = [line]
        elif current:
            out[current].append(line)
    return out


@pytest.mark.parametrize("name", ["server", "agent"])
def test_dockerfile_contract(name):
    s = stages(REPO / "docker" / f"{name}.Dockerfile")
    bin_ = f"raibid-{name}"
    assert list(s)[-1] == "runtime", "runtime is the last stage (the default target)"
    assert {"chef", "planner", "cook", "build"} <= set(s)
    assert s["chef"][0].startswith("FROM --platform=$BUILDPLATFORM"), "compilers run natively, cross-compiling"
    chef = "\n".join(s["chef"])
    assert "aarch64-unknown-linux-gnu" in chef and "x86_64-unknown-linux-gnu" in chef
    assert "CARGO_PROFILE_RELEASE_LTO=true" in chef
    assert "cargo chef prepare" in "\n".join(s["planner"])
    cook = "\n".join(s["cook"])
    assert "chef cook --release" in cook and f"--bin {bin_}" in cook
    assert "type=cache,id=raibid-cargo-registry,target=/usr/local/cargo/registry" in cook
    assert "target=/cache/target" in cook and "CARGO_TARGET_DIR=/cache/target" in cook
    assert f"build --release --locked --bin {bin_}" in "\n".join(s["build"])

    chain = s.get("runtime-base", []) + s["runtime"]  # what the runtime image is made of
    joined = "\n".join(chain)
    for label, arg in (("source", "SOURCE"), ("revision", "REVISION"), ("version", "VERSION")):
        assert f'org.opencontainers.image.{label}="${{{arg}}}"' in joined
    users = [l.split()[1] for l in chain if l.startswith("USER ")]
    assert users and re.fullmatch(r"[1-9]\d{3,}:[1-9]\d{3,}", users[-1]), "numeric non-root user"
    assert f"ENTRYPOINT [\"/usr/local/bin/{bin_}\"]" in joined
    assert re.search(r"FROM docker\.io/library/(debian|rust):\S*slim", joined), "a Debian slim runtime"


def test_server_dockerfile_has_health_ports_env_and_a_dev_target():
    s = stages(REPO / "docker" / "server.Dockerfile")
    base = "\n".join(s["runtime-base"])
    assert "EXPOSE 8080" in [l.strip() for l in s["runtime-base"]]  # no metrics port: none is served
    assert "RAIBID_SERVER_HOST=0.0.0.0" in base
    hc = next(l for l in s["runtime-base"] if l.startswith("HEALTHCHECK"))
    assert "/health/live" in hc and json.loads(hc.split("CMD", 1)[1])[0] == "/bin/bash"
    dev = s["dev"]
    assert dev[0] == "FROM runtime-base AS dev", "dev shares the runtime base (shell, user, env, ports)"
    assert any(re.match(r"COPY .*raibid-server /usr/local/bin/raibid-server$", l) for l in dev)
    assert dev[-1] == "USER 10001:10001"
    assert s["runtime"][0] == "FROM runtime-base AS runtime"


def test_hadolint_passes_on_both_dockerfiles(project):
    tool_or_fail("hadolint")
    proc = run_doit(project, "docker:lint", env=env_for(project))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = run_doit(project, "docker:lint", env=env_for(project))
    assert "up to date" in again.stdout


def test_hadolint_failure_names_file_and_rule(project):
    tool_or_fail("hadolint")
    df = project / "docker" / "agent.Dockerfile"
    df.write_text(df.read_text() + "RUN cd /tmp && echo $HOME\n")
    proc = run_doit(project, "docker:lint", env=env_for(project))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "hadolint found problems" in out
    assert re.search(r"agent\.Dockerfile:\d+ DL3003", out), out
    assert "SC2086" in out


# --------------------------------------------------------------------------- compose


def compose_env(project, shims=None):
    return env_for(project, path_first=[shims.bin] if shims else None)


def test_compose_is_valid_offline(project):
    proc = run_doit(project, "docker:compose", env=compose_env(project))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_compose_file_hard_codes_no_secret():
    doc = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    for name, svc in doc["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"SECRET|PASSWORD|TOKEN", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), f"{name}.{key} = {value!r}"
        url = (svc.get("environment") or {}).get("RAIBID_REDIS_URL")
        if url:
            assert "${REDIS_PASSWORD:?" in url
    example = (REPO / "docker" / ".env.example").read_text()
    for key in ("REDIS_PASSWORD", "RAIBID_GITEA_WEBHOOK_SECRET", "RAIBID_GITHUB_WEBHOOK_SECRET"):
        assert re.search(rf"^{key}=change-me-", example, re.M), key


def test_compose_services_as_designed():
    from tasks.compose import validate

    doc = validate(REPO / "docker" / "compose.yaml", REPO / "docker" / ".env.example", environ={})
    redis, server, agent = (doc["services"][n] for n in ("redis", "server", "agent"))
    assert redis["image"].startswith("docker.io/library/redis:")
    assert ["--appendonly", "yes"] == redis["command"][1:3]
    assert redis["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]
    assert server["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "/health/live" in " ".join(server["healthcheck"]["test"])
    assert server["environment"]["RAIBID_SERVER_HOST"] == "0.0.0.0"
    assert server["build"]["dockerfile"].endswith("/docker/server.Dockerfile")
    assert server["build"]["context"] == "../../raibid-ci" and server["build"]["target"] == "runtime"
    assert agent["profiles"] == ["agent"] and "profiles" not in server
    assert set(doc["volumes"]) >= {"redis-data", "agent-workspace"}


BREAKAGES = {
    "schema": (("condition: service_healthy\n    environment:\n      RAIBID_REDIS_URL",
                "condition: service_wonderful\n    environment:\n      RAIBID_REDIS_URL"),
               r"docker/compose\.yaml:\d+: services\.server\.depends_on\.redis\.condition: "
               r"'service_wonderful' is not one of"),
    "reference": (("      redis:\n        condition: service_healthy\n      server:",
                   "      cache:\n        condition: service_healthy\n      server:"),
                  r"docker/compose\.yaml:\d+: services\.agent\.depends_on\.cache: no service named 'cache'"),
    "unknown key": (("    restart: unless-stopped\n\n  server:", "    restrat: unless-stopped\n\n  server:"),
                    r"docker/compose\.yaml:\d+: services\.redis: .*'restrat' was unexpected"),
    "yaml": (("networks: [raibid]\n    ports:", "networks: [raibid\n    ports:"),
             r"docker/compose\.yaml:\d+: YAML syntax error"),
}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_a_broken_compose_file_fails_with_file_line_path_and_problem(project, case):
    (old, new), expected = BREAKAGES[case]
    f = project / "docker" / "compose.yaml"
    text = f.read_text()
    assert old in text
    f.write_text(text.replace(old, new, 1))
    proc = run_doit(project, "docker:compose", env=compose_env(project))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(expected, out), out
    if case == "schema":  # the line is the line of the offending value
        line = int(re.search(r"docker/compose\.yaml:(\d+): services\.server\.depends_on", out).group(1))
        assert "service_wonderful" in f.read_text().splitlines()[line - 1]


def test_a_missing_required_variable_is_named(project):
    example = project / "docker" / ".env.example"
    example.write_text(example.read_text().replace("REDIS_PASSWORD=", "# REDIS_PASSWORD="))
    e = compose_env(project)
    e.pop("REDIS_PASSWORD", None)
    proc = run_doit(project, "docker:compose", env=e)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(r"services\.server\.environment\.RAIBID_REDIS_URL: required variable REDIS_PASSWORD "
                     r"is not set: set REDIS_PASSWORD in docker/\.env", out), out


def test_compose_cli_is_used_when_it_really_works(project, shims):
    shims.add("docker", HANDLER)
    # a docker CLI without the Compose plugin: the schema check alone
    proc = run_doit(project, "docker:compose", env=compose_env(project, shims))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert shims.calls("docker") == [["compose", "version"]]

    shims.clear()
    shims.set_state(compose=True)
    (project / "docker" / "compose.yaml").touch()
    run_doit(project, "forget", "docker:compose", env=compose_env(project, shims))
    proc = run_doit(project, "docker:compose", env=compose_env(project, shims))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert shims.calls("docker") == [
        ["compose", "version"],
        ["compose", "-f", str(project / "docker" / "compose.yaml"),
         "--env-file", str(project / "docker" / ".env.example"), "config", "--quiet"]]

    shims.set_state(compose_config_rc=15)
    run_doit(project, "forget", "docker:compose", env=compose_env(project, shims))
    proc = run_doit(project, "docker:compose", env=compose_env(project, shims))
    assert proc.returncode != 0
    assert "`docker compose config` rejects it" in proc.stdout + proc.stderr


def test_interpolation_matches_compose():
    from tasks.compose import interpolate

    env = {"SET": "v", "EMPTY": ""}
    problems: list[str] = []
    cases = {
        "$SET ${SET}": "v v", "$$SET": "$SET", "${UNSET:-d}": "d", "${EMPTY:-d}": "d", "${EMPTY-d}": "",
        "${UNSET-d}": "d", "${SET:+alt}": "alt", "${EMPTY:+alt}": "", "${EMPTY+alt}": "alt",
        "${UNSET:-${SET}}/x": "v/x", "a$": "a$", "${SET:?m}": "v",
    }
    for text, want in cases.items():
        assert interpolate(text, env, "p", problems) == want, text
    assert problems == []
    interpolate("${EMPTY:?give it}", env, "p", problems)
    interpolate("${UNSET?}", env, "q", problems)
    interpolate("${1BAD}", env, "r", problems)
    assert problems == ["p: required variable EMPTY is empty: give it",
                        "q: required variable UNSET is not set: required",
                        "r: invalid interpolation '${1BAD}'"]


# --------------------------------------------------------------------------- the fixture, for real


def test_fixture_builds_offline_and_the_server_healthcheck_probes_it(src, tmp_path):
    """The std-only workspace really builds; the image's HEALTHCHECK command, run as
    Docker runs it, is healthy against the running server and unhealthy without it."""
    import socket
    import subprocess
    import time

    cargo = tool_or_fail("cargo")
    target = tmp_path / "target"
    proc = subprocess.run([cargo, "build", "--offline", "--locked", "--release", "--bin", "raibid-server"],
                          cwd=src, env=dict(os.environ, CARGO_TARGET_DIR=str(target)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr

    hc = next(l for l in stages(REPO / "docker" / "server.Dockerfile")["runtime-base"] if l.startswith("HEALTHCHECK"))
    probe = json.loads(hc.split("CMD", 1)[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = dict(os.environ, RAIBID_SERVER_PORT=port, RAIBID_SERVER_HOST="127.0.0.1")
    assert subprocess.run(probe, env=env, capture_output=True, timeout=10).returncode != 0, "no server: unhealthy"
    server = subprocess.Popen([str(target / "release" / "raibid-server")], env=env)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(probe, env=env, capture_output=True, timeout=10).returncode != 0:
            assert time.monotonic() < deadline, "the probe never saw the server healthy"
            time.sleep(0.1)
        assert all(subprocess.run(probe, env=env, capture_output=True, timeout=10).returncode == 0
                   for _ in range(5))
    finally:
        server.terminate()
        server.wait(timeout=10)


# --------------------------------------------------------------------------- the engine (#20)

ENGINE = '''
import sys
def handle(argv, state, rec):
    if argv == ["--version"]:
        print(f"Docker version {state.get('client', '28.2.2')}, build e6534b4")
        return 0
    if argv[:1] == ["info"]:
        print(state.get("server", "20.10.24+dfsg1"))
        return 0
    if argv[:2] == ["buildx", "version"]:
        if state.get("buildx"):
            print("github.com/docker/buildx v0.39.1")
            return 0
        sys.stderr.write("docker: unknown command: docker buildx\\n")
        return 1
    return 1
'''


@pytest.mark.parametrize("state, problem", [
    ({"buildx": True}, ""),
    ({"buildx": False}, "the docker client has no buildx"),
    ({"buildx": False, "client": "20.10.24"}, ""),  # its own BuildKit client: DOCKER_BUILDKIT=1
    ({"buildx": True, "server": "19.03.15"}, "the Docker engine is 19.03.15, older than 20.10"),
])
def test_the_docker_check_asks_the_engine_version_and_buildx(shims, monkeypatch, state, problem):
    """What `doit doctor`, the preflights of up/dev/e2e and image:* report about docker."""
    from tasks import tools

    shims.add("docker", ENGINE)
    shims.set_state(**state)
    monkeypatch.setenv("PATH", f"{shims.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(tools, "which", lambda name: str(shims.bin / name))
    found = tools.live_problem(tools.TOOLS["docker"])
    assert (problem in found) if problem else found == "", found
