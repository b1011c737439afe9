"""``doit graph``: the plan graph and the task graph as pictures (Graphviz) or text."""
from __future__ import annotations

import sys

from doit.cmd_base import DoitCmdBase

from . import paths
from .cmd_base import PipeSafe, opt_live, plan_view

opt_graph_format = {
    "name": "format",
    "long": "format",
    "type": str,
    "default": "",
    "choices": [("svg", "pictures, needs Graphviz (the default when `dot` is installed)"),
                ("png", "pictures, needs Graphviz"), ("dot", "DOT text on stdout"),
                ("mermaid", "Mermaid text on stdout")],
    "help": "svg or png (needs Graphviz), dot or mermaid (text on stdout); default svg if dot is installed",
}

opt_graph_output = {
    "name": "output",
    "long": "output",
    "type": str,
    "default": "",
    "help": "directory for the pictures (default build/graph)",
}


class Graph(PipeSafe, DoitCmdBase):
    name = "graph"
    doc_purpose = "draw the plan graph and the task graph (SVG/PNG with Graphviz, DOT/Mermaid text otherwise)"
    doc_usage = "[--format svg|png|dot|mermaid] [--output DIR] [--live]"
    doc_description = ("With Graphviz `dot` installed, writes build/graph/plan.<fmt> and "
                       "build/graph/tasks.<fmt>; the critical path is highlighted.")
    cmd_options = (opt_graph_format, opt_graph_output, opt_live)

    def _execute(self, format="", output="", live=False):
        import subprocess

        from . import atomic, tools
        from .report import task_graph_dot, task_graph_mermaid

        try:
            view = plan_view(self.task_list, self.dep_manager, live)
        finally:
            self.dep_manager.close()
        crit_tasks = {t for i in view.analysis.critical_path for t in view.plan.by_id[i].tasks}
        have_dot = tools.which("dot") is not None
        fmt = format or ("svg" if have_dot else "dot")
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
