"""The migration tracker's own check: ``plan:check``, part of the default ``doit``.

plan.yaml is the tracker (items, needs, milestones, criteria), not deploy configuration
(that is deploy.json): no task creator reads it, so a typo in a milestone fails this check
and ``doit plan``, never ``doit apply:<env>``.
"""
from __future__ import annotations

from . import core, paths


def check_plan():
    from doit.exceptions import TaskFailed

    from .plan import PlanError, current

    try:
        plan = current()
    except PlanError as e:
        return TaskFailed(str(e))
    print(f"{paths.rel(paths.plan_file())}: {len(plan.items)} items in {len(plan.workstreams)} workstreams, "
          f"{len(plan.milestones)} milestones: valid")
    return None


def task_plan_check():
    """Check plan.yaml, the migration tracker (every problem with its line and fix)."""
    from pathlib import Path

    return {
        "basename": "plan:check",
        "actions": [check_plan],
        # the loader's file, named without importing it (a no-op run needs no plan model)
        "file_dep": [str(paths.plan_file()), str(Path(__file__).with_name("plan.py"))],
        "verbosity": 1,
    }


core.offline_check("plan:check")
