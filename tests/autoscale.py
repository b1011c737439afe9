"""The agents' autoscaling, end to end, on the test control plane (used by
tests/test_autoscale.py and bench/autoscale.py).

The staging render's ScaledJob and TriggerAuthentication (Redis auth on) are applied as
rendered, with two changes: the trigger's ``address`` points at a real redis-server on
loopback, because the operator runs out of cluster and cannot resolve the in-cluster
Service name; and the test (not bench/autoscale.py) sets a 1 s ``pollingInterval``, so
its waits of a few polls take seconds, not the render's tens of seconds. The KEDA
operator watches the namespace; kwok's fake node runs the agent Pods (they keep running
until their Job is deleted: kwok's pod-complete stage is not loaded). Jobs are pushed
the way raibid-ci's server does: XADD to ``raibid:jobs`` with the field ``job`` holding a
Job that tests/fixtures/contract/job.schema.json accepts.
"""
from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from support import FIXTURES

NS = "raibid-system"
STREAM, GROUP = "raibid:jobs", "raibid-agents"
JOB_SCHEMA = FIXTURES / "contract" / "job.schema.json"


def reset(cp, namespace: str = NS, keep_crds: bool = False, wait: bool = True) -> None:
    """An empty cluster again: the stack's namespace and every CRD deleted, and gone.
    ``keep_crds``: the CRDs stay (their custom resources in the namespace go with it), for
    a test that needs no objects of an environment before it but not a cluster without
    CRDs: deleting and creating them again costs seconds, and the API server rebuilds its
    OpenAPI spec after each change of the CRD set. ``wait=False``: everything is deleted,
    but what is still going is not waited for (a test done with the cluster leaves the
    namespace's last seconds to pass while other tests run; the next reset waits).

    Custom resources lose their finalizers first: the controllers that would honour them
    (the KEDA operator of the autoscaling test, Flux) are not running any more, so the
    namespace would otherwise wait for them forever.

    The namespace controller looks at a deleted namespace 5 s after the deletion; whatever
    it then has to wait for (a Pod's grace period, a PersistentVolumeClaim's protection
    finalizer while a Pod uses it) puts it off for another 8-16 s. So once the namespace is
    Terminating (nothing new can be created in it) its Pods and claims are deleted here and
    waited for, the CRDs are deleted meanwhile (one delete of the collection), and the
    controller's first look finds nothing to wait for."""
    crds = [n.split("/", 1)[1] for n in cp.kubectl("get", "customresourcedefinitions", "-o", "name",
                                                     timeout=60, check=True).stdout.split()]
    if crds:
        out = cp.kubectl("get", ",".join(crds), "-n", namespace, "-o", "json", "--ignore-not-found",
                         timeout=60, check=True).stdout
        for o in (json.loads(out)["items"] if out.strip() else []):
            if o["metadata"].get("finalizers"):
                ref = f"{o['kind'].lower()}.{o['apiVersion'].split('/')[0]}/{o['metadata']['name']}"
                cp.kubectl("patch", ref, "-n", namespace, "--type=merge",
                           "-p", '{"metadata":{"finalizers":null}}', timeout=60, check=True)
    # an APIService served by a Service (the KEDA chart's metrics API) is unavailable here
    # (nothing runs its Pods), and while any is, the namespace controller cannot list every
    # kind and finishes no namespace, this one or another test's: they go
    apis = cp.kubectl("get", "apiservices", "-o", "json", timeout=60, check=True).stdout
    for a in json.loads(apis)["items"]:
        if (a.get("spec") or {}).get("service"):
            cp.kubectl("delete", "apiservice", a["metadata"]["name"], "--ignore-not-found",
                       timeout=60, check=True)
    cp.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false", timeout=60, check=True)
    delete_pods_and_claims(cp, namespace)
    gone = [] if keep_crds else crds
    if gone:  # one request (a delete of each is throttled by kubectl after the first 10)
        cp.kubectl("delete", "--raw", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", timeout=60,
                   check=True)
    if wait:
        cp.kubectl("wait", "--for=delete", f"namespace/{namespace}",
                   *(f"customresourcedefinition/{c}" for c in gone), "--timeout=120s", timeout=150, check=True)


def delete_pods_and_claims(cp, namespace: str = NS) -> None:
    """Delete the Pods and PersistentVolumeClaims of a Terminating namespace and wait until
    they are gone, so the namespace controller's first look (5 s after the deletion) finds
    nothing to wait for (see :func:`reset`). Neither is an object anyone applied: the
    namespace's deletion would remove them too, only later."""
    cp.kubectl("delete", "pods,persistentvolumeclaims", "-n", namespace, "--all", "--ignore-not-found",
               "--wait=true", "--timeout=120s", timeout=150, check=True)


def rendered(project: Path, env: str) -> list[dict]:
    from tasks.render import rendered_objects

    return rendered_objects(project / "build" / "manifests" / env)


def job_payload(n: int) -> str:
    """One job as raibid-ci's server queues it (checked against the contract schema)."""
    import jsonschema

    job = {"id": str(uuid.uuid4()), "repo": "raibid/demo", "branch": "main",
           "commit": f"{n:040x}", "status": "pending",
           "started_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
           "finished_at": None, "duration": None, "agent_id": None, "exit_code": None}
    jsonschema.validate(job, json.loads(JOB_SCHEMA.read_text()),
                        format_checker=jsonschema.FormatChecker())
    return json.dumps(job)


class Autoscale:
    """Redis + KEDA + the staging ScaledJob on control plane ``cp``."""

    def __init__(self, cp, project: Path, env: str = "staging", polling_interval: int | None = None):
        """``polling_interval``: seconds between KEDA's looks at the stream, instead of the
        render's (the test's waits are counted in polls)."""
        self.cp, self.project, self.env = cp, project, env
        self.interval = polling_interval
        self.password = secrets.token_urlsafe(24)
        self.port = 0
        self.scaledjob: dict = {}

    def redis(self, *args: str) -> str:
        from tasks.controlplane import redis_cli

        proc = redis_cli(self.port, self.password, *args)
        if proc.returncode != 0 or proc.stdout.startswith(("ERR", "NOAUTH", "WRONGPASS")):
            raise AssertionError(f"redis-cli {' '.join(args[:3])} failed: {proc.stdout}{proc.stderr}")
        return proc.stdout

    def setup(self) -> None:
        from tasks import controlplane, kube

        cp = self.cp
        # an empty namespace; CRDs another test left are the same charts' (the apply below
        # takes them over), and deleting and creating them again costs the API server ~8 s of CPU
        reset(cp, keep_crds=True)
        self.port = controlplane.start_redis(cp, self.password)
        objects = rendered(self.project, self.env)
        sj = next(o for o in objects if o["kind"] == "ScaledJob")
        ta_name = sj["spec"]["triggers"][0]["authenticationRef"]["name"]
        ta = next(o for o in objects if o["kind"] == "TriggerAuthentication" and o["metadata"]["name"] == ta_name)
        assert ta["spec"]["secretTargetRef"], "staging's TriggerAuthentication must take the Redis password"
        sj["spec"]["triggers"][0]["metadata"]["address"] = f"127.0.0.1:{self.port}"
        if self.interval is not None:
            sj["spec"]["pollingInterval"] = self.interval
        self.scaledjob = sj
        secret_ref = ta["spec"]["secretTargetRef"][0]
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": secret_ref["name"], "namespace": NS},
                  "stringData": {secret_ref["key"]: self.password}}
        kubectl = kube.kubectl_argv(cp.context, str(cp.kubeconfig), str(cp.dir / "kubecache"))
        ok, out = kube.server_side_apply(kubectl, objects + [secret], NS)
        assert ok, out
        # the consumer group exists before jobs arrive (raibid-ci's server creates it)
        self.redis("XGROUP", "CREATE", STREAM, GROUP, "$", "MKSTREAM")
        controlplane.start_keda(cp, NS)

    def jobs(self) -> list[dict]:
        out = self.cp.kubectl("-n", NS, "get", "jobs", "-o", "json", check=True).stdout
        name = self.scaledjob["metadata"]["name"]
        return [j for j in json.loads(out)["items"]
                if any(r.get("kind") == "ScaledJob" and r.get("name") == name
                       for r in j["metadata"].get("ownerReferences", []))]

    @staticmethod
    def active(jobs: list[dict]) -> list[dict]:
        return [j for j in jobs if not any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
                                           for c in j.get("status", {}).get("conditions", []))]

    def push(self, count: int) -> float:
        t0 = time.monotonic()
        for n in range(count):
            self.redis("XADD", STREAM, "*", "job", job_payload(n))
        return t0

    def watch(self, t0: float, want: int, settle: float, timeout: float = 120) -> dict:
        """Poll the Jobs until at least ``want`` exist, then ``settle`` seconds more."""
        first = reached = None
        most = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.jobs()
            now = time.monotonic()
            most = max(most, len(self.active(jobs)))
            if jobs and first is None:
                first = now - t0
            if len(jobs) >= want and reached is None:
                reached = now
            if reached is not None and now - reached >= settle:
                break
            time.sleep(0.25)
        jobs = self.jobs()
        return {"first_job_s": first, "jobs": len(jobs), "max_active": max(most, len(self.active(jobs))),
                "running_pods": self.running_pods()}

    def running_pods(self) -> int:
        out = self.cp.kubectl("-n", NS, "get", "pods", "-o", "json", check=True).stdout
        return sum(1 for p in json.loads(out)["items"]
                   if p["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "raibid-agent"
                   and p["status"].get("phase") == "Running")

    def drain(self) -> None:
        """Take every entry as an agent would (XREADGROUP) and acknowledge it."""
        out = self.redis("XREADGROUP", "GROUP", GROUP, "test-agent", "COUNT", "1000", "STREAMS", STREAM, ">")
        ids = [line for line in out.splitlines() if re.fullmatch(r"\d+-\d+", line.strip())]
        assert ids, out
        self.redis("XACK", STREAM, GROUP, *ids)

    def lag_and_pending(self) -> tuple[int, int]:
        out = self.redis("XINFO", "GROUPS", STREAM).splitlines()
        fields = dict(zip(out[0::2], out[1::2]))
        return int(fields.get("lag") or 0), int(fields["pending"])

    def finish_agents(self) -> None:
        """The agents exit: their Jobs are deleted (with their Pods)."""
        for j in self.jobs():
            self.cp.kubectl("-n", NS, "delete", "job", j["metadata"]["name"], "--cascade=background",
                            "--ignore-not-found", check=True)

    def polling_interval(self) -> int:
        return int(self.scaledjob["spec"].get("pollingInterval", 30))

    def teardown(self) -> None:
        self.cp.stop(names={"keda-operator", "redis-server"})
