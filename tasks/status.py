"""Item status derived from the build state, never from a hand-edited field.

A task is
- ``done``: it exists, its last run succeeded and it is up to date now (and so is every
  task it depends on, through ``task_dep`` or a ``file_dep`` another task targets);
- ``unknown``: its last run succeeded and its files are up to date, but whether it is up
  to date now depends on a live system (the cluster, the Docker engine) that was not asked:
  ``doit plan --live`` asks;
- ``stale``: it ran successfully once but its inputs changed since;
- ``not run``: it exists but has no successful run on record (a failure erases it);
- ``not built``: no such task exists yet.

An item takes the least finished status of its tasks; an item without tasks is
``not built``.

Up-to-date checks that ask a live system are not called unless asked (``live=True``): a
check marked with :func:`live`, and every callable check of a task that declares a
cluster-side tool (docker, k3d, kubectl, tilt: ``tools.needs`` records them in
``meta["tools"]``), except doit's own offline checks (``doit.tools.config_changed`` ...).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: task modules import `live` without the plan model
    from .plan import Plan

#: from most to least finished
STATUSES = ("done", "unknown", "stale", "not run", "not built")
_RANK = {s: i for i, s in enumerate(STATUSES)}

#: the attribute :func:`live` sets on an up-to-date check
LIVE_ATTR = "asks_live_system"


def live(check):
    """Mark an up-to-date check (a function, a callable object or its class) as one that asks
    a live system (a cluster, a Docker engine): ``doit plan`` leaves it unasked unless
    ``--live``. Returns ``check``, so it works as a decorator."""
    setattr(check, LIVE_ATTR, True)
    return check


def asks_live_system(task, check) -> bool:
    """Whether the up-to-date ``check`` of ``task`` asks a live system (see the module doc)."""
    if getattr(check, LIVE_ATTR, False):
        return True
    if not callable(check) or getattr(check, "__module__", "").startswith("doit."):
        return False
    names = (task.meta or {}).get("tools", ())
    if not names:
        return False
    from .tools import TOOLS

    return any(n in TOOLS and TOOLS[n].cluster_side for n in names)


#: a key no task saves: doit's ``get_value`` then tells whether the task has a record at all
_PROBE = "raibid-deploy: has a record"


class StatusReader:
    """Reads task status from doit's dependency database (``.doit.db``), through doit's
    public ``Dependency`` API (``get_value``, ``get_values``, ``get_status``)."""

    def __init__(self, tasks: dict, dep_manager, assume: dict[str, str] | None = None,
                 live: bool = False):
        self.tasks = tasks
        self.dep = dep_manager
        self.live = live  # call the checks that ask a live system
        # ``assume``: statuses taken as given (a task asking about the plan from its own
        # up-to-date check must not evaluate itself)
        self._memo: dict[str, str] = dict(assume or {})
        # doit's implicit dependencies: a file_dep that another task targets
        self._producer = {str(t): task.name for task in tasks.values() for t in task.targets}

    def _ran(self, name: str) -> bool:
        """A successful run is on record (doit erases the record of a task that fails):
        doit's ``get_value`` says "has no computed value" for a task without a record."""
        try:
            self.dep.get_value(name, _PROBE)
        except Exception as e:  # doit raises a plain Exception for both answers
            return "has no computed value" not in str(e)
        return True

    def _current_without_record(self, task, unasked: list) -> bool:
        """doit erases a task's record when it starts it, so a run that fails leaves none;
        a task whose own checks decide (no file_dep: render:<env>'s depfile) is up to date
        for doit once its inputs are put back by hand, and doit never runs it again. So is it
        for the plan (asked as doit asks it; never a check of a live system unless --live)."""
        if task.file_dep or not task.uptodate or unasked:
            return False
        try:
            return self.dep.get_status(task, self.tasks, get_log=False).status == "up-to-date"
        except Exception:  # a check that cannot answer: as without a record
            return False

    def _status(self, task, unasked: list):
        """doit's status of ``task`` without calling the checks in ``unasked``."""
        if not unasked:
            return self.dep.get_status(task, self.tasks, get_log=True)
        kept = task.uptodate
        task.uptodate = [u for u in kept if not any(u is x for x in unasked)]
        try:
            return self.dep.get_status(task, self.tasks, get_log=True)
        finally:
            task.uptodate = kept

    def _own(self, task) -> str:
        unasked = [] if self.live else [u for u in task.uptodate if asks_live_system(task, u[0])]
        if self.dep.get_values(task.name).get("skipped"):
            return "not run"  # its last run was a skip (core.skip_action)
        if not self._ran(task.name) and not self._current_without_record(task, unasked):
            return "not run"  # never succeeded, and doit would run it
        try:
            st = self._status(task, unasked)
        except Exception:  # an uptodate check that cannot answer (tool gone, cluster down)
            return "stale"
        # a task with no inputs (left), or one marked `uptodate: [False]`, always runs again:
        # its successful run is what counts
        always = {"has_no_dependencies"}
        if all(utd is False for utd, _, _ in st.reasons.get("uptodate_false", [])):
            always.add("uptodate_false")
        if st.status == "up-to-date" or (st.status == "run" and set(st.reasons) <= always):
            return "unknown" if unasked else "done"
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
