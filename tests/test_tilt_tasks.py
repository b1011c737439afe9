"""dev, e2e, down and tilt:server-binary: what they run, against recording shims (and real
cargo for the live-reload build)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from support import FIXTURES, env_for, run_doit, tool_or_fail

SHIMS = FIXTURES / "shims"


@pytest.fixture
def stack_shims(shims):
    shims.add("k3d", (SHIMS / "k3d_handler.py").read_text())
    shims.add("kubectl", (SHIMS / "kubectl_handler.py").read_text())
    shims.add("tilt", (SHIMS / "tilt_handler.py").read_text())
    shims.add("docker")
    return shims


def doit(project, shims, *args, extra=None):
    extra = {"RAIBID_SRC": str(FIXTURES / "raibid-ci"), **(extra or {})}
    return run_doit(project, *args, env=env_for(project, extra, path_first=[shims.bin]))


def test_dev_starts_the_cluster_then_tilt(project, stack_shims):
    r = doit(project, stack_shims, "dev")
    assert r.returncode == 0, r.stdout + r.stderr
    tools = [rec["tool"] for rec in stack_shims.records()]
    assert tools.index("k3d") < tools.index("tilt")  # the cluster first: Tilt needs its context
    assert stack_shims.calls("tilt") == [["up", "--context", "k3d-raibid-ci", "--file", "Tiltfile", "--port", "10350",
                                             "--", "--env", "local"]]
    assert [rec["cwd"] for rec in stack_shims.records() if rec["tool"] == "tilt"] == [str(project)]


def test_dev_env_parameter(project, stack_shims):
    r = doit(project, stack_shims, "dev", "--env", "staging")
    assert r.returncode == 0, r.stdout + r.stderr
    assert stack_shims.calls("tilt")[-1][-2:] == ["--env", "staging"]


def test_e2e_runs_tilt_ci_and_reports_its_failure(project, stack_shims):
    r = doit(project, stack_shims, "e2e")
    assert r.returncode == 0, r.stdout + r.stderr
    assert stack_shims.calls("tilt") == [["ci", "--context", "k3d-raibid-ci", "--file", "Tiltfile", "--timeout", "30m",
                                             "--", "--env", "local"]]
    stack_shims.set_state(tilt_exit=1)
    r = doit(project, stack_shims, "e2e")
    assert r.returncode != 0


def pinned_tools(project, shims):
    """project/.tools/bin of its own: the real tools, and a recording stand-in for the pinned
    tilt (its calls land in a log of their own), first on PATH as tasks.tools.activate puts it."""
    from support import Shims

    shared = project / ".tools"
    real = shared.resolve() / "bin" if shared.exists() else None
    shared.unlink(missing_ok=True)
    pinned = Shims(project / ".tools" / "bin").add("tilt")
    for tool in ("tk", "helm", "jb"):
        if real and (real / tool).exists():
            (pinned.bin / tool).symlink_to(real / tool)
    return pinned


def test_dev_and_e2e_run_the_users_tilt_not_the_pinned_one(project, stack_shims):
    """The pinned tilt (.tools/bin, first on PATH inside doit) has no web UI: `doit dev` and
    `doit e2e` look the user's Tilt up on PATH without .tools/bin."""
    pinned = pinned_tools(project, stack_shims)
    for task in ("dev", "e2e"):
        r = doit(project, stack_shims, task)
        assert r.returncode == 0, r.stdout + r.stderr
    assert [c[0] for c in stack_shims.calls("tilt")] == ["up", "ci"]
    assert pinned.calls("tilt") == []


def test_dev_without_tilt_names_it_and_starts_nothing(project, shims):
    shims.add("k3d", (SHIMS / "k3d_handler.py").read_text())
    shims.add("kubectl", (SHIMS / "kubectl_handler.py").read_text())
    shims.add("docker")
    env = env_for(project, path_first=[shims.bin])
    pinned = pinned_tools(project, shims)  # the pinned tilt does not count: it has no UI
    env["PATH"] = os.pathsep.join([str(shims.bin), str(pinned.bin)])
    r = run_doit(project, "dev", env=env)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "tilt-ui" in out and "docs.tilt.dev/install" in out
    assert "missing tool: nothing was run." in out
    # nothing started, the cluster not even asked about; only the engine probe (the engine,
    # then its buildx), so the same message would also name an engine that does not answer
    assert [(r["tool"], r["argv"][0]) for r in shims.records()] in (
        [("docker", "info")], [("docker", "info"), ("docker", "buildx")])


def test_down_deletes_the_rendered_stack_and_the_applied_record(project, stack_shims):
    stack_shims.set_state(k3d={"clusters": {"raibid-ci": {"servers": 1, "agents": 1, "running": True}}})
    r = doit(project, stack_shims, "down")
    assert r.returncode != 0 and "doit render:local" in r.stdout + r.stderr
    assert stack_shims.calls("kubectl") == []
    (project / "build" / "manifests" / "local").mkdir(parents=True)
    r = doit(project, stack_shims, "down")
    assert r.returncode == 0, r.stdout + r.stderr
    # the record is forgotten first (so a failed delete still redeploys on the next
    # `doit up`); this render is empty, so nothing else is deleted (test_deploy.py deletes a
    # real stack from a real API server)
    deletes = [c for c in stack_shims.calls("kubectl") if "delete" in c]
    assert len(deletes) == 1 and {"configmap", "raibid-deploy-applied"} <= set(deletes[0])
    assert deletes[0][:2] == ["--context", "k3d-raibid-ci"]
    assert not any("cluster" in " ".join(c) and "delete" in c for c in stack_shims.calls("k3d"))


# ---------------------------------------------------------------- the live-reload host build


def test_server_binary_builds_incrementally_into_the_dev_context(project, src, tmp_path):
    tool_or_fail("cargo")
    host = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    triple = next(line.split()[1] for line in host.splitlines() if line.startswith("host:"))
    extra = {"RAIBID_SRC": str(src), "RAIBID_DEV_TARGET": triple, "CARGO_TARGET_DIR": str(tmp_path / "target")}
    # what the Tiltfile's local_resource runs
    env = env_for(project, extra)
    r = run_doit(project, "--db-file", ".doit.db.server-binary", "tilt:server-binary", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"--target {triple}" in r.stdout
    assert (project / ".doit.db.server-binary").exists() and not (project / ".doit.db").exists()
    out = project / "build" / "tilt" / "server"
    binary = out / "raibid-server"
    built = tmp_path / "target" / triple / "debug" / "raibid-server"
    assert binary.read_bytes() == built.read_bytes() and os.access(binary, os.X_OK)
    digest = (out / "cargo-manifests.sha256").read_text()
    mtime = binary.stat().st_mtime_ns
    # nothing changed: the binary is not rewritten (Tilt would sync and restart for nothing)
    r = run_doit(project, "tilt:server-binary", env=env)
    assert r.returncode == 0 and "raibid-server: unchanged" in r.stdout
    assert binary.stat().st_mtime_ns == mtime
    # a source change: a new binary, the same manifests digest (a live update, no image build)
    main = src / "crates" / "server" / "src" / "main.rs"
    main.write_text(main.read_text().replace('"404 Not Found"', '"404 Nothing Here"'))
    r = run_doit(project, "tilt:server-binary", env=env)
    assert r.returncode == 0 and "raibid-server: updated" in r.stdout
    assert b"404 Nothing Here" in binary.read_bytes()
    assert (out / "cargo-manifests.sha256").read_text() == digest
    # a Cargo.toml change: the digest file changes (Tilt's fall_back_on: full image build)
    toml = src / "crates" / "server" / "Cargo.toml"
    toml.write_text(toml.read_text() + '\n[features]\nextra = []\n')
    r = run_doit(project, "tilt:server-binary", env=env)
    assert r.returncode == 0 and "full image rebuild" in r.stdout
    assert (out / "cargo-manifests.sha256").read_text() != digest


def test_server_binary_names_a_missing_workspace(project, tmp_path):
    r = run_doit(project, "tilt:server-binary", env=env_for(project, {"RAIBID_SRC": str(tmp_path / "nope")}))
    assert r.returncode != 0
    assert "Cargo.toml not found: set RAIBID_SRC" in r.stdout + r.stderr


def test_server_binary_target_follows_the_cluster_architecture(project, tmp_path, monkeypatch):
    from tasks import tilt

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    monkeypatch.delenv("RAIBID_DEV_TARGET", raising=False)
    (project / "build").mkdir()
    (project / "build" / "cluster.json").write_text(json.dumps({"arch": "arm64"}))
    assert tilt.rust_target() == "aarch64-unknown-linux-gnu"
    (project / "build" / "cluster.json").write_text(json.dumps({"arch": "amd64"}))
    assert tilt.rust_target() == "x86_64-unknown-linux-gnu"
    monkeypatch.setenv("RAIBID_DEV_TARGET", "x86_64-unknown-linux-musl")
    assert tilt.rust_target() == "x86_64-unknown-linux-musl"


@pytest.mark.parametrize("task", ["dev", "e2e"])
def test_dev_and_e2e_without_the_raibid_ci_source_stop_before_the_cluster(project, stack_shims, task):
    r = doit(project, stack_shims, task, extra={"RAIBID_SRC": str(project / "no-such-raibid-ci")})
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert f"FAILED {task}:tools" in out and "no-such-raibid-ci does not exist" in out
    assert stack_shims.calls("k3d") == [] and stack_shims.calls("tilt") == []
