"""doit plugin commands (registered in pyproject.toml [tool.doit.plugins.command])."""
from __future__ import annotations

from doit.cmd_list import List as _DoitList


class List(_DoitList):
    """``doit list`` with tasks in the plan's critical-path order instead of by name."""

    def _execute(self, subtasks=False, quiet=True, status=False, private=False,
                 list_deps=False, template=None, sort="name", pos_args=None):
        return super()._execute(subtasks, quiet, status, private, list_deps, template,
                                "definition", pos_args)
