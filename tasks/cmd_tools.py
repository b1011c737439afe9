"""``doit tools``: build the pinned Go-built tools into .tools/bin."""
from __future__ import annotations

from doit.cmd_base import DoitCmdBase

from . import paths
from .cmd_base import console


class Tools(DoitCmdBase):
    name = "tools"
    doc_purpose = "build the pinned Go-built tools into .tools/bin"
    doc_usage = "[TOOL|GROUP|all ...]"
    doc_description = ("Builds each tool with `go build -trimpath` inside tools/<name>/, a Go module per tool "
                       "whose go.mod pins the version and whose go.sum pins the checksums. Without "
                       "arguments: the groups core (tk, jb, helm) and tilt. `doit tools control-plane` adds "
                       "the opt-in test control plane (kube-apiserver, kube-controller-manager, "
                       "kube-scheduler, kwok, keda-operator), `doit tools images` the image "
                       "tests' buildx, compose and registry; `doit tools all` builds everything. Every "
                       "task puts .tools/bin first on PATH.")
    cmd_options = ()

    def execute(self, params, args):  # no dodo.py needed to install tools
        import time

        from . import tools

        out = console(self.outstream)
        known = set(tools.GROUPS) | {"all"} | {t.name for t in tools.TOOLS.values() if t.go_module}
        unknown = [a for a in args if a not in known]
        if unknown:
            out.print(f"[red]not a Go-built tool or group:[/] {', '.join(unknown)} "
                          f"(choose from {', '.join(sorted(known))})")
            return 2
        try:
            tools.require(["go"])
        except tools.MissingTools as e:
            out.print(str(e))
            return 1
        targets = tools.go_tools(args or None)
        failed = 0
        for n, t in enumerate(targets, 1):
            what = f"[{n}/{len(targets)}] {t.name} {t.version} (tools/{t.name})"
            out.print(f"building {what} ...", highlight=False)
            start = time.monotonic()
            result = tools.install_go_tool(t)
            took = f"{time.monotonic() - start:.0f} s"
            if result.ok:
                out.print(f"[green]ok[/] {t.name} {t.version} -> "
                              f"{paths.rel(paths.tools_bin() / t.name)} ({took})", highlight=False)
            else:
                failed += 1
                out.print(f"[red]failed[/] {t.name} after {took}: {' '.join(result.argv)} in "
                              f"tools/{t.name}\n{result.detail}", highlight=False)
        return 1 if failed else 0
