"""A real node for the test control plane: containerd, a CNI bridge, kubelet, kube-proxy, DNS.

:func:`start` gives the node a network namespace of its own (``raibid-<tag>``) and a veth pair
into it: the machine's end holds the node's address (kubelet refuses a loopback node IP; the
API server reaches the kubelet there for ``kubectl logs`` and port-forwards), the namespace
holds the pods' bridge. Debian's containerd runs in that namespace (with its config, socket,
root and state under ``<control plane>/node/``), so its CNI bridge and its pods are there;
kube-proxy runs there too, so its iptables rules are the namespace's, never the machine's
(concurrent sessions each have theirs), and CoreDNS, the pods' resolver, which answers the
cluster's names and forwards nothing. The kubelet (built from the pinned k8s.io/kubernetes)
runs on the machine and joins as node :data:`NAME`. Pods get routes to the node and to the
node's Service range (a ServiceCIDR of its own) only: no default route, no masquerading off
the machine; the machine gets routes to the pods and the Services through the veth. The pause
image is a tiny static C program (tools/kubelet/pause.c) packed as a docker archive and
imported offline: no registry is ever asked. :func:`mirror_registry` points a registry name
(the k3d registry's) at a registry on this machine's loopback, through containerd's hosts
config.

Every process is recorded in the control plane's ``state.json`` and stopped by pid;
:func:`stop` (and :meth:`ControlPlane.stop`) deletes the pods first, so the kubelet stops
their sandboxes (CRI removes their network namespaces), then stops the processes and the
runtime's shims, unmounts what is left under the node's directory, and deletes the
namespace (its veth, bridge and rules with it) and the node's cgroups.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from . import atomic, paths, tools

#: what the node needs besides the control plane (runc comes with Debian's containerd)
TOOLS = ("kubelet", "kube-proxy", "coredns", "containerd", "gcc")
#: the node's processes in the control plane's state.json
PROCESSES = ("kubelet", "containerd", "api-relay", "kube-proxy", "coredns")
NAME = "raibid-node"
#: the image of the pod sandboxes, and of the tests' workload (it prints its arguments)
PAUSE_IMAGE = "raibid.local/pause:1"
CNI_BIN = Path("/usr/lib/cni")
TAINT = "raibid.dev/real-node"
DOMAIN = "cluster.local"
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


def free_subnets(count: int) -> list[str]:
    """``count`` /24s of 10.251.0.0/16 that no address or route of this machine is in."""
    used = (_run(["ip", "-4", "-o", "addr"]).stdout
            + _run(["ip", "-4", "route", "show", "table", "all"]).stdout)
    free = [f"{_NET}.{third}.0/24" for third in range(256) if f"{_NET}.{third}." not in used]
    if len(free) < count:
        raise NodeError(f"no {count} free /24s in {_NET}.0.0/16 for the node")
    return free[:count]


def _host(subnet: str, n: int) -> str:
    return f"{subnet.rsplit('.', 1)[0]}.{n}"


#: a TCP relay from the node's address to the API server on loopback, for kube-proxy in the
#: node's network namespace (where 127.0.0.1 is its own)
_RELAY = """
import asyncio, sys
host, port, target = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    finally:
        w.close()
async def serve(r, w):
    try:
        tr, tw = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        w.close()
        return
    await asyncio.gather(pipe(r, tw), pipe(tr, w), return_exceptions=True)
async def main():
    server = await asyncio.start_server(serve, host, port)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


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
        # unix sockets under it (containerd's ttrpc, the kubelet's pod-resources) must fit
        # in about 104 bytes: a deep directory (pytest's temporary ones) gets a short one
        if len(str(self.dir)) > 60:
            self.dir = LOCK_DIR / hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]

    @property
    def socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    def ctr(self, *args, check=True, timeout=60) -> subprocess.CompletedProcess:
        return _run(["ctr", "--address", self.socket, "--namespace", "k8s.io", *args],
                    check=check, timeout=timeout)


def _containerd_config(node: Node, stream_address: str) -> str:
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
  stream_server_address = "{stream_address}"
  stream_server_port = "0"
  enable_selinux = false
[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{node.dir / 'cni' / 'net.d'}"
[{cri}.registry]
  # hosts.toml per registry name (mirror_registry), read at each pull
  config_path = "{node.dir / 'certs.d'}"
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
"""


def _cni_config(bridge: str, subnet: str, ipam_dir: Path, routes: list[str]) -> str:
    # isGateway false: the start gave the bridge its address already; no default route, no
    # masquerade: a pod reaches the node and the Services, nothing off the machine
    gateway = _host(subnet, 1)
    return json.dumps({"cniVersion": "0.4.0", "name": "raibid-node", "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": False, "ipMasq": False,
         "hairpinMode": True,
         "ipam": {"type": "host-local", "dataDir": str(ipam_dir),
                  "ranges": [[{"subnet": subnet, "gateway": gateway}]],
                  "routes": [{"dst": r, "gw": gateway} for r in routes]}}]}, indent=1)


def _kubeconfig(node: Node, user: str, subject: str, server: str) -> Path:
    """NODE_DIR/USER.kubeconfig for ``user`` at ``server``, which the API server's certificate
    names as localhost whatever address it is reached at, with a client certificate of the
    control plane's CA for ``subject`` (pki/USER.crt and USER.key)."""
    import yaml

    from .controlplane import sign_cert

    cp, path = node.cp, node.dir / f"{user}.kubeconfig"
    sign_cert(cp.pki, user, subject, "extendedKeyUsage=clientAuth\n"
              "keyUsage=critical,digitalSignature,keyEncipherment\n")
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "cp", "cluster": {"server": server, "tls-server-name": "localhost",
                                                "certificate-authority": str(cp.pki / "ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate": str(cp.pki / f"{user}.crt"),
                                          "client-key": str(cp.pki / f"{user}.key")}}],
        "contexts": [{"name": user, "context": {"cluster": "cp", "user": user}}],
        "current-context": user}))
    path.chmod(0o600)
    return path


def _kubelet_config(node: Node, info: dict, healthz: int) -> Path:
    import yaml

    cp, d = node.cp, node.dir
    config = d / "kubelet.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # cgroup v1 in these sandboxes
        "failSwapOn": False,
        "address": info["ip"], "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": healthz,
        "cgroupDriver": "cgroupfs",
        # a cgroup of its own (the start makes it, cleanup removes it), not the machine's /kubepods
        "cgroupRoot": "/" + info["cgroup"],
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        # only holders of a certificate of the control plane's CA (its API server) get in
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(cp.pki / "ca.crt")}},
        "authorization": {"mode": "AlwaysAllow"},
        "podCIDR": info["subnet"], "podLogsDir": str(d / "pod-logs"),
        # the node's CoreDNS; no resolver of the machine's (nothing off the machine)
        "clusterDNS": [info["peer"]], "clusterDomain": DOMAIN, "resolvConf": "",
        "staticPodPath": "",
        # a shared disk: no eviction or image GC because other users filled it
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "makeIPTablesUtilChains": False,
        # only pods that ask for it (nodeName, or this toleration): the session's other tests
        # schedule onto kwok's fake node, with images this node does not have
        "registerWithTaints": [{"key": TAINT, "value": "true", "effect": "NoSchedule"}],
    }))
    return config


def _kube_proxy_config(node: Node, info: dict, kubeconfig: Path) -> Path:
    import yaml

    config = node.dir / "kube-proxy.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NAME, "mode": "iptables", "clusterCIDR": info["subnet"],
        # its own network namespace: these loopback ports are its own
        "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
        # conntrack's limits are the machine's: left as they are
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        # SNAT to the bridge's address (on this machine): replies between pods of one bridge
        # come back through the namespace's netfilter
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
        "nodePortAddresses": [info["link"]],
    }))
    return config


def _corefile(node: Node, info: dict, kubeconfig: Path) -> Path:
    # the cluster's names only: no forward plugin, so no name is ever asked off the machine
    corefile = node.dir / "Corefile"
    corefile.write_text(f""".:53 {{
    bind {info['peer']}
    errors
    kubernetes {DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} coredns
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
""")
    return corefile


def _coredns_rbac() -> str:
    rule = {"apiGroups": [""], "resources": ["services", "pods", "namespaces"],
            "verbs": ["list", "watch"]}
    slices = {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["list", "watch"]}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "raibid-coredns"}, "rules": [rule, slices]}
    binding = _cluster_role_binding("raibid-coredns", "raibid-coredns", "User", "system:coredns")
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]})


def _cluster_role_binding(name: str, role: str, kind: str, subject: str) -> dict:
    """A ClusterRoleBinding ``name`` of ClusterRole ``role`` to one subject (``kind``: User or
    Group)."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind,
                          "name": subject}]}


def _in_netns(info: dict, *argv) -> list[str]:
    """``argv`` in the node's network namespace only (`ip netns exec` would remount /sys and
    hide the cgroup mounts)."""
    return ["nsenter", f"--net=/run/netns/{info['netns']}", "--", *map(str, argv)]


def _make_network(info: dict) -> None:
    """The node's network namespace, a veth from the machine into it (the node's address on
    the machine's end), the pods' bridge inside it, and routes to its pods and Services."""
    ns, veth = info["netns"], info["veth"]
    _run(["ip", "netns", "add", ns])
    _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "n"])
    _run(["ip", "link", "set", veth + "n", "netns", ns])
    _run(["ip", "addr", "add", f"{info['ip']}/24", "dev", veth])
    _run(["ip", "link", "set", veth, "up"])
    inside = [
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", f"{info['peer']}/24", "dev", veth + "n"],
        ["ip", "link", "set", veth + "n", "up"],
        ["ip", "link", "add", info["bridge"], "type", "bridge"],
        ["ip", "addr", "add", f"{_host(info['subnet'], 1)}/24", "dev", info["bridge"]],
        ["ip", "link", "set", info["bridge"], "up"],
        # the namespace's own forwarding (pods to Services, the machine to pods)
        ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
    ]
    for argv in inside:
        _run(_in_netns(info, *argv))
    for dst in (info["subnet"], info["services"]):
        _run(["ip", "route", "add", dst, "via", info["peer"], "dev", veth])


#: nodes of concurrent sessions take turns choosing their subnets (a lock on this directory)
LOCK_DIR = Path("/run/raibid-node")


def _make_network_locked(cp, info: dict) -> None:
    """Choose three free subnets and make the network on them, one session at a time: two
    that chose together would share addresses."""
    atomic.private_dir(LOCK_DIR)
    with atomic.locked(LOCK_DIR):
        link, pods, services = free_subnets(3)
        info.update(link=link, ip=_host(link, 1), peer=_host(link, 2), subnet=pods,
                    services=services)
        state = cp.state()
        state["node"] = info  # before the namespace exists: a failed start still deletes it
        cp._save(state)
        _make_network(info)


def _service_cidr(info: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
            "metadata": {"name": info["netns"]}, "spec": {"cidrs": [info["services"]]}}


def start(cp, timeout: float = 120) -> dict:
    """Start the node beside control plane ``cp`` and wait until it is Ready; returns what
    ``state.json`` records of it. Anything started before a failure is stopped again."""
    tools.require(list(TOOLS))
    missing = [p for p in ("bridge", "host-local", "loopback") if not (CNI_BIN / p).exists()]
    if missing:
        raise NodeError(f"CNI plugins missing in {CNI_BIN} ({', '.join(missing)}): "
                        "apt-get install containernetworking-plugins")
    from .controlplane import free_port

    if cp.state().get("node"):  # one that died (a kubelet killed): its leftovers go first
        stop(cp)
    node = Node(cp)
    atomic.private_dir(node.dir)
    started = time.monotonic()
    tag = secrets.token_hex(4)
    info = {"name": NAME, "netns": f"raibid-{tag}", "veth": f"rn{tag}", "bridge": f"rb{tag}",
            "cgroup": f"raibid-{tag}"}
    try:
        _make_network_locked(cp, info)
        net_d = node.dir / "cni" / "net.d"
        net_d.mkdir(parents=True, exist_ok=True)
        (net_d / "10-raibid.conflist").write_text(
            _cni_config(info["bridge"], info["subnet"], node.dir / "cni" / "ipam",
                        [info["link"], info["services"]]))
        conf = node.dir / "containerd.toml"
        conf.write_text(_containerd_config(node, info["peer"]))
        cp.spawn("containerd", _in_netns(info, tools.which("containerd"), "--config", conf))
        _wait(lambda: node.ctr("version", check=False).returncode == 0, timeout, cp, "containerd")
        archive = build_pause(node.dir / "image")
        node.ctr("images", "import", archive, timeout=timeout)
        _bind_node_role(cp)
        cp.kubectl("apply", "-f", "-", input=json.dumps(_service_cidr(info)), check=True)
        for d in _cgroup_dirs(info["cgroup"]):
            d.mkdir(exist_ok=True)
        kubeconfig = _kubeconfig(node, "kubelet", f"/O=system:nodes/CN=system:node:{NAME}",
                                 f"https://127.0.0.1:{cp.port}")
        config = _kubelet_config(node, info, free_port())
        cp.spawn("kubelet", [tools.which("kubelet"), f"--config={config}",
                             f"--kubeconfig={kubeconfig}", f"--root-dir={node.dir / 'kubelet'}",
                             f"--cert-dir={node.dir / 'kubelet-pki'}", f"--node-ip={info['ip']}",
                             f"--hostname-override={NAME}", "--v=1"])
        # kube-proxy in the namespace reaches the API server through a relay on the node's
        # address; its certificate's user is bound to system:node-proxier from the start
        cp.spawn("api-relay", [sys.executable, "-c", _RELAY, info["ip"], str(cp.port),
                               str(cp.port)])
        proxy_kubeconfig = _kubeconfig(node, "kube-proxy", "/CN=system:kube-proxy",
                                       f"https://{info['ip']}:{cp.port}")
        cp.spawn("kube-proxy", _in_netns(info, tools.which("kube-proxy"), "--config",
                                         _kube_proxy_config(node, info, proxy_kubeconfig)))
        cp.kubectl("apply", "-f", "-", input=_coredns_rbac(), check=True)
        dns_kubeconfig = _kubeconfig(node, "coredns", "/CN=system:coredns",
                                     f"https://{info['ip']}:{cp.port}")
        cp.spawn("coredns", _in_netns(info, tools.which("coredns"), "-conf",
                                      _corefile(node, info, dns_kubeconfig)))
        _wait(lambda: cp.kubectl("get", "node", NAME).returncode == 0, timeout, cp, "kubelet")
        proc = cp.kubectl("wait", "--for=condition=Ready", f"node/{NAME}",
                          f"--timeout={int(timeout)}s", timeout=timeout + 10)
        if proc.returncode != 0:
            raise NodeError(f"node {NAME} did not become Ready: {proc.stderr.strip()}\n"
                            f"kubelet's log ends:\n{cp.log_tail('kubelet', 25)}")
        # the node lifecycle controller, which would lift the not-ready taint, is off
        cp.kubectl("taint", "nodes", NAME, "node.kubernetes.io/not-ready:NoSchedule-")
        cp.require_alive("kube-proxy")
        cp.require_alive("coredns")
    except BaseException:
        cp.stop(names=PROCESSES)
        cleanup(cp)
        raise
    state = cp.state()
    info["startup_seconds"] = round(time.monotonic() - started, 2)
    state["node"] = info
    cp._save(state)
    return info


def mirror_registry(cp, name: str, port: int) -> None:
    """Pulls of images named ``name/...`` (e.g. the k3d registry's ``host:port``) go to the
    plain-HTTP registry on this machine's 127.0.0.1:``port``, through a relay on the node's
    address (containerd's 127.0.0.1 is its namespace's own)."""
    info = cp.state().get("node") or {}
    if not info:
        raise NodeError("no real node runs beside this control plane")
    relay = f"registry-relay-{port}"
    if not cp.alive(relay):
        cp.spawn(relay, [sys.executable, "-c", _RELAY, info["ip"], str(port), str(port)])
    url = f"http://{info['ip']}:{port}"
    hosts = Node(cp).dir / "certs.d" / name / "hosts.toml"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text(f'server = "{url}"\n[host."{url}"]\n  capabilities = ["pull", "resolve"]\n')
    state = cp.state()
    state["node"].setdefault("relays", []).append(relay)
    cp._save(state)


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
    binding = _cluster_role_binding("raibid-node", "system:node", "Group", "system:nodes")
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


def runtime_pids(node: Node, cgroup: str) -> list[int]:
    """The containers' first processes (each task's init.pid, still in the node's cgroup) and
    the shims running them (their parent, serving the node's containerd socket)."""
    pids = []
    for f in (node.dir / "containerd" / "state").glob("io.containerd.runtime.v2.task/*/*/init.pid"):
        try:
            pid = int(f.read_text().strip())
            if f"/{cgroup}/" not in Path(f"/proc/{pid}/cgroup").read_text():
                continue  # gone, and the pid is another process's now
            pids.append(pid)
            status = Path(f"/proc/{pid}/status").read_text()
            ppid = int(status.split("PPid:", 1)[1].split()[0])
            argv = Path(f"/proc/{ppid}/cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"containerd-shim-runc-v2") and str(node.socket).encode() in argv:
                pids.append(ppid)
        except (OSError, ValueError, IndexError):
            pass
    return list(dict.fromkeys(pids))


def _netns_of(pids: list[int]) -> list[str]:
    """The names in /run/netns of the network namespaces ``pids`` are in."""
    inodes = set()
    for pid in pids:
        try:
            inodes.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
        except OSError:
            pass
    names = []
    for f in Path("/run/netns").glob("cni-*") if inodes else ():
        try:
            if os.stat(f).st_ino in inodes:
                names.append(f.name)
        except OSError:
            pass
    return names


def cleanup(cp) -> None:
    """After the kubelet and containerd stopped: the containers and shims they left (found
    from the pids containerd recorded), the mounts under the node's directory, the network
    namespace and the cgroups."""
    node = Node(cp)
    info = cp.state().get("node") or {}
    pids = runtime_pids(node, info.get("cgroup") or "-")  # what drain could not stop
    pod_netns = _netns_of(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for name in pod_netns:  # CRI's, for sandboxes nobody stopped
        _run(["ip", "netns", "del", name], check=False)
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
    if info.get("netns"):  # its veth pair, bridge and kube-proxy's rules go with it
        _run(["ip", "netns", "del", info["netns"]], check=False)
        _run(["ip", "link", "del", info["veth"]], check=False)
    if info.get("cgroup"):
        _remove_cgroups(info["cgroup"])
    if node.dir.parent == LOCK_DIR:  # a short directory of its own (unmounted above)
        import shutil

        shutil.rmtree(node.dir, ignore_errors=True)
    state = cp.state()
    state.pop("node", None)
    cp._save(state)


def stop(cp) -> None:
    """Stop the node of ``cp`` (its pods, kubelet, containerd) and leave the control plane
    running."""
    info = cp.state().get("node") or {}
    drain(cp)
    cp.stop(names=[*PROCESSES, *info.get("relays", ())])
    cleanup(cp)
    if info.get("netns"):  # its Services' range (kept until their Services are deleted)
        cp.kubectl("delete", "servicecidr", info["netns"], "--ignore-not-found", "--wait=false",
                   timeout=30)
    # its Node would stay Ready (no node lifecycle controller here) and be scheduled onto
    cp.kubectl("delete", "node", NAME, "--ignore-not-found", "--wait=false", timeout=30)
