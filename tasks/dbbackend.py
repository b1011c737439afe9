"""doit's dependency database (``.doit.db``) written atomically, and only when it changed.

doit's own JSON backend rewrites the file in place, so a run killed while it saves leaves
a truncated ``.doit.db`` that makes every later doit command fail. This backend writes a
temporary sibling and renames it, like every other output of raibid-deploy. It is the
project's backend (``[tool.doit] backend = "json-atomic"`` in pyproject.toml).

- Commands that only read the build state (``doit plan``, ``doit doctor``, ``doit list``)
  never write it, so they work in a read-only checkout.
- A database that cannot be read (damaged, of the wrong shape, a directory) stops doit with
  one short message naming the fix, never a traceback.
"""
from __future__ import annotations

from pathlib import Path

from doit.dependency import JsonDB
from doit.exceptions import InvalidDodoFile

from . import atomic


class AtomicJsonDB(JsonDB):
    desc = "JSON, written atomically (temporary file, then rename), only when it changed"

    def __init__(self, name, codec, *, module_name=None):
        self._dirty = False
        super().__init__(name, codec, module_name=module_name)

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
        return db

    def set(self, task_id, dependency, value):
        self._dirty = True
        super().set(task_id, dependency, value)

    def remove(self, task_id):
        if task_id in self._db:
            self._dirty = True
        super().remove(task_id)

    def remove_all(self):
        self._dirty = True
        super().remove_all()

    def dump(self):
        if self._dirty:
            atomic.write_text(Path(self.name), self.codec.encode(self._db))
            self._dirty = False
