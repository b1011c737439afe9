"""Graph analysis of the plan with networkx: critical path, waves, schedule, forecast.

The item graph has an edge ``need -> item``. Durations are estimates in days. networkx's
``dag_longest_path`` reads edge weights only, so each edge carries the duration of the
item it leaves, and a sink node collects the last items so their durations count too.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from .plan import Plan

_SINK = "__end__"


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
    import networkx as nx

    g = nx.DiGraph()
    for item in plan.items:
        g.add_node(item.id, estimate=item.estimate_days, workstream=item.workstream)
    for item in plan.items:
        for need in item.needs:
            g.add_edge(need, item.id, weight=plan.by_id[need].estimate_days)
    return g


def critical_path(plan: Plan, g=None) -> tuple[tuple[int, ...], float]:
    """The longest chain of needs, weighted by the estimates, and its length in days."""
    import networkx as nx

    if not plan.items:
        return (), 0.0
    g = (g if g is not None else item_graph(plan)).copy()
    for item in plan.items:
        g.add_edge(item.id, _SINK, weight=item.estimate_days)
    path = nx.dag_longest_path(g, weight="weight", default_weight=0)
    length = nx.dag_longest_path_length(g, weight="weight", default_weight=0)
    return tuple(n for n in path if n != _SINK), float(length)


def waves(plan: Plan, g=None) -> tuple[tuple[int, ...], ...]:
    """Items that can run in parallel, wave by wave (topological generations, sorted)."""
    import networkx as nx

    g = g if g is not None else item_graph(plan)
    return tuple(tuple(sorted(gen)) for gen in nx.topological_generations(g))


def schedule(plan: Plan, g=None, length: float | None = None) -> dict[int, Slot]:
    """Earliest start/finish of each item with unlimited people, and its slack."""
    import networkx as nx

    g = g if g is not None else item_graph(plan)
    order = list(nx.topological_sort(g))
    est = {i.id: i.estimate_days for i in plan.items}
    start: dict[int, float] = {}
    for n in order:
        start[n] = max((start[p] + est[p] for p in g.predecessors(n)), default=0.0)
    end = max((start[n] + est[n] for n in order), default=0.0) if length is None else length
    latest: dict[int, float] = {}
    for n in reversed(order):
        latest[n] = min((latest[s] for s in g.successors(n)), default=end) - est[n]
    return {n: Slot(n, start[n], start[n] + est[n], round(latest[n] - start[n], 9)) for n in order}


def analyse(plan: Plan) -> Analysis:
    g = item_graph(plan)
    path, length = critical_path(plan, g)
    slots = schedule(plan, g, length)
    forecasts = tuple(
        Forecast(m.id, m.title, m.target_day,
                 max((slots[i].finish for i in m.items if i in slots), default=0.0), m.items)
        for m in plan.milestones
    )
    return Analysis(path, length, waves(plan, g), slots, forecasts)


# --------------------------------------------------------------------------- cached order


def plan_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def task_order(plan: Plan, plan_text: str, cache_file) -> list[str]:
    """The plan's tasks in critical-path order, cached by plan.yaml's content.

    ``doit list`` calls this on every run, so the networkx analysis runs only when
    plan.yaml changed; the cache is a plain JSON file under build/.
    """
    from pathlib import Path

    from . import atomic

    digest = plan_digest(plan_text)
    cache_file = Path(cache_file)
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("digest") == digest:
            return list(cached["tasks"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    analysis = analyse(plan)
    seen: dict[str, None] = {}
    for item_id in analysis.order():
        for t in plan.by_id[item_id].tasks:
            seen.setdefault(t)
    for t in plan.tasks():
        seen.setdefault(t)
    order = list(seen)
    try:
        atomic.write_text(cache_file, json.dumps({"digest": digest, "tasks": order}))
    except OSError:
        pass
    return order
