"""``doit tools``: build the pinned Go-built tools into .tools/bin."""
from __future__ import annotations

from doit.cmd_base import Command

from . import paths
from .cmd_base import PipeSafe, console

opt_force = {
    "name": "force",
    "long": "force",
    "type": bool,
    "default": False,
    "help": "build every tool named, even one whose binary was built from its current go.mod, "
            "go.sum and Go",
}


class Tools(PipeSafe, Command):
    name = "tools"
    doc_purpose = "build the pinned Go-built tools into .tools/bin"
    doc_usage = "[--force] [TOOL|GROUP|all ...]"
    doc_description = (
        "Builds each tool with `go build -trimpath` inside tools/<name>/, a Go module per tool "
        "whose go.mod pins the version and whose go.sum pins the checksums. Without arguments: "
        "the groups core (tk, jb, helm, actionlint) and tilt. `doit tools control-plane` adds the "
        "opt-in test control plane (kube-apiserver, kube-controller-manager, kube-scheduler, "
        "kwok, keda-operator), `doit tools images` the image tests' buildx, compose and "
        "registry, `doit tools node` the real node (kubelet, kube-proxy, CoreDNS); "
        "`doit tools all` builds everything. A tool whose binary was built "
        "from its current go.mod, go.sum and Go toolchain is left as it is (a stamp next to it "
        "records them); --force builds it anyway. Every task puts .tools/bin first on PATH.")
    cmd_options = (opt_force,)

    def execute(self, params, args):  # no dodo.py needed to install tools
        import sys
        import time

        from . import atomic, tools

        out = console(sys.stdout)
        known = tools.go_tool_args()
        unknown = [a for a in args if a not in known]
        if unknown:
            out.print(f"[red]not a Go-built tool or group:[/] {', '.join(unknown)} "
                      f"(choose from {', '.join(sorted(known))})")
            return 2
        try:
            tools.require(["go"])
        except tools.MissingTools as e:
            out.print(str(e), markup=False)
            return 1
        targets = tools.go_tools(args or None)
        goenv = tools.go_env()
        bin_dir = paths.tools_bin()
        bin_dir.mkdir(parents=True, exist_ok=True)
        shown = bin_dir.relative_to(paths.root())  # .tools/bin, also when .tools is a link
        failed = 0
        with atomic.locked(bin_dir):  # two `doit tools` in one checkout take turns
            for stale in tools.sweep_partials():
                out.print(f"removed {shown / stale}, left by a build that was killed")
            for n, t in enumerate(targets, 1):
                what = f"[{n}/{len(targets)}] {t.name} {t.version} (tools/{t.name})"
                key = tools.build_key(t, goenv)
                if not params.get("force") and tools.built_current(t, key):
                    go = goenv.get("GOVERSION", "Go")
                    out.print(f"up to date {what}: go.mod, go.sum and {go} unchanged", markup=False)
                    continue
                out.print(f"building {what} ...", markup=False)
                start = time.monotonic()

                def progress(seconds, packages, _name=t.name):
                    out.print(f"  ... {_name}: {seconds:.0f} s, {packages} packages compiled")

                result = tools.install_go_tool(t, key, progress)
                took = f"{time.monotonic() - start:.0f} s"
                if result.ok:
                    out.print(f"[green]ok[/] {t.name} {t.version} -> {shown / t.name} ({took})")
                else:
                    failed += 1
                    out.print(f"[red]failed[/] {t.name} after {took}: ", end="")
                    out.print(f"{' '.join(result.argv)} in tools/{t.name}\n{result.detail}",
                              markup=False)
        return 1 if failed else 0
