"""Views of the plan: the JSON contract, a rich board, Markdown, Mermaid and DOT; and the
doit task graph as DOT or Mermaid.

Every view of the plan is built from one :class:`PlanView` (the plan, its analysis and the
derived statuses), so the board, the JSON and the generated document always agree.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass

from .graph import Analysis, analyse
from .plan import CRITERIA_LEVELS, Plan
from .status import STATUSES

STATUS_STYLE = {"done": "green", "unknown": "cyan", "stale": "yellow", "not run": "blue", "not built": "dim"}
STATUS_MARK = {"done": "✅ done", "unknown": "❔ unknown", "stale": "🟠 stale", "not run": "🔵 not run",
               "not built": "⚪ not built"}
STATUS_FILL = {"done": "#c8f7c5", "unknown": "#d5f5f6", "stale": "#ffe0a3", "not run": "#cfe2ff",
               "not built": "#eeeeee"}

#: the board shows every item of a plan this size; a bigger plan is summarised (the JSON and
#: Markdown views keep everything)
BOARD_ITEMS = 150
#: in a summarised board: item rows per workstream, workstreams, ids per list
BOARD_ROWS, BOARD_WORKSTREAMS, BOARD_IDS, BOARD_WAVES = 12, 12, 24, 15


def _ids(ids, limit: int = BOARD_IDS, sep: str = " ") -> str:
    """``#1 #2 ... #8 #9 (N items)``: at most ``limit`` ids, the first and the last ones."""
    ids = list(ids)
    if len(ids) <= limit:
        return sep.join(f"#{i}" for i in ids)
    half = limit // 2
    return (sep.join(f"#{i}" for i in ids[:half]) + f"{sep}...{sep}"
            + sep.join(f"#{i}" for i in ids[-half:]) + f" ({len(ids)} items)")


def md_cell(text: str) -> str:
    """Text for a Markdown table cell: a `|` would end the cell, a newline the row."""
    return " ".join(str(text).split()).replace("|", "\\|")


@dataclass(frozen=True)
class PlanView:
    plan: Plan
    analysis: Analysis
    status: dict[int, str]                # item id -> status
    criteria_status: tuple[str, ...]      # parallel to plan.criteria

    @classmethod
    def build(cls, plan: Plan, status: dict[int, str] | None = None,
              criteria_status=None) -> "PlanView":
        status = status or {i.id: "not built" if not i.tasks else "not run" for i in plan.items}
        criteria_status = tuple(criteria_status or ["not built" if not c.tasks else "not run"
                                                    for c in plan.criteria])
        return cls(plan, analyse(plan), status, criteria_status)

    # ------------------------------------------------------------------ numbers

    def progress(self, items) -> tuple[int, int]:
        items = list(items)
        return sum(1 for i in items if self.status.get(i) == "done"), len(items)

    @functools.cached_property
    def _by_workstream(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {w.id: [] for w in self.plan.workstreams}
        for i in self.plan.items:
            groups.setdefault(i.workstream, []).append(i.id)
        return {k: sorted(v) for k, v in groups.items()}

    def workstream_items(self, ws_id: str) -> list[int]:
        return list(self._by_workstream.get(ws_id, ()))

    def to_json(self) -> dict:
        a = self.analysis
        small = len(self.plan.workstreams) * len(self.plan.items) < 1_000_000
        ws_items: dict[str, list[int]] = {w.id: [] for w in self.plan.workstreams}
        if not small:  # the same lists (item order), built in one pass
            for i in self.plan.items:
                ws_items.setdefault(i.workstream, []).append(i.id)
        return {
            "items": [
                {"id": i.id, "title": i.title, "workstream": i.workstream, "needs": list(i.needs),
                 "estimate_days": i.estimate_days, "tasks": list(i.tasks), "status": self.status[i.id]}
                for i in self.plan.items
            ],
            "workstreams": [
                {"id": w.id, "title": w.title,
                 "items": [i.id for i in self.plan.items if i.workstream == w.id] if small else ws_items[w.id]}
                for w in self.plan.workstreams
            ],
            "critical_path": list(a.critical_path),
            "critical_path_days": a.length_days,
            "waves": [list(w) for w in a.waves],
            "schedule": [
                {"id": s.item, "start_day": s.start, "finish_day": s.finish, "slack_days": s.slack}
                for s in (a.schedule[i] for i in a.order())
            ],
            "milestones": [
                {"id": f.milestone, "title": f.title, "items": list(f.items), "target_day": f.target_day,
                 "forecast_day": f.forecast_day, "on_track": f.on_track, "late_by_days": f.late_by,
                 "done": self.progress(f.items)[0] == len(f.items)}
                for f in a.forecasts
            ],
            "success_criteria": [
                {"level": c.level, "text": c.text, "tasks": list(c.tasks), "status": s}
                for c, s in zip(self.plan.criteria, self.criteria_status)
            ],
        }

    # ------------------------------------------------------------------ rich board

    def board(self, wide: bool = True):
        """A rich renderable: workstreams, items, status, progress, path, waves, milestones.

        ``wide=False`` (narrow terminals) leaves out each item's task list. A plan of more
        than :data:`BOARD_ITEMS` items is summarised: the next items of each workstream, the
        ends of long lists, and where to find the rest. Every text from plan.yaml is shown
        as written (``[bold]`` in a title is not rich markup)."""
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        a, plan = self.analysis, self.plan
        crit = set(a.critical_path)
        done, total = self.progress(i.id for i in plan.items)
        full = total <= BOARD_ITEMS
        ids = (lambda xs: " ".join(f"#{i}" for i in xs)) if full else _ids
        parts = []
        head = Text.assemble(
            ("Migration plan", "bold"),
            f"  {total} items in {len(plan.workstreams)} workstreams · ",
            (f"{done}/{total} done", "green" if done == total else "bold"),
            f" · critical path {a.length_days:g} days",
        )
        parts.append(head)
        if not full:
            parts.append(Text(f"A large plan: the board shows the next {BOARD_ROWS} items of each workstream "
                              "and the ends of long lists. `doit plan --format json` (or markdown) lists "
                              "every item.", style="dim"))

        shown_ws = plan.workstreams if full else plan.workstreams[:BOARD_WORKSTREAMS]
        summary = Table(title="Progress by workstream", title_justify="left", expand=False)
        summary.add_column("workstream")
        summary.add_column("progress", width=24)
        summary.add_column("done", justify="right")
        for w in shown_ws:
            d, t = self.progress(self.workstream_items(w.id))
            summary.add_row(Text(w.title), ProgressBar(total=max(t, 1), completed=d, width=22), f"{d}/{t}")
        hidden_ws = len(plan.workstreams) - len(shown_ws)
        if hidden_ws:
            summary.add_row(Text(f"... {hidden_ws} more workstreams", style="dim"), "", "")
        parts.append(summary)

        rank = {} if full else {iid: n for n, iid in enumerate(a.order())}
        for w in shown_ws:
            t = Table(title=Text(f"{w.title} ({w.id})"), title_justify="left", expand=False)
            t.add_column("#", justify="right")
            t.add_column("item")
            t.add_column("status")
            t.add_column("needs")
            t.add_column("est", justify="right")
            t.add_column("days", justify="right")
            if wide:
                t.add_column("tasks", overflow="fold")
            members = self.workstream_items(w.id)
            if not full:  # the ones to do next: earliest start first
                members = sorted((i for i in members if self.status[i] != "done"), key=rank.__getitem__)[:BOARD_ROWS]
            for iid in members:
                item = plan.by_id[iid]
                s = self.status[iid]
                slot = a.schedule[iid]
                row = [
                    Text(f"{'*' if iid in crit else ' '}{iid}", style="bold magenta" if iid in crit else ""),
                    Text(item.title),
                    Text(s, style=STATUS_STYLE[s]),
                    (ids(item.needs) if full else _ids(item.needs, 6)) or "-",
                    f"{item.estimate_days:g}",
                    f"{slot.start:g}-{slot.finish:g}",
                ]
                t.add_row(*row, *([Text(", ".join(item.tasks) or "-")] if wide else []))
            rest = len(self.workstream_items(w.id)) - len(members)
            if rest:
                t.add_row("", Text(f"... {rest} more items (done or later): doit plan --format json", style="dim"),
                          *[""] * (len(t.columns) - 2))
            parts.append(t)

        path = " -> ".join(f"#{i}" for i in a.critical_path) if full else _ids(a.critical_path, sep=" -> ")
        parts.append(Text.assemble(("Critical path", "bold magenta"), f" ({a.length_days:g} days, * above): {path}"))
        waves = Table(title="Parallel waves", title_justify="left", show_header=False, expand=False)
        shown_waves = a.waves if full else a.waves[:BOARD_WAVES]
        for n, wave in enumerate(shown_waves, 1):
            waves.add_row(f"wave {n}", ids(wave))
        if len(a.waves) > len(shown_waves):
            waves.add_row("...", Text(f"{len(a.waves) - len(shown_waves)} more waves", style="dim"))
        parts.append(waves)

        ms = Table(title="Milestones (forecast: earliest finish with unlimited hands)", title_justify="left")
        for col in ("milestone", "items", "target", "forecast", "verdict", "done"):
            ms.add_column(col)
        for f in a.forecasts:
            d, tot = self.progress(f.items)
            verdict = Text("on track", style="green") if f.on_track else Text(f"late by {f.late_by:g}d", style="red")
            ms.add_row(Text(f.title), ids(f.items), f"day {f.target_day:g}",
                       f"day {f.forecast_day:g}", verdict, f"{d}/{tot}")
        parts.append(ms)

        sc = Table(title="Success criteria", title_justify="left")
        sc.add_column("level")
        sc.add_column("criterion")
        sc.add_column("status")
        for c, s in zip(plan.criteria, self.criteria_status):
            sc.add_row(c.level, Text(c.text), Text(s, style=STATUS_STYLE[s]))
        if plan.criteria:
            parts.append(sc)
        legend = Text("status: ", style="dim")
        for s in STATUSES:
            legend.append(f"{s}  ", style=STATUS_STYLE[s])
        legend.append("(derived from the doit build state of each item's tasks", style="dim")
        if "unknown" in (*self.status.values(), *self.criteria_status):
            legend.append("; unknown: a check that asks the cluster or the Docker engine was not "
                          "asked, `doit plan --live` asks", style="dim")
        legend.append(")", style="dim")
        parts.append(legend)
        return Panel(Group(*parts), title="doit plan", border_style="cyan")

    # ------------------------------------------------------------------ text formats

    def drawn_edges(self) -> list[tuple[int, int]]:
        """The needs worth drawing: the transitive reduction (a need already implied by a
        longer chain is left out), so pictures of the real plan stay readable."""
        import networkx as nx

        from .graph import item_graph

        return sorted(nx.transitive_reduction(item_graph(self.plan)).edges())

    def mermaid(self, statuses: bool = True) -> str:
        crit = set(self.analysis.critical_path)
        lines = ["flowchart LR"]
        for w in self.plan.workstreams:
            lines.append(f"  subgraph {w.id}[{w.title}]")
            for iid in self.workstream_items(w.id):
                item = self.plan.by_id[iid]
                label = f"#{iid} {item.title}".replace('"', "'")
                if statuses:
                    label += f"<br/>{self.status[iid]}"
                lines.append(f'    i{iid}["{label}"]')
            lines.append("  end")
        crit_edges = set(zip(self.analysis.critical_path, self.analysis.critical_path[1:]))
        for n, i in self.drawn_edges():
            arrow = "==>" if (n, i) in crit_edges else "-->"
            lines.append(f"  i{n} {arrow} i{i}")
        if crit:
            lines.append("  classDef critical stroke:#c0c,stroke-width:3px")
            lines.append("  class " + ",".join(f"i{i}" for i in self.analysis.critical_path) + " critical")
        return "\n".join(lines) + "\n"

    def dot(self, statuses: bool = True) -> str:
        crit = self.analysis.critical_path
        crit_edges = set(zip(crit, crit[1:]))
        lines = ["digraph plan {", '  rankdir=LR; node [shape=box, style="rounded,filled", fontname="Helvetica"];']
        for w in self.plan.workstreams:
            title = w.title.replace("\\", "/").replace('"', "'")
            lines.append(f'  subgraph "cluster_{w.id}" {{ label="{title}"; color="#999999";')
            for iid in self.workstream_items(w.id):
                item = self.plan.by_id[iid]
                title = item.title.replace("\\", "/").replace('"', "'")
                status = f"{self.status[iid]} · " if statuses else ""
                label = f"#{iid} {title}\\n{status}{item.estimate_days:g}d"
                pen = ', penwidth=3, color="#aa00aa"' if iid in crit else ""
                colour = STATUS_FILL[self.status[iid]] if statuses else "#ffffff"
                lines.append(f'    i{iid} [label="{label}", fillcolor="{colour}"{pen}];')
            lines.append("  }")
        for n, i in self.drawn_edges():
            style = ' [penwidth=3, color="#aa00aa"]' if (n, i) in crit_edges else ""
            lines.append(f"  i{n} -> i{i}{style};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def markdown(self, source_text: str = "", statuses: bool = True) -> str:
        """The tracking document, generated. ``source_text`` (plan.yaml) is fingerprinted.
        Without ``statuses`` it holds only what the repository says (the committed
        docs/PLAN.md: the build state is machine-local, `doit plan` shows it)."""
        a, plan = self.analysis, self.plan
        done, total = self.progress(i.id for i in plan.items)
        crit = set(a.critical_path)
        # the command that makes each: the committed document, or a machine's view with statuses
        made = ("`doit plan --format markdown` from plan.yaml and the build state of the machine "
                "it ran on" if statuses else "`doit docs:plan` from plan.yaml alone")
        out = [
            "# Deployment migration plan",
            "",
            f"<!-- Generated by {made}. Do not edit by hand. -->",
        ]
        if source_text:
            out.append(f"<!-- plan.yaml sha256: {hashlib.sha256(source_text.encode()).hexdigest()} -->")
        summary = f"**{total} items in {len(plan.workstreams)} workstreams.** Critical path: {a.length_days:g} days."
        if statuses:
            out += ["", f"{summary} Progress: {done}/{total} items done.", "",
                    "Status is derived from the doit build state of the tasks each item names: "
                    + ", ".join(f"{STATUS_MARK[s]}" for s in STATUSES) + ".",
                    "", "## Progress by workstream", "", "| Workstream | Done | Items |", "|---|---|---|"]
        else:
            out += ["", summary, "",
                    "The status of each item comes from the build state of the machine it is asked "
                    "on: `doit plan` shows it.", "", "## Workstreams", "", "| Workstream | Items |", "|---|---|"]
        for w in plan.workstreams:
            ids = self.workstream_items(w.id)
            d, t = self.progress(ids)
            progress = f" {d}/{t} |" if statuses else ""
            out.append(f"| {md_cell(w.title)} |{progress} {' '.join(f'#{i}' for i in ids)} |")
        for w in plan.workstreams:
            out += ["", f"## {w.title}", ""]
            if w.description:
                out += [w.description, ""]
            if statuses:
                out += ["| Item | Title | Status | Needs | Estimate | Days | Tasks |", "|---|---|---|---|---|---|---|"]
            else:
                out += ["| Item | Title | Needs | Estimate | Days | Tasks |", "|---|---|---|---|---|---|"]
            for iid in self.workstream_items(w.id):
                item = plan.by_id[iid]
                slot = a.schedule[iid]
                tasks = ", ".join(f"`{t}`" for t in item.tasks) or "-"
                star = " ★" if iid in crit else ""
                status = f" {STATUS_MARK[self.status[iid]]} |" if statuses else ""
                out.append(
                    f"| #{iid}{star} | {md_cell(item.title)} |{status} "
                    f"{' '.join(f'#{n}' for n in item.needs) or '-'} | {item.estimate_days:g}d | "
                    f"{slot.start:g}–{slot.finish:g} | {tasks} |")
        out += ["", "## Critical path", "",
                f"{' → '.join(f'#{i}' for i in a.critical_path)} ({a.length_days:g} days; ★ in the tables)",
                "", "## Parallel waves", ""]
        for n, wave in enumerate(a.waves, 1):
            out.append(f"{n}. {' '.join(f'#{i}' for i in wave)}")
        out += ["", "## Milestones", "", "| Milestone | Items | Target | Forecast | Verdict |"
                + (" Done |" if statuses else ""), "|---|---|---|---|---|" + ("---|" if statuses else "")]
        for f in a.forecasts:
            d, t = self.progress(f.items)
            verdict = "on track" if f.on_track else f"late by {f.late_by:g} days"
            out.append(f"| {md_cell(f.title)} | {' '.join(f'#{i}' for i in f.items)} | day {f.target_day:g} | "
                       f"day {f.forecast_day:g} | {verdict} |" + (f" {d}/{t} |" if statuses else ""))
        if plan.criteria:
            out += ["", "## Success criteria"]
            for level in CRITERIA_LEVELS:
                rows = [(c, s) for c, s in zip(plan.criteria, self.criteria_status) if c.level == level]
                if not rows:
                    continue
                out += ["", f"**{level.capitalize()}**", ""]
                for c, s in rows:
                    tasks = ", ".join(f"`{t}`" for t in c.tasks) or "no task yet"
                    text = ' '.join(c.text.split())
                    if statuses:
                        out.append(f"- [{'x' if s == 'done' else ' '}] {text} ({tasks}; {s})")
                    else:
                        out.append(f"- {text} ({tasks})")
        out += ["", "## Graph", "", "```mermaid", self.mermaid(statuses=False).rstrip(), "```", ""]
        return "\n".join(out)


def json_lines(data: dict) -> str:
    """JSON with one list entry per line: readable, and written by the C encoder (``indent``
    would use the pure-Python one, seconds for a plan of 10,000 items)."""
    out = ["{"]
    for n, (key, value) in enumerate(data.items()):
        comma = "," if n < len(data) - 1 else ""
        if isinstance(value, list) and value:
            entries = ",\n    ".join(json.dumps(v, ensure_ascii=False) for v in value)
            out.append(f"  {json.dumps(key)}: [\n    {entries}\n  ]{comma}")
        else:
            out.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{comma}")
    out.append("}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the task graph


def task_graph_dot(task_list, highlight=()) -> str:
    """DOT of the doit task graph: task_dep edges and file_dep -> target edges."""
    highlight = set(highlight)
    visible = [t for t in task_list if not t.name.startswith("_")]
    names = {t.name for t in visible}
    producer = {}
    for t in visible:
        for target in t.targets:
            producer[str(target)] = t.name
    lines = ["digraph tasks {", '  rankdir=LR; node [shape=box, style="rounded", fontname="Helvetica"];']
    for t in visible:
        pen = ', penwidth=3, color="#aa00aa"' if t.name in highlight else ""
        lines.append(f'  "{t.name}" [tooltip="{(t.doc or "").replace(chr(34), chr(39))}"{pen}];')
    edges = set()
    for t in visible:
        for dep in t.task_dep:
            if dep in names:
                edges.add((dep, t.name, "solid"))
        for f in t.file_dep:
            p = producer.get(str(f))
            if p and p != t.name:
                edges.add((p, t.name, "dashed"))
    for a, b, style in sorted(edges):
        lines.append(f'  "{a}" -> "{b}" [style={style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def task_graph_mermaid(task_list) -> str:
    """Mermaid of the doit task graph (task_dep edges)."""
    visible = [t for t in task_list if not t.name.startswith("_")]
    ids = {t.name: f"t{n}" for n, t in enumerate(visible)}
    lines = ["flowchart LR"] + [f'  {ids[t.name]}["{t.name}"]' for t in visible]
    for t in visible:
        for dep in t.task_dep:
            if dep in ids:
                lines.append(f"  {ids[dep]} --> {ids[t.name]}")
    return "\n".join(lines) + "\n"
