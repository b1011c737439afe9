"""doit's dependency database (``.doit.db``) written atomically, and only when it changed.

doit's own JSON backend rewrites the file in place, so a run killed while it saves leaves
a truncated ``.doit.db`` that makes every later doit command fail. This backend writes a
temporary sibling and renames it, like every other output of raibid-deploy. It is the
project's backend (``[tool.doit] backend = "json-atomic"`` in pyproject.toml).

- Commands that only read the build state (``doit plan``, ``doit doctor``, ``doit list``)
  never write it, so they work in a read-only checkout.
- A database that cannot be read (damaged, of the wrong shape, a directory) stops doit with
  one short message naming the fix, never a traceback; so does one that cannot be saved (a
  read-only checkout, a full disk). ``doit run`` reports that after its tasks' summary
  (:mod:`tasks.cmd_run`).
- It is relocatable: doit keys a task's file dependencies by their path as the task gives it
  (absolute here), so a copied or moved checkout would run every task again although nothing
  changed. The database stores a path under the project root (the directory of the database
  file; doit runs there) as ``<root>/`` and the path relative to it, in keys and in the
  ``deps:`` list alike, and gives doit back the absolute path under the root it is in now.
  Relative and outside-the-root paths are stored as given. A database written with absolute
  paths (before this backend, or by doit's own) is read the same way: its entries under this
  root are translated; those of another root no longer match, so those tasks run once more.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from doit.dependency import JsonDB
from doit.exceptions import InvalidDodoFile

from . import atomic


#: how a stored path under the project root starts (then the path relative to the root)
ROOT_MARK = "<root>/"
#: doit's key holding the list of a task's file dependencies (dependency.py, save_success)
DEPS_KEY = "deps:"
_MISSING = object()


def _plain(value):
    """``value`` as JSON gives it back (tuples are lists), to compare a new value with a stored one."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class AtomicJsonDB(JsonDB):
    desc = "JSON, written atomically (temporary file, then rename), only when it changed"

    def __init__(self, name, codec, *, module_name=None):
        self._dirty = False
        #: keep a failed save's message in ``save_error`` instead of raising it (doit run
        #: saves before its summary is printed: tasks.cmd_run reports it after)
        self.defer_errors = False
        self.save_error: str | None = None
        #: the project root with a trailing separator: what stored paths are relative to
        self._root = os.path.join(os.path.dirname(os.path.realpath(name)), "")
        super().__init__(name, codec, module_name=module_name)

    def _stored(self, path):
        """``path`` as the database stores it (relative to the root under ``ROOT_MARK``)."""
        if isinstance(path, str) and path.startswith(self._root):
            return ROOT_MARK + path[len(self._root):]
        return path

    def _given(self, path):
        """A stored path as doit gives it (absolute under the current root)."""
        if isinstance(path, str) and path.startswith(ROOT_MARK):
            return self._root + path[len(ROOT_MARK):]
        return path

    def _relocated(self, db: dict) -> dict:
        """``db`` with every absolute path under the root stored relative to it (an older
        database, written with absolute paths)."""
        root = self._root
        for task_id, entries in db.items():
            deps = entries.get(DEPS_KEY)
            if any(k.startswith(root) for k in entries) or (isinstance(deps, list) and any(
                    isinstance(p, str) and p.startswith(root) for p in deps)):
                fixed = {self._stored(k): v for k, v in entries.items()}
                if isinstance(fixed.get(DEPS_KEY), list):
                    fixed[DEPS_KEY] = [self._stored(p) for p in fixed[DEPS_KEY]]
                db[task_id] = fixed
        return db

    def _load(self):
        name = self.name
        fix = (f"fix: delete it (`rm {name}`); doit then runs each task once more and records "
               "the build state again")
        try:
            text = Path(name).read_text(encoding="utf-8")
        except IsADirectoryError:
            raise InvalidDodoFile(f"{name} is a directory, but doit keeps its build state in a file of "
                                  f"that name.\nfix: move it away (`mv {name} {name}.old`) and run doit again") from None
        except UnicodeDecodeError:
            raise InvalidDodoFile(f"{name} is damaged (not text).\n{fix}") from None
        except OSError as e:
            raise InvalidDodoFile(f"cannot read {name}: {e.strerror or e}.\nfix: check its permissions") from None
        try:
            db = self.codec.decode(text)
        except (ValueError, RecursionError):
            raise InvalidDodoFile(f"{name} is damaged (not valid JSON: truncated or overwritten).\n{fix}") from None
        if not isinstance(db, dict) or not all(isinstance(v, dict) for v in db.values()):
            raise InvalidDodoFile(f"{name} is damaged (valid JSON, but not a JSON object of tasks).\n{fix}")
        return self._relocated(db)

    def get(self, task_id, dependency):
        entries = self._db.get(task_id)
        if entries is None:
            return None
        value = entries.get(self._stored(dependency))
        if dependency == DEPS_KEY and isinstance(value, (list, tuple)):
            return [self._given(p) for p in value]
        return value

    def set(self, task_id, dependency, value):
        """Store ``value``; the file is written at the end only when a value changed (doit
        saves every task it ran, a group task of a no-op run too, with the same values)."""
        if dependency == DEPS_KEY and isinstance(value, (list, tuple)):
            value = [self._stored(p) for p in value]
        key = self._stored(dependency)
        old = self._db.get(task_id, {}).get(key, _MISSING)
        if old is _MISSING or _plain(old) != _plain(value):
            self._dirty = True
        super().set(task_id, key, value)

    def remove(self, task_id):
        if task_id in self._db:
            self._dirty = True
        super().remove(task_id)

    def remove_all(self):
        self._dirty = True
        super().remove_all()

    def dump(self):
        if self._dirty:
            try:
                atomic.write_text(Path(self.name), self.codec.encode(self._db))
            except OSError as e:
                self.save_error = save_error(self.name, e)
                if not self.defer_errors:
                    raise InvalidDodoFile(self.save_error) from None
                return
            self._dirty = False


def save_error(name: str, e: OSError) -> str:
    """What to tell when the database ``name`` cannot be saved, with the fix."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"free space on the disk of {name} (`df -h .`)"
    elif e.errno in (errno.EACCES, errno.EPERM):
        fix = "make the checkout writable (`chmod u+w .`), or run doit in a writable copy of it"
    elif e.errno == errno.EROFS:
        fix = "run doit in a copy of the checkout on a writable filesystem"
    else:
        fix = f"check that {name} and its directory can be written"
    return (f"cannot save the build state to {name}: {e.strerror or e}; the tasks that ran run "
            f"again next time.\nfix: {fix}")
