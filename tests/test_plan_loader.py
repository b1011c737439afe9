"""plan.yaml loading: the real plan, and one test per kind of error (file, line, fix)."""
import textwrap

import pytest

from support import REPO
from tasks.plan import PlanError, load, loads

GOOD = """\
# a small plan (the deploy settings are in deploy.json,
# never here)
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


def test_the_real_plan_loads_and_every_part_is_used():
    from tasks.plan import CRITERIA_LEVELS

    plan = load(REPO / "plan.yaml")
    assert plan.items and plan.workstreams
    assert len({i.id for i in plan.items}) == len(plan.items)
    used = {i.workstream for i in plan.items}
    assert [w.id for w in plan.workstreams if w.id not in used] == []     # no empty workstream
    assert all(i.tasks for i in plan.items)                               # every item names its tasks
    assert all(set(i.needs) <= set(plan.by_id) for i in plan.items)
    assert all(set(m.items) <= set(plan.by_id) and m.items for m in plan.milestones)
    assert {c.level for c in plan.criteria} <= set(CRITERIA_LEVELS)


def test_a_good_small_plan_loads_into_frozen_dataclasses():
    plan = loads(GOOD)
    assert [w.id for w in plan.workstreams] == ["a", "b"] and not hasattr(plan, "settings")
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


def test_duplicate_needs_are_reported():
    e = error_of(GOOD.replace("needs: [1]", "needs: [1, 1]"))
    assert any("`needs` lists 1 more than once" in p.message for p in e.problems)


# --------------------------------------------------------------------------- issue 11: checker gaps

def test_deploy_settings_in_the_tracker_point_to_deploy_json():
    e = error_of("workstreams: []\nitems: []\nsettings:\n  namespace: x\n")
    (p,) = e.problems
    assert p.line == 3 and "moved to deploy.json" in p.message and "deploy.json" in p.fix


def test_duplicate_milestone_id_names_both_lines():
    text = GOOD + "  - id: m\n    title: again\n    items: [2]\n    target_day: 4\n"
    e = error_of(text.replace("success_criteria:\n  must:\n    - text: it works\n      tasks: [t1]\n", "")
                 + "")
    assert any("duplicate milestone id 'm' (first at line 20)" in p.message and p.line == 24
               for p in e.problems), str(e)


def test_invalid_utf8_reports_line_and_column(tmp_path):
    f = tmp_path / "plan.yaml"
    f.write_bytes(GOOD.encode().replace(b"title: two", b"title: tw\xff\xfeo"))
    with pytest.raises(PlanError) as exc:
        load(f)
    text = str(exc.value)
    assert "plan.yaml:15:14: the file is not UTF-8 text" in text and "byte" not in text.split("fix:")[0]


@pytest.mark.parametrize("char", ["\x01", "\x07", "\x1b", "\x00", "\ufffe"])
def test_control_characters_report_line_and_column(char):
    e = error_of(GOOD.replace("title: two", f"title: t{char}wo"))
    (p,) = e.problems
    assert (p.line, p.column) == (15, 13), str(e)
    assert "plan.yaml:15:13: " in str(e) and "control character" in p.message


def test_huge_integers_report_their_line():
    e = error_of(GOOD.replace("estimate_days: 2", "estimate_days: " + "9" * 5000))
    (p,) = e.problems
    assert p.line == 17 and "too large" in p.message
    e = error_of(GOOD.replace("  - id: 2\n", "  - id: " + "7" * 40 + "\n"))
    assert any(p.line == 14 and "'id' must be a whole number" in p.message for p in e.problems)


@pytest.mark.parametrize("number", ["0x" + "f" * 5000, "-0" + "7" * 5000, "0b" + "1" * 20_000],
                         ids=["hex", "octal", "binary"])
@pytest.mark.parametrize("where", ["target_day: 3", "estimate_days: 2", "needs: [1]",
                                   "items: [1, 2]"],
                         ids=["target_day", "estimate_days", "needs", "items"])
def test_huge_hex_octal_and_binary_numbers_report_their_line(number, where):
    """Python reads them without the decimal digit limit; printing one in a message hit it."""
    value = number if ":" in where and "[" not in where else f"[{number}]"
    text = GOOD.replace(where, where.split(":")[0] + ": " + value)
    e = error_of(text)
    line = text.splitlines().index(next(x for x in text.splitlines() if number in x)) + 1
    assert any(p.line == line and "too large" in p.message for p in e.problems), str(e)[:500]


def test_deep_nesting_and_yaml_bombs_are_rejected_with_a_line():
    deep = "workstreams: []\nitems: []\nsettings:\n  project: " + "[" * 100_000 + "]" * 100_000 + "\n"
    e = error_of(deep)
    assert e.problems[0].line == 4 and "nested" in e.problems[0].message
    bullets = "workstreams: []\nitems:\n  " + "- " * 100_000 + "x\n"
    e = error_of(bullets)
    assert e.problems[0].line == 3 and "nested" in e.problems[0].message
    bomb = ["workstreams: []", "items: []", "a0: &a0 {k0: 1, k1: 2, k2: 3, k3: 4, k4: 5}"]
    for n in range(1, 12):
        bomb.append(f"a{n}: &a{n} {{" + ", ".join(f"<<: *a{n - 1}" for _ in range(1)) + "}")
        bomb.append(f"b{n}: &b{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]")
    merge_bomb = ["workstreams: []", "items: []", "m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 10}"]
    for n in range(1, 10):
        merge_bomb.append(f"m{n}: &m{n}\n  <<: [" + ", ".join([f"*m{n - 1}"] * 10) + "]")
    for text in ("\n".join(bomb) + "\n", "\n".join(merge_bomb) + "\n"):
        e = error_of(text)
        assert all(p.line > 0 for p in e.problems), str(e)


def test_repeated_needs_are_checked_in_linear_time():
    import time

    text = GOOD.replace("needs: [1]", "needs: [" + ", ".join(["1"] * 60_000) + "]")
    t = time.perf_counter()
    e = error_of(text)
    assert time.perf_counter() - t < 10   # was 190 s: needs.count per entry
    assert any("`needs` lists 1 more than once" in p.message and p.line == 18 for p in e.problems)


def test_a_flood_of_problems_is_summarised():
    text = "workstreams: []\nitems:\n" + "".join(f"  - {{id: {i}}}\n" for i in range(5000))
    e = error_of(text)
    assert len(e.problems) >= 5000
    lines = str(e).splitlines()
    assert len(lines) < 250 and "more problems not shown" in lines[-1]


def test_the_checked_plan_is_cached_by_content_and_a_bad_cache_is_ignored(tmp_path, monkeypatch):
    from tasks import plan as plan_mod

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(tmp_path))
    monkeypatch.setattr(plan_mod, "_CACHE", {})
    (tmp_path / "plan.yaml").write_text(GOOD)
    plan_mod.current()
    assert not (tmp_path / "build").exists()          # a small plan is not worth a cache
    plan_mod._CACHE.clear()
    monkeypatch.setattr(plan_mod, "CACHE_MIN_BYTES", 0)
    first = plan_mod.current()
    assert first == loads(GOOD)
    cache = tmp_path / "build" / ".plan-cache.json"
    assert cache.is_file()
    plan_mod._CACHE.clear()
    again = plan_mod.current()       # from the cache
    assert again is not first and again.by_id[2].needs == (1,)
    fields = ("workstreams", "items", "milestones", "criteria", "source")
    assert [getattr(again, f) for f in fields] == [getattr(first, f) for f in fields]
    for damage in ('{"digest": "x"', "[]", '{"digest": "%s", "plan": {"items": 3}}'):
        plan_mod._CACHE.clear()
        digest = plan_mod._digest(GOOD)
        cache.write_text(damage.replace("%s", digest))
        assert plan_mod.current() == first
    plan_mod._CACHE.clear()
    (tmp_path / "plan.yaml").write_text(GOOD.replace("needs: [1]", "needs: [5]"))
    with pytest.raises(PlanError):
        plan_mod.current()       # a changed plan is checked again, never taken from the cache


def test_merge_keys_let_explicit_keys_win_and_a_second_document_is_named():
    text = GOOD.replace(
        "  - id: 1\n    title: one\n    workstream: a\n    estimate_days: 1\n",
        "  - &one\n    id: 1\n    title: one\n    workstream: a\n    estimate_days: 1\n")
    text = text.replace("  - id: 2\n    title: two\n    workstream: b\n    estimate_days: 2\n",
                        "  - <<: *one\n    id: 2\n    title: two\n    workstream: b\n    estimate_days: 2\n")
    plan = loads(text)
    assert plan.by_id[2].title == "two" and plan.by_id[2].tasks == ("t1",)   # merged, explicit keys win
    e = error_of(GOOD + "---\nitems: []\n")
    (p,) = e.problems
    assert p.line == 28 and "more than one YAML document" in p.message
