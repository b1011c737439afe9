"""A throwaway Kubernetes control plane on loopback: for server-side checks and the tests.

``doit controlplane:start`` starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (one fake node, so Pods are scheduled and reported Running) on
free loopback ports (Service cluster IPs on loopback too), with certificates made by openssl
(a CA, a serving certificate for 127.0.0.1, an admin client certificate in ``system:masters``,
etcd's serving certificate and the API server's etcd client certificate: etcd answers only TLS
clients with a certificate of that CA, so no other local user reads or writes its keys; a
service-account key pair) under ``build/controlplane/``, writes
``build/controlplane/kubeconfig`` and waits
until everything answers. ``doit controlplane:stop`` stops exactly the processes it
started (each pid and start time is recorded in ``state.json`` as soon as it starts;
nothing is found by name). Starts and stops of one directory take turns (a lock on it),
and a start reuses a control plane only when the start that made it completed (every
component came up) and every component still runs; anything else is stopped and started
again. It never reads or writes the user's kubeconfig: every process runs with HOME set
to the control plane's directory and every kubectl call names the kubeconfig.

The same module runs a password-protected redis-server and the KEDA operator out of
cluster against it (the autoscaling test and ``bench/autoscale.py``), and gives
``validate:<env>`` its server-side dry-run (:func:`dry_run`). ``--node`` adds a real node
beside kwok's fake one (tasks/node.py).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from . import kube, paths, tools
from .render import rendered_objects

#: what the control plane needs (kwok and keda-operator are started only when asked)
TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl",
         "openssl")
#: the context the kubeconfig's current-context is called when no names are asked for
DEFAULT_CONTEXT = "raibid-controlplane"
#: the environment variable naming a running control plane's directory (the tests set it)
ENV_VAR = "RAIBID_CONTROLPLANE"
FAKE_NODE = "kwok-node-0"
#: field manager of the objects the dry-run itself creates for real (CRDs, namespaces)
VALIDATE_MANAGER = "raibid-deploy-validate"
#: how server_dry_run's note starts when there was no dry-run
DRY_RUN_SKIPPED = "server-side dry-run skipped"


def _answer(url: str, context, timeout: float) -> str:
    """Empty when ``url`` answers 200, else why not (refused, not ready, TLS not up yet)."""
    import urllib.request  # ssl and urllib stay off doit's start-up

    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            return "" if r.status == 200 else f"HTTP {r.status}"
    except OSError as e:  # URLError, HTTPError (e.g. 500 while starting) and ssl errors
        return str(e) or type(e).__name__


class ControlPlaneError(RuntimeError):
    """Starting or talking to the control plane failed; the message says what to do."""


def default_dir() -> Path:
    return paths.build() / "controlplane"


def kwok_stages() -> Path:
    return paths.root() / "tools" / "kwok" / "stages.yaml"


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports. Every socket stays bound until all have their
    port: a port asked for, closed and asked for again can come back, and two components
    given one port fail (the second cannot listen) while a health check of that port is
    answered by the first."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.socket())
            socks[-1].bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def _start_time(pid: int, zombie: bool = False) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), None when gone, or a
    zombie (an exited child not yet collected), unless ``zombie``: what :meth:`ControlPlane.spawn`
    records, so a process that exits at once (a port it cannot listen on) is recorded by its
    start time and then seen as exited, never as alive."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z" and not zombie:  # a zombie child is gone for our purposes
        return None
    return fields[19]


def _running(p: dict) -> bool:
    """The recorded process ``p`` still runs (same pid and start time, not a zombie)."""
    return p.get("start") is not None and _start_time(p["pid"]) == p["start"]


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ControlPlane:
    """A control plane directory: pki/, logs/, kubeconfig and state.json."""

    def __init__(self, directory: Path):
        self.dir = Path(directory).resolve()
        self.reused = False  # start() found it running (and started nothing)

    # ------------------------------------------------------------------ files
    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def state(self) -> dict:
        try:
            data = json.loads(self.state_file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {"processes": []}

    def _save(self, state: dict) -> None:
        from . import atomic

        atomic.write_text(self.state_file, json.dumps(state, indent=1, sort_keys=True) + "\n")

    @property
    def port(self) -> int:
        return int(self.state().get("ports", {}).get("apiserver", 0))

    @property
    def context(self) -> str:
        return (self.state().get("contexts") or [DEFAULT_CONTEXT])[0]

    def env(self) -> dict:
        """Environment for kubectl/tk against this control plane and nothing else."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["KUBECACHEDIR"] = str(self.dir / "kubecache")
        return env

    def kubectl_exe(self) -> str:
        """The kubectl this control plane was started with (a later PATH may hold another)."""
        exe = self.state().get("kubectl") or ""
        return exe if exe and os.access(exe, os.X_OK) else (tools.which("kubectl") or "kubectl")

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120,
                check: bool = False) -> subprocess.CompletedProcess:
        argv = kube.kubectl_argv(self.context, str(self.kubeconfig), exe=self.kubectl_exe()) + list(args)
        proc = kube.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                        env=self.env(), stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed:\n{(proc.stderr or proc.stdout).strip()}")
        return proc

    # ------------------------------------------------------------------ processes
    def processes(self) -> list[dict]:
        return list(self.state().get("processes") or [])

    def alive(self, name: str | None = None) -> bool:
        """Process ``name`` runs; without a name, the control plane does: the start that
        made it completed (a start killed half-way recorded no components) and every
        component it started, and every process recorded since, still runs."""
        state = self.state()
        procs = [p for p in state.get("processes") or [] if name is None or p["name"] == name]
        if name is None and not self.components_running(state):
            return False
        return bool(procs) and all(_running(p) for p in procs)

    def components_running(self, state: dict | None = None) -> bool:
        """Every component of a completed start (``components`` in state.json) has a record
        and runs; False before a start completed."""
        state = self.state() if state is None else state
        names = state.get("components") or []
        procs = state.get("processes") or []
        running = {p["name"] for p in procs if _running(p)}
        return bool(names) and all(n in running for n in names)

    def spawn(self, name: str, argv: list[str], env: dict | None = None) -> int:
        """Start ``argv`` in a session of its own (so a Ctrl-C of doit leaves it alone),
        logging to logs/NAME.log, and record it for :meth:`stop`."""
        logs = self.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        penv = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        penv.update(HOME=str(self.dir), KUBECONFIG=str(self.kubeconfig))
        penv.update(env or {})
        with open(logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=penv, cwd=self.dir, start_new_session=True)
        state = self.state()
        state.setdefault("processes", []).append(
            {"name": name, "pid": proc.pid, "start": _start_time(proc.pid, zombie=True), "argv0": argv[0]})
        self._save(state)
        return proc.pid

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.dir / "logs" / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def rss_mib(self) -> dict[str, float]:
        return {p["name"]: rss_kib(p["pid"]) / 1024 for p in self.processes() if _running(p)}

    def stop(self, names=None, timeout: float = 15) -> list[str]:
        """Stop the recorded processes (all, or those in ``names``), newest first: SIGTERM,
        then SIGKILL after ``timeout``. A pid whose start time changed is not ours: left alone."""
        node = names is None and bool(self.state().get("node"))
        if node:  # a real node: its pods go first, while its kubelet can stop them
            from . import node as nodemod

            nodemod.drain(self)
        state = self.state()
        procs = state.get("processes") or []
        chosen = [p for p in procs if names is None or p["name"] in names]
        stopped = []
        for p in reversed(chosen):
            if not _running(p):
                _reap(p["pid"])  # it exited: collect it if it is our child
                continue
            try:
                os.kill(p["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while _running(p) and time.monotonic() < deadline:
                _reap(p["pid"])
                time.sleep(0.1)
            if _running(p):
                os.kill(p["pid"], signal.SIGKILL)
                _reap(p["pid"], block=True)
            stopped.append(p["name"])
        state["processes"] = [p for p in procs if p not in chosen]
        self._save(state)
        if node:
            nodemod.cleanup(self)
        return stopped

    # ------------------------------------------------------------------ readiness
    def _ssl(self) -> ssl.SSLContext:
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _etcd_ssl(self) -> ssl.SSLContext:
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "etcd-client.crt"), str(self.pki / "etcd-client.key"))
        return ctx

    def require_alive(self, name: str | None = None) -> None:
        """Raise :class:`ControlPlaneError` naming a process (``name``, or any recorded one)
        that has exited, with the end of its log."""
        for p in self.processes():
            if (name is None or p["name"] == name) and not self.alive(p["name"]):
                n = p["name"]
                raise ControlPlaneError(f"{n} exited while starting; its log "
                                        f"({self.dir / 'logs' / (n + '.log')}) ends:\n{self.log_tail(n)}")
        if name is not None and not any(p["name"] == name for p in self.processes()):
            raise ControlPlaneError(f"{name} was not started")

    def wait_http(self, name: str, url: str, timeout: float, context: ssl.SSLContext | None = None) -> None:
        """Poll ``url`` until it answers 200; fail with the process's log if it died or timed out."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self.require_alive(name)
            last = _answer(url, context, 2)
            if not last:
                return
            time.sleep(0.2)
        raise ControlPlaneError(f"{name} did not become ready within {timeout:.0f}s ({url}: {last}); "
                                f"its log ends:\n{self.log_tail(name)}")

    def ready(self) -> bool:
        """The recorded processes run and the API server answers /readyz."""
        if not self.alive() or not self.port:
            return False
        try:
            context = self._ssl()
        except OSError:  # the PKI is gone
            return False
        return not _answer(f"https://127.0.0.1:{self.port}/readyz", context, 3)


def _reap(pid: int, block: bool = False) -> None:
    """Collect ``pid`` if it is our child (so it does not linger as a zombie)."""
    try:
        os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        pass


# --------------------------------------------------------------------------- certificates


def _openssl(pki: Path, *args: str) -> None:
    from . import atomic

    proc = subprocess.run(["openssl", *args], cwd=pki, capture_output=True, text=True,
                          preexec_fn=atomic.child_setup(umask=0o077))
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args[:2])} failed:\n{proc.stderr.strip()}")


_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def sign_cert(pki: Path, name: str, subject: str, ext: str) -> None:
    """pki/NAME.key and NAME.crt, signed by pki/ca.crt with the extensions ``ext``."""
    (pki / f"{name}.ext").write_text(ext)
    _openssl(pki, "req", "-new", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
    _openssl(pki, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "7", "-extfile", f"{name}.ext")


def make_pki(pki: Path) -> None:
    """CA, apiserver serving cert (127.0.0.1), admin client cert (system:masters), etcd's
    serving and peer cert, the apiserver's etcd client cert, SA keys. ECDSA P-256 keys
    (fast to make); private keys are 0600 (from creation: the umask) in a 0700 directory."""
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    _openssl(pki, "req", "-x509", *_EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "7",
             "-subj", "/CN=raibid-deploy test control plane CA")
    exts = {
        "server": ("/CN=kube-apiserver",
                   "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
                   "DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth,clientAuth\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"),
        "admin": ("/O=system:masters/CN=raibid-deploy-admin",
                  "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"),
        # its client and peer URLs (serverAuth) and its peer's client (clientAuth)
        "etcd": ("/CN=etcd", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                 "extendedKeyUsage=serverAuth,clientAuth\n"
                 "keyUsage=critical,digitalSignature,keyEncipherment\n"),
        "etcd-client": ("/CN=kube-apiserver-etcd-client", "extendedKeyUsage=clientAuth\n"
                        "keyUsage=critical,digitalSignature,keyEncipherment\n"),
    }
    for name, (subject, ext) in exts.items():
        sign_cert(pki, name, subject, ext)
    _openssl(pki, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key")
    _openssl(pki, "ec", "-in", "sa.key", "-pubout", "-out", "sa.pub")
    for f in pki.glob("*.key"):
        f.chmod(0o600)


def write_kubeconfig(cp: ControlPlane, port: int, contexts) -> None:
    """A kubeconfig whose contexts (all named in ``contexts``) reach this control plane."""
    import yaml

    from . import atomic

    cluster, user = "raibid-controlplane", "raibid-deploy-admin"
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": cluster, "cluster": {"server": f"https://127.0.0.1:{port}",
                                                   "certificate-authority": str(cp.pki / "ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate": str(cp.pki / "admin.crt"),
                                          "client-key": str(cp.pki / "admin.key")}}],
        "contexts": [{"name": c, "context": {"cluster": cluster, "user": user}} for c in contexts],
        "current-context": contexts[0],
    }
    atomic.write_text(cp.kubeconfig, yaml.safe_dump(config, sort_keys=False))
    cp.kubeconfig.chmod(0o600)


# --------------------------------------------------------------------------- start


def start(directory: Path | None = None, contexts=(DEFAULT_CONTEXT,), fake_node: bool = True,
          timeout: float = 90) -> ControlPlane:
    """Start a control plane in ``directory`` (default build/controlplane) and wait for it.

    A control plane already running there is reused (its kubeconfig gets ``contexts``).
    Anything started before a failure is stopped again, so a failed start leaves nothing
    running; what a start killed half-way left (recorded, never complete) is stopped by the
    next. Starts and stops of one directory take turns: a second waits for the first."""
    from . import atomic

    cp = ControlPlane(directory or default_dir())
    atomic.private_dir(cp.dir)  # its PKI, kubeconfig, etcd data and logs: the owner's only
    with _turn(cp):
        return _start_locked(cp, contexts, fake_node, timeout)


def _turn(cp: ControlPlane):
    """The lock of ``cp``'s directory, saying so when another start or stop holds it."""
    from . import atomic

    def waiting():
        print(f"waiting for another controlplane:start or stop in {paths.rel(cp.dir)} to finish",
              flush=True)

    return atomic.locked(cp.dir, waiting=waiting)


def _start_locked(cp: ControlPlane, contexts, fake_node: bool, timeout: float) -> ControlPlane:
    contexts = list(dict.fromkeys(contexts)) or [DEFAULT_CONTEXT]
    if cp.ready():
        cp.reused = True
        state = cp.state()
        state["contexts"] = list(dict.fromkeys(contexts + list(state.get("contexts") or [])))
        cp._save(state)
        write_kubeconfig(cp, cp.port, state["contexts"])
        return cp
    tools.require([t for t in TOOLS if fake_node or t != "kwok"])
    # leftovers of a crashed or killed start in this directory (only ours, by pid and start time)
    cp.stop()
    for sub in ("etcd", "kubecache"):  # a fresh, empty cluster
        shutil.rmtree(cp.dir / sub, ignore_errors=True)
    started = time.monotonic()
    names = ("etcd", "etcd_peer", "apiserver", "controller_manager", "scheduler")
    ports = dict(zip(names, free_ports(len(names))))
    # the kubectl it starts with serves it for its life, whatever a later PATH holds
    cp._save({"processes": [], "ports": ports, "contexts": contexts,
              "kubectl": tools.which("kubectl") or "kubectl"})
    try:
        make_pki(cp.pki)
        write_kubeconfig(cp, ports["apiserver"], contexts)
        _start_components(cp, ports, timeout)
        if fake_node:
            add_fake_node(cp, timeout)
        cp.require_alive()  # each component still runs (one that could not listen exits at once)
    except BaseException:
        cp.stop()
        raise
    state = cp.state()
    state["startup_seconds"] = round(time.monotonic() - started, 2)
    # complete: only now is it a control plane a later start may reuse (ControlPlane.alive)
    state["components"] = [p["name"] for p in state["processes"]]
    cp._save(state)
    return cp


def _start_components(cp: ControlPlane, ports: dict, timeout: float) -> None:
    pki, w = cp.pki, tools.which
    # TLS with client certificates on both of etcd's ports: over plain HTTP any local user
    # could read every Secret the API server stores, or write a key
    etcd_url = f"https://127.0.0.1:{ports['etcd']}"
    peer_url = f"https://127.0.0.1:{ports['etcd_peer']}"
    tls = [f"--trusted-ca-file={pki / 'ca.crt'}", f"--cert-file={pki / 'etcd.crt'}",
           f"--key-file={pki / 'etcd.key'}", "--client-cert-auth"]
    cp.spawn("etcd", [w("etcd"), "--name", "raibid", "--data-dir", str(cp.dir / "etcd"),
                      "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                      "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                      "--initial-cluster", f"raibid={peer_url}", "--log-level", "warn", *tls,
                      *(f"--peer-{flag[2:]}" for flag in tls)])
    cp.wait_http("etcd", f"{etcd_url}/health", timeout, cp._etcd_ssl())
    cp.spawn("kube-apiserver", [
        w("kube-apiserver"), f"--etcd-servers={etcd_url}", f"--etcd-cafile={pki / 'ca.crt'}",
        f"--etcd-certfile={pki / 'etcd-client.crt'}", f"--etcd-keyfile={pki / 'etcd-client.key'}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1", f"--secure-port={ports['apiserver']}",
        f"--tls-cert-file={pki / 'server.crt'}", f"--tls-private-key-file={pki / 'server.key'}",
        f"--client-ca-file={pki / 'ca.crt'}", "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
        # Service IPs on loopback: what the API server itself calls (a chart's admission
        # webhooks, KEDA's metrics APIService) stays on this machine and, nothing serving
        # it, fails at once (a webhook failing open, an APIService unavailable)
        "--service-cluster-ip-range=127.96.0.0/16",
        "--authorization-mode=RBAC", "--allow-privileged=true", "--endpoint-reconciler-type=none",
        "--profiling=false", f"--cert-dir={cp.dir / 'apiserver'}",
        # a real node's kubelet (tasks/node.py) admits only clients of our CA, at its InternalIP
        f"--kubelet-client-certificate={pki / 'server.crt'}",
        f"--kubelet-client-key={pki / 'server.key'}",
        "--kubelet-preferred-address-types=InternalIP"])
    cp.wait_http("kube-apiserver", f"https://127.0.0.1:{ports['apiserver']}/readyz", timeout, cp._ssl())
    common = [f"--kubeconfig={cp.kubeconfig}", f"--authentication-kubeconfig={cp.kubeconfig}",
              f"--authorization-kubeconfig={cp.kubeconfig}", "--bind-address=127.0.0.1", "--leader-elect=false"]
    cp.spawn("kube-controller-manager", [
        w("kube-controller-manager"), *common, f"--secure-port={ports['controller_manager']}",
        f"--cert-dir={cp.dir / 'controller-manager'}", f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}", "--use-service-account-credentials=false",
        # no kubelet heartbeats on a fake node: the lifecycle controller would taint it
        "--controllers=*,-node-lifecycle-controller"])
    cp.spawn("kube-scheduler", [w("kube-scheduler"), *common, f"--secure-port={ports['scheduler']}",
                                f"--cert-dir={cp.dir / 'scheduler'}"])
    import ssl

    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # their self-signed loopback serving certs
    cp.wait_http("kube-controller-manager", f"https://127.0.0.1:{ports['controller_manager']}/healthz",
                 timeout, insecure)
    cp.wait_http("kube-scheduler", f"https://127.0.0.1:{ports['scheduler']}/healthz", timeout, insecure)


def add_fake_node(cp: ControlPlane, timeout: float = 60) -> None:
    """kwok and one fake node it manages (Pods bound to it are reported Running)."""
    cp.spawn("kwok", [tools.which("kwok"), f"--kubeconfig={cp.kubeconfig}", f"--config={kwok_stages()}",
                      "--manage-all-nodes=false",
                      "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                      "--node-ip=127.0.0.1", "--cidr=10.244.0.0/16"])
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": FAKE_NODE, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": FAKE_NODE, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "type": "kwok"}}}
    cp.kubectl("apply", "-f", "-", input=json.dumps(node), check=True)
    proc = cp.kubectl("wait", "--for=condition=Ready", f"node/{FAKE_NODE}", f"--timeout={int(timeout)}s",
                      timeout=timeout + 10)
    if proc.returncode != 0:
        raise ControlPlaneError(f"the kwok node did not become Ready: {proc.stderr.strip()}\n"
                                f"kwok's log ends:\n{cp.log_tail('kwok')}")
    # the API server taints a new node not-ready; the node lifecycle controller, which would
    # lift it, is off (no kubelet heartbeats here), so lift it once the node is Ready
    cp.kubectl("taint", "nodes", FAKE_NODE, "node.kubernetes.io/not-ready:NoSchedule-", check=True)


def stop(directory: Path | None = None) -> list[str]:
    """Stop the control plane in ``directory``, after a start running there has finished."""
    cp = ControlPlane(directory or default_dir())
    if not cp.dir.is_dir():
        return []
    with _turn(cp):
        return cp.stop()


# --------------------------------------------------------------------------- Redis, KEDA


def start_redis(cp: ControlPlane, password: str | None, timeout: float = 20) -> int:
    """A redis-server on a free loopback port, password from a 0600 config file (never argv);
    ``None``: no password, as the local render's Redis."""
    tools.require(["redis-server"])
    port = free_port()
    data = cp.dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    conf = cp.dir / "redis.conf"
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    auth = f"requirepass {password}\n" if password is not None else ""
    conf.write_text(f"bind 127.0.0.1\nport {port}\n{auth}save \"\"\n"
                    f"appendonly no\ndir {data}\nprotected-mode yes\n")
    cp.spawn("redis-server", [tools.which("redis-server"), str(conf)])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_cli(port, password, "PING").stdout.strip() == "PONG":
            state = cp.state()
            state.setdefault("ports", {})["redis"] = port
            cp._save(state)
            return port
        if not cp.alive("redis-server"):
            break
        time.sleep(0.1)
    raise ControlPlaneError(f"redis-server did not answer PING; its log ends:\n{cp.log_tail('redis-server')}")


def redis_cli(port: int, password: str | None, *args: str) -> subprocess.CompletedProcess:
    """redis-cli with the password in REDISCLI_AUTH (not on the command line)."""
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    if password is not None:
        env["REDISCLI_AUTH"] = password
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True,
                          text=True, env=env, timeout=30, stdin=subprocess.DEVNULL)


def start_keda(cp: ControlPlane, namespace: str, timeout: float = 90) -> None:
    """The KEDA operator out of cluster, watching ``namespace``: loopback metrics, health and
    gRPC ports, no webhooks or certificate rotation (its gRPC server reuses our CA's
    serving certificate from pki/keda/)."""
    tools.require(["keda-operator"])
    certs = cp.pki / "keda"
    certs.mkdir(exist_ok=True)
    for src, dst in (("ca.crt", "ca.crt"), ("server.crt", "tls.crt"), ("server.key", "tls.key")):
        (certs / dst).write_bytes((cp.pki / src).read_bytes())
        (certs / dst).chmod(0o600)
    health, metrics, grpc = free_ports(3)
    cp.spawn("keda-operator", [
        tools.which("keda-operator"), "--leader-elect=false", f"--metrics-bind-address=127.0.0.1:{metrics}",
        f"--health-probe-bind-address=127.0.0.1:{health}", f"--metrics-service-bind-address=127.0.0.1:{grpc}",
        f"--cert-dir={certs}", f"--ca-dir={certs}", "--enable-cert-rotation=false",
        "--enable-webhook-patching=false", "--enable-apiservice-patching=false", "--zap-log-level=info"],
        env={"WATCH_NAMESPACE": namespace, "POD_NAMESPACE": namespace,
             "KEDA_CLUSTER_OBJECT_NAMESPACE": namespace, "OPERATOR_NAME": "keda-operator"})
    cp.wait_http("keda-operator", f"http://127.0.0.1:{health}/readyz", timeout)


# --------------------------------------------------------------------------- doit


def running_dir(probe: bool = True) -> Path | None:
    """The directory of a running control plane to use: $RAIBID_CONTROLPLANE, else
    build/controlplane when it is up; None otherwise. ``probe=False``: its processes run
    (no request to the API server: cheap enough for a task's up-to-date key)."""
    for d in (os.environ.get(ENV_VAR), default_dir()):
        if d and (ControlPlane(Path(d)).ready() if probe else ControlPlane(Path(d)).alive()):
            return Path(d)
    return None


def _start_action(contexts: str, node: bool = False):
    from doit.exceptions import TaskFailed

    from . import node as nodemod

    names = [c for c in contexts.split(",") if c] or [DEFAULT_CONTEXT]
    try:
        cp = start(default_dir(), names)
        if node and not cp.alive("kubelet"):
            with _turn(cp):
                info = nodemod.start(cp)
            print(f"node {info['name']} Ready in {info['startup_seconds']}s at {info['ip']} "
                  f"(pods {info['subnet']}, Services {info['services']}, netns {info['netns']})")
    except (ControlPlaneError, nodemod.NodeError, tools.MissingTools) as e:
        return TaskFailed(str(e))
    rss = sum(cp.rss_mib().values())
    took = cp.state().get("startup_seconds")
    print(f"control plane ready{' (already running)' if cp.reused else f' in {took}s'}: "
          f"https://127.0.0.1:{cp.port}, {len(cp.processes())} processes, {rss:.0f} MiB RSS\n"
          f"  kubeconfig: {paths.rel(cp.kubeconfig)} (contexts: {', '.join(cp.state()['contexts'])})\n"
          f"  use: kubectl --kubeconfig {paths.rel(cp.kubeconfig)} get nodes;  stop: doit controlplane:stop")
    return None


def _stop_action():
    stopped = stop(default_dir())
    print(f"stopped {', '.join(stopped)}" if stopped else "no control plane was running here")


def task_controlplane():
    """A throwaway Kubernetes control plane on loopback (opt-in tools: `doit tools control-plane`)."""
    yield tools.needs({
        "name": "start",
        "doc": "Start etcd, kube-apiserver, controller-manager, scheduler and a kwok node on loopback; "
               "kubeconfig in build/controlplane/ (--node: and a real node, tasks/node.py)",
        "actions": [_start_action],
        "params": [{"name": "contexts", "long": "contexts", "default": DEFAULT_CONTEXT,
                    "help": "comma-separated context names for build/controlplane/kubeconfig"},
                   {"name": "node", "long": "node", "type": bool, "default": False,
                    "help": "and a real node: containerd and a kubelet (`doit tools node`)"}],
        "uptodate": [False],
        "verbosity": 2,
    }, *TOOLS)
    yield {
        "name": "stop",
        "doc": "Stop the control plane `controlplane:start` started (only its own processes)",
        "actions": [_stop_action],
        "uptodate": [False],
        "verbosity": 2,
    }


# --------------------------------------------------------------------------- validate


def tools_present() -> bool:
    """The control plane's tools are installed (the server-side dry-run can run)."""
    return not tools.missing(t for t in TOOLS if t != "kwok")


def dry_run_namespaces(objects: list[dict], namespace: str, env: str) -> tuple[list[dict], str]:
    """``objects`` moved into namespaces of the dry-run's own (``dryrun-<env>-<namespace>``),
    with a Namespace object for each, and the namespace for objects that name none.

    A dry-run is a create only when nothing of that name exists: in namespaces of its own
    neither a deploy to the same control plane nor another environment's render turns it
    into a patch of existing objects (whose immutable fields would then be reported).
    Every namespace moves, the environment's and any other a chart names (KEDA's RoleBinding
    in kube-system), each object into its own. Cluster-scoped objects keep their names
    (an APIService's and a CRD's are fixed by their contents), so a dry-run of one that
    a deploy left on the control plane is the patch an apply there would send."""
    import copy

    def moved(ns: str) -> str:
        return f"dryrun-{env}-{ns}"[:63].rstrip("-")

    out = []
    for o in objects:
        o = copy.deepcopy(o)
        meta = o.setdefault("metadata", {})
        if o.get("kind") == "Namespace":
            meta["name"] = moved(meta["name"])
        elif meta.get("namespace"):
            meta["namespace"] = moved(meta["namespace"])
        out.append(o)
    wanted = {moved(namespace)} | {o["metadata"]["namespace"] for o in out if o["metadata"].get("namespace")}
    have = {o["metadata"]["name"] for o in out if o.get("kind") == "Namespace"}
    out += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in sorted(wanted - have)]
    return out, moved(namespace)


def server_dry_run(env: str, directory: Path) -> tuple[str | None, str]:
    """validate:<env>'s server-side dry-run of the render in ``directory``: the CRDs and
    Namespaces (see :func:`dry_run_namespaces`) applied for real, then everything with
    ``--dry-run=server``, so admission,
    defaulting, CEL rules and immutable fields are checked as a real API server checks them.

    It uses the running control plane ($RAIBID_CONTROLPLANE or build/controlplane, started
    once by ``doit controlplane:start`` and kept for every later validate); without one it
    is skipped and says how to include it: starting an API server per validate costs tens
    of seconds, which no offline check should. Returns (problem or None, what was done, for
    the summary line)."""
    if not tools_present():
        gone = ", ".join(t.name for t in tools.missing(t for t in TOOLS if t != "kwok"))
        return None, (f"{DRY_RUN_SKIPPED}: the control plane is not installed ({gone}; "
                      "`doit tools control-plane`, see `doit doctor`)")
    running = running_dir()
    if running is None:
        return None, (f"{DRY_RUN_SKIPPED}: no control plane is running (`doit controlplane:start` "
                      "starts one on loopback; every validate then dry-runs against it)")
    namespace = kube.namespace_of(env)
    objects, namespace = dry_run_namespaces(rendered_objects(Path(directory)), namespace, env)
    cp = ControlPlane(running)
    try:
        kubectl = kube.kubectl_argv(cp.context, str(cp.kubeconfig), str(cp.dir / "kubecache"),
                                    exe=cp.kubectl_exe())
        ok, output = kube.server_side_apply(kubectl, objects, namespace, dry_run=True,
                                            first_manager=VALIDATE_MANAGER)
    except (ControlPlaneError, tools.MissingTools) as e:
        return f"validate:{env}: the server-side dry-run could not run: {e}", ""
    if not ok:
        errors = "\n".join(f"  {line}" for line in output.splitlines()
                           if line.strip() and not line.endswith(("(server dry run)", "serverside-applied",
                                                                  "condition met")))
        return (f"validate:{env}: the API server rejects the render (server-side dry-run against "
                f"kube-apiserver {tools.TOOLS['kube-apiserver'].version}, {paths.rel(directory)}/):\n{errors}"), ""
    return None, f"server-side dry-run accepted by kube-apiserver {tools.TOOLS['kube-apiserver'].version}"
