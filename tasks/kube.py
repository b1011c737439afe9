"""Kubernetes access of the deploy: an environment's kube context and namespace (its
deploy.json properties), ``kubectl`` argv, server-side apply and diff with the field manager
``raibid-deploy`` (CRDs and Namespaces first, Established before the objects that need
them; every object in its own namespace), the kinds a server serves, and the applied
record: the ConfigMap ``raibid-deploy-applied`` in which apply:<env> leaves the digest of
what it deployed.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from doit.exceptions import TaskFailed

from . import core, tools

#: the ConfigMap apply:<env> records the applied digest in
APPLIED_CONFIGMAP = "raibid-deploy-applied"
#: the field manager of everything apply:<env> writes (server-side apply)
FIELD_MANAGER = "raibid-deploy"
#: kinds applied, and waited for, before everything else: what other objects need to exist
FIRST_KINDS = ("CustomResourceDefinition", "Namespace")


def is_local(env: str) -> bool:
    """The environment runs on this machine's own cluster (deploy.json kind ``local``:
    `doit cluster`, images in its registry, the generated local secrets)."""
    return core.settings().env(env).local


def local_env() -> str | None:
    """The environment of kind ``local`` (`doit up` and Tilt deploy it), None without one."""
    env = core.settings().local_env()
    return env.name if env else None


# --------------------------------------------------------------------------- contexts


def context_of(env: str) -> str:
    """The kube context of an environment (deploy.json: ``context``, or the project's k3d
    cluster's for the local one)."""
    return core.settings().env(env).context


def namespace_of(env: str) -> str:
    return core.settings().env(env).namespace


def kube_contexts() -> list[str] | None:
    """The context names of the kubeconfig (``kubectl config view``), None if unreadable."""
    proc = run(kubectl_argv(None) + ["config", "view", "-o", "json"], capture_output=True,
               text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        return None
    try:
        return [c.get("name") for c in (json.loads(proc.stdout).get("contexts") or [])]
    except (ValueError, AttributeError):
        return None


def kubeconfig_files() -> list[Path]:
    """The kubeconfig files kubectl reads: ``$KUBECONFIG`` (a path list), else ~/.kube/config."""
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return [Path(p).expanduser() for p in listed] or [Path.home() / ".kube" / "config"]


def _kubeconfig_hint(env: str) -> str:
    return ("`doit cluster` creates the k3d cluster and its context" if is_local(env)
            else "Add it to your kubeconfig (or point KUBECONFIG at one that has it)")


def context_problem(env: str, verb: str) -> str | None:
    """Why ``env`` cannot be reached (no kubeconfig, or it lacks the context), with what to
    do; None when it can (or the kubeconfig is unreadable: then kubectl says what is wrong)."""
    from .settings import FILE

    ctx = context_of(env)
    where = FILE if is_local(env) else f"{FILE} environments.{env}.context"
    contexts = kube_contexts()
    if contexts is not None and ctx in contexts:
        return None
    files = kubeconfig_files()
    if not contexts and not any(f.is_file() for f in files):  # kubectl has no kubeconfig at all
        named = ", ".join(str(f) for f in files)
        via = "KUBECONFIG" if os.environ.get("KUBECONFIG") else "the default kubeconfig"
        return (f"no kubeconfig: {named} ({via}) does not exist, so kube context {ctx!r} ({where}) "
                f"is not configured: nothing was {verb}. {_kubeconfig_hint(env)}.")
    if contexts is None:
        return None
    return (f"kube context {ctx!r} ({where}) is not in your kubeconfig: nothing was {verb}. "
            f"{_kubeconfig_hint(env)}.")


#: what kubectl prints when the server does not answer (compiled by re on first use)
_UNREACHABLE = (r"connection refused|was refused|no route to host|network is unreachable|"
                r"i/o timeout|no such host|Unable to connect to the server|TLS handshake timeout|"
                r"context deadline exceeded|failed to download openapi")
#: ... and when it answers but refuses the kubeconfig's credentials
_DENIED = r"Unauthorized|You must be logged in|x509: |certificate signed by unknown authority"
#: kubectl's advice on a failed download of the OpenAPI schema: wrong when the server is down
_VALIDATE_HINT = (r";? ?if you choose to ignore these errors, "
                  r"turn validation off with --validate=false")


def _server_of(ctx: str) -> str:
    argv = kubectl_argv(ctx) + ["config", "view", "--minify", "-o",
                                "jsonpath={.clusters[0].cluster.server}"]
    proc = run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "unknown"


def access_problem(env: str, verb: str, output: str = "") -> str | None:
    """Why kubectl could not reach the cluster of ``env`` (its output is ``output``), naming
    the context and the fix: no kubeconfig, the context missing from it, a server that does
    not answer (never kubectl's ``--validate=false`` advice: validation is not the problem)
    or that refuses the credentials. None when the cluster answers (the failure is another
    one: kubectl's own output says it). Asks the server once (``/version``) when ``output``
    does not say."""
    import re

    problem = context_problem(env, verb)
    if problem:
        return problem
    ctx = context_of(env)
    text = output
    if not re.search(f"{_UNREACHABLE}|{_DENIED}", text):
        probe = run(kubectl_argv(ctx) + ["--request-timeout=10s", "get", "--raw", "/version"],
                    capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if probe.returncode == 0:
            return None
        text = f"{text}\n{probe.stderr}"
    for pattern, unreachable in ((_UNREACHABLE, True), (_DENIED, False)):
        line = next((ln for ln in text.splitlines() if re.search(pattern, ln)), None)
        if line is None:
            continue
        reason = re.sub(_VALIDATE_HINT, "", line.strip()).removeprefix("error: ")[:300]
        where = f"context {ctx!r}, server {_server_of(ctx)}"
        if not unreachable:
            return (f"the cluster of {env} ({where}) refused your kubeconfig's credentials: "
                    f"{reason}. Nothing was {verb}. Renew the credentials of context {ctx!r} "
                    f"(`kubectl --context {ctx} auth whoami` checks them).")
        fix = ("Start it: `doit cluster`." if is_local(env) else
               f"Check that it runs and that context {ctx!r} of your kubeconfig names its server "
               f"(`kubectl --context {ctx} cluster-info`).")
        return (f"the cluster of {env} does not answer ({where}): {reason}. Nothing was {verb}. "
                f"{fix}")
    return None


def check_context(env: str, verb: str):
    """doit action: fail with what to do when the environment's kube context is not configured."""

    def check_context():
        problem = context_problem(env, verb)
        return TaskFailed(problem) if problem else None

    return check_context


def kubectl_argv(context: str | None, kubeconfig: str | None = None, cache_dir: str | None = None,
                 exe: str | None = None) -> list[str]:
    """``kubectl`` for one context (none: the kubeconfig's own business, e.g. ``config
    view``); for the test control plane its own kubeconfig and discovery cache, so nothing
    under ~/.kube is read or written, and the kubectl it was started with."""
    argv = [exe or tools.which("kubectl") or "kubectl"]
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    if cache_dir:
        argv += ["--cache-dir", cache_dir]
    return argv + (["--context", context] if context else [])


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a kubectl command line (:func:`kubectl_argv`): ``subprocess.run`` in the
    environment of a short Go run (tools.short_run_env, of ``env`` when given): a quarter
    less CPU for each kubectl start-up, which is most of what a kubectl call costs."""
    kw["env"] = tools.short_run_env(base=kw.get("env"))
    return subprocess.run(argv, **kw)


def env_kubectl(env: str) -> list[str]:
    """``kubectl`` for an environment's context and namespace."""
    return kubectl_argv(context_of(env)) + ["-n", namespace_of(env)]


# --------------------------------------------------------------------------- the applied record


def applied_digest(env: str) -> str | None:
    """The digest the last apply:<env> recorded in the cluster, or None (asked live; None
    too when the cluster or kubectl cannot answer, so apply runs and says why)."""
    try:
        if tools.which("kubectl") is None or context_of(env) is None:
            return None
        proc = run(env_kubectl(env) + ["get", "configmap", APPLIED_CONFIGMAP, "-o", "jsonpath={.data.digest}"],
                   capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, ValueError, AttributeError, subprocess.TimeoutExpired):
        return None  # the spec cannot be read: apply runs, and check_context says why
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def record_applied(env: str, digest: str, images: dict[str, str]) -> str | None:
    """Record in the cluster that apply:<env> deployed ``digest`` (with ``images``);
    None, or why it failed."""
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": APPLIED_CONFIGMAP, "namespace": namespace_of(env),
                     "labels": {"app.kubernetes.io/managed-by": "raibid-deploy"}},
        "data": {"digest": digest, "environment": env, "images": json.dumps(images, sort_keys=True)},
    }
    rec = run(kubectl_argv(context_of(env)) + [
        "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", "-"],
        input=json.dumps(configmap), capture_output=True, text=True)
    return None if rec.returncode == 0 else rec.stderr.strip()


def forget_applied(env: str, quiet: bool = False) -> bool:
    """Delete the cluster's record of what ``apply:<env>`` deployed (the next apply runs);
    ``quiet``: without printing the command and its output."""
    if context_of(env) is None:
        print(context_problem(env, "forgotten"))
        return False
    argv = env_kubectl(env) + ["delete", "configmap", APPLIED_CONFIGMAP, "--ignore-not-found"]
    if quiet:
        return run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL).returncode == 0
    print("$ kubectl " + " ".join(argv[1:]), flush=True)
    return run(argv).returncode == 0


# --------------------------------------------------------------------------- server-side apply, diff


def object_list(objects: list[dict]) -> str:
    """``objects`` as one kubectl input (a v1 List)."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


def _ref(o: dict) -> str:
    return f"{o['kind']}/{o['metadata']['name']}"


def established(kubectl: list[str]) -> set[str] | None:
    """The CRDs the server reports Established, asked with one list (a ``kubectl get`` or
    ``wait`` of many names sends one request each, throttled by kubectl to 5 a second after
    the first 10); None when the server cannot be asked. A go-template, not jsonpath: a
    CRD just created has no conditions yet, which jsonpath's filter rejects as an error."""
    template = '{{range .items}}{{.metadata.name}}{{range .status.conditions}} {{.type}}={{.status}}{{end}}{{"\\n"}}{{end}}'
    proc = run(kubectl + ["get", "customresourcedefinitions", "-o", f"go-template={template}"],
               capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        return None
    return {name for name, *conditions in (line.split() for line in proc.stdout.splitlines() if line.strip())
            if "Established=True" in conditions}


def wait_established(kubectl: list[str], names: list[str], timeout: float, poll: float = 0.1) -> str | None:
    """Wait until every CRD of ``names`` is Established, asking with one list each
    ``poll`` seconds (``kubectl wait`` asks for one CRD after the other: 2 s for 17 just
    created); None, or why not (the server cannot be asked, or which are not Established
    after ``timeout`` seconds)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        ready = established(kubectl)
        if ready is None:
            return "cannot list the CustomResourceDefinitions (is the cluster running?)"
        pending = [n for n in names if n not in ready]
        if not pending:
            return None
        if time.monotonic() >= deadline:
            return (f"not Established after {timeout:g}s: " + ", ".join(f"customresourcedefinition/{n}" for n in pending)
                    + " (`kubectl describe` them: a name conflict or an invalid schema keeps a CRD from it)")
        time.sleep(poll)


def server_side_apply(kubectl: list[str], objects: list[dict], namespace: str, manager: str = FIELD_MANAGER,
                      dry_run: bool = False, first_manager: str | None = None,
                      wait: int = 120) -> tuple[bool, str]:
    """Server-side apply ``objects`` in two steps, so custom resources never race their CRDs:
    the CRDs and Namespaces first (always for real: a dry-run of a custom resource needs its
    CRD established), wait until the CRDs are Established, then everything else, each
    object applied once, in its own namespace (``namespace`` for a namespaced one naming
    none: :func:`in_own_namespaces`). That second step is dry-run server-side first
    (with ``dry_run``: only that), so an object the server rejects leaves the rest
    unapplied rather than the stack half applied. Returns (ok, kubectl's output)."""
    base = ["apply", "--server-side", "--force-conflicts", f"--field-manager={manager}"]
    out = []

    def step(argv, stdin=None, keep=True):  # keep: its stdout is part of the output
        proc = run(kubectl + argv, input=stdin, capture_output=True, text=True)
        if keep:
            out.append(proc.stdout.strip())
        if proc.returncode != 0:
            out.append(proc.stderr.strip())
        return proc.returncode == 0

    first = [o for o in objects if o.get("kind") in FIRST_KINDS]
    crds = [o["metadata"]["name"] for o in first if o["kind"] == "CustomResourceDefinition"]
    if first:
        first_base = base if first_manager is None else base[:-1] + [f"--field-manager={first_manager}"]
        if not step(first_base + ["-f", "-"], object_list(first)):
            return False, "\n".join(filter(None, out))
    problem = wait_established(kubectl, crds, wait) if crds else None
    if problem:
        return False, "\n".join(filter(None, out + [problem]))
    rest = [o for o in objects if o.get("kind") not in FIRST_KINDS]
    if not rest:
        return True, "\n".join(filter(None, out))
    scopes = namespaced_kinds(kubectl, rest, objects)
    if scopes is None:
        return False, "\n".join(filter(None, out + ["cannot ask the cluster which kinds it serves "
                                                      "(is it running?)"]))
    stdin = object_list(in_own_namespaces(rest, namespace, scopes))
    ok = step(base + ["--dry-run=server", "-f", "-"], stdin, keep=dry_run)
    if not ok and not dry_run:
        out.append(f"the API server rejects the objects above: none of the {len(rest)} objects "
                   "after the CRDs and Namespaces was applied")
    elif ok and not dry_run:
        ok = step(base + ["-f", "-"], stdin)
    return ok, "\n".join(filter(None, out))


def in_own_namespaces(objects: list[dict], namespace: str,
                      namespaced: dict[tuple[str, str], bool]) -> list[dict]:
    """``objects`` with ``namespace`` given to each one of a namespaced kind (``namespaced``:
    ``(apiVersion, kind) -> namespaced``) that names none; the others as they are. kubectl
    then puts every object in its own namespace without ``--namespace``, which it refuses
    for an object naming another (a chart's RoleBinding in kube-system)."""
    out = []
    for o in objects:
        meta = o.get("metadata") or {}
        if not meta.get("namespace") and namespaced.get((o.get("apiVersion"), o.get("kind"))):
            o = {**o, "metadata": {**meta, "namespace": namespace}}
        out.append(o)
    return out


def crd_scopes(objects: list[dict]) -> dict[tuple[str, str], bool]:
    """``(apiVersion, kind) -> namespaced`` of the custom resources the CRDs of ``objects``
    define (every version they serve)."""
    out = {}
    for o in objects:
        spec = o.get("spec") or {}
        if o.get("kind") != "CustomResourceDefinition" or not isinstance(spec, dict):
            continue
        kind = (spec.get("names") or {}).get("kind")
        for v in spec.get("versions") or []:
            if isinstance(v, dict) and v.get("served", True):
                key = (f"{spec.get('group')}/{v.get('name')}", kind)
                out[key] = spec.get("scope") == "Namespaced"
    return out


def namespaced_kinds(kubectl: list[str], objects: list[dict],
                     defined: list[dict] = ()) -> dict[tuple[str, str], bool] | None:
    """``(apiVersion, kind) -> namespaced`` for the kinds of ``objects`` that name no
    namespace: from the CRDs of ``defined`` (what the apply itself defines, fresh in
    discovery or not), else asked by discovery (:func:`served_kinds`, only when some kind
    is left); None when the server cannot be asked."""
    scopes = crd_scopes(list(defined))
    unknown = [o for o in objects if not (o.get("metadata") or {}).get("namespace")
               and (o.get("apiVersion"), o.get("kind")) not in scopes]
    if not unknown:
        return scopes
    served = served_kinds(kubectl, unknown)
    return None if served is None else {**served, **scopes}


def _api_resources(kubectl: list[str]) -> dict[tuple[str, str], bool]:
    """``(apiVersion, kind) -> namespaced`` as ``kubectl api-resources`` lists them (the
    preferred version of each group; empty when it cannot be read)."""
    proc = run(kubectl + ["api-resources"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    lines = proc.stdout.splitlines()
    # a table: each column starts where its header does (an unavailable aggregated API
    # makes it exit 1 after listing the rest)
    if not lines or not all(h in lines[0] for h in ("APIVERSION", "NAMESPACED", "KIND")):
        return {}
    v, n, k = (lines[0].index(h) for h in ("APIVERSION", "NAMESPACED", "KIND"))
    return {(line[v:n].strip(), line[k:].split()[0]): line[n:k].strip() == "true"
            for line in lines[1:] if line[k:].strip()}


def served_kinds(kubectl: list[str], objects: list[dict]) -> dict[tuple[str, str], bool] | None:
    """``(apiVersion, kind) -> namespaced`` for the kinds of ``objects`` the server serves
    (asked by discovery: one ``kubectl api-resources``, and a group version it does not list
    on its own); None when the server cannot be asked."""
    wanted = {o["apiVersion"] for o in objects}
    served = {key: namespaced for key, namespaced in _api_resources(kubectl).items() if key[0] in wanted}
    for api_version in sorted(wanted - {api_version for api_version, _ in served}):
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        proc = run(kubectl + ["get", "--raw", path], capture_output=True, text=True)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "could not find the requested resource" in proc.stderr:
                continue  # the group is not served (yet): its CRD is part of the apply
            return None
        for r in json.loads(proc.stdout).get("resources", []):
            if "/" not in r["name"]:
                served[(api_version, r["kind"])] = bool(r.get("namespaced"))
    return served


def diff_objects(kubectl: list[str], objects: list[dict], namespace: str,
                 manager: str = FIELD_MANAGER) -> tuple[int, str]:
    """What a server-side apply of ``objects`` would change: ``kubectl diff --server-side``
    of what the server can already take, and "would be created" for the rest (custom
    resources whose CRD, and objects whose namespace, the apply creates first), each
    object in its own namespace (as :func:`server_side_apply` applies it). Returns
    (0 no differences | 1 differences | 2 error, text)."""
    served = served_kinds(kubectl, objects)
    if served is None:
        return 2, "cannot ask the cluster which kinds it serves (is it running?)"
    ns = run(kubectl + ["get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}"],
             capture_output=True, text=True)
    if ns.returncode != 0:
        return 2, ns.stderr.strip()
    existing = set(ns.stdout.split())
    live, soon = [], []
    for o in objects:
        key = (o["apiVersion"], o["kind"])
        missing_ns = served.get(key) and (o["metadata"].get("namespace") or namespace) not in existing
        (soon if key not in served or missing_ns else live).append(o)
    text, code = [], 0
    if live:
        stdin = object_list(in_own_namespaces(live, namespace, served))
        proc = run(kubectl + ["diff", "--server-side", "--force-conflicts",
                              f"--field-manager={manager}", "-f", "-"],
                   input=stdin, capture_output=True, text=True)
        if proc.returncode > 1:
            return 2, (proc.stderr or proc.stdout).strip()
        code = proc.returncode
        text.append(proc.stdout.rstrip())
    if soon:
        code = 1
        text.append("would be created (their CRD or namespace is created by the same apply):\n"
                    + "\n".join(f"  + {_ref(o)}" for o in soon))
    return code, "\n".join(t for t in text if t)
