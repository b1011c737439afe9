"""The test control plane's real node (tasks/node.py): containerd, a CNI bridge and a kubelet
built from the pinned k8s.io/kubernetes, joined to the session control plane."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from support import tool_or_fail

from tasks import node as nodemod


def _mount_points(under: Path) -> list[str]:
    prefix = str(under) + "/"
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)]


def _wait_running(cp, ns: str, pod: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    obj = {}
    while time.monotonic() < deadline:
        proc = cp.kubectl("get", "pod", "-n", ns, pod, "-o", "json")
        if proc.returncode == 0:
            obj = json.loads(proc.stdout)
            statuses = obj.get("status", {}).get("containerStatuses") or []
            if statuses and all(s.get("ready") for s in statuses):
                return obj
        time.sleep(0.5)
    raise AssertionError(f"pod {pod} not Running in {timeout}s: {json.dumps(obj.get('status'))}\n"
                         f"kubelet's log ends:\n{cp.log_tail('kubelet', 30)}")


def _port_forward_answers(cp, ns: str) -> None:
    """kubectl port-forward (what Tilt's port forwards use) reaches a pod's port through the
    kubelet and containerd's stream server, on a loopback port of ours."""
    import re
    import urllib.request

    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
           "spec": {"nodeName": nodemod.NAME, "automountServiceAccountToken": False,
                    "containers": [{"name": "web", "image": nodemod.PAUSE_IMAGE,
                                    "imagePullPolicy": "Never",
                                    "args": ["--serve", "8080", "served on the real node"]}]}}
    cp.kubectl("apply", "-f", "-", input=json.dumps(pod), check=True)
    _wait_running(cp, ns, "web")
    argv = [cp.kubectl_exe(), "--kubeconfig", str(cp.kubeconfig), "-n", ns, "port-forward",
            "--address", "127.0.0.1", "pod/web", ":8080"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=cp.env(), stdin=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+) -> 8080", line)
        assert m, line
        with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/", timeout=10) as answer:
            assert answer.read().decode() == "served on the real node\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _get(url: str) -> str:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as answer:
        return answer.read().decode()


def _services_route_to_pods(cp, ns: str, info: dict) -> None:
    """kube-proxy, in the node's network namespace, routes a Service's cluster IP (in the
    node's ServiceCIDR) to its pod: from this machine and from another pod; the machine's
    own netfilter rules stay as they were."""
    ip = info["services"].rsplit(".", 1)[0] + ".10"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
           "spec": {"clusterIP": ip, "selector": {"app": "web"},
                    "ports": [{"port": 80, "targetPort": 8080}]}}
    cp.kubectl("apply", "-f", "-", input=json.dumps(svc), check=True)
    deadline, last = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        try:
            assert _get(f"http://{ip}/") == "served on the real node\n"
            break
        except OSError as e:  # until kube-proxy has written the Service's rules
            last = e
            time.sleep(0.5)
    else:
        raise AssertionError(f"{ip} did not answer: {last}\n{cp.log_tail('kube-proxy', 20)}")
    client = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": ns},
              "spec": {"nodeName": nodemod.NAME, "automountServiceAccountToken": False,
                       "containers": [{"name": "client", "image": nodemod.PAUSE_IMAGE,
                                       "imagePullPolicy": "Never", "args": ["--get", ip, "80"]}]}}
    cp.kubectl("apply", "-f", "-", input=json.dumps(client), check=True)
    _wait_running(cp, ns, "client")
    deadline = time.monotonic() + 20
    while "served on the real node" not in (logs := cp.kubectl("logs", "-n", ns, "client").stdout):
        assert time.monotonic() < deadline, logs
        time.sleep(0.5)
    machine = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert ip not in machine and "KUBE-SERVICES" not in machine


def test_pods_run_on_the_real_node_logs_and_port_forward_reach_them_and_stop_leaves_nothing(
        controlplane):
    for name in (*nodemod.TOOLS, "ctr"):
        tool_or_fail(name)
    cp = controlplane
    netns_before = set(Path("/run/netns").iterdir()) if Path("/run/netns").is_dir() else set()
    info = nodemod.start(cp)
    try:
        node = json.loads(cp.kubectl("get", "node", nodemod.NAME, "-o", "json", check=True).stdout)
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert addresses["InternalIP"] == info["ip"]  # on the bridge the start made, not loopback
        ns = "real-node"
        cp.kubectl("create", "namespace", ns, check=True)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello", "namespace": ns},
               "spec": {"nodeName": nodemod.NAME, "automountServiceAccountToken": False,
                        "containers": [{"name": "hello", "image": nodemod.PAUSE_IMAGE,
                                        "imagePullPolicy": "Never",
                                        "args": ["hello from the real node"]}]}}
        cp.kubectl("apply", "-f", "-", input=json.dumps(pod), check=True)
        obj = _wait_running(cp, ns, "hello")
        assert obj["status"]["podIP"].startswith(info["subnet"].rsplit(".", 1)[0] + ".")
        # the API server reads it from the kubelet at the node's address
        logs = cp.kubectl("logs", "-n", ns, "hello", check=True).stdout
        assert logs.strip() == "hello from the real node"
        # nothing is routed off the machine: the pod has no default route
        tasks = nodemod.Node(cp).ctr("tasks", "ls").stdout.splitlines()[1:]
        pid = next(line.split()[1] for line in tasks)
        routes = subprocess.run(["nsenter", "-t", pid, "-n", "ip", "route"], capture_output=True,
                                text=True, check=True).stdout
        assert routes.strip() and "default" not in routes, routes
        _port_forward_answers(cp, ns)
        _services_route_to_pods(cp, ns, info)
    finally:
        nodemod.stop(cp)
    assert not cp.alive("kubelet") and not cp.alive("containerd")
    assert cp.alive()  # the control plane runs on
    node_dir = cp.dir / "node"
    assert not _mount_points(node_dir)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert info["bridge"] not in links
    netns_after = set(Path("/run/netns").iterdir()) if Path("/run/netns").is_dir() else set()
    assert netns_after <= netns_before
    assert not any(d.exists() for d in nodemod._cgroup_dirs(info["cgroup"]))
    assert not nodemod._shim_pids(nodemod.Node(cp)) or not any(
        Path(f"/proc/{p}").exists() for p in nodemod._shim_pids(nodemod.Node(cp)))
    assert "node" not in cp.state()
    assert info["netns"] not in subprocess.run(["ip", "netns"], capture_output=True,
                                               text=True).stdout
