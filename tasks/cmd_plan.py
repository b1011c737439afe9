"""``doit plan``: the migration board, or the plan as JSON, Markdown, Mermaid or DOT."""
from __future__ import annotations

import sys

from doit.cmd_base import DoitCmdBase

from . import paths
from .cmd_base import PipeSafe, console, opt_live, plan_view

opt_plan_format = {
    "name": "format",
    "long": "format",
    "type": str,
    "default": "table",
    "choices": [("table", "the board (default)"), ("json", "the JSON contract"),
                ("markdown", "the tracking document"), ("mermaid", "the plan graph as Mermaid"),
                ("dot", "the plan graph as Graphviz DOT")],
    "help": "output format: table (default), json, markdown, mermaid or dot",
}

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


class Plan(PipeSafe, DoitCmdBase):
    name = "plan"
    doc_purpose = "show the migration plan: workstreams, status, critical path, waves, milestones"
    doc_usage = "[--format table|json|markdown|mermaid|dot] [--live]"
    doc_description = ("Status is derived from the build state: an item is done when every task it "
                       "names ran successfully and is up to date. A check that asks the cluster or "
                       "the Docker engine is only asked with --live; without it such a task is unknown.")
    cmd_options = (opt_plan_format, opt_live)

    def _execute(self, format="table", live=False):
        from .report import json_lines

        try:
            view = plan_view(self.task_list, self.dep_manager, live)
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
            out = console(self.outstream)
            out.print(view.board(wide=out.width >= 110))
        return 0
