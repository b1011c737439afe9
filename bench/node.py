"""The real node's timings on the test control plane: its start-up to Ready, a pod from
apply to Running, a Service's first answer, and the memory of its processes. Prints
numbers; asserts nothing.

    python bench/node.py

Needs the control-plane and node tools (`doit tools control-plane node`, etcd-server,
containerd, containernetworking-plugins, iptables, gcc) and root.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from tasks import controlplane, node, tools  # noqa: E402


def _running(cp, ns: str, name: str) -> None:
    while True:
        proc = cp.kubectl("get", "pod", "-n", ns, name, "-o", "json")
        statuses = (json.loads(proc.stdout).get("status", {}).get("containerStatuses") or []
                    if proc.returncode == 0 else [])
        if statuses and all(s.get("ready") for s in statuses):
            return
        time.sleep(0.1)


def main() -> None:
    tools.activate()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cp = controlplane.start(Path(tmp) / "controlplane", fake_node=False)
        print(f"control plane start-up (no kwok):   {time.perf_counter() - t0:6.2f} s")
        try:
            t0 = time.perf_counter()
            info = node.start(cp)
            print(f"node start-up to Ready:             {time.perf_counter() - t0:6.2f} s"
                  "  (netns, containerd, kubelet, kube-proxy, CoreDNS)")
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                   "spec": {"nodeName": node.NAME, "automountServiceAccountToken": False,
                            "containers": [{"name": "web", "image": node.PAUSE_IMAGE,
                                            "imagePullPolicy": "Never",
                                            "args": ["--serve", "8080", "bench"]}]}}
            ip = info["services"].rsplit(".", 1)[0] + ".10"
            svc = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web", "namespace": "default"},
                   "spec": {"clusterIP": ip, "selector": {"app": "web"},
                            "ports": [{"port": 80, "targetPort": 8080}]}}
            t0 = time.perf_counter()
            cp.kubectl("apply", "-f", "-", input=json.dumps(pod), check=True)
            _running(cp, "default", "web")
            print(f"pod apply to Running:               {time.perf_counter() - t0:6.2f} s")
            t0 = time.perf_counter()
            cp.kubectl("apply", "-f", "-", input=json.dumps(svc), check=True)
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            while True:
                try:
                    opener.open(f"http://{ip}/", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.1)
            print(f"Service apply to its first answer:  {time.perf_counter() - t0:6.2f} s")
            rss = {k: v for k, v in cp.rss_mib().items() if k in node.PROCESSES}
            print("node memory (RSS, MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items())
                  + f"; total {sum(rss.values()):.0f} (shims and pods not counted)")
        finally:
            t0 = time.perf_counter()
            cp.stop()
            print(f"stop (pods, node, control plane):   {time.perf_counter() - t0:6.2f} s")


if __name__ == "__main__":
    main()
