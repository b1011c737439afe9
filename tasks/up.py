"""The whole stack in one command: ``up``, and ``down``, ``dev`` (Tilt), ``e2e`` (``tilt ci``).

``doit up`` runs, in order: a check of every tool the chain needs (one message, nothing
started), the cluster, chart vendoring, render and validation of the local environment,
the images and their push to the cluster registry, the deploy, then waits for the
rollouts that matter and shows where everything is. Each step decides for itself whether
it is out of date (the cluster and the deploy ask the cluster live), and ``up`` itself
only waits and reports when something below it ran or its last wait failed: a second
``doit up`` with nothing changed executes nothing.
"""
from __future__ import annotations

import shlex

from doit.dependency import UptodateCalculator
from doit.exceptions import TaskFailed

from . import kube, paths, tools
from .status import live
from .deploy import deploy_digest
from .render import rendered_objects
from .tanka import manifests_dir


def chain(env: str) -> tuple[str, ...]:
    """What ``up`` runs for ``env``, in order (each step's own deps come first anyway); "image"
    and "push" are the groups of every image."""
    return ("cluster", "vendor:charts", f"render:{env}", f"validate:{env}", "image", "push", f"apply:{env}")

#: tools the chain needs even when a step does not declare them
BASE_TOOLS = ("docker", "k3d", "kubectl", "tk", "helm")

#: rollouts that matter: (kind/name, timeout)
ROLLOUTS = (("statefulset/redis-master", "300s"), ("deployment/keda-operator", "300s"),
            ("deployment/raibid-server", "300s"))

TILT_PORT = 10350


def no_local_env():
    """doit action of up/down/dev/e2e when deploy.json declares no local environment."""
    return TaskFailed("deploy.json declares no environment of kind \"local\": `doit up`, `down`, `dev` and "
                      "`e2e` deploy that one to this project's k3d cluster. Give one environment "
                      "\"kind\": \"local\" (README.md, \"Settings\"); remote ones deploy with `doit apply:<env>`.")


def dep_closure(tasks: dict, names):
    """The tasks named and, transitively, their task_dep (each once)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen or name not in tasks:
            continue
        seen.add(name)
        yield tasks[name]
        todo.extend(tasks[name].task_dep)


# --------------------------------------------------------------------------- up:tools


@live
class ChainTools(UptodateCalculator):
    """uptodate of a preflight task: every tool of every task in ``chain`` (and their
    task_dep) is installed, docker has an engine, and (when the chain builds images) the
    raibid-ci source is a Cargo workspace. The tools come from each task's
    ``meta.tools`` (recorded by tools.needs), so a step added to a chain is covered
    without editing a list here. When something is missing the task runs, and fails
    with one message naming all of it."""

    def __init__(self, chain, base=(), source=False):
        super().__init__()
        self.chain = tuple(chain)
        self.base = tuple(base)
        self.source = source  # the chain builds from the raibid-ci source outside doit (Tilt)
        self.names: tuple[str, ...] = self.base
        self.problems: list[str] = []

    def chain_tools(self, tasks: dict) -> tuple[str, ...]:
        names = dict.fromkeys(self.base)
        for t in dep_closure(tasks, self.chain):
            for n in (t.meta or {}).get("tools", ()):
                names.setdefault(n)
        return tuple(n for n in names if n in tools.TOOLS and not tools.TOOLS[n].optional)

    def source_problem(self, tasks: dict) -> str | None:
        """When the chain builds images: why the raibid-ci source cannot be used, or None
        (checked here so that a missing checkout stops the chain before the cluster)."""
        if not (self.source or any(t.name.startswith("image:") for t in dep_closure(tasks, self.chain))):
            return None
        from .docker import SourceError, source

        try:
            source()
        except SourceError as e:
            return str(e)
        return None

    def __call__(self, task, values):
        self.names = self.chain_tools(self.tasks_dict)
        gone = tools.missing(self.names)
        self.problems = [tools.missing_message(gone)] if gone else []
        # the installed ones are asked too, so one run names everything to fix
        live = [f"{n}: {p}" for n in self.names
                if tools.TOOLS[n] not in gone and (p := tools.live_problem(tools.TOOLS[n]))]
        if live:
            head = ("Also, a tool is installed but cannot work:" if gone
                    else "a tool is installed but cannot work: nothing was run.")
            self.problems.append(head + "\n  " + "\n  ".join(live))
        if src := self.source_problem(self.tasks_dict):
            self.problems.append(src)
        return not self.problems


def preflight(basename: str, chain, base=(), source=False) -> dict:
    """A task that fails, before anything in ``chain`` starts, naming every missing tool."""
    calc = ChainTools(chain, base, source)

    def report():
        return TaskFailed("\n".join(calc.problems)) if calc.problems else None

    return {"basename": basename, "actions": [report], "uptodate": [calc], "verbosity": 1}


def task_up_tools():
    """Check every tool `doit up` needs before anything starts (one message naming each missing one)."""
    env = kube.local_env()  # what up, down, dev and e2e deploy
    return preflight("up:tools", (chain(env) if env else ()) + ("up",), BASE_TOOLS)


def task_dev_tools():
    """Check every tool `doit dev` needs before anything starts (Tilt, and what its Tiltfile runs)."""
    return preflight("dev:tools", ("cluster", "dev"), BASE_TOOLS + ("tilt-ui",), source=True)


def task_e2e_tools():
    """Check every tool `doit e2e` needs before anything starts (Tilt, and what its Tiltfile runs)."""
    return preflight("e2e:tools", ("cluster", "e2e"), BASE_TOOLS + ("tilt-ui",), source=True)


# --------------------------------------------------------------------------- up


class StackSettled(UptodateCalculator):
    """uptodate of ``up``: the previous ``up`` finished its waits for the deploy that is
    current now, and no task of the chain executed in this run. The chain's own checks
    are live (cluster state, the applied digest held by the cluster), so "nothing below
    ran" means the cluster still holds what ``up`` last saw roll out; the digest catches
    an ``apply:local`` run on its own since."""

    def __init__(self, env: str):
        super().__init__()
        self.env = env
        self.reason = ""  # why it runs again (doit info, the reporter's "because")

    def __call__(self, task, values):
        if not values.get("settled"):
            self.reason = "no record of a previous `doit up` that finished its waits"
        elif values.get("deployed") != deploy_digest(self.env):
            self.reason = f"the deploy changed since the last `doit up` (apply:{self.env} ran)"
        else:
            # (a group task, e.g. "image", has no actions: it "executes" every run, doing nothing)
            chain = dep_closure(self.tasks_dict, task.task_dep)
            ran = [t.name for t in chain if t.executed and t.actions]
            self.reason = f"{ran[0]} ran in this run" if ran else ""
        return not self.reason


def wait_rollouts(env: str):
    ctx, ns = kube.context_of(env), kube.namespace_of(env)
    for ref, timeout in ROLLOUTS:
        argv = kube.kubectl_argv(ctx) + ["-n", ns, "rollout", "status", ref, f"--timeout={timeout}"]
        print("$ kubectl " + " ".join(argv[1:]), flush=True)
        proc = kube.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            return TaskFailed(f"{ref} did not become ready within {timeout}:\n"
                              f"{(proc.stderr or proc.stdout).strip()}\n"
                              f"  look: kubectl --context {ctx} -n {ns} describe {ref}\n"
                              f"  logs: kubectl --context {ctx} -n {ns} logs {ref}")
    return {"settled": True, "deployed": deploy_digest(env)}


def show_panel(env: str):
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    from . import core

    s = core.settings()
    ctx, ns = kube.context_of(env), kube.namespace_of(env)
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    rows = [
        ("server API", "http://localhost:8080  (/health, /jobs, POST /webhooks/gitea)"),
        ("Gitea", "http://localhost:3000"),
        ("Redis", "localhost:6379  (stream raibid:jobs, group raibid-agents)"),
        ("Tilt UI", f"http://localhost:{TILT_PORT}  (after `doit dev`)"),
        ("cluster", f"{s.cluster}  (context {ctx}, namespace {ns})"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    nxt = (f"[bold]next[/]: the ports are forwarded by Tilt: [cyan]doit dev[/] (live reload, buttons)\n"
           f"      or by hand: kubectl --context {ctx} -n {ns} "
           f"port-forward svc/raibid-server 8080\n"
           f"      [cyan]doit down[/] removes the stack (keeps the cluster), "
           f"[cyan]doit cluster:delete[/] the cluster; docs/TILT_WORKFLOW.md")
    Console(highlight=False).print(Panel.fit(t, title="raibid-ci is up",
                                             subtitle="ports forwarded by `doit dev`"))
    Console(highlight=False).print(nxt)


def task_up():
    """Bring up the whole stack: cluster, charts, render, images, push, deploy; wait; show URLs."""
    env = kube.local_env()  # what up, down, dev and e2e deploy
    if env is None:
        return {"actions": [no_local_env], "uptodate": [False]}
    return tools.needs({
        "actions": [(wait_rollouts, [env]), (show_panel, [env])],
        "task_dep": ["up:tools", *chain(env)],
        "uptodate": [StackSettled(env)],
        "verbosity": 2,
    }, "kubectl")


# --------------------------------------------------------------------------- down, dev, e2e


def delete_stack(env: str):
    from . import core

    s = core.settings()
    manifests = manifests_dir(env)
    if not manifests.is_dir():
        return TaskFailed(f"{paths.rel(manifests)} is missing: nothing says what to delete. "
                          f"Run `doit render:{env}` (it renders what `doit up` applied), then `doit down`.")
    objects = rendered_objects(manifests)
    kubectl = kube.kubectl_argv(kube.context_of(env))
    served = kube.served_kinds(kubectl, objects)
    if served is None:
        problem = kube.access_problem(env, "deleted")
        ctx = kube.context_of(env)
        return TaskFailed(f"down: {problem}" if problem else
                          f"deleting the stack failed: the cluster (context {ctx!r}) could not say "
                          "which kinds it serves")
    # first forget what was applied, so the next `doit up` deploys again even if a delete fails
    if not kube.forget_applied(env):
        return TaskFailed("forgetting the applied record failed (see above); nothing was deleted")
    # kinds the cluster does not serve have nothing to delete; custom resources go before
    # their CRDs, so nothing is left to a CRD's cascade
    present = [o for o in objects if (o["apiVersion"], o["kind"]) in served]
    steps = [[o for o in present if o["kind"] != "CustomResourceDefinition"],
             [o for o in present if o["kind"] == "CustomResourceDefinition"]]
    for step in filter(None, steps):
        argv = kubectl + ["delete", "--ignore-not-found", "--wait=false", "-f", "-"]
        print(f"$ kubectl {' '.join(argv[1:])}  ({len(step)} objects)", flush=True)
        if kube.run(argv, input=kube.object_list(step), text=True).returncode != 0:
            return TaskFailed("deleting the stack failed (see above; is the cluster running? `doit cluster`)")
    print(f"stack removed; the cluster {s.cluster} keeps running (`doit cluster:delete` removes it)")
    return None


def task_down():
    """Remove the deployed stack from the cluster (the cluster itself keeps running)."""
    env = kube.local_env()  # what up, down, dev and e2e deploy
    if env is None:
        return {"actions": [no_local_env], "uptodate": [False]}
    return tools.needs({"actions": [(delete_stack, [env])], "uptodate": [False], "verbosity": 2}, "kubectl")


def tilt_ui() -> str:
    """The user's own Tilt (`tilt-ui`: with its web UI), never the pinned one of .tools/bin,
    which only checks the Tiltfile; the tool check names it when it is missing."""
    return tools.which("tilt-ui") or "tilt"


def task_dev():
    """Start the Tilt dev loop (`tilt up`): live reload, port forwards, logs, buttons."""
    from doit.tools import LongRunning

    env = kube.local_env()  # what up, down, dev and e2e deploy
    if env is None:
        return {"actions": [no_local_env], "uptodate": [False]}
    # --context: Tilt acts on the project's cluster whatever the current context is
    return tools.needs({
        "actions": [LongRunning(f"{shlex.quote(tilt_ui())} up --context {kube.context_of(env)} --file Tiltfile "
                                f"--port {TILT_PORT} -- --env %(env)s")],
        "params": [{"name": "env", "long": "env", "default": env,
                    "help": "Tanka environment whose manifests Tilt deploys"}],
        "task_dep": ["dev:tools", "cluster"],
        "uptodate": [False],
        "verbosity": 2,
    }, "tilt-ui", "docker", "k3d", "kubectl", "tk", "helm")


def task_e2e():
    """Run the stack once under Tilt and exit when every resource is ready (`tilt ci`)."""
    env = kube.local_env()  # what up, down, dev and e2e deploy
    if env is None:
        return {"actions": [no_local_env], "uptodate": [False]}
    return tools.needs({
        "actions": [f"{shlex.quote(tilt_ui())} ci --context {kube.context_of(env)} --file Tiltfile --timeout 30m "
                    f"-- --env {env}"],
        "task_dep": ["e2e:tools", "cluster"],
        "uptodate": [False],
        "verbosity": 2,
    }, "tilt-ui", "docker", "k3d", "kubectl", "tk", "helm")
