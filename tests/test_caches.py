"""Every cache under build/ that raibid-deploy reads is only a cache: an entry of any other
shape (`null`, a number, an object for a list, nesting deeper than Python's JSON reader
goes, binary garbage) is a miss, computed again and written again, never a traceback
(issue 25, C.12)."""
from __future__ import annotations

import json
import os
import time

import pytest
import yaml

DAMAGES = {"null": "null", "number": "3", "string": '"text"', "object": "{}", "list": "[]",
           "numbers": "[1, 2]", "fields": '{"digest": null, "tasks": "ab", "plan": 3}',
           "docs": '[{"kind": "Z"}]', "deep-list": "[" * 100_000, "deep-object": '{"a":' * 100_000,
           "binary": "\0\xff\xfe not json"}


def _damage(files, text: str) -> None:
    for f in files:
        f.write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(tmp_path))
    (tmp_path / "build").mkdir()
    return tmp_path


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES)
def test_statcache(root, monkeypatch, damage):
    from tasks import statcache

    monkeypatch.setattr(statcache, "_MEM", {})
    f = root / "chartfile.yaml"
    f.write_text("requires: [{chart: a/b, version: 1}]\n")
    then = time.time_ns() - 60 * 10**9
    os.utime(f, ns=(then, then))
    want = statcache.load_yaml(f)
    kept = root / "build/.cache/stat-yaml.json"
    _damage([kept], damage)
    statcache._MEM.clear()
    assert statcache.load_yaml(f) == want
    assert json.loads(kept.read_text())[str(f)]["data"] == want          # written again


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES)
def test_parsed_yaml(root, damage):
    from tasks import manifests

    d = root / "build/manifests/x"
    d.mkdir(parents=True)
    files = [d / "a.yaml", d / "b.yaml"]
    files[0].write_text("kind: A\n---\nkind: B\n")
    label = "tanka.dev/environment: 0123456789abcdef0"
    files[1].write_text(f"kind: C\nmetadata:\n  labels:\n    {label}\n")
    want = [manifests.file_docs(f) for f in files]
    kept = list((root / "build/.cache/yaml").iterdir())
    _damage(kept, damage)
    assert [manifests.file_docs(f) for f in files] == want
    assert all(isinstance(manifests._read_entry(k), list) for k in kept)       # written again


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES)
def test_crd_index(root, damage):
    from tasks import manifests

    d = root / "build/crds"
    d.mkdir(parents=True)
    (d / "a.yaml").write_text(yaml.safe_dump({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "spec": {"group": "example.dev", "names": {"kind": "A"}, "versions": [
            {"name": "v1", "served": True, "schema": {"openAPIV3Schema": {"type": "object"}}}]}}))
    want = manifests.crd_dir_index(d)
    _damage([d / manifests.CRD_INDEX_FILE], damage)
    assert manifests.crd_dir_index(d) == want
    assert "digest" in json.loads((d / manifests.CRD_INDEX_FILE).read_text())


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES)
def test_schema_valid_memo(root, damage):
    from tasks import manifests

    manifests._store_valid({"k1", "k2"})
    assert manifests._load_valid() == {"k1", "k2"}
    _damage([manifests._valid_file()], damage)
    assert manifests._load_valid() <= {"1", "2"} or manifests._load_valid() == set()


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES)
def test_list_order(root, damage):
    from tasks import cmd_list
    from tasks.plan import loads

    text = ("workstreams: [{id: a, title: A}]\nitems:\n"
            "  - {id: 1, title: one, workstream: a, estimate_days: 1, tasks: [x, y]}\n")
    cache = root / "build/.list-order.json"
    want = cmd_list.task_order(loads(text), text, cache)
    _damage([cache], damage)
    assert cmd_list.task_order(loads(text), text, cache) == want
    assert json.loads(cache.read_text())["tasks"] == want


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES)
def test_plan_cache(root, monkeypatch, damage):
    from tasks import plan as plan_mod

    monkeypatch.setattr(plan_mod, "_CACHE", {})
    monkeypatch.setattr(plan_mod, "CACHE_MIN_BYTES", 0)
    (root / "plan.yaml").write_text("workstreams: [{id: a, title: A}]\nitems:\n"
                                    "  - {id: 1, title: one, workstream: a, estimate_days: 1}\n")
    want = plan_mod.current()
    cache = root / "build/.plan-cache.json"
    _damage([cache], damage)
    plan_mod._CACHE.clear()
    assert plan_mod.current().by_id[1].title == want.by_id[1].title
    assert json.loads(cache.read_text())["plan"]
