"""Graph analysis of the plan: critical path, waves, schedule, forecast.

The item graph has an edge ``need -> item``; durations are estimates in days. Each analysis
is one pass over a topological order (linear in items + needs). The critical path is the
chain of latest-finishing needs ending at the item that finishes last; among equals the
first need listed (and the first item in plan.yaml) wins. networkx draws the pictures
(:func:`item_graph`, the transitive reduction in tasks/report.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    from .plan import Plan

@dataclass(frozen=True)
class Slot:
    item: int
    start: float      # earliest start, in days from day 0
    finish: float     # earliest finish
    slack: float      # how late it may start without moving the end


@dataclass(frozen=True)
class Forecast:
    milestone: str
    title: str
    target_day: float
    forecast_day: float
    items: tuple[int, ...]

    @property
    def late_by(self) -> float:
        return max(0.0, round(self.forecast_day - self.target_day, 3))

    @property
    def on_track(self) -> bool:
        return self.forecast_day <= self.target_day + 1e-9


@dataclass(frozen=True)
class Analysis:
    critical_path: tuple[int, ...]
    length_days: float
    waves: tuple[tuple[int, ...], ...]
    schedule: dict[int, Slot] = field(default_factory=dict)
    forecasts: tuple[Forecast, ...] = ()

    def order(self) -> list[int]:
        """Items in critical-path order: by earliest start, critical items first, then id."""
        crit = set(self.critical_path)
        return sorted(self.schedule, key=lambda i: (self.schedule[i].start, i not in crit,
                                                    self.schedule[i].slack, i))


def item_graph(plan: Plan):
    """The plan as a networkx graph (edge ``need -> item``), for the pictures."""
    import networkx as nx

    g = nx.DiGraph()
    for item in plan.items:
        g.add_node(item.id, estimate=item.estimate_days, workstream=item.workstream)
    for item in plan.items:
        for need in item.needs:
            g.add_edge(need, item.id, weight=plan.by_id[need].estimate_days)
    return g


class _Passes:
    """One topological order and the earliest starts, shared by every analysis: each is a
    single pass over the items and their needs (linear in the plan's size, no recursion),
    so a chain of 100,000 items costs what 100,000 independent items cost."""

    def __init__(self, plan: Plan):
        from .plan import topological_order

        order = topological_order(plan)
        if order is None:
            raise ValueError("the plan's needs form a cycle")  # plan.build() rejects these first
        self.plan = plan
        self.order = order
        self.est = {i.id: i.estimate_days for i in plan.items}
        by_id = plan.by_id
        start: dict[int, float] = {}
        best: dict[int, int | None] = {}   # the need that finishes last (first of equals)
        for n in order:
            s, b = 0.0, None
            for u in by_id[n].needs:
                f = start[u] + self.est[u]
                if b is None or f > s:
                    s, b = f, u
            start[n], best[n] = s, b
        self.start, self.best = start, best

    def critical_path(self) -> tuple[tuple[int, ...], float]:
        if not self.plan.items:
            return (), 0.0
        # the item that finishes last (first in plan order among equals), back along `best`
        length, last = 0.0, None
        for i in self.plan.items:
            f = self.start[i.id] + i.estimate_days
            if last is None or f > length:
                length, last = f, i.id
        path = []
        while last is not None:
            path.append(last)
            last = self.best[last]
        return tuple(reversed(path)), float(length)

    def waves(self) -> tuple[tuple[int, ...], ...]:
        level: dict[int, int] = {}
        by_id = self.plan.by_id
        for n in self.order:
            level[n] = max((level[u] + 1 for u in by_id[n].needs), default=0)
        groups: dict[int, list[int]] = {}
        for n, k in level.items():
            groups.setdefault(k, []).append(n)
        return tuple(tuple(sorted(groups[k])) for k in sorted(groups))

    def schedule(self, length: float | None = None) -> dict[int, Slot]:
        est, start = self.est, self.start
        end = max((start[n] + est[n] for n in self.order), default=0.0) if length is None else length
        users: dict[int, list[int]] = {n: [] for n in self.order}
        for i in self.plan.items:
            for u in i.needs:
                users[u].append(i.id)
        latest: dict[int, float] = {}
        for n in reversed(self.order):
            latest[n] = min((latest[s] for s in users[n]), default=end) - est[n]
        return {n: Slot(n, start[n], start[n] + est[n], round(latest[n] - start[n], 9)) for n in self.order}


def critical_path(plan: Plan) -> tuple[tuple[int, ...], float]:
    """The longest chain of needs, weighted by the estimates, and its length in days."""
    return _Passes(plan).critical_path()


def waves(plan: Plan) -> tuple[tuple[int, ...], ...]:
    """Items that can run in parallel, wave by wave (topological generations, sorted)."""
    return _Passes(plan).waves()


def schedule(plan: Plan, length: float | None = None) -> dict[int, Slot]:
    """Earliest start/finish of each item with unlimited people, and its slack."""
    return _Passes(plan).schedule(length)


def analyse(plan: Plan) -> Analysis:
    passes = _Passes(plan)
    path, length = passes.critical_path()
    slots = passes.schedule(length)
    forecasts = tuple(
        Forecast(m.id, m.title, m.target_day,
                 max((slots[i].finish for i in m.items if i in slots), default=0.0), m.items)
        for m in plan.milestones
    )
    return Analysis(path, length, passes.waves(), slots, forecasts)
