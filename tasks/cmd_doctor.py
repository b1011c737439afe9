"""``doit doctor``: every external tool, who needs it, version found vs pinned, install hint."""
from __future__ import annotations

from doit.cmd_base import DoitCmdBase

from .cmd_base import PipeSafe, console


class Doctor(PipeSafe, DoitCmdBase):
    name = "doctor"
    doc_purpose = "check every external tool: which tasks need it, version found vs pinned, how to install"
    doc_usage = ""
    doc_description = ("Exits 1 when a tool the offline checks need (tk, jb, helm, actionlint, "
                       "hadolint) is missing or not at its pinned version; cluster-side tools "
                       "only warn.")
    cmd_options = ()

    def _execute(self):
        from rich import box
        from rich.table import Table
        from rich.text import Text

        from . import tools

        self.dep_manager.close()
        users = needed_by(self.task_list)
        # narrow enough for 80 columns: the install hints go below the table, one a line
        table = Table(title="External tools", title_justify="left", box=box.SIMPLE_HEAD,
                      show_edge=False, collapse_padding=True)
        table.add_column("tool", no_wrap=True)
        table.add_column("needed by", overflow="fold")
        for col in ("pinned", "found", "status"):
            table.add_column(col, no_wrap=True)
        bad, hints = [], []
        for tool in tools.TOOLS.values():
            problem = ""
            found = tools.found_version(tool)
            want = tool.version if tool.exact else f">= {tool.version}"
            if found is None:
                status = Text("missing", style="yellow" if (tool.optional or tool.cluster_side
                                                            or tool.group not in tools.DEFAULT_GROUPS) else "red")
            elif not tools.version_ok(tool, found):
                status = Text("version differs", style="yellow")
            elif problem := tools.live_problem(tool):
                status = Text("not usable", style="yellow")
            else:
                status = Text("ok", style="green")
            opt_in = tool.group not in tools.DEFAULT_GROUPS
            if status.plain != "ok" and not (tool.optional or tool.cluster_side or opt_in or tool.name == "go"):
                bad.append(tool.name)
            needed = _summarise(users.get(tool.name, []))
            if tool.optional:
                needed = needed or "optional"
            hint = {"ok": "", "not usable": problem}.get(status.plain, tool.install)
            if hint:
                hints.append(f"  {tool.name}: {hint}")
            table.add_row(tool.name, needed or "-", want, found or "-", status)
        out = console(self.outstream)
        out.print(table)
        if hints:
            import textwrap

            width = max(out.width, 40)
            out.print("To install or fix:")
            for hint in hints:
                text = textwrap.fill(hint, width, subsequent_indent=" " * 6, break_on_hyphens=False)
                out.print(text, markup=False)
        if bad:
            out.print(f"[red]Missing or wrong version:[/] {', '.join(bad)} - the offline checks need them. "
                          "Run `doit tools` (Go tools) or `pip install -e '.\\[test]'`.")
            return 1
        out.print("[green]The offline tools are ready.[/] Cluster-side tools (docker, k3d, kubectl, tilt) "
                      "are needed only by `doit up`, `doit dev` and the deploy tasks.")
        return 0


def needed_by(task_list) -> dict[str, list[str]]:
    """tool name -> who needs it: each task that declares it (``tools.needs`` records it in
    ``meta.tools``), each command whose preflight checks it (``up``, ``dev``, ``e2e``: their
    ``<name>:tools`` task's check knows its whole chain's tools) and what the registry names
    besides tasks (``Tool.users``: ``doit tools`` needs go, the autoscaling test redis-server)."""
    from . import tools

    tasks = {t.name: t for t in task_list}
    users: dict[str, dict[str, None]] = {}
    for t in task_list:
        if t.name.startswith("_"):
            continue
        for name in (t.meta or {}).get("tools", ()):
            users.setdefault(name, {})[t.name] = None
        for entry in t.uptodate:
            utd = entry[0] if isinstance(entry, tuple) else entry
            chain = getattr(utd, "chain", None)
            # a preflight (tasks.up.ChainTools): the tools of its whole chain
            if chain and callable(getattr(utd, "chain_tools", None)):
                for name in utd.chain_tools(tasks):
                    users.setdefault(name, {})[chain[-1]] = None
    for tool in tools.TOOLS.values():
        if tool.users:
            users.setdefault(tool.name, {})[tool.users] = None
    return {name: list(who) for name, who in users.items()}


def _summarise(names: list[str]) -> str:
    """``render:local, render:prod`` -> ``render:*``: keep the table readable."""
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(n.split(":", 1)[0], []).append(n)
    out = []
    for base, members in groups.items():
        out.append(members[0] if len(members) == 1 else f"{base}:*")
    return ", ".join(out)
