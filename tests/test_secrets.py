"""Secrets stay with their owner: caches and outputs that can hold one are owner-only, a
credential in a URL is never printed, the test control plane's etcd needs a client
certificate (issue #25, B.8)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


@pytest.fixture
def private_root(tmp_path, monkeypatch):
    """A project root of its own, with the usual umask (files 0644, directories 0755)."""
    from tasks import manifests

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(tmp_path))
    monkeypatch.setattr(manifests, "_DOCS_DIRS", {}, raising=False)
    monkeypatch.setattr(manifests, "_COUNTS", {})
    old = os.umask(0o022)
    yield tmp_path
    os.umask(old)


def test_the_parse_cache_is_owner_only_and_never_keeps_a_secret(private_root):
    from tasks import manifests

    build = private_root / "build"
    # a cache an older version left open (0755, 0644): it may hold parsed Secrets
    old = build / ".cache" / "yaml"
    old.mkdir(parents=True)
    (old / "old.json").write_text('[{"kind": "Secret", "stringData": {"p": "OLD-PASSWORD"}}]')
    render = build / "manifests" / "local"
    render.mkdir(parents=True)
    (render / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    (render / "secret.yaml").write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
                                        "stringData: {redis-password: S3CRET-VALUE}\n")
    for f in ("cm.yaml", "secret.yaml"):
        for _ in range(2):  # a miss, then a hit
            assert manifests.file_docs(render / f)[0]["metadata"]["name"] in ("c", "s")
    assert _mode(build / ".cache") == 0o700 and _mode(old) == 0o700
    entries = list(old.iterdir())
    assert len(entries) == 1 and [_mode(e) for e in entries] == [0o600]
    assert "ConfigMap" in entries[0].read_text()
    manifests._store_valid({"a-key"})
    assert _mode(build / ".cache" / "schema-valid.json") == 0o600


def test_a_local_secrets_file_readable_by_others_is_not_up_to_date(project, monkeypatch):
    from tasks import local_secrets

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    local_secrets.generate_local_secrets()
    f = local_secrets.local_secrets_file()
    (task,) = local_secrets.task_secrets()
    assert all(check() for check in task["uptodate"])
    f.chmod(0o644)  # complete, but left readable (an older version, a copy)
    assert not any(check() for check in task["uptodate"])
    func, args = task["actions"][0]
    assert func(*args) is None
    assert _mode(f) == 0o600 and all(check() for check in task["uptodate"])
    f.write_text("[]")  # not an object: not up to date, and no traceback
    f.chmod(0o600)
    assert not any(check() for check in task["uptodate"])


def _ci_cached(project: Path) -> list[Path]:
    """The files of ``project`` that CI's actions/cache steps save (their ``path`` globs,
    ``!`` excluding, a directory standing for all under it)."""
    import fnmatch

    import yaml

    from support import REPO

    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    patterns = [line.strip() for job in workflow["jobs"].values() for step in job["steps"]
                if str(step.get("uses", "")).startswith("actions/cache")
                for line in str(step["with"]["path"]).splitlines() if line.strip()]

    def matches(rel: str, globs) -> bool:
        parts = rel.split("/")
        return any(fnmatch.fnmatchcase("/".join(parts[:i]), g) for g in globs
                   for i in range(1, len(parts) + 1))

    keep = [p for p in patterns if not p.startswith("!")]
    drop = [p[1:] for p in patterns if p.startswith("!")]
    files = [p for p in project.rglob("*") if p.is_file() and not p.is_symlink()]
    return [p for p in files if matches(rel := p.relative_to(project).as_posix(), keep)
            and not matches(rel, drop)]


def test_what_ci_caches_of_a_validated_checkout_holds_no_local_secret(stack):
    values = json.loads((stack / "tanka/environments/local/secrets.local.json").read_text())
    cached = _ci_cached(stack)
    assert any(p.parts[-2:-1] == ("yaml",) for p in cached)  # the parse cache is saved
    leaks = [(p.relative_to(stack).as_posix(), k) for p in cached for k, v in values.items()
             if v.encode() in p.read_bytes()]
    assert leaks == []


def test_messages_never_print_the_credentials_of_a_url(tmp_path):
    from tasks import gitops, manifests
    from tasks.problems import redact

    assert redact("at http://raibid-admin:S3CRET-TOKEN-xyz@127.0.0.1:9/x.git and "
                  "'https://TOKEN@h/p', git@github.com:o/r") == (
        "at http://***@127.0.0.1:9/x.git and 'https://***@h/p', git@github.com:o/r")
    # publish to an unreachable repository whose URL carries a token; and a git that echoes it
    objs = [{"kind": "GitRepository", "metadata": {
        "name": "raibid", "annotations": {gitops.PUBLISH_PATH: "environments/x"}}}]
    url = "http://raibid-admin:S3CRET-TOKEN-xyz@127.0.0.1:9/raibid/gitops.git"
    for u in (url, f"file://raibid-admin:S3CRET-TOKEN-xyz@{tmp_path}/none.git"):
        with pytest.raises(gitops.PublishError) as e:
            gitops.publish(tmp_path, objs, u, "m")
        assert "cannot reach" in str(e.value) and "S3CRET" not in str(e.value)
    assert "S3CRET" not in str(gitops.PublishError(f"git said: fatal: {url} refused"))
    # the url-secret policy names the URL it found, not its password
    pod = {"containers": [{"name": "c", "env": [{"name": "U", "value": "redis://:S3CRET@r:6379"}]}]}
    pod = {"kind": "Pod", "metadata": {"name": "p"}, "spec": pod}
    (v,) = manifests.url_secret_violations([pod])
    assert "redis://***@" in str(v) and "S3CRET" not in str(v)


_PUBLISH = """
import sys
from pathlib import Path
from tasks import gitops
objs = [{"kind": "GitRepository", "metadata": {"name": "r", "annotations": {
    gitops.PUBLISH_PATH: "environments/x"}}}]
print(gitops.publish(Path(sys.argv[1]), objs, sys.argv[2], "m"))
"""


def test_a_killed_publish_leaves_no_clone_behind_the_next_one(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys
    import time

    from support import REPO

    bare = tmp_path / "gitops.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    render = tmp_path / "render"
    render.mkdir()
    (render / "a.yaml").write_text("kind: ConfigMap\n")
    root = tmp_path / "project"
    root.mkdir()
    # a git that records the clone `git init` makes and its own pid, then hangs there
    shims, record = tmp_path / "shims", tmp_path / "init.txt"
    shims.mkdir()
    real = shutil.which("git")
    (shims / "git").write_text(f'#!/bin/sh\nif [ "$1" = init ]; then "{real}" "$@" || exit 1\n'
                               '  for a; do last=$a; done\n'
                               f'  echo "$$ $last" > "{record}"; exec sleep 60\n'
                               f'fi\nexec "{real}" "$@"\n')
    (shims / "git").chmod(0o755)
    env = dict(os.environ, PATH=f"{shims}:{os.environ['PATH']}", RAIBID_DEPLOY_ROOT=str(root),
               PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _PUBLISH, str(render), f"file://{bare}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (record.exists() and record.read_text().endswith("\n")):
            assert time.monotonic() < deadline and proc.poll() is None, "publish never cloned"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # a finally does not run
        proc.wait(timeout=30)
    finally:
        pid, clone = record.read_text().split() if record.exists() else ("", "")
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if pid:
            os.kill(int(pid), signal.SIGKILL)  # the hanging shim, by its pid
    assert Path(clone).is_dir()  # the killed publish left its clone

    from tasks import gitops

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(root))
    objs = [{"kind": "GitRepository", "metadata": {"name": "r", "annotations": {
        gitops.PUBLISH_PATH: "environments/x"}}}]
    changed, _ = gitops.publish(render, objs, f"file://{bare}", "m")
    assert changed and not Path(clone).exists()
    assert list(gitops.clones().iterdir()) == []


def test_etcd_answers_only_tls_clients_with_a_certificate_of_the_control_plane(controlplane):
    import ssl
    import urllib.request

    cp = controlplane
    url = f"127.0.0.1:{cp.state()['ports']['etcd']}/v3/kv/range"
    body = json.dumps({"key": "L3JlZ2lzdHJ5"}).encode()  # /registry: where every Secret is

    def ask(scheme: str, context=None) -> str:
        try:
            with urllib.request.urlopen(f"{scheme}://{url}", body, 10, context=context) as r:
                return str(r.status)
        except OSError as e:  # refused, reset, a failed handshake
            return type(e).__name__

    assert ask("http") != "200"  # no plain HTTP
    anyone = ssl.create_default_context(cafile=str(cp.pki / "ca.crt"))
    assert ask("https", anyone) != "200"  # TLS without a client certificate
    assert ask("https", cp._etcd_ssl()) == "200"  # the API server's client certificate
    assert _mode(cp.pki) == 0o700
    keys = sorted(cp.pki.rglob("*.key"))
    assert {k.name for k in keys} >= {"ca.key", "etcd.key", "etcd-client.key"}
    assert [k.name for k in keys if _mode(k) != 0o600] == []


#: a start that hangs in ``spawn`` of the named component (``""``: none), as doit killed
#: after etcd and the API server came up
_START = """
import sys, time
from pathlib import Path
from tasks import controlplane
hang = sys.argv[2]
spawn = controlplane.ControlPlane.spawn
def hanging(self, name, argv, env=None):
    if name == hang:
        time.sleep(600)
    return spawn(self, name, argv, env)
controlplane.ControlPlane.spawn = hanging
controlplane.start(Path(sys.argv[1]), fake_node=False)
print("started")
"""


def _started_here(directory: Path) -> set[int]:
    """Pids of processes running in ``directory`` (a control plane starts each there)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "cwd") == str(directory):
                pids.add(int(proc.name))
        except OSError:
            pass
    return pids


def _api_answers(cp) -> bool:
    from tasks import controlplane as cpmod

    try:  # the PKI may not be made yet
        return bool(cp.port) and not cpmod._answer(f"https://127.0.0.1:{cp.port}/readyz",
                                                   cp._ssl(), 2)
    except OSError:
        return False


def test_concurrent_and_killed_starts_leave_one_complete_recorded_control_plane(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from support import REPO, tool_or_fail
    from tasks import controlplane as cpmod

    for name in cpmod.TOOLS:
        tool_or_fail(name)
    cp = cpmod.ControlPlane(tmp_path / "cp")
    env = dict(os.environ, PYTHONPATH=str(REPO), RAIBID_DEPLOY_ROOT=str(REPO))

    def start(hang: str = "") -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", _START, str(cp.dir), hang], env=env,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    procs = []
    try:
        procs = [start(), start()]  # at once: the second waits for the first, then reuses it
        outs = [p.communicate(timeout=300)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        names = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
        assert set(cp.state()["components"]) == names and cp.alive()
        recorded = {p["pid"] for p in cp.processes()}
        assert _started_here(cp.dir) == recorded  # nothing runs that stop would not stop
        assert cpmod.stop(cp.dir) and _started_here(cp.dir) == set()

        # killed once etcd and the API server answer, before the controller manager starts
        procs = [start(hang="kube-controller-manager")]
        deadline = time.monotonic() + 120
        while not _api_answers(cp):
            assert time.monotonic() < deadline and procs[0].poll() is None, "no API server answered"
            time.sleep(0.2)
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(timeout=30)
        half = {p["pid"] for p in cp.processes()}
        assert not cp.alive()  # not a control plane anyone may use
        again = cpmod.start(cp.dir, fake_node=False)
        assert not again.reused and set(again.state()["components"]) == names and again.alive()
        assert not half & {p["pid"] for p in again.processes()}
        assert _started_here(cp.dir) == {p["pid"] for p in again.processes()}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        cp.stop()
        for pid in _started_here(cp.dir):  # unrecorded ones, if any (by pid, all ours)
            os.kill(pid, signal.SIGKILL)


def test_a_second_holder_of_a_lock_says_it_waits_then_waits(tmp_path):
    import threading
    import time

    from tasks import atomic

    said, got = [], []

    def second():
        with atomic.locked(tmp_path, waiting=lambda: said.append("waiting")):
            got.append("locked")

    with atomic.locked(tmp_path):
        t = threading.Thread(target=second)
        t.start()
        deadline = time.monotonic() + 10
        while not said and time.monotonic() < deadline:
            time.sleep(0.01)
        assert said == ["waiting"] and got == []
    t.join(timeout=10)
    assert got == ["locked"]
    with atomic.locked(tmp_path, waiting=lambda: said.append("again")):
        pass  # free: nothing said
    assert said == ["waiting"]
