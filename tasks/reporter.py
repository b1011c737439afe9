"""A doit reporter that says what ran, why, what was up to date, what was skipped, and
how long it all took.

On a terminal it uses rich (colour, symbols); elsewhere it prints the same lines as
plain text without importing rich (a no-op run stays near doit's own start-up time). A task runs again "because" the reason its up-to-date check gives (an
uptodate object with a ``reason``, e.g. render:<env>'s). A skipped check is never
summarised as a pass. An ``OSError`` raised in a task action is one line naming the path,
not a traceback. ``doit run -r json`` and the other built-in reporters keep working: this
one is only the default (``DOIT_CONFIG['reporter']``).
"""
from __future__ import annotations

import functools
import os
import re
import time

from doit.reporter import ConsoleReporter

#: an OSError's last traceback line (compiled by re when a task fails)
_OS_ERROR = r"^(\w+): \[Errno \d+\] (.+?): '(.*?)'(?: -> '(.*?)')?\s*$"


def os_error_failure(task, fail):
    """A one-line TaskFailed for a task action that raised an ``OSError`` (doit keeps only
    the traceback text), or ``fail`` itself."""
    import builtins

    from doit.exceptions import TaskError, TaskFailed

    from . import paths

    if not isinstance(fail, TaskError) or not fail.traceback:
        return fail
    m = re.match(_OS_ERROR, fail.traceback[-1].strip().splitlines()[-1])
    kind = getattr(builtins, m.group(1), None) if m else None
    if not (isinstance(kind, type) and issubclass(kind, OSError)):
        return fail
    where = " -> ".join(paths.rel(p) for p in m.group(3, 4) if p)
    return TaskFailed(f"{task.name}: {m.group(2)}: {where}. Fix or move that path, then run "
                      f"`doit {task.name}` again (nothing half-written is trusted).")


class RichReporter(ConsoleReporter):
    desc = "rich console output with durations and a summary"

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self.styled = _styled(outstream)
        self.started: dict[str, float] = {}
        self.executed: list[tuple[str, float]] = []
        self.uptodate: list[str] = []
        self.failed: list[str] = []
        self.not_checked: list[str] = []     # ran, but only to say why it was skipped
        self._skipped: list[str] = []
        self.running: dict[str, None] = {}   # the tasks whose actions are under way, in start order
        self.t0 = time.perf_counter()
        _quiet_interrupts()

    @functools.cached_property
    def console(self):
        from rich.console import Console

        return Console(file=self.outstream, highlight=False, soft_wrap=True)

    def say(self, *parts):
        """One line of ``parts``: strings and ``(text, style)`` pairs (rich styles, shown
        on a terminal only). Text is never read as markup."""
        if self.styled:
            from rich.text import Text

            self.console.print(Text.assemble(*parts))
        else:
            self.outstream.write("".join(p if isinstance(p, str) else p[0] for p in parts) + "\n")

    def _visible(self, task) -> bool:
        return bool(task.name) and task.name[0] != "_"

    def write(self, text):
        self.outstream.write(text)

    def _flush_skipped(self):
        for title in self._skipped:
            self.say((f"-- {title} (up to date)", "dim"))
        self._skipped.clear()

    def execute_task(self, task):
        self.started[task.name] = time.perf_counter()
        if task.actions:  # a parallel run (doit -n N) has several under way
            self.running[task.name] = None
        if task.actions and self._visible(task):
            self._flush_skipped()
            self.say((">", "bold cyan"), f" {task.title()}")
            for why in _reasons(task):
                self.say((f"  because {why}", "dim"))

    def add_success(self, task):
        self.running.pop(task.name, None)
        if task.name in self.started and task.actions:
            took = time.perf_counter() - self.started[task.name]
            self.executed.append((task.name, took))
            skipped = bool((task.values or {}).get("skipped"))
            if skipped:
                self.not_checked.append(task.name)
            if self._visible(task):
                word = ("skipped", "yellow") if skipped else ("ok", "green")
                self.say(word, f" {task.name} ", (f"{took:.2f}s", "dim"))

    def add_failure(self, task, fail):
        self.running.pop(task.name, None)
        self._flush_skipped()
        self.failed.append(task.name)
        fail = os_error_failure(task, fail)
        took = time.perf_counter() - self.started.get(task.name, self.t0)
        self.say(("FAILED", "bold red"), f" {task.name} ", (f"{took:.2f}s", "dim"))
        super().add_failure(task, fail)

    def skip_uptodate(self, task):
        # held back: shown once something runs after them; a run where nothing runs is one line
        self.uptodate.append(task.name)
        if self._visible(task) and task.actions:
            self._skipped.append(task.title())

    def skip_ignore(self, task):
        self.say(("!!", "yellow"), f" {task.title()} (ignored)")

    def complete_run(self):
        # the captured output of failed tasks that did not show it live (only when there is some)
        for result in self.failures:
            task = result["task"]
            if not task.executed:
                continue
            shown = {"out": task.verbosity >= 2, "err": task.verbosity >= 1}
            for stream in ("out", "err"):
                text = "".join(getattr(a, stream) or "" for a in task.actions).strip()
                if text and not shown[stream]:
                    self.console.rule(f"{task.name} std{stream}", style="red")
                    self.write(text + "\n")
        if self.runtime_errors:
            self.say(("Execution aborted.", "bold red"))
            self.write("\n".join(self.runtime_errors) + "\n")
        wall = time.perf_counter() - self.t0
        if self.running:  # complete_run without a task's end: the run was interrupted
            self._flush_skipped()
            names, one = ", ".join(self.running), len(self.running) == 1
            self.say(("interrupted", "bold red"), f" during {names}: {'its' if one else 'their'} outputs "
                     f"were not updated, and {'it runs' if one else 'they run'} again next time ({wall:.2f}s)")
            return
        # a check that ran only to say it was skipped is counted as skipped, never as executed
        ran = len(self.executed) - len(self.not_checked)
        if self.executed or self.failed:
            self._flush_skipped()
        self._skipped.clear()
        parts: list = [f" {ran} executed, {len(self.uptodate)} up to date"]
        if self.not_checked:
            parts += [", ", (f"{len(self.not_checked)} skipped", "bold yellow")]
        if self.failed:
            parts += [", ", (f"{len(self.failed)} failed", "bold red")]
        parts.append(f" in {wall:.2f}s")
        if not self.failed and not self.executed and self.uptodate:
            parts.append(" - nothing to do, everything is up to date")
        self.say(("done:", "bold"), *parts)
        if self.not_checked:
            self.say(("not checked:", "bold yellow"), f" {', '.join(self.not_checked)} - skipped, "
                     "so this run is not a full pass (the reason is printed above)")


def _styled(stream) -> bool:
    """Whether rich would style output to ``stream``: a terminal, or colour forced
    (FORCE_COLOR, TTY_COMPATIBLE=1) the way rich itself reads the environment."""
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1":
        return True
    if os.environ.get("TTY_COMPATIBLE") == "0":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _reasons(task) -> list[str]:
    """What the task's up-to-date checks said (objects with a ``reason``, see tanka.RenderUptodate)."""
    out = []
    for entry in task.uptodate or ():
        utd = entry[0] if isinstance(entry, tuple) else entry
        why = getattr(utd, "reason", "")
        if isinstance(why, str) and why:
            out.append(why)
    return out


def _quiet_interrupts() -> None:
    """Ctrl-C ends a run with one line instead of a KeyboardInterrupt traceback."""
    import sys

    previous = sys.excepthook
    if getattr(previous, "_raibid", False):
        return

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt):
            sys.stderr.write("interrupted (Ctrl-C): nothing half-written is trusted; run doit again\n")
            return
        previous(kind, value, tb)

    hook._raibid = True
    sys.excepthook = hook
