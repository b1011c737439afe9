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
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from fuzzing import (assert_enough_variants, assert_named, damage, damaged, documents,
                     fuzz_settings, huge, mutated, mutations, nested)
from support import REPO
from tasks.settings import Settings, SettingsError, environments_on_disk, load, loads

FUZZ = fuzz_settings(110, 25)

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
values = documents(scalars, KEYS, max_size=5, max_leaves=25)


def check(text: str) -> None:
    """The properties every input must have."""
    start = time.monotonic()
    try:
        result = loads(text, on_disk=ON_DISK)
    except SettingsError as e:
        assert_named(e, "deploy.json")
    else:
        assert isinstance(result, Settings)
    assert time.monotonic() - start < 2, "an input took 2 s"


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

@FUZZ
@given(mutations(REAL_DOC, values, KEYS))
def test_structural_mutations_of_the_real_settings(changes):
    check(json.dumps(mutated(REAL_DOC, changes), indent=2, ensure_ascii=False))


# --------------------------------------------------------------------------- byte-level damage

REAL_BYTES = REAL_TEXT.encode()
CHUNKS = [b"\xff", b"\xc3", b"\x00", b"{", b"[", b"}", b'"', b",", b":", b"\\", b"\\u00",
          b"\\ud800", b"\xef\xbb\xbf", b'"registry_port": 1,', b"9" * 5000]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("settings-fuzz")


@FUZZ
@given(edits=damage(REAL_BYTES, CHUNKS))
def test_byte_level_damage_to_the_real_settings(scratch, edits):
    f = scratch / "deploy.json"
    f.write_bytes(damaged(REAL_BYTES, edits))
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
    doc = json.loads(REAL_TEXT)
    doc[key] = "@"
    check(json.dumps(doc, indent=2).replace('"@"', nested(opener, depth, closed, "1")))


@FUZZ
@given(st.sampled_from(["project", "registry_port", "kubernetes_version", "environments",
                        "key", "env-name", "context"]),
       st.sampled_from(["digits", "string", "list", "float", "escapes"]), st.integers(1, 6))
def test_huge_values(field, kind, magnitude):
    if kind == "escapes":
        value = '"' + "\\u0041" * min(10 ** magnitude, 50_000) + '"'
    else:
        value = huge(kind, magnitude, digits=200_000, items=100_000, sep=",")
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
        assert_named(e, "deploy.json")
        assert any("duplicate key" in p.message for p in e.problems), str(e)[:2000]
    else:
        raise AssertionError("a duplicate key was accepted")


def test_the_fuzzer_runs_at_least_500_variants_in_ci():
    assert_enough_variants(globals(), FUZZ, 7)
