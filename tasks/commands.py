"""doit plugin commands, registered in pyproject.toml ``[tool.doit.plugins.command]``.

- ``doit plan``: the migration board (or ``--format json|markdown|mermaid|dot``)
- ``doit graph``: the plan graph and the task graph as pictures (Graphviz) or text
- ``doit doctor``: every external tool, who needs it, version found vs pinned, install hint
- ``doit tools``: build the pinned Go tools into .tools/bin
- ``doit list``: doit's list, in the plan's critical-path order
- ``doit help TASK``: what a task needs, reads, writes, and when it runs again
"""
from __future__ import annotations

import json
import sys

from doit.cmd_base import DoitCmdBase
from doit.cmd_help import Help as _DoitHelp
from doit.cmd_list import List as _DoitList
from doit.cmdparse import CmdOption, TaskParse

from . import paths


def _console(outstream):
    from rich.console import Console

    return Console(file=outstream, highlight=False)


def plan_view(task_list, dep_manager):
    """The plan with statuses derived from the loaded tasks and doit's database."""
    from .plan import current_or_exit as plan_or_exit
    from .report import PlanView
    from .status import StatusReader, criterion_statuses, item_statuses

    plan = plan_or_exit()
    reader = StatusReader({t.name: t for t in task_list}, dep_manager)
    return PlanView.build(plan, item_statuses(plan, reader), criterion_statuses(plan, reader))


#: at most this many notes about tasks plan.yaml names that do not exist
NOTES = 20


def unknown_task_notes(plan, task_list) -> list[str]:
    """A note for each task plan.yaml names that does not exist (a typo, or not built yet)."""
    import difflib

    names = [t.name for t in task_list]
    known = set(names)
    missing = [name for name in plan.tasks() if name not in known]
    notes = []
    for name in missing[:NOTES]:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
        hint = f" - did you mean {close[0]!r}?" if close else " (not built yet)"
        notes.append(f"note: plan.yaml names task {name!r}, which does not exist{hint}")
    if len(missing) > NOTES:
        notes.append(f"note: ... and {len(missing) - NOTES} more tasks plan.yaml names do not exist")
    return notes


_FORMATS = ("table", "json", "markdown", "mermaid", "dot")


def json_lines(data: dict) -> str:
    """JSON with one list entry per line: readable, and written by the C encoder (``indent``
    would use the pure-Python one, seconds for a plan of 10,000 items)."""
    out = ["{"]
    for n, (key, value) in enumerate(data.items()):
        comma = "," if n < len(data) - 1 else ""
        if isinstance(value, list) and value:
            entries = ",\n    ".join(json.dumps(v, ensure_ascii=False) for v in value)
            out.append(f"  {json.dumps(key)}: [\n    {entries}\n  ]{comma}")
        else:
            out.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{comma}")
    out.append("}")
    return "\n".join(out) + "\n"


class Plan(DoitCmdBase):
    name = "plan"
    doc_purpose = "show the migration plan: workstreams, status, critical path, waves, milestones"
    doc_usage = "[--format table|json|markdown|mermaid|dot]"
    doc_description = ("Status is derived from the build state: an item is done when every task it "
                       "names ran successfully and is up to date.")
    cmd_options = (
        {"name": "format", "long": "format", "type": str, "default": "table",
         "help": "output format: " + ", ".join(_FORMATS)},
    )

    def _execute(self, format="table"):
        if format not in _FORMATS:
            sys.stderr.write(f"unknown --format {format!r}; choose one of: {', '.join(_FORMATS)}\n")
            return 2
        try:
            view = plan_view(self.task_list, self.dep_manager)
        finally:
            self.dep_manager.close()
        for line in unknown_task_notes(view.plan, self.task_list):
            sys.stderr.write(line + "\n")
        if format == "json":
            self.outstream.write(json_lines(view.to_json()))
        elif format == "markdown":
            self.outstream.write(view.markdown(paths.plan_file().read_text(encoding="utf-8")))
        elif format == "mermaid":
            self.outstream.write(view.mermaid())
        elif format == "dot":
            self.outstream.write(view.dot())
        else:
            console = _console(self.outstream)
            console.print(view.board(wide=console.width >= 110))
        return 0


def task_graph_dot(task_list, highlight=()) -> str:
    """DOT of the doit task graph: task_dep edges and file_dep -> target edges."""
    highlight = set(highlight)
    visible = [t for t in task_list if not t.name.startswith("_")]
    names = {t.name for t in visible}
    producer = {}
    for t in visible:
        for target in t.targets:
            producer[str(target)] = t.name
    lines = ["digraph tasks {", '  rankdir=LR; node [shape=box, style="rounded", fontname="Helvetica"];']
    for t in visible:
        pen = ', penwidth=3, color="#aa00aa"' if t.name in highlight else ""
        lines.append(f'  "{t.name}" [tooltip="{(t.doc or "").replace(chr(34), chr(39))}"{pen}];')
    edges = set()
    for t in visible:
        for dep in t.task_dep:
            if dep in names:
                edges.add((dep, t.name, "solid"))
        for f in t.file_dep:
            p = producer.get(str(f))
            if p and p != t.name:
                edges.add((p, t.name, "dashed"))
    for a, b, style in sorted(edges):
        lines.append(f'  "{a}" -> "{b}" [style={style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def task_graph_mermaid(task_list) -> str:
    visible = [t for t in task_list if not t.name.startswith("_")]
    ids = {t.name: f"t{n}" for n, t in enumerate(visible)}
    lines = ["flowchart LR"] + [f'  {ids[t.name]}["{t.name}"]' for t in visible]
    for t in visible:
        for dep in t.task_dep:
            if dep in ids:
                lines.append(f"  {ids[dep]} --> {ids[t.name]}")
    return "\n".join(lines) + "\n"


class Graph(DoitCmdBase):
    name = "graph"
    doc_purpose = "draw the plan graph and the task graph (SVG/PNG with Graphviz, DOT/Mermaid text otherwise)"
    doc_usage = "[--format svg|png|dot|mermaid] [--output DIR]"
    doc_description = ("With Graphviz `dot` installed, writes build/graph/plan.<fmt> and "
                       "build/graph/tasks.<fmt>; the critical path is highlighted.")
    cmd_options = (
        {"name": "format", "long": "format", "type": str, "default": "",
         "help": "svg or png (needs Graphviz), dot or mermaid (text on stdout); default svg if dot is installed"},
        {"name": "output", "long": "output", "type": str, "default": "",
         "help": "directory for the pictures (default build/graph)"},
    )

    def _execute(self, format="", output=""):
        import subprocess

        from . import atomic, tools

        try:
            view = plan_view(self.task_list, self.dep_manager)
        finally:
            self.dep_manager.close()
        crit_tasks = {t for i in view.analysis.critical_path for t in view.plan.by_id[i].tasks}
        have_dot = tools.which("dot") is not None
        fmt = format or ("svg" if have_dot else "dot")
        if fmt not in ("svg", "png", "dot", "mermaid"):
            sys.stderr.write(f"unknown --format {fmt!r}; choose svg, png, dot or mermaid\n")
            return 2
        if fmt == "mermaid":
            self.outstream.write(view.mermaid() + "\n" + task_graph_mermaid(self.task_list))
            return 0
        sources = {"plan": view.dot(), "tasks": task_graph_dot(self.task_list, crit_tasks)}
        if fmt == "dot":
            if not format:
                sys.stderr.write("Graphviz `dot` is not installed (apt-get install graphviz): "
                                 "printing DOT text instead of pictures.\n")
            self.outstream.write(sources["plan"] + "\n" + sources["tasks"])
            return 0
        if not have_dot:
            self.outstream.write(tools.missing_message([tools.TOOLS["dot"]]) + "\n")
            return 1
        out_dir = paths.root() / output if output else paths.build() / "graph"
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, src in sources.items():
            proc = subprocess.run([tools.which("dot"), f"-T{fmt}"], input=src.encode(), capture_output=True)
            if proc.returncode != 0:
                self.outstream.write(f"dot failed on the {name} graph: {proc.stderr.decode().strip()}\n")
                return 1
            target = out_dir / f"{name}.{fmt}"
            atomic.write_bytes(target, proc.stdout)
            self.outstream.write(f"wrote {paths.rel(target)}\n")
        return 0


class Doctor(DoitCmdBase):
    name = "doctor"
    doc_purpose = "check every external tool: which tasks need it, version found vs pinned, how to install"
    doc_usage = ""
    doc_description = ("Exits 1 when a tool the offline checks need (tk, jb, helm, hadolint) is missing "
                       "or not at its pinned version; cluster-side tools only warn.")
    cmd_options = ()

    def _execute(self):
        from rich.table import Table
        from rich.text import Text

        from . import tools

        self.dep_manager.close()
        # the commands that need a tool, besides the tasks (`doit tools` builds with go)
        users: dict[str, list[str]] = {"go": ["doit tools"]}
        for t in self.task_list:
            for name in (t.meta or {}).get("tools", ()):
                users.setdefault(name, []).append(t.name)
        table = Table(title="External tools", title_justify="left")
        for col in ("tool", "needed by", "pinned", "found", "status", "install"):
            table.add_column(col, overflow="fold")
        bad = []
        for tool in tools.TOOLS.values():
            found = tools.found_version(tool)
            want = tool.version if tool.exact else f">= {tool.version}"
            if found is None:
                status = Text("missing", style="yellow" if (tool.optional or tool.cluster_side
                                                            or tool.group not in tools.DEFAULT_GROUPS) else "red")
            elif not tools.version_ok(tool, found):
                status = Text("version differs", style="yellow")
            elif tools.live_problem(tool):
                status = Text("not usable", style="yellow")
            else:
                status = Text("ok", style="green")
            opt_in = tool.group not in tools.DEFAULT_GROUPS
            if status.plain != "ok" and not (tool.optional or tool.cluster_side or opt_in or tool.name == "go"):
                bad.append(tool.name)
            needed = _summarise(users.get(tool.name, []))
            if tool.optional:
                needed = needed or "optional"
            hint = {"ok": "", "not usable": tool.live_hint}.get(status.plain, tool.install)
            table.add_row(tool.name, needed or "-", want, found or "-", status, hint)
        console = _console(self.outstream)
        console.print(table)
        if bad:
            console.print(f"[red]Missing or wrong version:[/] {', '.join(bad)} - the offline checks need them. "
                          "Run `doit tools` (Go tools) or `pip install -e '.[test]'`.")
            return 1
        console.print("[green]The offline tools are ready.[/] Cluster-side tools (docker, k3d, kubectl, tilt) "
                      "are needed only by `doit up`, `doit dev` and the deploy tasks.")
        return 0


def _summarise(names: list[str]) -> str:
    """``render:local, render:prod`` -> ``render:*``: keep the table readable."""
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(n.split(":", 1)[0], []).append(n)
    out = []
    for base, members in groups.items():
        out.append(members[0] if len(members) == 1 else f"{base}:*")
    return ", ".join(out)


class Tools(DoitCmdBase):
    name = "tools"
    doc_purpose = "build the pinned Go-built tools into .tools/bin"
    doc_usage = "[TOOL|GROUP|all ...]"
    doc_description = ("Builds each tool with `go build -trimpath` inside tools/<name>/, a Go module per tool "
                       "whose go.mod pins the version and whose go.sum pins the checksums. Without "
                       "arguments: the groups core (tk, jb, helm) and tilt. `doit tools control-plane` adds "
                       "the opt-in test control plane (kube-apiserver, kube-controller-manager, "
                       "kube-scheduler, kwok, keda-operator); `doit tools all` builds everything. Every "
                       "task puts .tools/bin first on PATH.")
    cmd_options = ()

    def execute(self, params, args):  # no dodo.py needed to install tools
        import time

        from . import tools

        console = _console(self.outstream)
        known = set(tools.GROUPS) | {"all"} | {t.name for t in tools.TOOLS.values() if t.go_module}
        unknown = [a for a in args if a not in known]
        if unknown:
            console.print(f"[red]not a Go-built tool or group:[/] {', '.join(unknown)} "
                          f"(choose from {', '.join(sorted(known))})")
            return 2
        try:
            tools.require(["go"])
        except tools.MissingTools as e:
            console.print(str(e))
            return 1
        targets = tools.go_tools(args or None)
        failed = 0
        for n, t in enumerate(targets, 1):
            what = f"[{n}/{len(targets)}] {t.name} {t.version} (tools/{t.name})"
            console.print(f"building {what} ...", highlight=False)
            start = time.monotonic()
            result = tools.install_go_tool(t)
            took = f"{time.monotonic() - start:.0f} s"
            if result.ok:
                console.print(f"[green]ok[/] {t.name} {t.version} -> "
                              f"{paths.rel(paths.tools_bin() / t.name)} ({took})", highlight=False)
            else:
                failed += 1
                console.print(f"[red]failed[/] {t.name} after {took}: {' '.join(result.argv)} in "
                              f"tools/{t.name}\n{result.detail}", highlight=False)
        return 1 if failed else 0


_SORT = {
    "name": "sort", "long": "sort", "type": str, "default": "plan",
    "choices": [("plan", "by the plan's critical path (default)"), ("name", "by task name"),
                ("definition", "in the order tasks are defined")],
    "help": "how to order tasks: plan (critical path, default), name or definition",
}


class List(_DoitList):
    """``doit list`` with the tasks in the plan's critical-path order (``--sort plan``)."""

    cmd_options = tuple(o for o in _DoitList.cmd_options if o["name"] != "sort") + (_SORT,)

    def _execute(self, subtasks=False, quiet=True, status=False, private=False,
                 list_deps=False, template=None, sort="plan", pos_args=None):
        if sort == "plan":
            from .plan import current_or_exit as plan_or_exit
            from .graph import task_order

            plan = plan_or_exit()
            order = task_order(plan, paths.plan_file().read_text(encoding="utf-8"),
                               paths.build() / ".plan-order.json")
            rank: dict[str, int] = {}
            for n, name in enumerate(order):
                rank.setdefault(name, n)
                rank.setdefault(name.split(":", 1)[0], n)  # the group task of a subtask
            first = {t.name: n for n, t in enumerate(self.task_list)}
            big = len(order)
            self.task_list = sorted(self.task_list,
                                    key=lambda t: (rank.get(t.name, big), first[t.name]))
            sort = "definition"
        return super()._execute(subtasks, quiet, status, private, list_deps, template, sort, pos_args)


class Help(_DoitHelp):
    """``doit help TASK`` describes the task: doit's line and options, plus the full
    description of its task creator, the tools it needs, the tasks it runs after, what it
    reads and writes, and when it runs again (the docstring of its up-to-date check)."""

    def _execute(self, pos_args):
        import inspect

        tasks = {t.name: t for t in self.task_list}
        task = tasks.get(pos_args[0])
        if task is None:
            return super()._execute(pos_args)
        out = [f"{task.name}  {task.doc}"]
        creator = getattr(sys.modules.get("dodo"), "task_" + task.name.split(":", 1)[0].replace("-", "_"), None)
        if creator is not None and creator.__doc__:
            out += ["", inspect.cleandoc(creator.__doc__)]
        facts = [("tools", ", ".join((task.meta or {}).get("tools", ())) + " (see `doit doctor`)"
                  if (task.meta or {}).get("tools") else ""),
                 ("after", ", ".join(task.task_dep)),
                 ("reads", f"{len(task.file_dep)} files (`doit info {task.name}` lists them)" if task.file_dep else ""),
                 ("writes", ", ".join(paths.rel(t) for t in task.targets))]
        out += [""] + [f"{k}: {v}" for k, v in facts if v]
        for entry in task.uptodate:
            utd = entry[0] if isinstance(entry, tuple) else entry
            doc = type(utd).__doc__ if type(utd).__module__.startswith("tasks.") else None
            if doc:
                out += ["", "runs again when: " + inspect.cleandoc(doc).split("\n\n")[0]]
        print("\n".join(out))
        params = list(task.creator_params) + list(task.params)
        for opt in TaskParse([CmdOption(o) for o in params]).options:
            print("\n".join(opt.help_doc()))
        return True
