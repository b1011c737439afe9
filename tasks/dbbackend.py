"""doit's dependency database (``.doit.db``) written atomically.

doit's own JSON backend rewrites the file in place, so a run killed while it saves leaves
a truncated ``.doit.db`` that makes every later doit command fail. This backend writes a
temporary sibling and renames it, like every other output of raibid-deploy. It is the
project's backend (``[tool.doit] backend = "json-atomic"`` in pyproject.toml).
"""
from __future__ import annotations

from pathlib import Path

from doit.dependency import JsonDB

from . import atomic


class AtomicJsonDB(JsonDB):
    desc = "JSON, written atomically (temporary file, then rename)"

    def dump(self):
        atomic.write_text(Path(self.name), self.codec.encode(self._db))
