"""Property-based fuzzing of plan.yaml (Hypothesis), in process, through the loader.

Any input gives a plan or a clean PlanError: never another exception (which would reach the
user as a traceback), and every problem names its place as
``plan.yaml:LINE`` (or ``plan.yaml:LINE:COLUMN``). Inputs: random text, random plan-shaped
documents, structural mutations of the real plan.yaml, byte-level damage to it, YAML bombs
(deep nesting, alias and merge-key expansion) and huge values.

In CI (CI=1, set by .ci/run) more than 500 seeded variants run in all, the same on every run
(derandomized), so a failure reproduces.
"""
import yaml
from hypothesis import example, given, strategies as st

from fuzzing import (alias_bomb, assert_enough_variants, assert_named, damage, damaged, documents,
                     fuzz_settings, huge, mutated, mutations, nested)
from support import REPO
from tasks.plan import Plan, PlanError, decode, loads

FUZZ = fuzz_settings(75, 40)

REAL_BYTES = (REPO / "plan.yaml").read_bytes()
REAL_DOC = yaml.safe_load(REAL_BYTES)

KEYS = ["settings", "workstreams", "items", "milestones", "success_criteria", "id", "title",
        "workstream", "estimate_days", "needs", "tasks", "items", "target_day", "must", "should",
        "nice", "text", "project", "environments", "registry_port", "kubernetes_version", "registry",
        "namespace", "cluster", "x"]

ODD_STRINGS = ["", " ", "[/]", "[bold]x", "a | b", "..", "/etc", "*", "a:b", "my env", "../../tanka",
               "Local", "1.40.0", "banana", "v1.33", "https://r.io:5000/x", "é", "\t", "a\nb", "#1",
               "x" * 70, "-", "null", "~", "0x1F", "1e400", "&a", "*a", "!!python/object:os.system"]
huge_ints = st.one_of(st.integers(), st.integers(min_value=10 ** 20, max_value=10 ** 40),
                      st.sampled_from([10 ** 4299, -(10 ** 500), 2 ** 63, -1, 0]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 120), huge_ints,
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(ODD_STRINGS))
values = documents(scalars, KEYS, max_size=5, max_leaves=25)


def check(text: str) -> None:
    """The properties every input must have."""
    try:
        result = loads(text)
    except PlanError as e:
        assert_named(e, "plan.yaml")
    else:
        assert isinstance(result, Plan)


def check_bytes(data: bytes) -> None:
    try:
        text = decode(data)
    except PlanError as e:
        (p,) = e.problems
        assert p.line >= 1 and p.column >= 1 and f"plan.yaml:{p.line}:{p.column}: " in str(e)
        return
    check(text)


# --------------------------------------------------------------------------- random input

@FUZZ
@given(st.text(max_size=300))
def test_any_text(text):
    check(text)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
def test_any_plan_shaped_document(doc):
    check(yaml.safe_dump(doc, allow_unicode=True))


item = st.fixed_dictionaries({
    "id": st.integers(0, 12), "title": st.sampled_from(["t", "", 3, "[/]"]),
    "workstream": st.sampled_from(["a", "b", "c"]),
    "estimate_days": st.one_of(st.floats(0, 5), st.just("x")),
    "needs": st.lists(st.integers(0, 12), max_size=3),
})


@FUZZ
@given(st.lists(item, max_size=12))
def test_plans_with_random_needs_and_cycles(items):
    doc = {"workstreams": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}], "items": items}
    check(yaml.safe_dump(doc))


# --------------------------------------------------------------------------- structural mutations

@FUZZ
@given(mutations(REAL_DOC, values, KEYS))
def test_structural_mutations_of_the_real_plan(changes):
    check(yaml.safe_dump(mutated(REAL_DOC, changes), allow_unicode=True, sort_keys=False))


# --------------------------------------------------------------------------- byte-level damage

CHUNKS = [b"\xff", b"\xc3", b"\x00", b"\x07", b"\x1b", b"\xef\xbf\xbe", b"\t", b"[", b"{", b"&a",
          b"*a", b":", b"- ", b"\r", b"\xe2\x80\xa8", b"'", b'"']


@FUZZ
@given(damage(REAL_BYTES, CHUNKS))
def test_byte_level_damage_to_the_real_plan(edits):
    check_bytes(damaged(REAL_BYTES, edits))


# --------------------------------------------------------------------------- bombs and huge values

HEAD = "workstreams: [{id: w, title: W}]\nitems:\n  - {id: 1, title: a, workstream: w, estimate_days: 1}\n"


@FUZZ
@given(st.integers(1, 200_000), st.sampled_from(["[", "{a: ", "- ", "[{a: ", "? "]), st.booleans())
def test_deep_nesting(depth, opener, closed):
    check(HEAD + "settings:\n  project: " + nested(opener, depth, closed, "x") + "\n")


@FUZZ
@given(st.integers(2, 12), st.integers(2, 12), st.sampled_from(["list", "merge"]),
       st.sampled_from(["settings", "items", "workstreams", "extra"]))
def test_alias_and_merge_bombs(levels, fanout, kind, where):
    lines, top = alias_bomb(levels, fanout, kind)
    doc = "\n".join(lines) + "\n"
    doc += {"settings": f"settings: {top}\n" + HEAD, "items": "workstreams: []\nitems: " + top + "\n",
            "workstreams": f"workstreams: {top}\nitems: []\n", "extra": HEAD}[where]
    check(doc)


@example(field="target_day", kind="digits", magnitude=3)  # its message once showed all digits
@FUZZ
@given(st.sampled_from(["id", "estimate_days", "title", "needs", "tasks", "registry_port", "kubernetes_version",
                        "environments", "target_day"]),
       st.sampled_from(["digits", "hex", "string", "list", "float"]), st.integers(1, 6))
def test_huge_values(field, kind, magnitude):
    value = huge(kind, magnitude)
    if field in ("registry_port", "kubernetes_version", "environments"):
        text = f"settings:\n  {field}: {value}\n" + HEAD
    elif field == "target_day":
        text = HEAD + f"milestones:\n  - {{id: m, title: M, items: [1], target_day: {value}}}\n"
    else:
        text = HEAD + f"  - {{id: 2, title: b, workstream: w, estimate_days: 1, {field}: {value}}}\n"
    check(text)


def test_the_profile_runs_at_least_500_variants_in_ci():
    assert_enough_variants(globals(), FUZZ, 8)
