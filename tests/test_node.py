"""The test control plane's real node (tasks/node.py): containerd, a CNI bridge, kubelet and
kube-proxy built from the pinned k8s.io/kubernetes, joined to the session control plane."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from support import tool_or_fail

from tasks import controlplane as cpmod
from tasks import node as nodemod

TEXT = "served on the real node"


def _mount_points(under: Path) -> list[str]:
    prefix = str(under) + "/"
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)]


def _netns() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def _get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as answer:
        return answer.read().decode()


def _pod(cp, ns: str, name: str, args: list[str], labels: dict | None = None) -> dict:
    """A pod of the pause image on the real node, Running (its container ready)."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
           "spec": {"nodeName": nodemod.NAME, "automountServiceAccountToken": False,
                    "containers": [{"name": name, "image": nodemod.PAUSE_IMAGE,
                                    "imagePullPolicy": "Never", "args": args}]}}
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("apply", "-f", "-", input=json.dumps(pod), check=True)
    deadline = time.monotonic() + 90
    obj = {}
    while time.monotonic() < deadline:
        proc = cp.kubectl("get", "pod", "-n", ns, name, "-o", "json")
        if proc.returncode == 0:
            obj = json.loads(proc.stdout)
            statuses = obj.get("status", {}).get("containerStatuses") or []
            if statuses and all(s.get("ready") for s in statuses):
                return obj
        time.sleep(0.5)
    raise AssertionError(f"pod {name} not Running: {json.dumps(obj.get('status'))}\n"
                         f"kubelet's log ends:\n{cp.log_tail('kubelet', 30)}")


def _logs(cp, ns: str, name: str, want: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while want not in (logs := cp.kubectl("logs", "-n", ns, name).stdout):
        assert time.monotonic() < deadline, logs
        time.sleep(0.5)
    return logs


def test_a_pod_runs_on_the_real_node_and_kubectl_logs_reads_it(controlplane, real_node):
    cp, info = controlplane, real_node
    node = json.loads(cp.kubectl("get", "node", nodemod.NAME, "-o", "json", check=True).stdout)
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == info["ip"]  # on the veth the start made, not loopback
    obj = _pod(cp, "node-logs", "hello", ["hello from the real node"])
    assert obj["status"]["podIP"].startswith(info["subnet"].rsplit(".", 1)[0] + ".")
    # the API server reads it from the kubelet at the node's address
    logs = cp.kubectl("logs", "-n", "node-logs", "hello", check=True).stdout
    assert logs.strip() == "hello from the real node"
    # nothing is routed off the machine: the pod has no default route
    tasks = nodemod.Node(cp).ctr("tasks", "ls").stdout.splitlines()[1:]
    pid = next(line.split()[1] for line in tasks)
    routes = subprocess.run(["nsenter", "-t", pid, "-n", "ip", "route"], capture_output=True,
                            text=True, check=True).stdout
    assert routes.strip() and "default" not in routes, routes


def test_kubectl_port_forward_reaches_a_pod_on_the_real_node(controlplane, real_node):
    """What Tilt's port forwards use: the kubelet and containerd's stream server, to a
    loopback port of ours."""
    cp = controlplane
    _pod(cp, "node-forward", "web", ["--serve", "8080", TEXT])
    argv = [cp.kubectl_exe(), "--kubeconfig", str(cp.kubeconfig), "-n", "node-forward",
            "port-forward", "--address", "127.0.0.1", "pod/web", ":8080"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=cp.env(), stdin=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+) -> 8080", line)
        assert m, line
        assert _get(f"http://127.0.0.1:{m.group(1)}/") == TEXT + "\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_service_routes_to_its_pod_from_the_machine_and_from_a_pod(controlplane, real_node):
    """kube-proxy, in the node's network namespace, routes a cluster IP of the node's
    ServiceCIDR to its pod; the machine's own netfilter rules stay as they were."""
    cp, info, ns = controlplane, real_node, "node-service"
    _pod(cp, ns, "web", ["--serve", "8080", TEXT], labels={"app": "web"})
    ip = info["services"].rsplit(".", 1)[0] + ".10"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
           "spec": {"clusterIP": ip, "selector": {"app": "web"},
                    "ports": [{"port": 80, "targetPort": 8080}]}}
    cp.kubectl("apply", "-f", "-", input=json.dumps(svc), check=True)
    deadline, last = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        try:
            assert _get(f"http://{ip}/") == TEXT + "\n"
            break
        except OSError as e:  # until kube-proxy has written the Service's rules
            last = e
            time.sleep(0.5)
    else:
        raise AssertionError(f"{ip} did not answer: {last}\n{cp.log_tail('kube-proxy', 20)}")
    _pod(cp, ns, "client", ["--get", ip, "80"])
    _logs(cp, ns, "client", TEXT)
    machine = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert ip not in machine and "KUBE-SERVICES" not in machine


# on the session node's worker: what is left is judged against the machine's namespaces,
# which a node started meanwhile by another worker would add to
@pytest.mark.xdist_group("controlplane")
def test_stopping_a_control_plane_with_a_node_leaves_nothing(tmp_path):
    """What the session's teardown and its watcher do, even after the kubelet died: every
    process, the containers and their shims, the mounts, the pods' and the node's network
    namespaces, the veth, the routes and the cgroups."""
    for name in (*cpmod.TOOLS, *nodemod.TOOLS, "ctr"):
        tool_or_fail(name)
    netns_before = _netns()
    cp = cpmod.start(tmp_path / "cp", fake_node=False)
    try:
        info = nodemod.start(cp)
        _pod(cp, "node-stop", "web", ["--serve", "8080", TEXT])
        shims = nodemod.runtime_pids(nodemod.Node(cp), info["cgroup"])
        # a container and its shim; the node's network namespace and the pod's
        assert len(shims) >= 2 and len(_netns()) >= len(netns_before) + 2
        # a kubelet that died: nothing stops the pods' sandboxes, so a start again (which
        # clears what the dead node left first) and the stop itself must
        os.kill(next(p["pid"] for p in cp.processes() if p["name"] == "kubelet"), signal.SIGKILL)
        first, info = info, nodemod.start(cp)
        assert first["netns"] not in _netns() and info["netns"] in _netns()
        assert not [pid for pid in shims if cpmod._start_time(pid)]
        _pod(cp, "node-stop", "again", ["--serve", "8080", TEXT])
        shims = nodemod.runtime_pids(nodemod.Node(cp), info["cgroup"])
        assert shims
        os.kill(next(p["pid"] for p in cp.processes() if p["name"] == "kubelet"), signal.SIGKILL)
        pids = [p["pid"] for p in cp.processes()]
    finally:
        cp.stop()
    assert not [pid for pid in pids + shims if cpmod._start_time(pid)]  # gone (or a zombie)
    assert not _mount_points(cp.dir / "node")
    assert _netns() <= netns_before
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert info["veth"] not in links
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    assert info["subnet"] not in routes and info["services"] not in routes
    assert not any(d.exists() for d in nodemod._cgroup_dirs(info["cgroup"]))
    assert "node" not in cp.state()


def _dns_a(server: str, name: str) -> list[str]:
    """The A records ``server`` answers for ``name`` (one UDP query, made by hand)."""
    import socket
    import struct

    question = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    question += b"\0" + struct.pack(">HH", 1, 1)  # A, IN
    query = struct.pack(">HHHHHH", 0x2a2a, 0x0100, 1, 0, 0, 0) + question
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(query, (server, 53))
        data = s.recv(4096)
    count, offset, found = struct.unpack(">H", data[6:8])[0], 12 + len(question), []
    for _ in range(count):
        if data[offset] & 0xC0 == 0xC0:  # a compressed name
            offset += 2
        else:
            while data[offset]:
                offset += data[offset] + 1
            offset += 1
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", data[offset:offset + 10])
        offset += 10
        if rtype == 1:
            found.append(socket.inet_ntoa(data[offset:offset + 4]))
        offset += length
    return found


def test_the_node_s_cluster_dns_names_services_and_nothing_else(controlplane, real_node):
    """CoreDNS in the node's namespace answers a Service's name with its cluster IP, asks
    nobody about other names, and is every pod's resolver."""
    cp, info, ns = controlplane, real_node, "node-dns"
    ip = info["services"].rsplit(".", 1)[0] + ".11"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "named", "namespace": ns},
           "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}
    obj = _pod(cp, ns, "resolver", ["resolver"])
    cp.kubectl("apply", "-f", "-", input=json.dumps(svc), check=True)
    deadline = time.monotonic() + 20
    while (found := _dns_a(info["peer"], f"named.{ns}.svc.cluster.local")) != [ip]:
        assert time.monotonic() < deadline, (found, cp.log_tail("coredns", 20))
        time.sleep(0.5)
    assert _dns_a(info["peer"], "example.com") == []
    container = obj["status"]["containerStatuses"][0]["containerID"].split("//", 1)[1]
    tasks = nodemod.Node(cp).ctr("tasks", "ls").stdout.splitlines()[1:]
    pid = next(line.split()[1] for line in tasks if line.split()[0] == container)
    resolv = Path(f"/proc/{pid}/root/etc/resolv.conf").read_text()
    assert f"nameserver {info['peer']}" in resolv and f"search {ns}.svc.cluster.local" in resolv


def _registry(image_dir: Path):
    """A read-only registry (the distribution API's pulls) of one image, the pause image
    as an OCI manifest, on a free loopback port; the paths it was asked for."""
    import hashlib
    import http.server
    import tarfile
    import threading

    with tarfile.open(nodemod.build_pause(image_dir)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())[0]
        config = tar.extractfile(manifest["Config"]).read()
        layer = tar.extractfile(manifest["Layers"][0]).read()

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    oci = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer), "size": len(layer)}]}).encode()
    blobs = {digest(config): config, digest(layer): layer, digest(oci): oci}
    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            path = self.path
            if path == "/v2/":
                body, kind = b"{}", "application/json"
            elif "/manifests/" in path:
                body, kind = oci, "application/vnd.oci.image.manifest.v1+json"
            elif "/blobs/" in path and path.rsplit("/", 1)[1] in blobs:
                body, kind = blobs[path.rsplit("/", 1)[1]], "application/octet-stream"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Content-Digest", digest(body))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, asked


def test_the_k3d_registry_name_pulls_from_the_registry_on_this_machine(controlplane, real_node,
                                                                      tmp_path):
    """containerd resolves the registry name through its hosts config to a registry on
    loopback (through the relay on the node's address), and a pod runs the image it pulled."""
    cp = controlplane
    server, asked = _registry(tmp_path / "image")
    try:
        port = server.server_address[1]
        name = f"k3d-raibid-registry.localhost:{port}"
        nodemod.mirror_registry(cp, name, port)
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "pulled", "namespace": "pull"},
               "spec": {"nodeName": nodemod.NAME, "automountServiceAccountToken": False,
                        "containers": [{"name": "pulled", "image": f"{name}/raibid/pause:test",
                                        "imagePullPolicy": "Always", "args": ["pulled"]}]}}
        cp.kubectl("create", "namespace", "pull")
        cp.kubectl("apply", "-f", "-", input=json.dumps(pod), check=True)
        _logs(cp, "pull", "pulled", "pulled", timeout=90)
        assert any(p.startswith("/v2/raibid/pause/manifests/test") for p in asked), asked
    finally:
        server.shutdown()
