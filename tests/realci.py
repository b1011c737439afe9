"""raibid-ci's real server and agent with the environment the local render gives them: built
from a raibid-ci checkout (RAIBID_SRC) with cargo, run on loopback against a redis-server
and a git smart-HTTP server (``git http-backend``) serving ``raibid/example``, and sent the
Tiltfile's "Send test job" button's XADD (kubectl playing the Redis pod). bench/realci.py
prints what happened; tests/test_realci.py (opt in: ``-m realci``) asserts it.

The render's addresses are moved to loopback (tests/contract.py: loopback), and the moved
environment is checked against the contract again; the binaries run with it either way, so
a value of the wrong form shows what it does to them (the report keeps both).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import contract
from support import REPO, Shims, copy_project, run_doit

#: the Services of the render that stand for what runs here, by name (the Tiltfile's too)
REDIS_SERVICE, GITEA_SERVICE = "redis-master", "gitea-http"
#: the repository the button's job names (Tiltfile: JOB)
EXAMPLE_REPO = "raibid/example"
BINARIES = ("raibid-server", "raibid-agent")
#: the agent's pod name (its AGENT_ID comes from metadata.name)
AGENT_POD = "raibid-agent-realci"


@dataclass
class Report:
    """What a run saw, and when (seconds from the start of each step)."""
    timings: dict = field(default_factory=dict)
    server: dict = field(default_factory=dict)      # route -> (HTTP status, body)
    job: dict = field(default_factory=dict)         # the button's job, as XADDed
    agent_log: list = field(default_factory=list)   # the agent's log messages
    git_requests: list = field(default_factory=list)
    status: dict | None = None                      # raibid:job:<id>:status, as the agent set it
    ports: dict = field(default_factory=dict)
    contract_problems: list = field(default_factory=list)  # the moved env against the contract


def build(src: Path) -> dict[str, Path]:
    """``cargo build`` of the two binaries in ``src`` (debug profile: the release profile
    has fat LTO); their paths."""
    subprocess.run(["cargo", "build", "--locked", *(a for b in BINARIES for a in ("-p", b))],
                   cwd=src, check=True)
    meta = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1"], cwd=src,
                          check=True, capture_output=True, text=True)
    target = Path(json.loads(meta.stdout)["target_directory"])
    return {b: target / "debug" / b for b in BINARIES}


def render_local(work: Path) -> Path:
    """A copy of this project with the stand-in charts and build/manifests/local rendered."""
    from tanka_fixtures import install_charts

    project = copy_project(work / "project")
    install_charts(project)
    run_doit(project, "render:local", check=True)
    return project


def example_repo(root: Path) -> Path:
    """A bare ``raibid/example.git`` under ``root``: a std-only Cargo crate (the agent runs
    cargo check, test and build --release in what it clones), one commit on main."""
    tree = root.parent / "example"
    (tree / "src").mkdir(parents=True)
    (tree / "Cargo.toml").write_text('[package]\nname = "example"\nversion = "0.1.0"\n'
                                     'edition = "2021"\n')
    (tree / "src" / "lib.rs").write_text("pub fn two() -> u32 { 2 }\n\n#[test]\n"
                                         "fn adds() { assert_eq!(two(), 2); }\n")
    git = ["git", "-c", "user.name=realci", "-c", "user.email=realci@127.0.0.1"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(tree)], check=True)
    subprocess.run([*git, "-C", str(tree), "add", "."], check=True)
    subprocess.run([*git, "-C", str(tree), "commit", "-q", "-m", "example"], check=True)
    bare = root / f"{EXAMPLE_REPO}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(tree), str(bare)], check=True)
    return bare


def serve_git(root: str, port: int) -> None:
    """A git smart-HTTP server on 127.0.0.1:``port``: every request handed to
    ``git http-backend`` (CGI) for the repositories under ``root``; one log line a request."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _cgi(self) -> None:
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": root, "GIT_HTTP_EXPORT_ALL": "1",
                   "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": self.client_address[0],
                   "GIT_PROTOCOL": self.headers.get("Git-Protocol", "")}
            out = subprocess.run(["git", "http-backend"], input=body, env=env,
                                 capture_output=True).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            headers = [h.split(":", 1) for h in head.decode().split("\r\n") if ":" in h]
            status = next((v.strip() for k, v in headers if k.lower() == "status"), "200 OK")
            self.send_response(int(status.split()[0]))
            for k, v in headers:
                if k.lower() != "status":
                    self.send_header(k, v.strip())
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _cgi

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def _http(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def log_entries(log: Path) -> list[tuple[float | None, str]]:
    """(time, message) of each line of a tracing log: JSON lines (time in epoch seconds), or
    text lines as they are (no time)."""
    out = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        try:
            entry = json.loads(line)
            stamp = re.sub(r"(\.\d{6})\d*", r"\1", entry["timestamp"]).replace("Z", "+00:00")
            out.append((datetime.fromisoformat(stamp).timestamp(), entry["fields"]["message"]))
        except (ValueError, KeyError, TypeError):
            out.append((None, line))
    return out


def messages(log: Path) -> list[str]:
    return [m for _, m in log_entries(log)]


def wait_for(what: str, pred, cp, name: str, timeout: float) -> float:
    """Poll ``pred`` until it holds; the time it took. Fails naming ``what`` with the end of
    process ``name``'s log when it exits or time runs out."""
    from tasks.controlplane import ControlPlaneError

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        if not cp.alive(name):
            raise ControlPlaneError(f"{name} exited before {what}; its log ends:\n"
                                    f"{cp.log_tail(name)}")
        time.sleep(0.2)
    raise ControlPlaneError(f"no {what} within {timeout:.0f} s; {name}'s log ends:\n"
                            f"{cp.log_tail(name)}")


class RealCI:
    """The scenario in ``work`` (a scratch directory): :meth:`run` once, then :meth:`stop`."""

    def __init__(self, binaries: dict[str, Path], project: Path, work: Path):
        from tasks.controlplane import ControlPlane

        self.binaries, self.project, self.work = binaries, project, work
        self.cp = ControlPlane(work / "procs")
        self.report = Report()

    def services(self, ports: dict[str, int]) -> dict[str, str]:
        """In-cluster ``host:port`` of each rendered Service in ``ports`` -> its loopback one."""
        from tasks.render import rendered_objects

        out = {}
        for o in rendered_objects(self.project / "build" / "manifests" / "local"):
            name = o["metadata"]["name"]
            if o["kind"] == "Service" and name in ports:
                ns = o["metadata"]["namespace"]
                for p in o["spec"]["ports"]:
                    out[f"{name}.{ns}.svc.cluster.local:{p['port']}"] = f"127.0.0.1:{ports[name]}"
        return out

    def env(self, binary: str, addresses: dict[str, str], **moved: str) -> dict[str, str]:
        """The render's environment of ``binary``, addresses on loopback, ``moved`` set; PATH
        and the toolchain homes added (the agent runs cargo). What breaks the contract goes
        into the report (the binaries run all the same, to show what it does to them)."""
        render = self.project / "build" / "manifests" / "local"
        values, problems = contract.rendered_env(render, binary, {"metadata.name": AGENT_POD})
        values = {**contract.loopback(values, addresses), **moved}
        problems += contract.check(contract.load(binary), values)
        self.report.contract_problems += [f"{binary}: {p}" for p in problems]
        unresolved = [n for n, v in values.items() if isinstance(v, contract.Unresolved)]
        if unresolved:
            raise AssertionError(f"the local render gives {binary} no value for {unresolved}")
        home = Path.home()
        return {**values, "PATH": os.environ["PATH"], "HOME": str(self.work / "home"),
                "CARGO_HOME": os.environ.get("CARGO_HOME", str(home / ".cargo")),
                "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(home / ".rustup"))}

    def spawn(self, name: str, exe: Path, env: dict[str, str]) -> None:
        """``exe`` with exactly ``env`` (env -i: nothing of this shell leaks in), recorded."""
        self.cp.spawn(name, ["env", "-i", *(f"{k}={v}" for k, v in env.items()), str(exe)])

    def run(self) -> Report:
        from tasks import controlplane

        r, cp, t = self.report, self.cp, time.monotonic()
        (self.work / "home").mkdir(parents=True, exist_ok=True)
        redis = controlplane.start_redis(cp, None)
        git_root = self.work / "git"
        example_repo(git_root)
        git, server_port = controlplane.free_ports(2)
        cp.spawn("git-http", [sys.executable, __file__, "serve-git", str(git_root), str(git)],
                 env={"PYTHONPATH": str(REPO)})
        cp.wait_http("git-http", f"http://127.0.0.1:{git}/{EXAMPLE_REPO}.git/info/refs"
                     "?service=git-upload-pack", 20)
        r.ports = {"redis": redis, "git": git, "server": server_port}
        r.timings["redis + git server up"] = time.monotonic() - t
        addresses = self.services({REDIS_SERVICE: redis, GITEA_SERVICE: git})

        t = time.monotonic()
        server_env = self.env("server", addresses, RAIBID_SERVER_HOST="127.0.0.1",
                              RAIBID_SERVER_PORT=str(server_port))
        self.spawn("raibid-server", self.binaries["raibid-server"], server_env)
        base = f"http://127.0.0.1:{server_port}"
        cp.wait_http("raibid-server", base + "/health", 30)
        r.timings["server answers /health"] = time.monotonic() - t
        for route in ("/health", "/health/ready", "/jobs"):
            r.server[route] = _http(base + route)
        secret = server_env["RAIBID_GITEA_WEBHOOK_SECRET"]
        r.server["/webhooks/gitea (signed)"] = self.webhook(base, secret)

        t = time.monotonic()
        workspace = self.work / "workspace"
        self.spawn("raibid-agent", self.binaries["raibid-agent"],
                   self.env("agent", addresses, WORKSPACE_DIR=str(workspace)))
        log = cp.dir / "logs" / "raibid-agent.log"

        def logged(*prefixes: str):
            return lambda: any(m.startswith(prefixes) for m in messages(log))

        wait_for("consumer loop", logged("Starting job consumer loop"), cp, "raibid-agent", 30)
        r.timings["agent consuming"] = time.monotonic() - t

        r.job, queued = self.press_send_test_job(redis)
        jid = r.job["id"]
        done = (f"Job {jid} completed", f"Job {jid} failed", f"Failed to process job {jid}")
        wait_for("job end", logged(*done), cp, "raibid-agent", 900)
        # latencies from the stream entry's id (XADD's own clock, ms) to the agent's log times
        for what, prefix in (("received", "Received"), ("clone started", "Cloning repository"),
                             ("cloned", "Repository cloned to"), ("job finished", done)):
            at = next((t for t, m in log_entries(log) if t and m.startswith(prefix)), None)
            if at is not None:
                r.timings[f"XADD -> {what}"] = at - queued
        r.agent_log = messages(log)
        r.git_requests = [ln for ln in (cp.dir / "logs" / "git-http.log").read_text().splitlines()
                          if '"GET ' in ln or '"POST ' in ln]
        key = f"raibid:job:{jid}:status"
        status = controlplane.redis_cli(redis, None, "GET", key).stdout.strip()
        r.status = json.loads(status) if status else None
        return r

    def webhook(self, base: str, secret: str) -> tuple[int, str]:
        """A push event as Gitea sends it, signed with the render's webhook secret."""
        owner = {"id": 1, "login": "raibid", "avatar_url": None}
        body = json.dumps({
            "ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40,
            "repository": {"id": 1, "name": "example", "full_name": EXAMPLE_REPO, "owner": owner,
                           "html_url": "http://gitea/raibid/example", "clone_url": "",
                           "ssh_url": "", "default_branch": "main"},
            "pusher": {"id": 1, "username": "raibid", "email": None, "avatar_url": None},
            "commits": []}).encode()
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Gitea-Event": "push",
                   "X-Gitea-Signature": signature}
        return _http(base + "/webhooks/gitea", body, headers)

    def press_send_test_job(self, redis_port: int) -> tuple[dict, float]:
        """The Tiltfile's "Send test job" command as Tilt runs it, kubectl playing the Redis
        pod: what follows ``--`` runs here, its redis-cli against the loopback Redis. The job
        it XADDed, and when (epoch seconds, from the stream entry's id)."""
        from test_tiltfile import load, objects

        t = time.monotonic()
        result = load(self.project)
        self.report.timings["Tiltfile load (tilt)"] = time.monotonic() - t
        cmd = objects(result, "cmds")["btn-send-test-job"]["spec"]
        shims = Shims(self.work / "pod")
        shims.add("kubectl", """
            import os, subprocess
            def handle(argv, state, rec):
                return subprocess.run(argv[argv.index("--") + 1:]).returncode
        """)
        shims.add("redis-cli", f"""
            import subprocess
            def handle(argv, state, rec):
                return subprocess.run([{shutil.which("redis-cli")!r}, "-h", "127.0.0.1",
                                       "-p", "{redis_port}", *argv]).returncode
        """)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "REDISCLI"))}
        env["PATH"] = f"{shims.bin}{os.pathsep}{env['PATH']}"
        proc = subprocess.run(cmd["args"], cwd=cmd.get("dir") or self.project, env=env,
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"the button's command failed: {proc.stdout}{proc.stderr}")
        (xadd,) = [c for c in shims.calls("redis-cli") if c[:1] == ["XADD"]]
        entry = re.search(r"^(\d+)-\d+$", proc.stdout, re.M)
        if entry is None:
            raise AssertionError(f"the button's XADD printed no stream entry id: {proc.stdout}")
        return json.loads(xadd[xadd.index("job") + 1]), int(entry[1]) / 1000

    def stop(self) -> list[str]:
        return self.cp.stop()


def run(src: Path, work: Path) -> Report:
    """Build, render, run the scenario (every process it started stopped by pid)."""
    t = time.monotonic()
    binaries = build(src)
    timings = {"cargo build (server, agent)": time.monotonic() - t}
    t = time.monotonic()
    project = render_local(work)
    timings["render:local"] = time.monotonic() - t
    ci = RealCI(binaries, project, work)
    try:
        report = ci.run()
    finally:
        ci.stop()
    report.timings = {**timings, **report.timings}
    return report


if __name__ == "__main__" and sys.argv[1:2] == ["serve-git"]:
    serve_git(sys.argv[2], int(sys.argv[3]))
