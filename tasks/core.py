"""Task creators that tie the workstreams together: the default ``ci`` task."""
from __future__ import annotations

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


def task_ci():
    """Run every offline check (the default task; CI runs it, incrementally)."""
    return {"actions": None, "task_dep": list(CI_CHECKS), "verbosity": 1}


def settings():
    """deploy.json (:mod:`tasks.settings`); on a broken one print every problem and exit 2,
    before any task runs."""
    from .settings import current_or_exit

    return current_or_exit()


def environments() -> list[str]:
    """The Tanka environments (tanka/environments/, with their deploy.json properties): each
    gets render, validate, diff, apply and publish."""
    return list(settings().environments)
