"""Task creators that tie the workstreams together: the default ``ci`` task."""
from __future__ import annotations

import sys

#: Offline checks the default task runs. Each workstream module registers its own
#: with :func:`offline_check` when it is imported by dodo.py.
CI_CHECKS: list[str] = []


def offline_check(*names: str) -> None:
    """Add tasks to the default ``ci`` task (every offline check)."""
    for n in names:
        if n not in CI_CHECKS:
            CI_CHECKS.append(n)


def skip_action(message: str):
    """A python-action for a check that cannot run yet: it says why, and records the run as
    skipped, so ``doit plan`` counts the task as not run rather than done."""

    def skipped():
        print(message)
        return {"skipped": message}

    return skipped


def plan_or_exit():
    """The project's plan; on a broken plan.yaml print every problem and exit 2."""
    from .plan import PlanError, current

    try:
        return current()
    except PlanError as e:
        sys.stderr.write(f"{e}\n")
        raise SystemExit(2) from None


def task_ci():
    """Run every offline check (the default task; CI runs it, incrementally)."""
    plan_or_exit()  # a broken plan.yaml stops every run with its problems, before any task
    return {"actions": None, "task_dep": list(CI_CHECKS), "verbosity": 1}


def environments() -> list[str]:
    """The environments of plan.yaml's settings: each gets render, validate, diff and apply."""
    return list(plan_or_exit().settings.environments)
