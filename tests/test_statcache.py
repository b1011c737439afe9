"""tasks/statcache.py: small YAML files kept parsed by their stat, never served stale."""
from __future__ import annotations

import pytest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    from tasks import statcache

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(tmp_path))
    monkeypatch.setattr(statcache, "_MEM", {})
    (tmp_path / "build").mkdir()
    return statcache


def test_a_changed_file_is_parsed_again_an_unchanged_one_is_not(cache, tmp_path, monkeypatch):
    f = tmp_path / "chartfile.yaml"
    f.write_text("requires: [{chart: a/b, version: 1}]\n")
    assert cache.load_yaml(f) == {"requires": [{"chart": "a/b", "version": 1}]}
    assert (tmp_path / "build/.cache/stat-yaml.json").is_file()
    monkeypatch.setattr(cache, "_MEM", {})  # a new process: from the cache file, no parser
    import yaml

    monkeypatch.setattr(yaml, "load", lambda *a, **k: pytest.fail("parsed an unchanged file"))
    assert cache.load_yaml(f)["requires"][0]["version"] == 1
    monkeypatch.undo()
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(tmp_path))
    f.write_text("requires: [{chart: a/b, version: 2}]\n")  # same size: the stat still differs
    assert cache.load_yaml(f)["requires"][0]["version"] == 2


def test_bad_yaml_is_a_value_error_and_a_damaged_cache_is_ignored(cache, tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("a: [\n")
    with pytest.raises(ValueError):
        cache.load_yaml(f)
    (tmp_path / "build/.cache").mkdir(parents=True, exist_ok=True)
    (tmp_path / "build/.cache/stat-yaml.json").write_text("{ damaged")
    cache._MEM.clear()
    f.write_text("a: 1\n")
    assert cache.load_yaml(f) == {"a": 1}


def test_nothing_is_written_without_a_build_directory(tmp_path, monkeypatch):
    from tasks import statcache

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(tmp_path))
    monkeypatch.setattr(statcache, "_MEM", {})
    f = tmp_path / "x.yaml"
    f.write_text("a: 1\n")
    assert statcache.load_yaml(f) == {"a": 1} and not (tmp_path / "build").exists()
