"""A real node for the test control plane: containerd (CRI), a CNI bridge and a kubelet.

:func:`start` runs Debian's containerd with a config, socket, root and state of its own under
``<control plane>/node/``, and a kubelet (built from the pinned k8s.io/kubernetes) that joins
the control plane as node :data:`NAME`. Its address is on a Linux bridge the start creates
itself (kubelet refuses a loopback node IP; the API server reaches the kubelet there for
``kubectl logs``), and its pods sit on that bridge too: no default route, no masquerading,
nothing routed off the machine. The pause image is a tiny static C program (tools/kubelet/
pause.c) packed as a docker archive and imported offline: no registry is ever asked.

Every process is recorded in the control plane's ``state.json`` and stopped by pid;
:func:`teardown` (run by :meth:`ControlPlane.stop`) deletes the pods first, so the kubelet
stops their sandboxes (and CRI removes their network namespaces), then stops the runtime's
shims, unmounts what is left under the node's directory and deletes the bridge.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import signal
import subprocess
import tarfile
import time
from pathlib import Path

from . import paths, tools

#: what the node needs besides the control plane (runc comes with Debian's containerd)
TOOLS = ("kubelet", "containerd", "gcc")
NAME = "raibid-node"
#: the image of the pod sandboxes, and of the tests' workload (it prints its arguments)
PAUSE_IMAGE = "raibid.local/pause:1"
CNI_BIN = Path("/usr/lib/cni")
TAINT = "raibid.dev/real-node"
#: pod subnets are /24s of this /16 not routed here yet
_NET = "10.251"


class NodeError(RuntimeError):
    pass


def _run(argv, check=True, timeout=60, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)
    if check and proc.returncode != 0:
        what = " ".join(map(str, argv[:4]))
        raise NodeError(f"{what} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


CGROUPS = Path("/sys/fs/cgroup")


def _cgroup_dirs(name: str) -> list[Path]:
    """``name`` in every cgroup hierarchy mounted here (cgroup v1: one per controller)."""
    return [h / name for h in sorted(CGROUPS.iterdir()) if (h / "cgroup.procs").exists()]


def _remove_cgroups(name: str) -> None:
    """Every cgroup under ``name`` (the kubelet's pods, QoS classes), deepest first: all are
    empty once the node's processes have gone."""
    for top in _cgroup_dirs(name):
        if top.is_dir():
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                try:
                    d.rmdir()
                except OSError:
                    pass
            try:
                top.rmdir()
            except OSError:
                pass


def free_subnet() -> str:
    """A /24 of 10.251.0.0/16 that no address or route of this machine is in."""
    used = (_run(["ip", "-4", "-o", "addr"]).stdout
            + _run(["ip", "-4", "route", "show", "table", "all"]).stdout)
    for third in range(256):
        if f"{_NET}.{third}." not in used:
            return f"{_NET}.{third}.0/24"
    raise NodeError(f"no free /24 in {_NET}.0.0/16 for the node's pods")


# --------------------------------------------------------------------------- the pause image


def build_pause(out: Path) -> Path:
    """tools/kubelet/pause.c, static, as a docker archive tagged :data:`PAUSE_IMAGE`."""
    out.mkdir(parents=True, exist_ok=True)
    binary = out / "pause"
    source = paths.root() / "tools" / "kubelet" / "pause.c"
    _run(["gcc", "-static", "-Os", "-s", "-o", binary, source])
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("pause")
        data = binary.read_bytes()
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    diff_id = hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": ["/pause"]},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [PAUSE_IMAGE],
                            "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    archive = out / "pause.tar"
    with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in ((f"{diff_id}/layer.tar", layer_bytes), (config_name, config),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


# --------------------------------------------------------------------------- start


class Node:
    """The node's files under ``<control plane>/node``."""

    def __init__(self, cp):
        self.cp = cp
        self.dir = cp.dir / "node"

    @property
    def socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    def ctr(self, *args, check=True, timeout=60) -> subprocess.CompletedProcess:
        return _run(["ctr", "--address", self.socket, "--namespace", "k8s.io", *args],
                    check=check, timeout=timeout)


def _containerd_config(node: Node) -> str:
    d = node.dir / "containerd"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{d / 'root'}"
state = "{d / 'state'}"
[grpc]
  address = "{node.socket}"
[ttrpc]
  address = "{node.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # no CAP_SYS_RESOURCE in these sandboxes: without it every pod sandbox fails to set
  # /proc/self/oom_score_adj
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{node.dir / 'cni' / 'net.d'}"
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
"""


def _cni_config(bridge: str, subnet: str, gateway: str, ipam_dir: Path) -> str:
    # isGateway false: the start gave the bridge its address already, and a gateway bridge
    # would turn on IP forwarding for the whole machine; host-local adds no default route
    return json.dumps({"cniVersion": "0.4.0", "name": "raibid-node", "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": False, "ipMasq": False,
         "hairpinMode": True,
         "ipam": {"type": "host-local", "dataDir": str(ipam_dir),
                  "ranges": [[{"subnet": subnet, "gateway": gateway}]]}}]}, indent=1)


def _kubelet_cert(cp, pki: Path) -> None:
    from .controlplane import _openssl

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (pki / "kubelet.ext").write_text("extendedKeyUsage=clientAuth\n"
                                     "keyUsage=critical,digitalSignature,keyEncipherment\n")
    _openssl(pki, "req", "-new", *ec, "-keyout", "kubelet.key", "-out", "kubelet.csr",
             "-subj", f"/O=system:nodes/CN=system:node:{NAME}")
    _openssl(pki, "x509", "-req", "-in", "kubelet.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "kubelet.crt", "-days", "7", "-extfile", "kubelet.ext")


def _kubelet_files(node: Node, ip: str, subnet: str, healthz: int,
                   cgroup: str) -> tuple[Path, Path]:
    import yaml

    cp, d = node.cp, node.dir
    _kubelet_cert(cp, cp.pki)
    kubeconfig = d / "kubelet.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "cp", "cluster": {"server": f"https://127.0.0.1:{cp.port}",
                                                "certificate-authority": str(cp.pki / "ca.crt")}}],
        "users": [{"name": "kubelet", "user": {"client-certificate": str(cp.pki / "kubelet.crt"),
                                               "client-key": str(cp.pki / "kubelet.key")}}],
        "contexts": [{"name": "kubelet", "context": {"cluster": "cp", "user": "kubelet"}}],
        "current-context": "kubelet"}))
    kubeconfig.chmod(0o600)
    config = d / "kubelet.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # cgroup v1 in these sandboxes
        "failSwapOn": False,
        "address": ip, "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": healthz,
        "cgroupDriver": "cgroupfs",
        # a cgroup of its own (the start makes it, cleanup removes it), not the machine's /kubepods
        "cgroupRoot": "/" + cgroup,
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        # only holders of a certificate of the control plane's CA (its API server) get in
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(cp.pki / "ca.crt")}},
        "authorization": {"mode": "AlwaysAllow"},
        "podCIDR": subnet, "podLogsDir": str(d / "pod-logs"),
        "resolvConf": "", "staticPodPath": "",
        # a shared disk: no eviction or image GC because other users filled it
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "makeIPTablesUtilChains": False,
        # only pods that ask for it (nodeName, or this toleration): the session's other tests
        # schedule onto kwok's fake node, with images this node does not have
        "registerWithTaints": [{"key": TAINT, "value": "true", "effect": "NoSchedule"}],
    }))
    return kubeconfig, config


def start(cp, timeout: float = 120) -> dict:
    """Start the node beside control plane ``cp`` and wait until it is Ready; returns what
    ``state.json`` records of it. Anything started before a failure is stopped again."""
    tools.require(list(TOOLS))
    missing = [p for p in ("bridge", "host-local", "loopback") if not (CNI_BIN / p).exists()]
    if missing:
        raise NodeError(f"CNI plugins missing in {CNI_BIN} ({', '.join(missing)}): "
                        "apt-get install containernetworking-plugins")
    from .controlplane import free_port

    node = Node(cp)
    node.dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    subnet = free_subnet()
    prefix = subnet.rsplit(".", 1)[0]
    ip = f"{prefix}.1"
    bridge = "rn" + secrets.token_hex(4)
    info = {"bridge": bridge, "subnet": subnet, "ip": ip, "name": NAME,
            "cgroup": f"raibid-{bridge}"}
    state = cp.state()
    state["node"] = info  # before the bridge exists: a failed start still deletes it
    cp._save(state)
    try:
        _run(["ip", "link", "add", info["bridge"], "type", "bridge"])
        _run(["ip", "addr", "add", f"{ip}/24", "dev", info["bridge"]])
        _run(["ip", "link", "set", info["bridge"], "up"])
        net_d = node.dir / "cni" / "net.d"
        net_d.mkdir(parents=True, exist_ok=True)
        (net_d / "10-raibid.conflist").write_text(_cni_config(info["bridge"], subnet, ip,
                                                             node.dir / "cni" / "ipam"))
        conf = node.dir / "containerd.toml"
        conf.write_text(_containerd_config(node))
        cp.spawn("containerd", [tools.which("containerd"), "--config", str(conf)])
        _wait(lambda: node.ctr("version", check=False).returncode == 0, timeout, cp, "containerd")
        archive = build_pause(node.dir / "image")
        node.ctr("images", "import", archive, timeout=timeout)
        _bind_node_role(cp)
        for d in _cgroup_dirs(info["cgroup"]):
            d.mkdir(exist_ok=True)
        kubeconfig, config = _kubelet_files(node, ip, subnet, free_port(), info["cgroup"])
        cp.spawn("kubelet", [tools.which("kubelet"), f"--config={config}",
                             f"--kubeconfig={kubeconfig}", f"--root-dir={node.dir / 'kubelet'}",
                             f"--cert-dir={node.dir / 'kubelet-pki'}", f"--node-ip={ip}",
                             f"--hostname-override={NAME}", "--v=1"])
        _wait(lambda: cp.kubectl("get", "node", NAME).returncode == 0, timeout, cp, "kubelet")
        proc = cp.kubectl("wait", "--for=condition=Ready", f"node/{NAME}",
                          f"--timeout={int(timeout)}s", timeout=timeout + 10)
        if proc.returncode != 0:
            raise NodeError(f"node {NAME} did not become Ready: {proc.stderr.strip()}\n"
                            f"kubelet's log ends:\n{cp.log_tail('kubelet', 25)}")
        # the node lifecycle controller, which would lift the not-ready taint, is off
        cp.kubectl("taint", "nodes", NAME, "node.kubernetes.io/not-ready:NoSchedule-")
    except BaseException:
        cp.stop(names=["kubelet", "containerd"])
        cleanup(cp)
        raise
    state = cp.state()
    info["startup_seconds"] = round(time.monotonic() - started, 2)
    state["node"] = info
    cp._save(state)
    return info


def _wait(check, timeout: float, cp, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cp.require_alive(name)
        if check():
            return
        time.sleep(0.3)
    raise NodeError(f"{name} did not answer within {timeout:.0f}s; its log ends:\n"
                    f"{cp.log_tail(name, 25)}")


def _bind_node_role(cp) -> None:
    """RBAC gives no group the system:node role by default; the kubelet's certificate is in
    system:nodes."""
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "raibid-node"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "system:node"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                             "name": "system:nodes"}]}
    cp.kubectl("apply", "-f", "-", input=json.dumps(binding), check=True)


# --------------------------------------------------------------------------- stop


def drain(cp, timeout: float = 60) -> None:
    """Delete the pods bound to the node while its kubelet runs, so it stops their sandboxes
    (CNI DEL: their addresses and network namespaces go)."""
    node = Node(cp)
    if not cp.alive("kubelet") or not cp.alive("containerd"):
        return
    cp.kubectl("delete", "pods", "--all-namespaces", "--field-selector", f"spec.nodeName={NAME}",
               "--grace-period=1", "--wait=false", timeout=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not node.ctr("tasks", "ls", "-q", check=False).stdout.strip():
            return
        time.sleep(0.5)


def _shim_pids(node: Node) -> list[int]:
    pids = []
    for f in (node.dir / "containerd" / "state").glob("io.containerd.runtime.v2.task/*/*/shim.pid"):
        try:
            pids.append(int(f.read_text().strip()))
        except (OSError, ValueError):
            pass
    return pids


def cleanup(cp) -> None:
    """After the kubelet and containerd stopped: the shims they left (by the pid containerd
    recorded), the mounts under the node's directory, and the bridge."""
    node = Node(cp)
    info = cp.state().get("node") or {}
    for pid in _shim_pids(node):
        try:
            if Path(f"/proc/{pid}/exe").resolve().name.startswith("containerd-shim"):
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass
    prefix = str(node.dir) + "/"
    mounts = []
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                mounts.append(point)
    except OSError:
        pass
    for point in sorted(mounts, key=len, reverse=True):
        if _run(["umount", point], check=False).returncode != 0:
            _run(["umount", "-l", point], check=False)
    if info.get("bridge"):
        _run(["ip", "link", "del", info["bridge"]], check=False)
    if info.get("cgroup"):
        _remove_cgroups(info["cgroup"])
    state = cp.state()
    state.pop("node", None)
    cp._save(state)


def stop(cp) -> None:
    """Stop the node of ``cp`` (its pods, kubelet, containerd) and leave the control plane
    running."""
    drain(cp)
    cp.stop(names=["kubelet", "containerd"])
    cleanup(cp)
    # its Node would stay Ready (no node lifecycle controller here) and be scheduled onto
    cp.kubectl("delete", "node", NAME, "--ignore-not-found", "--wait=false", timeout=30)
