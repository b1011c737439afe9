"""``doit doctor``: every external tool, who needs it, version found vs pinned, install hint."""
from __future__ import annotations

from doit.cmd_base import DoitCmdBase

from .cmd_base import PipeSafe, console


class Doctor(PipeSafe, DoitCmdBase):
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
            table.add_row(tool.name, needed or "-", want, found or "-", status, hint)
        out = console(self.outstream)
        out.print(table)
        if bad:
            out.print(f"[red]Missing or wrong version:[/] {', '.join(bad)} - the offline checks need them. "
                          "Run `doit tools` (Go tools) or `pip install -e '.[test]'`.")
            return 1
        out.print("[green]The offline tools are ready.[/] Cluster-side tools (docker, k3d, kubectl, tilt) "
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
