"""plan.yaml loading: the real plan, and one test per kind of error (file, line, fix)."""
import textwrap

import pytest

from support import REPO
from tasks.plan import PlanError, load, loads

GOOD = """\
settings:
  project: demo
workstreams:
  - id: a
    title: A
  - id: b
    title: B
items:
  - id: 1
    title: one
    workstream: a
    estimate_days: 1
    tasks: [t1]
  - id: 2
    title: two
    workstream: b
    estimate_days: 2
    needs: [1]
milestones:
  - id: m
    title: M
    items: [1, 2]
    target_day: 3
success_criteria:
  must:
    - text: it works
      tasks: [t1]
"""


def error_of(text: str) -> PlanError:
    with pytest.raises(PlanError) as exc:
        loads(textwrap.dedent(text), "plan.yaml")
    return exc.value


def test_the_real_plan_has_the_21_items_in_6_workstreams():
    plan = load(REPO / "plan.yaml")
    assert sorted(i.id for i in plan.items) == list(range(93, 114))
    assert [w.id for w in plan.workstreams] == ["foundation", "infra", "apps", "docker", "tilt", "docs"]
    assert {m.id: m.target_day for m in plan.milestones} == {
        "foundation": 2, "docker": 4, "infra": 5, "apps": 7, "tilt": 12, "docs": 14}
    assert plan.by_id[98].needs == (93, 94, 96)          # flux needs gitea
    assert {c.level for c in plan.criteria} == {"must", "should", "nice"}
    assert all(i.tasks for i in plan.items)


def test_a_good_small_plan_loads_into_frozen_dataclasses():
    plan = loads(GOOD)
    assert plan.settings.project == "demo" and plan.settings.environments == ("local", "staging", "prod")
    assert plan.by_id[2].needs == (1,) and plan.by_id[2].estimate_days == 2.0
    with pytest.raises(Exception):
        plan.by_id[1].title = "changed"  # frozen


def test_yaml_syntax_error_names_the_line():
    e = error_of("workstreams:\n  - id: a\n    title: [unclosed\nitems: []\n")
    assert "YAML syntax error" in str(e)
    assert e.problems[0].line in (3, 4)
    assert str(e).startswith("plan.yaml: 1 problem found\nplan.yaml:")
    assert "fix:" in str(e)


def test_wrong_type_names_key_line_and_fix():
    e = error_of(GOOD.replace("estimate_days: 2", "estimate_days: two days"))
    (p,) = e.problems
    assert p.line == 17
    assert "'estimate_days' must be a number" in p.message and "got a string" in p.message
    assert "estimate_days: 1.5" in p.fix


def test_unknown_key_suggests_the_closest():
    e = error_of(GOOD.replace("    needs: [1]", "    need: [1]"))
    (p,) = e.problems
    assert p.line == 18 and "unknown key 'need'" in p.message and "did you mean 'needs'?" in p.fix


def test_duplicate_item_id():
    e = error_of(GOOD.replace("  - id: 2\n", "  - id: 1\n"))
    assert any("duplicate item id 1 (first at line 9)" in p.message and p.line == 14 for p in e.problems)


def test_duplicate_workstream_id():
    e = error_of(GOOD.replace("  - id: b\n    title: B", "  - id: a\n    title: B"))
    assert any("duplicate workstream id 'a' (first at line 4)" in p.message for p in e.problems)


def test_duplicate_mapping_key():
    e = error_of(GOOD.replace("    title: one\n", "    title: one\n    title: uno\n"))
    (p,) = e.problems
    assert p.line == 11 and "duplicate key 'title' (first at line 10)" in p.message


def test_unknown_need_is_named_with_its_line():
    e = error_of(GOOD.replace("needs: [1]", "needs: [1, 7]"))
    (p,) = e.problems
    assert p.line == 18 and "item 2 needs unknown item 7" in p.message


def test_cycle_is_printed():
    text = GOOD.replace("    tasks: [t1]\n", "    tasks: [t1]\n    needs: [2]\n", 1)
    e = error_of(text)
    (p,) = e.problems
    assert "cycle" in p.message and ("#1 -> #2 -> #1" in p.message or "#2 -> #1 -> #2" in p.message)
    assert p.line == 14
    assert "remove one of these `needs`" in p.fix


def test_self_need():
    e = error_of(GOOD.replace("needs: [1]", "needs: [2]"))
    assert any("item 2 needs itself" in p.message for p in e.problems)


def test_unknown_workstream_suggests():
    e = error_of(GOOD.replace("workstream: b", "workstream: bb"))
    (p,) = e.problems
    assert p.line == 16 and "unknown workstream 'bb'" in p.message and "did you mean 'b'?" in p.fix


def test_missing_required_key():
    e = error_of(GOOD.replace("    title: two\n", ""))
    (p,) = e.problems
    assert "missing key 'title'" in p.message and p.fix == "add `title:`"


def test_top_level_must_be_a_mapping():
    e = error_of("- just\n- a list\n")
    assert "must be a mapping at the top" in str(e)


def test_quoted_item_id_is_rejected_with_a_fix():
    e = error_of(GOOD.replace("  - id: 2\n", "  - id: '#2'\n"))
    assert any("'id' must be a whole number" in p.message for p in e.problems)


def test_unknown_milestone_item_and_criteria_level():
    text = GOOD.replace("items: [1, 2]", "items: [1, 9]").replace("  must:", "  mustt:")
    e = error_of(text)
    msgs = " | ".join(p.message for p in e.problems)
    assert "milestones[0]: unknown item 9" in msgs and "unknown key 'mustt'" in msgs


def test_every_problem_is_reported_at_once_sorted_by_line():
    text = GOOD.replace("estimate_days: 1\n", "estimate_days: x\n").replace("workstream: b", "workstream: z")
    e = error_of(text)
    assert len(e.problems) == 2 and [p.line for p in e.problems] == sorted(p.line for p in e.problems)


def test_missing_file_is_a_plan_error(tmp_path):
    with pytest.raises(PlanError) as exc:
        load(tmp_path / "plan.yaml")
    assert "file not found" in str(exc.value)


def test_out_of_range_estimate_shows_the_value():
    e = error_of(GOOD.replace("estimate_days: 2", "estimate_days: -1"))
    assert "got -1" in e.problems[0].message


def test_namespace_must_be_a_kubernetes_name():
    e = error_of(GOOD.replace("  project: demo", "  project: demo\n  namespace: Raibid_System"))
    (p,) = e.problems
    assert p.line == 3 and "'namespace' must be a Kubernetes name" in p.message
    assert "namespace: raibid-system" in p.fix


def test_duplicate_needs_are_reported():
    e = error_of(GOOD.replace("needs: [1]", "needs: [1, 1]"))
    assert any("`needs` lists 1 more than once" in p.message for p in e.problems)
