"""Task creators that tie the workstreams together: the default ``ci`` task."""
from __future__ import annotations

#: Offline checks the default task runs. Each workstream module registers its own
#: with :func:`offline_check` when it is imported by dodo.py.
CI_CHECKS: list[str] = []
#: the most worker processes of a parallel default run
MAX_WORKERS = 4


def offline_check(*names: str) -> None:
    """Add tasks to the default ``ci`` task (every offline check)."""
    for n in names:
        if n not in CI_CHECKS:
            CI_CHECKS.append(n)


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the platform tells it)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parallel_default(params, pos_args) -> None:
    """Make the first default run of a checkout (``doit`` with no task named: the offline
    checks, none of them interactive; no build state yet: every check runs) a parallel one,
    one worker process per core (at most :data:`MAX_WORKERS`), by setting ``num_process``
    and ``par_type`` in doit's run ``params``.

    Left as they are: a run with build state (``.doit.db``): it re-runs a few checks, or
    none, and doit's parallel runner forks a worker even for the group tasks a no-op run
    "executes", which costs a no-op more than the checks it would share; a run of named
    tasks (``dev`` runs ``tilt up``, which reads the terminal: a worker process's stdin is
    /dev/null); ``-n``/``-P`` given on the command line or a ``num_process`` in the
    configuration; a command without these options; a single core; a platform whose worker
    processes are not forked (they would have to pickle every task). Called by the task
    loader (tasks/loader.py) once the run's options and task names are known."""
    if pos_args or "num_process" not in params or params.get("num_process"):
        return
    from pathlib import Path

    db = Path(params.get("dep_file", ".doit.db")).absolute()  # as doit opens it: from the dodo.py's directory
    if db.exists() or any(db.parent.glob(db.name + "*")):  # doit's dbm backends add a suffix
        return
    import multiprocessing

    if multiprocessing.get_start_method() != "fork":  # doit's workers use the default method
        return
    cores = usable_cores()
    if cores < 2:
        return
    # doit's DefaultUpdate.update_defaults changes only what the command line did not set
    before = (params["num_process"], params.get("par_type"))
    params.update_defaults({"num_process": min(cores, MAX_WORKERS), "par_type": "process"})
    if params.get("par_type") != "process" or params["num_process"] == before[0]:
        # -n 0 or -P thread given (threads share sys.stdout: doit's actions swap it): as asked
        params.set_default("num_process", before[0])
        params.set_default("par_type", before[1])


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
    gets render, validate, context, diff, apply and publish."""
    return list(settings().environments)
