"""Any input gives a plan or a clean PlanError: never a traceback (Hypothesis)."""
import os

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from tasks.plan import Plan, PlanError, loads

settings.register_profile("ci", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=120, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

KEYS = ["settings", "workstreams", "items", "milestones", "success_criteria", "id", "title",
        "workstream", "estimate_days", "needs", "tasks", "items", "target_day", "must", "should",
        "nice", "text", "project", "environments", "registry_port", "kubernetes_version", "x"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 120), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["a", "b", "infra", "93", "#1"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)), max_leaves=25)


def check(text: str) -> None:
    try:
        result = loads(text)
    except PlanError as e:
        msg = str(e)
        assert msg.startswith("plan.yaml") and e.problems
        for p in e.problems:
            assert isinstance(p.line, int) and p.line >= 0 and p.message
    else:
        assert isinstance(result, Plan)


@given(st.text(max_size=300))
def test_any_text(text):
    check(text)


@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
def test_any_plan_shaped_document(doc):
    check(yaml.safe_dump(doc, allow_unicode=True))


item = st.fixed_dictionaries({
    "id": st.integers(0, 12), "title": st.sampled_from(["t", "", 3]),
    "workstream": st.sampled_from(["a", "b", "c"]),
    "estimate_days": st.one_of(st.floats(0, 5), st.just("x")),
    "needs": st.lists(st.integers(0, 12), max_size=3),
})


@given(st.lists(item, max_size=12))
def test_plans_with_random_needs_and_cycles(items):
    doc = {"workstreams": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}], "items": items}
    check(yaml.safe_dump(doc))
