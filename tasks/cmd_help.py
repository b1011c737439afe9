"""``doit help TASK``: what a task needs, reads, writes, and when it runs again."""
from __future__ import annotations

import re

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
        out += ["", "runs again when:"] + [f"  - {rule}" for rule in rerun_rules(task)]
        if any(asks_live_system(task, entry[0]) for entry in task.uptodate):
            out += ["", "its up-to-date check asks a live system (the cluster or the Docker engine): "
                        "`doit plan` shows it as unknown unless --live"]
        self.outstream.write("\n".join(out) + "\n")
        params = list(task.creator_params) + list(task.params)
        for opt in TaskParse([CmdOption(o) for o in params]).options:
            self.outstream.write("\n".join(opt.help_doc()) + "\n")
        return True


def _first_paragraph(doc: str) -> str:
    import inspect

    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _check_doc(utd) -> str:
    """What an up-to-date check says of itself: the docstring of this project's check (its
    class, or its function), else of the first documented project function it calls (a
    lambda wrapping ``fetched()``); "" when there is none."""
    import inspect

    if not inspect.isfunction(utd):
        return _first_paragraph(type(utd).__doc__) if (type(utd).__module__.startswith("tasks.")
                                                        and type(utd).__doc__) else ""
    if utd.__doc__:
        return _first_paragraph(utd.__doc__)
    for name in utd.__code__.co_names:  # a lambda: the check it calls, if that says what it checks
        called = utd.__globals__.get(name)
        if inspect.isfunction(called) and called.__module__.startswith("tasks.") and called.__doc__:
            doc = _first_paragraph(called.__doc__)
            return doc if re.match(_CHECK_PREFIX, doc) else ""
    return ""


#: how this project's up-to-date checks introduce what they check (the rest holds while up to date)
_CHECK_PREFIX = r"(?i)^(?:doit )?(?:uptodate(?: of [^:]+)?:|true when)\s*"


def rerun_rules(task) -> list[str]:
    """When ``task`` runs again, derived from what doit decides it by: its up-to-date
    checks (``uptodate``), the files it reads (``file_dep``) and writes (``targets``), and
    for a task without actions, the tasks it groups (``task_dep``)."""
    if not task.actions:
        return ["never by itself: it runs nothing, only the tasks it groups, each by its own rule"
                + (f" ({', '.join(task.task_dep)})" if task.task_dep else "")]
    rules = []
    for entry in task.uptodate:
        utd = entry[0] if isinstance(entry, tuple) else entry
        if utd is False:
            return ["every run: it is never up to date (`uptodate: False`)"]
        if utd is True or utd is None:
            continue
        config = getattr(utd, "config", None)
        if type(utd).__name__ == "config_changed":
            keys = ", ".join(config) if isinstance(config, dict) else "its configuration string"
            rules.append(f"a setting it is keyed on changed ({keys})")
            continue
        doc = _check_doc(utd).replace("``", "`")
        holds = re.match(_CHECK_PREFIX, doc)
        if holds:
            first = re.split(r"(?<=[a-z)])\. ", doc[holds.end():], maxsplit=1)[0].rstrip(".")
            rules.append(f"its up-to-date check no longer holds: {first}")
        elif doc:
            rules.append(doc)
        else:
            rules.append(f"its up-to-date check says so, asked every run (`doit info {task.name}` "
                         "says why)")
    if task.file_dep:
        n = len(task.file_dep)
        rules.append(f"{'the file' if n == 1 else f'one of the {n} files'} it reads changed "
                     f"(`doit info {task.name}` lists {'it' if n == 1 else 'them'})")
    if task.targets:
        written = ", ".join(paths.rel(t) for t in task.targets)
        rules.append(f"a file it writes is missing ({written})")
    if not (task.file_dep or rules):
        rules.append("every run: it declares no inputs, so doit never counts it up to date")
    return rules
