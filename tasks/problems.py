"""Problems in a file the user wrote (plan.yaml, deploy.json): each names the file, the line
(and column, for a character) and the fix. All are reported at once, never as a traceback."""
from __future__ import annotations

import re
from typing import NamedTuple

#: the userinfo of a URL (``scheme://user:token@host``)
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#@'\"]*@")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it (``user:token@``) shown as ``***@``:
    what a message prints, whatever a URL the user gave, or a tool's output echoing it, held."""
    return _USERINFO.sub(r"\1***@", text)


class Problem(NamedTuple):
    """One problem: its line (0: the whole file), what is wrong and how to fix it."""

    line: int
    message: str
    fix: str = ""
    column: int = 0   # 1-based, when the problem is a character rather than a key

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        if self.line and self.column:
            where += f":{self.column}"
        return f"{where}: {self.message}" + (f"\n    fix: {self.fix}" if self.fix else "")


def shown(value) -> str:
    """``value`` for a message: its repr, cut short (a key or value may be megabytes)."""
    import reprlib

    if type(value) is int and value.bit_length() > 200:  # repr() refuses past 4300 digits
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
    r = reprlib.Repr()
    r.maxstring = r.maxother = 60
    r.maxlevel, r.maxlist, r.maxdict = 2, 4, 4
    return r.repr(value)


def utf8_problem(data: bytes, err: UnicodeDecodeError) -> Problem:
    """The line and column of the first byte of ``data`` that is not UTF-8."""
    line = data.count(b"\n", 0, err.start) + 1
    col = len(data[data.rfind(b"\n", 0, err.start) + 1:err.start].decode("utf-8", "replace")) + 1
    return Problem(line, "the file is not UTF-8 text here",
                   "save the file as UTF-8 (most editors: File > Save with encoding > UTF-8)", col)


#: at most this many problems are printed (all are kept in ``InputError.problems``)
SHOWN_PROBLEMS = 100


class InputError(Exception):
    """A file the user wrote is not valid; ``str()`` lists every problem with its line."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))
        n = len(self.problems)
        head = f"{source}: {n} problem{'s' if n != 1 else ''} found"
        shown = [p.render(source) for p in self.problems[:SHOWN_PROBLEMS]]
        if n > SHOWN_PROBLEMS:
            shown.append(f"... and {n - SHOWN_PROBLEMS} more problems not shown: fix these first")
        super().__init__("\n".join([head] + shown))


def or_exit(load):
    """``load()``; when it raises :class:`InputError` (a broken plan.yaml or deploy.json), print
    every problem and exit 2: before any task runs, so no traceback and nothing half done."""
    import sys

    try:
        return load()
    except InputError as e:
        sys.stderr.write(f"{e}\n")
        raise SystemExit(2) from None
