"""``doit list``: doit's list, in the plan's critical-path order (``--sort plan``)."""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Callable

from doit.cmd_list import List as _DoitList
from doit.cmd_list import opt_sort as _doit_opt_sort

from . import paths
from .cmd_base import PipeSafe

if TYPE_CHECKING:  # annotations only: a cached order needs no plan model
    from .plan import Plan

opt_sort = {
    **_doit_opt_sort,
    "default": "plan",
    "choices": [("plan", "by the plan's critical path (default)"), *_doit_opt_sort["choices"]],
    "help": "how to order tasks: plan (critical path, default), name or definition",
}


class List(PipeSafe, _DoitList):
    """``doit list`` with the tasks in the plan's critical-path order (``--sort plan``)."""

    cmd_options = tuple(o for o in _DoitList.cmd_options if o["name"] != "sort") + (opt_sort,)

    def _execute(self, subtasks=False, quiet=True, status=False, private=False,
                 list_deps=False, template=None, sort="plan", pos_args=None):
        if sort == "plan":
            import sys

            def load():
                from .plan import current

                return current()

            try:  # a cached order of an unchanged plan.yaml needs no plan model and no YAML parser
                order = task_order(load, paths.plan_file().read_text(encoding="utf-8"),
                                   paths.build() / ".plan-order.json")
            except Exception as e:  # noqa: BLE001: only the tracker's own errors are caught
                from .plan import PlanError

                if not isinstance(e, (PlanError, OSError, UnicodeDecodeError)):
                    raise
                what = str(e).splitlines()[0] if isinstance(e, PlanError) else f"plan.yaml cannot be read ({e})"
                # the tracker is broken: the tasks are still listed, by name
                sys.stderr.write(f"note: {what} (`doit plan:check` lists them): tasks are listed by name\n")
                return super()._execute(subtasks, quiet, status, private, list_deps, template, "name", pos_args)
            rank: dict[str, int] = {}
            for n, name in enumerate(order):
                rank.setdefault(name, n)
                rank.setdefault(name.split(":", 1)[0], n)  # the group task of a subtask
            first = {t.name: n for n, t in enumerate(self.task_list)}
            big = len(order)
            self.task_list = sorted(self.task_list,
                                    key=lambda t: (rank.get(t.name, big), first[t.name]))
            sort = "definition"
        return super()._execute(subtasks, quiet, status, private, list_deps, template, sort, pos_args)


def plan_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def task_order(plan: "Plan | Callable[[], Plan]", plan_text: str, cache_file) -> list[str]:
    """The plan's tasks in critical-path order, cached by plan.yaml's content.

    ``doit list`` calls this on every run, so the plan is loaded (``plan`` may be a function
    that loads it: it is called only then) and analysed (:mod:`tasks.graph`, imported only
    then) only when plan.yaml changed; the cache is a plain JSON file under build/, written
    only for a plan that loaded.
    """
    from pathlib import Path

    from . import atomic

    digest = plan_digest(plan_text)
    cache_file = Path(cache_file)
    try:
        cached = json.loads(cache_file.read_text())
        tasks = cached["tasks"]
        if (cached.get("digest") == digest and isinstance(tasks, list)
                and all(isinstance(t, str) for t in tasks)):
            return list(tasks)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        pass
    from .graph import analyse

    if callable(plan):
        plan = plan()
    analysis = analyse(plan)
    seen: dict[str, None] = {}
    for item_id in analysis.order():
        for t in plan.by_id[item_id].tasks:
            seen.setdefault(t)
    for t in plan.tasks():
        seen.setdefault(t)
    order = list(seen)
    try:
        atomic.write_text(cache_file, json.dumps({"digest": digest, "tasks": order}))
    except OSError:
        pass
    return order
