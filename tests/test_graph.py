"""Graph analyses on hand-made graphs with known answers."""
import pytest

from support import REPO
from tasks.cmd_list import task_order
from tasks.graph import analyse, critical_path, schedule, waves
from tasks.plan import load, loads


def plan_of(items, milestones=""):
    lines = ["workstreams:", "  - {id: w, title: W}", "items:"]
    for iid, est, needs in items:
        lines.append(f"  - {{id: {iid}, title: t{iid}, workstream: w, estimate_days: {est}, "
                     f"needs: {list(needs)}, tasks: [task{iid}]}}")
    return loads("\n".join(lines) + "\n" + milestones)


def test_critical_path_follows_the_weights_not_the_node_count():
    # 1 -> 2 -> 3 -> 5 (1+1+1+1 = 4 days) versus 1 -> 4 -> 5 (1+5+1 = 7 days)
    plan = plan_of([(1, 1, []), (2, 1, [1]), (3, 1, [2]), (4, 5, [1]), (5, 1, [3, 4])])
    path, length = critical_path(plan)
    assert path == (1, 4, 5) and length == 7


def test_the_last_items_duration_counts():
    # two independent chains: 1 -> 2 (1 + 1) and 3 alone (5): the answer is 3, 5 days
    plan = plan_of([(1, 1, []), (2, 1, [1]), (3, 5, [])])
    assert critical_path(plan) == ((3,), 5.0)


def test_waves_are_topological_generations_sorted():
    plan = plan_of([(9, 1, []), (2, 1, []), (5, 1, [9, 2]), (3, 1, [2]), (7, 1, [5, 3])])
    assert waves(plan) == ((2, 9), (3, 5), (7,))


def test_schedule_earliest_start_finish_and_slack():
    plan = plan_of([(1, 2, []), (2, 1, [1]), (3, 4, [1]), (4, 1, [2, 3])])
    s = schedule(plan)
    assert (s[1].start, s[1].finish) == (0, 2)
    assert (s[2].start, s[2].finish, s[2].slack) == (2, 3, 3)   # may start 3 days late
    assert (s[3].start, s[3].finish, s[3].slack) == (2, 6, 0)
    assert (s[4].start, s[4].finish) == (6, 7)


def test_milestone_forecast_against_target():
    ms = ("milestones:\n"
          "  - {id: early, title: E, items: [1], target_day: 3}\n"
          "  - {id: late, title: L, items: [1, 2], target_day: 4}\n")
    a = analyse(plan_of([(1, 2, []), (2, 3, [1])], ms))
    early, late = a.forecasts
    assert early.forecast_day == 2 and early.on_track
    assert late.forecast_day == 5 and not late.on_track and late.late_by == 1


def longest_path_days(plan) -> float:
    """The longest chain of needs, weighted by the estimates, computed by networkx (not by
    tasks.graph): each item is an edge (its start -> its finish) as long as its estimate."""
    import networkx as nx

    g = nx.DiGraph()
    for item in plan.items:
        g.add_edge(("start", item.id), ("finish", item.id), weight=item.estimate_days)
        for need in item.needs:
            g.add_edge(("finish", need), ("start", item.id), weight=0)
    return float(nx.dag_longest_path_length(g, weight="weight")) if plan.items else 0.0


def check_invariants(plan, a):
    """What every analysis must satisfy, whatever the plan holds."""
    ids = [i.id for i in plan.items]
    # every item in exactly one wave; a wave needs only earlier waves, and the wave of an
    # item is one after the latest wave it needs (topological generations)
    members = [i for wave in a.waves for i in wave]
    assert sorted(members) == sorted(ids) and len(members) == len(set(members))
    wave_of = {i: n for n, wave in enumerate(a.waves) for i in wave}
    for item in plan.items:
        assert wave_of[item.id] == max((wave_of[u] + 1 for u in item.needs), default=0)
    # the critical path is a chain of needs from an item that needs nothing, and a longest one
    path = a.critical_path
    assert path and not plan.by_id[path[0]].needs
    assert all(u in plan.by_id[v].needs for u, v in zip(path, path[1:]))
    assert sum(plan.by_id[i].estimate_days for i in path) == pytest.approx(a.length_days)
    assert a.length_days == pytest.approx(longest_path_days(plan))
    # the schedule: an item starts when its last need finishes; nothing on the path has slack
    for item in plan.items:
        slot = a.schedule[item.id]
        assert slot.start == pytest.approx(max((a.schedule[u].finish for u in item.needs), default=0))
        assert slot.finish == pytest.approx(slot.start + item.estimate_days) and slot.slack >= -1e-9
    assert all(a.schedule[i].slack == pytest.approx(0) for i in path)
    assert a.length_days == pytest.approx(max(s.finish for s in a.schedule.values()))
    for f in a.forecasts:
        assert f.forecast_day == max(a.schedule[i].finish for i in f.items)


def test_the_real_plan_satisfies_the_invariants():
    plan = load(REPO / "plan.yaml")
    check_invariants(plan, analyse(plan))


def test_the_invariants_catch_a_wrong_analysis():
    import dataclasses

    plan = plan_of([(1, 1, []), (2, 1, [1]), (3, 1, [2]), (4, 5, [1]), (5, 1, [3, 4])])
    a = analyse(plan)
    check_invariants(plan, a)
    wrong = [
        dataclasses.replace(a, critical_path=(1, 2, 3, 5), length_days=4.0),   # a path, not the longest
        dataclasses.replace(a, waves=((1,), (2, 4), (3, 5))),                   # 5 needs 3 of the same wave
        dataclasses.replace(a, waves=((1,), (2, 4), (3,), (5,), (5,))),         # 5 in two waves
    ]
    for bad in wrong:
        with pytest.raises(AssertionError):
            check_invariants(plan, bad)


def test_task_order_is_critical_path_first_and_cached(tmp_path):
    plan = plan_of([(1, 1, []), (2, 5, []), (3, 1, [1, 2])])
    text = "irrelevant but fingerprinted"
    order = task_order(plan, text, tmp_path / "order.json")
    assert order == ["task2", "task1", "task3"]   # critical item 2 first in wave 1
    assert (tmp_path / "order.json").exists()
    # a stale cache (other plan text) is recomputed, a matching one is read
    (tmp_path / "order.json").write_text('{"digest": "nope", "tasks": ["x"]}')
    assert task_order(plan, text, tmp_path / "order.json") == order


@pytest.mark.parametrize("n", [50, 400])
def test_synthetic_plans_analyse_consistently(n):
    import random

    rnd = random.Random(n)
    items = [(i, rnd.choice([0.5, 1, 2]), sorted(rnd.sample(range(i), min(i, 4)))) for i in range(n)]
    plan = plan_of(items)
    check_invariants(plan, analyse(plan))


def test_pictures_leave_out_needs_implied_by_longer_chains():
    from tasks.report import PlanView

    view = PlanView.build(plan_of([(1, 1, []), (2, 1, [1]), (3, 1, [1, 2])]))
    assert view.drawn_edges() == [(1, 2), (2, 3)]
    assert "i1 -> i3" not in view.dot() and "i2 -> i3 [penwidth=3" in view.dot()
    assert "i1 --> i3" not in view.mermaid() and "i1 ==> i2" in view.mermaid()


def test_a_long_chain_is_analysed_without_recursion():
    import sys

    from tasks.plan import Item, Plan, Workstream

    n = 50_000
    assert n > sys.getrecursionlimit() * 10
    items = tuple(Item(i, "t", "w", 1.0, (i - 1,) if i else ()) for i in range(n))
    a = analyse(Plan((Workstream("w", "W"),), items))
    assert a.critical_path == tuple(range(n)) and a.length_days == n and len(a.waves) == n
    assert a.schedule[n - 1].start == n - 1 and a.schedule[0].slack == 0


def test_every_column_of_the_board_has_a_header():
    from rich.table import Table

    from tasks.report import PlanView

    view = PlanView.build(load(REPO / "plan.yaml"))
    tables, todo = [], [view.board()]
    while todo:  # every table of the board's panel, however nested
        node = todo.pop()
        if isinstance(node, Table):
            tables.append(node)
        todo += getattr(node, "renderables", []) or []
        if getattr(node, "renderable", None) is not None:
            todo.append(node.renderable)
    assert any("Milestones" in str(t.title) for t in tables)
    for t in tables:
        if t.show_header:
            headers = [str(c.header) for c in t.columns]
            assert all(h.strip() for h in headers), (t.title, headers)
