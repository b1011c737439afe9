"""Property-based fuzzing of deploy.json (Hypothesis), in process, through the loader.

Any input gives settings or a clean SettingsError: never another exception (which would
reach the user as a traceback), every problem names its place as ``deploy.json:LINE`` (or
``deploy.json:LINE:COLUMN``), the message stays short and no input takes 2 s. Inputs:
random text, random settings-shaped documents, structural mutations of the real
deploy.json, byte-level damage to it, deep nesting, huge numbers, keys and strings, and
duplicate keys.

With CI=1 (set by .ci/run) it runs more than 500 variants in all, derandomized: the same
seeded variants on every run, so a failure reproduces.
"""
import json
import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from support import REPO
from tasks.settings import Settings, SettingsError, environments_on_disk, load, loads

EXAMPLES = 110 if os.environ.get("CI") else 25
FUZZ = hsettings(max_examples=EXAMPLES, deadline=None, derandomize=True, print_blob=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

REAL_TEXT = (REPO / "deploy.json").read_text()
REAL_DOC = json.loads(REAL_TEXT)
ON_DISK = environments_on_disk(REPO)

KEYS = ["project", "namespace", "cluster", "registry", "registry_port", "kubernetes_version",
        "environments", "kind", "context", "confirm_apply", "image_policy", "local", "staging",
        "prod", "x", "", "Local", "my env"]
ODD_STRINGS = ["", " ", "raibid-ci\n", "raibid-ci", "local", "remote", "pinned", "any", "1.33.0",
               "1.33.0\n", "v1.33", "http://reg:5000", "a/b", "../../tanka", "é", "\t", "\x00",
               "\ud800", "x" * 70, "-", "null", "k3d-raibid-ci", " ctx", "ctx\r\n", "1e400"]
huge_ints = st.one_of(st.integers(), st.sampled_from([10 ** 40, -(10 ** 30), 2 ** 63, 0, 65536]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), huge_ints,
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(ODD_STRINGS))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)), max_leaves=25)


def check(text: str) -> None:
    """The properties every input must have."""
    start = time.monotonic()
    try:
        result = loads(text, on_disk=ON_DISK)
    except SettingsError as e:
        _rejected(e)
    else:
        assert isinstance(result, Settings)
    assert time.monotonic() - start < 2, "an input took 2 s"


def _rejected(e: SettingsError) -> None:
    msg = str(e)
    assert msg.startswith("deploy.json: ") and e.problems
    assert len(msg) < 101 * 1000, len(msg)  # at most 100 problems shown, each a line or two
    for p in e.problems[:100]:
        assert isinstance(p.line, int) and p.line >= 1 and p.message, msg[:2000]
        assert p.render("deploy.json") in msg and len(p.render("deploy.json")) < 1000, p
        assert p.render("deploy.json").startswith(f"deploy.json:{p.line}:")


# --------------------------------------------------------------------------- random input

@FUZZ
@given(st.text(max_size=300))
def test_any_text(text):
    check(text)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=7), st.booleans())
def test_any_settings_shaped_document(doc, indent):
    check(json.dumps(doc, indent=2 if indent else None, ensure_ascii=False, allow_nan=True))


# --------------------------------------------------------------------------- structural mutations

def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))


REAL_PATHS = [p for p in _paths(REAL_DOC) if p]


def _mutate(doc, path, op, value, key):
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "replace":
        parent[last] = value
    elif op == "duplicate":
        parent[key] = json.loads(json.dumps(parent[last]))
    elif op == "rename":
        parent[key] = parent.pop(last)
    elif op == "wrap":
        parent[last] = [parent[last]]


mutation = st.tuples(st.sampled_from(REAL_PATHS),
                     st.sampled_from(["delete", "replace", "replace", "duplicate", "rename",
                                      "wrap"]),
                     values, st.sampled_from(KEYS))


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=4))
def test_structural_mutations_of_the_real_settings(mutations):
    doc = json.loads(REAL_TEXT)
    for path, op, value, key in mutations:
        try:
            _mutate(doc, path, op, value, key)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or changed what this path pointed into
    check(json.dumps(doc, indent=2, ensure_ascii=False))


# --------------------------------------------------------------------------- byte-level damage

REAL_BYTES = REAL_TEXT.encode()
damage = st.tuples(st.integers(0, len(REAL_BYTES)),
                   st.sampled_from(["flip", "insert", "delete", "truncate"]),
                   st.binary(min_size=1, max_size=4) | st.sampled_from(
                       [b"\xff", b"\xc3", b"\x00", b"{", b"[", b"}", b'"', b",", b":", b"\\",
                        b"\\u00", b"\\ud800", b"\xef\xbb\xbf", b'"registry_port": 1,',
                        b"9" * 5000]))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("settings-fuzz")


@FUZZ
@given(edits=st.lists(damage, min_size=1, max_size=5))
def test_byte_level_damage_to_the_real_settings(scratch, edits):
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
    f = scratch / "deploy.json"
    f.write_bytes(bytes(data))
    start = time.monotonic()
    try:
        load(f, on_disk=ON_DISK)
    except SettingsError as e:
        msg = str(e)
        for p in e.problems:
            assert p.line >= 1 and f"deploy.json:{p.line}:" in msg, msg[:2000]
    assert time.monotonic() - start < 2


# --------------------------------------------------------------------------- bombs and huge values

@FUZZ
@given(st.integers(1, 40_000), st.sampled_from(["[", '{"a": ', '{"environments": ']),
       st.booleans(), st.sampled_from(["project", "registry_port", "environments"]))
def test_deep_nesting(depth, opener, closed, key):
    closer = "]" if opener == "[" else "}"
    doc = json.loads(REAL_TEXT)
    doc[key] = "@"
    body = opener * depth + "1" + (closer * depth if closed else "")
    check(json.dumps(doc, indent=2).replace('"@"', body))


@FUZZ
@given(st.sampled_from(["project", "registry_port", "kubernetes_version", "environments",
                        "key", "env-name", "context"]),
       st.sampled_from(["digits", "string", "list", "float", "escapes"]), st.integers(1, 6))
def test_huge_values(field, kind, magnitude):
    size = 10 ** magnitude
    value = {"digits": "9" * min(size, 200_000), "string": json.dumps("x" * size),
             "list": "[" + ",".join(["1"] * min(size, 100_000)) + "]",
             "float": "1e" + "9" * magnitude,
             "escapes": '"' + "\\u0041" * min(size, 50_000) + '"'}[kind]
    key = value if kind in ("string", "escapes") else json.dumps(value)
    doc = json.loads(REAL_TEXT)
    if field == "key":
        doc["@"] = 1
        text = json.dumps(doc, indent=2).replace('"@"', key)
    elif field == "env-name":
        doc["environments"]["@"] = {"kind": "remote", "context": "c"}
        text = json.dumps(doc, indent=2).replace('"@"', key)
    elif field == "context":
        doc["environments"]["staging"]["context"] = "@"
        text = json.dumps(doc, indent=2).replace('"@"', value)
    else:
        doc[field] = "@"
        text = json.dumps(doc, indent=2).replace('"@"', value)
    check(text)


#: the lines of the real file with a key and a value that is not an object or list
SCALAR_LINES = [i for i, line in enumerate(REAL_TEXT.splitlines())
                if re.match(r'\s*"[^"]+": [^{\[]', line)]


@FUZZ
@given(st.lists(st.sampled_from(SCALAR_LINES), min_size=1, max_size=5, unique=True), st.booleans())
def test_duplicate_keys_are_named(chosen, same_value):
    """Each chosen key is written a second time, just before the first: always a problem."""
    lines = REAL_TEXT.splitlines()
    for i in sorted(chosen, reverse=True):
        line = lines[i].rstrip(",")
        lines.insert(i, (line if same_value else re.sub(r": .*", ': "x"', line)) + ",")
    try:
        loads("\n".join(lines), on_disk=ON_DISK)
    except SettingsError as e:
        _rejected(e)
        assert any("duplicate key" in p.message for p in e.problems), str(e)[:2000]
    else:
        raise AssertionError("a duplicate key was accepted")


def test_the_fuzzer_runs_at_least_500_variants_in_ci():
    tests = [v for k, v in globals().items() if k.startswith("test_") and hasattr(v, "hypothesis")]
    if os.environ.get("CI"):
        assert len(tests) * EXAMPLES >= 500
    assert len(tests) >= 7
