"""The default run (tasks/core.py): a parallel run when no task is named."""
from __future__ import annotations

import multiprocessing
import os

import pytest
from doit.cmd_run import Run
from doit.cmdparse import CmdOption, CmdParse, DefaultUpdate

from tasks import core


def _params(*argv: str) -> DefaultUpdate:
    """doit's own parse of ``doit run ARGV`` options (defaults marked as such)."""
    params, _ = CmdParse([CmdOption(opt) for opt in Run.cmd_options]).parse(list(argv))
    return params


@pytest.fixture
def cores(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a checkout without build state (doit runs in the dodo.py's directory)
    def set_cores(n: int):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)
    return set_cores


def test_the_default_run_gets_a_worker_process_per_core(cores):
    cores(2)
    params = _params()
    core.parallel_default(params, [])
    assert (params["num_process"], params["par_type"]) == (2, "process")
    cores(64)
    params = _params()
    core.parallel_default(params, [])
    assert params["num_process"] == core.MAX_WORKERS


@pytest.mark.parametrize("argv, pos_args", [
    ((), ["dev"]),                        # named tasks: tilt up reads the terminal
    (("-n", "1"), []),                    # the user's choice
    (("-n", "0"), []),
    (("-P", "thread"), []),
])
def test_a_run_of_named_tasks_or_the_users_own_choice_is_left_alone(cores, argv, pos_args):
    cores(2)
    params = _params(*argv)
    before = dict(params)
    core.parallel_default(params, pos_args)
    assert dict(params) == before


def test_no_parallel_run_on_one_core_or_without_fork(cores, monkeypatch):
    cores(1)
    params = _params()
    core.parallel_default(params, [])
    assert params["num_process"] == 0
    cores(2)
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda *a, **k: "spawn")
    core.parallel_default(params, [])
    assert params["num_process"] == 0
    other = DefaultUpdate(verbosity=1)   # a command without -n (list, info)
    core.parallel_default(other, [])
    assert dict(other) == {"verbosity": 1}


def test_a_run_with_build_state_is_left_alone(cores, tmp_path):
    """Only the first run (every check runs) goes parallel: a later run re-runs a few
    checks or none, and doit's parallel runner forks a worker even for a no-op's group tasks."""
    cores(2)
    for name in (".doit.db", ".doit.db.db"):   # json / dbm backends
        (tmp_path / name).write_text("{}")
        params = _params()
        before = dict(params)
        core.parallel_default(params, [])
        assert dict(params) == before
        (tmp_path / name).unlink()
