"""Property-based fuzzing of plan.yaml (Hypothesis), in process, through the loader.

Any input gives a plan or a clean PlanError: never another exception (which would reach the
user as a traceback), and every problem names its place as
``plan.yaml:LINE`` (or ``plan.yaml:LINE:COLUMN``). Inputs: random text, random plan-shaped
documents, structural mutations of the real plan.yaml, byte-level damage to it, YAML bombs
(deep nesting, alias and merge-key expansion) and huge values.

The ``ci`` profile (CI=1, set by .ci/run) runs more than 500 variants in all, derandomized:
the same seeded variants on every run, so a failure reproduces.
"""
import os

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from support import REPO
from tasks.plan import Plan, PlanError, decode, loads

settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

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
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)), max_leaves=25)


def check(text: str) -> None:
    """The properties every input must have."""
    try:
        result = loads(text)
    except PlanError as e:
        msg = str(e)
        assert msg.startswith("plan.yaml: ") and e.problems
        for p in e.problems:
            assert isinstance(p.line, int) and p.line >= 1 and p.message, msg
            where = f"plan.yaml:{p.line}:{p.column}: " if p.column else f"plan.yaml:{p.line}: "
            assert where in msg or e.problems.index(p) >= 100, (where, msg)
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

@given(st.text(max_size=300))
def test_any_text(text):
    check(text)


@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
def test_any_plan_shaped_document(doc):
    check(yaml.safe_dump(doc, allow_unicode=True))


item = st.fixed_dictionaries({
    "id": st.integers(0, 12), "title": st.sampled_from(["t", "", 3, "[/]"]),
    "workstream": st.sampled_from(["a", "b", "c"]),
    "estimate_days": st.one_of(st.floats(0, 5), st.just("x")),
    "needs": st.lists(st.integers(0, 12), max_size=3),
})


@given(st.lists(item, max_size=12))
def test_plans_with_random_needs_and_cycles(items):
    doc = {"workstreams": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}], "items": items}
    check(yaml.safe_dump(doc))


# --------------------------------------------------------------------------- structural mutations

def _paths(node, prefix=()):
    """Every path into the document (keys and list indexes)."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


REAL_PATHS = [p for p in _paths(REAL_DOC) if p]


def _copy(node):
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


def _mutate(doc, path, op, value, key):
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "replace":
        parent[last] = value
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(last, _copy(parent[last]))
    elif op == "duplicate" and isinstance(parent, dict):
        parent[key] = _copy(parent[last])
    elif op == "rename" and isinstance(parent, dict):
        parent[key] = parent.pop(last)
    elif op == "wrap":
        parent[last] = [parent[last]]


mutation = st.tuples(st.sampled_from(REAL_PATHS),
                     st.sampled_from(["delete", "replace", "replace", "duplicate", "rename", "wrap"]),
                     values, st.sampled_from(KEYS))


@given(st.lists(mutation, min_size=1, max_size=4))
def test_structural_mutations_of_the_real_plan(mutations):
    doc = _copy(REAL_DOC)
    for path, op, value, key in mutations:
        try:
            _mutate(doc, path, op, value, key)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or changed what this path pointed into
    check(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


# --------------------------------------------------------------------------- byte-level damage

damage = st.tuples(st.integers(0, len(REAL_BYTES)), st.sampled_from(["flip", "insert", "delete", "truncate"]),
                   st.binary(min_size=1, max_size=4) | st.sampled_from(
                       [b"\xff", b"\xc3", b"\x00", b"\x07", b"\x1b", b"\xef\xbf\xbe", b"\t", b"[", b"{", b"&a", b"*a",
                        b":", b"- ", b"\r", b"\xe2\x80\xa8", b"'", b'"']))


@given(st.lists(damage, min_size=1, max_size=5))
def test_byte_level_damage_to_the_real_plan(edits):
    data = bytearray(REAL_BYTES)
    for pos, op, chunk in edits:
        pos = min(pos, len(data))
        if op == "flip" and pos < len(data):
            data[pos] ^= chunk[0] or 0x80
        elif op == "insert":
            data[pos:pos] = chunk
        elif op == "delete":
            del data[pos:pos + len(chunk)]
        elif op == "truncate":
            del data[pos:]
    check_bytes(bytes(data))


# --------------------------------------------------------------------------- bombs and huge values

HEAD = "workstreams: [{id: w, title: W}]\nitems:\n  - {id: 1, title: a, workstream: w, estimate_days: 1}\n"


@given(st.integers(1, 200_000), st.sampled_from(["[", "{a: ", "- ", "[{a: ", "? "]), st.booleans())
def test_deep_nesting(depth, opener, closed):
    closer = {"[": "]", "{a: ": "}", "[{a: ": "}]"}.get(opener, "")
    body = opener * depth + "x" + (closer * depth if closed else "")
    check(HEAD + "settings:\n  project: " + body + "\n")


@given(st.integers(2, 12), st.integers(2, 12), st.sampled_from(["list", "merge"]),
       st.sampled_from(["settings", "items", "workstreams", "extra"]))
def test_alias_and_merge_bombs(levels, fanout, kind, where):
    lines = ["a0: &a0 {" + ", ".join(f"k{i}: {i}" for i in range(fanout)) + "}"]
    for n in range(1, levels):
        refs = ", ".join([f"*a{n - 1}"] * fanout)
        lines.append(f"a{n}: &a{n} [{refs}]" if kind == "list" else f"a{n}: &a{n}\n  <<: [{refs}]")
    top = f"*a{levels - 1}"
    doc = "\n".join(lines) + "\n"
    doc += {"settings": f"settings: {top}\n" + HEAD, "items": "workstreams: []\nitems: " + top + "\n",
            "workstreams": f"workstreams: {top}\nitems: []\n", "extra": HEAD}[where]
    check(doc)


@given(st.sampled_from(["id", "estimate_days", "title", "needs", "tasks", "registry_port", "kubernetes_version",
                        "environments", "target_day"]),
       st.sampled_from(["digits", "hex", "string", "list", "float"]), st.integers(1, 6))
def test_huge_values(field, kind, magnitude):
    size = 10 ** magnitude
    value = {"digits": "9" * min(size, 20_000), "hex": "0x" + "f" * min(size, 20_000),
             "string": '"' + "x" * size + '"',
             "list": "[" + ", ".join(["1"] * min(size, 20_000)) + "]", "float": "1e" + "9" * magnitude}[kind]
    if field in ("registry_port", "kubernetes_version", "environments"):
        text = f"settings:\n  {field}: {value}\n" + HEAD
    elif field == "target_day":
        text = HEAD + f"milestones:\n  - {{id: m, title: M, items: [1], target_day: {value}}}\n"
    else:
        text = HEAD + f"  - {{id: 2, title: b, workstream: w, estimate_days: 1, {field}: {value}}}\n"
    check(text)


def test_the_profile_runs_at_least_500_variants_in_ci():
    tests = [v for k, v in globals().items() if k.startswith("test_") and hasattr(v, "hypothesis")]
    if os.environ.get("CI"):
        assert len(tests) * settings.get_profile("ci").max_examples >= 500
    assert len(tests) >= 8
