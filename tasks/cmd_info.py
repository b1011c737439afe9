"""``doit info TASK``: doit's info, with an unknown task named in one line, the up-to-date
checks that said no described in words (their ``reason``, else their docstring's first
sentence) instead of their object's repr, and a reader that stops early (``| head``) quiet."""
from __future__ import annotations

import inspect

from doit.cmd_info import Info as _DoitInfo

from .cmd_base import PipeSafe, task_named


def describe_check(utd, args=(), kwargs=None) -> str:
    """An up-to-date check in words: what it said (its ``reason``, e.g. render:<env>'s), else
    its name and the first sentence of its docstring; the arguments it is given after."""
    why = getattr(utd, "reason", "")
    if isinstance(why, str) and why:
        return why
    if utd is False or utd is None:
        return "`uptodate: [False]`: it runs every time"
    target = utd if inspect.isfunction(utd) or inspect.ismethod(utd) else type(utd)
    text = getattr(target, "__qualname__", None) or str(utd)
    doc = inspect.getdoc(target)
    if doc and target.__module__ != "builtins":
        text += ": " + " ".join(doc.split("\n\n")[0].split()).split(". ")[0].rstrip(".")
    given = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in (kwargs or {}).items()]
    return text + (f" (given {', '.join(given)})" if given else "")


class Info(PipeSafe, _DoitInfo):
    def _execute(self, pos_args, hide_status=False):
        if len(pos_args) == 1:
            task_named({t.name: t for t in self.task_list}, pos_args[0])
        return super()._execute(pos_args, hide_status=hide_status)

    @staticmethod
    def get_reasons(reasons):
        lines = []
        if reasons.get("uptodate_false"):
            lines.append(" * Its up-to-date checks said no:")
            lines += ["    - " + describe_check(*entry) for entry in reasons["uptodate_false"]]
        rest = reasons.copy()  # doit's defaultdict: a copy keeps its default
        rest["uptodate_false"] = []
        rest = _DoitInfo.get_reasons(rest)
        return "\n".join(lines + ([rest] if rest else []))
