"""What the plugin commands share (doit's ``cmd_base`` style): the plan they read, the plan
view with derived statuses, the ``--live`` option and the console.

The plugin commands are one per module, registered in pyproject.toml
``[tool.doit.plugins.command]``: ``cmd_plan`` (doit plan), ``cmd_graph`` (doit graph),
``cmd_doctor`` (doit doctor), ``cmd_tools`` (doit tools), ``cmd_list`` (doit list) and
``cmd_help`` (doit help), ``cmd_info`` (doit info), ``cmd_run`` (doit run).
"""
from __future__ import annotations

opt_live = {
    "name": "live",
    "long": "live",
    "type": bool,
    "default": False,
    "help": ("also ask the checks that need a live system (the cluster, the Docker engine): "
             "without it a task whose status depends on one is shown as unknown"),
}


def current_plan():
    """The project's plan. A broken plan.yaml prints every problem and exits 2: the one way a
    command stops on a broken plan (no task creator reads plan.yaml)."""
    from .plan import current_or_exit

    return current_or_exit()


def plan_view(task_list, dep_manager, live: bool = False):
    """The plan with statuses derived from the loaded tasks and doit's database; the checks
    that ask a live system are called only when ``live``."""
    from .report import PlanView
    from .status import StatusReader, criterion_statuses, item_statuses

    plan = current_plan()
    reader = StatusReader({t.name: t for t in task_list}, dep_manager, live=live)
    return PlanView.build(plan, item_statuses(plan, reader), criterion_statuses(plan, reader))


def task_named(tasks: dict, name: str, commands=()):
    """``tasks[name]``; an unknown name is doit's InvalidCommand (one line, exit 3) naming the
    closest task (and ``commands``) names and where every name is listed."""
    from difflib import get_close_matches

    from doit.exceptions import InvalidCommand

    if name in tasks:
        return tasks[name]
    close = get_close_matches(name, [*tasks, *commands], n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    what, where = ("task or command", "; `doit help` every command") if commands else ("task", "")
    raise InvalidCommand(f"no {what} named {name!r}{hint}; "
                         f"`doit list --all` shows every task{where}")


class PipeSafe:
    """Mixed into each plugin command: a reader that stops early (``doit list | head``) ends
    the command quietly instead of with a BrokenPipeError traceback; ``--help`` shows the
    command's help (as ``doit help CMD``); an unknown option is one line naming the
    command's options, not doit's dump of their objects."""

    def parse_execute(self, in_args):
        from doit.cmdparse import CmdParseError

        try:
            return super().parse_execute(in_args)
        except CmdParseError as e:
            if "(parsing options:" not in str(e):  # a bad value: doit's message is plain
                raise
            if "--help" in in_args or "-h" in in_args:
                import sys

                # (a plain doit Command, as `doit tools` is, has no outstream)
                getattr(self, "outstream", sys.stdout).write(self.help() + "\n")
                return 0
            bad = str(e).split(": ", 1)[1].split(" (parsing options:", 1)[0]
            opts = [o.help_param() for o in self.cmdparser.options if o.short or o.long]
            raise CmdParseError(f"`doit {self.name}`: {bad}; its options: {', '.join(opts)} "
                                f"(`doit help {self.name}` describes them)") from None

    def execute(self, params, args):
        try:
            return super().execute(params, args)
        except BrokenPipeError:
            import os
            import sys

            # what is still buffered for stdout would fail again when Python exits
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 1  # Python's own exit code on a broken pipe


def console(outstream):
    from rich.console import Console

    return Console(file=outstream, highlight=False)
