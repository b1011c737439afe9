"""The project's doit task loader (``[tool.doit] loader`` in pyproject.toml): doit's
DodoTaskLoader, ordering the task creators without reading their source.

doit orders the creators by the line each is defined on, and asks
``inspect.getsourcelines`` for it: that tokenizes the whole source of every creator (about
40 ms of each ``doit`` start for this dodo.py). The line is already on the creator's code
object (``co_firstlineno``, the line of its first decorator, as getsourcelines says). The
tasks are made by doit's own :func:`doit.loader.generate_tasks`, in the same order, with
the same task options from the configuration. A creator this loader does not handle
itself (``@task_params``, ``@create_after``, a creator without a code object) hands the
whole load to doit's loader, so nothing doit supports is lost.

The names of the loaded tasks are kept for the checks that need them (docs:check):
:func:`loaded_task_names`.

dodo.py is compiled from its source each time, never taken from ``__pycache__``: Python
trusts a cached compile while the source's size and modification second are unchanged, so
a same-size edit within the second of the last run would run the old tasks.
"""
from __future__ import annotations

import importlib.machinery
import inspect
import os
import sys
from pathlib import Path

from doit.cmd_base import DodoTaskLoader
from doit.exceptions import InvalidDodoFile
from doit.loader import TASK_STRING, generate_tasks, task_params

_loaded: tuple[Path, list[str]] | None = None   # (the project root, the task names)


def loaded_task_names() -> list[str] | None:
    """Every task (subtasks included) this process loaded for the current project root, in
    load order; None when this loader loaded none for it (doit run with another loader)."""
    from . import paths

    if _loaded is None or _loaded[0] != paths.root():
        return None
    return list(_loaded[1])


def _creators(namespace: dict, command_names) -> list[tuple[str, object]] | None:
    """The task creators of ``namespace`` (doit's rules: a ``task_*`` function or method, or
    an object with ``create_doit_tasks``) in definition order, as (task name, creator); None
    when one of them needs doit's own loader."""
    found = []
    for name, ref in namespace.items():
        if ref is task_params:
            continue
        if name.startswith(TASK_STRING) and (inspect.isfunction(ref) or inspect.ismethod(ref)):
            task_name = name[len(TASK_STRING):]
        elif hasattr(ref, "create_doit_tasks"):
            ref = ref.create_doit_tasks
            task_name = getattr(ref, "basename", name)
        else:
            continue
        if task_name in command_names:
            raise InvalidDodoFile(f"Task can't be called '{task_name}' because this is a command name."
                                  " Please choose another name.")
        if hasattr(ref, "_task_creator_params") or hasattr(ref, "doit_create_after"):
            return None
        code = getattr(inspect.unwrap(ref), "__code__", None)
        if code is None:
            return None
        found.append((code.co_firstlineno, task_name, ref))
    found.sort(key=lambda f: f[0])  # stable: same line, namespace order (as doit sorts)
    return [(task_name, ref) for _, task_name, ref in found]


class SourceLoader(importlib.machinery.SourceFileLoader):
    """A module loader that compiles the source every time (no bytecode cache read or written)."""

    def get_code(self, fullname):
        return self.source_to_code(self.get_data(self.path), self.path)


class _DodoFinder:
    """Finds the dodo module (by its name) as doit imports it, to load it with SourceLoader."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader = SourceLoader(fullname, spec.origin)
        return spec


class Loader(DodoTaskLoader):
    """doit's DodoTaskLoader (dodo.py, ``-f``, ``-d``, ``-k``), creators ordered by their code
    objects' first line instead of their tokenized source, dodo.py compiled from its source."""

    def setup(self, opt_values):
        finder = _DodoFinder(os.path.splitext(os.path.basename(opt_values["dodoFile"]))[0])
        sys.meta_path.insert(0, finder)
        try:
            super().setup(opt_values)
        finally:
            sys.meta_path.remove(finder)
        self._options = opt_values

    def load_tasks(self, cmd, pos_args):
        global _loaded
        from .core import parallel_default

        # the default run goes parallel: only here are its options and task names both known
        parallel_default(getattr(self, "_options", None) or {}, pos_args)
        creators = _creators(self.namespace, self.cmd_names)
        if creators is None:
            tasks = super().load_tasks(cmd, pos_args)
        else:
            tasks = []
            for name, ref in creators:
                tasks.extend(generate_tasks(name, ref(), ref.__doc__))
            self._configure(tasks)
        from . import paths

        _loaded = (paths.root(), [t.name for t in tasks])
        return tasks

    def _configure(self, tasks) -> None:
        """Task options from the configuration (``[tool.doit.tasks.NAME]``) and from the API
        (``run_tasks()``), as doit's NamespaceTaskLoader sets them."""
        if self.config is not None:
            for task in tasks:
                if "task:" + task.name in self.config:
                    task.cfg_values = self.config["task:" + task.name]
        if self.task_opts:
            for task in tasks:
                if task.name in self.task_opts:
                    task.cfg_values = self.task_opts[task.name]
                    if task.pos_arg and task.pos_arg in task.cfg_values:
                        task.pos_arg_val = task.cfg_values[task.pos_arg]
