"""Item status derived from the build state, never from a hand-edited field.

A task is
- ``done``: it exists, its last run succeeded and it is up to date now (and so is every
  task it depends on, through ``task_dep`` or a ``file_dep`` another task targets);
- ``stale``: it ran successfully once but its inputs changed since;
- ``not run``: it exists but has no successful run on record (a failure erases it);
- ``not built``: no such task exists yet.

An item takes the least finished status of its tasks; an item without tasks is
``not built``.
"""
from __future__ import annotations

from .plan import STATUSES, Plan

_RANK = {s: i for i, s in enumerate(STATUSES)}  # done < stale < not run < not built


class StatusReader:
    """Reads task status from doit's dependency database (``.doit.db``)."""

    def __init__(self, tasks: dict, dep_manager, assume: dict[str, str] | None = None):
        self.tasks = tasks
        self.dep = dep_manager
        # ``assume``: statuses taken as given (a task asking about the plan from its own
        # up-to-date check must not evaluate itself)
        self._memo: dict[str, str] = dict(assume or {})
        # doit's implicit dependencies: a file_dep that another task targets
        self._producer = {str(t): task.name for task in tasks.values() for t in task.targets}

    def _ran(self, name: str) -> bool:
        return self.dep._get(name, "checker:") is not None

    def _own(self, task) -> str:
        if not self._ran(task.name) or self.dep.get_values(task.name).get("skipped"):
            return "not run"  # never succeeded, or its last run was a skip (core.skip_action)
        try:
            st = self.dep.get_status(task, self.tasks, get_log=True)
        except Exception:  # an uptodate check that cannot answer (tool gone, cluster down)
            return "stale"
        if st.status == "up-to-date":
            return "done"
        # a task with no inputs, or one marked `uptodate: [False]`, always runs again: its
        # successful run is what counts
        always = {"has_no_dependencies"}
        if all(utd is False for utd, _, _ in st.reasons.get("uptodate_false", [])):
            always.add("uptodate_false")
        if st.status == "run" and set(st.reasons) <= always:
            return "done"
        return "stale"

    def task(self, name: str, _stack: tuple = ()) -> str:
        if name in self._memo:
            return self._memo[name]
        task = self.tasks.get(name)
        if task is None:
            return "not built"
        status = self._own(task)
        implicit = (self._producer.get(str(f)) for f in task.file_dep)
        for dep in dict.fromkeys([*task.task_dep, *(p for p in implicit if p)]):
            if dep in _stack or dep == name or dep.startswith("_"):
                continue
            dep_status = self.task(dep, _stack + (name,))
            if dep_status == "not built":
                dep_status = "not run"
            status = max(status, dep_status, key=_RANK.__getitem__)
        self._memo[name] = status
        return status


def combine(statuses) -> str:
    statuses = list(statuses)
    if not statuses:
        return "not built"
    return max(statuses, key=_RANK.__getitem__)


def item_statuses(plan: Plan, reader: StatusReader) -> dict[int, str]:
    return {item.id: combine(reader.task(t) for t in item.tasks) for item in plan.items}


def criterion_statuses(plan: Plan, reader: StatusReader) -> list[str]:
    return [combine(reader.task(t) for t in c.tasks) for c in plan.criteria]
