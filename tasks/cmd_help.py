"""``doit help TASK``: what a task needs, reads, writes, and when it runs again."""
from __future__ import annotations

from doit.cmd_help import Help as _DoitHelp
from doit.cmdparse import CmdOption, TaskParse

from . import paths
from .cmd_base import PipeSafe, task_named


class Help(PipeSafe, _DoitHelp):
    """``doit help TASK`` describes the task: doit's line and options, plus the full
    description of its task creator, the tools it needs, the tasks it runs after, what it
    reads and writes, and when it runs again (the docstring of its up-to-date check)."""

    def _execute(self, pos_args):
        import inspect

        from .status import asks_live_system

        tasks = {t.name: t for t in self.task_list}
        task = task_named(tasks, pos_args[0], commands=self.cmds)
        out = [f"{task.name}  {task.doc}"]
        # the task creator, from the namespace the tasks were loaded from (dodo.py)
        namespace = getattr(self.loader, "namespace", None) or {}
        creator = namespace.get("task_" + task.name.split(":", 1)[0].replace("-", "_"))
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
        if any(asks_live_system(task, entry[0]) for entry in task.uptodate):
            out += ["", "its up-to-date check asks a live system (the cluster or the Docker engine): "
                        "`doit plan` shows it as unknown unless --live"]
        self.outstream.write("\n".join(out) + "\n")
        params = list(task.creator_params) + list(task.params)
        for opt in TaskParse([CmdOption(o) for o in params]).options:
            self.outstream.write("\n".join(opt.help_doc()) + "\n")
        return True
