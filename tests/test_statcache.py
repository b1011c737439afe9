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


def _aged(f, seconds=60):
    """``f`` as if last written ``seconds`` ago (long settled)."""
    import os
    import time

    then = time.time_ns() - seconds * 1_000_000_000
    os.utime(f, ns=(then, then))


def test_a_changed_file_is_parsed_again_an_unchanged_one_is_not(cache, tmp_path, monkeypatch):
    f = tmp_path / "chartfile.yaml"
    f.write_text("requires: [{chart: a/b, version: 1}]\n")
    _aged(f)
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


def test_rewrites_within_one_timestamp_tick_are_never_served_stale(cache, tmp_path, monkeypatch):
    """A filesystem whose timestamps move by a coarse tick (older kernels: a jiffy; FAT, some
    network filesystems: seconds): every write of this test falls in one tick, so a same-size
    rewrite in place leaves inode, size, mtime and ctime as they were."""
    import os
    import time
    import types

    tick = time.time_ns()

    def coarse_stat(path):
        st = os.stat(path)
        return types.SimpleNamespace(st_ino=st.st_ino, st_size=st.st_size,
                                     st_mtime_ns=tick, st_ctime_ns=tick)

    monkeypatch.setattr(cache, "os", types.SimpleNamespace(stat=coarse_stat))
    f = tmp_path / "chartfile.yaml"
    for version in (1, 2, 3):
        f.write_text(f"requires: [{{chart: a/b, version: {version}}}]\n")   # same size each time
        assert cache.load_yaml(f)["requires"][0]["version"] == version
        cache._MEM.clear()                                                 # and in a new process
        assert cache.load_yaml(f)["requires"][0]["version"] == version


def test_the_plan_rewritten_within_one_timestamp_tick_is_read_again(tmp_path, monkeypatch):
    """plan.yaml read once per process (a long-running doit, the in-process tests) is read
    again after a same-size rewrite that leaves its whole stat as it was."""
    import os
    import time
    from pathlib import Path

    from tasks import plan as plan_mod

    tick = time.time_ns()

    class CoarsePath(type(Path())):
        def stat(self, **kw):
            st = os.stat(self)
            times = {"st_mtime_ns": tick, "st_ctime_ns": tick}
            return os.stat_result(tuple(st)[:7] + (0, 0, 0), times)

    monkeypatch.setattr(plan_mod, "_CACHE", {})
    f = CoarsePath(tmp_path / "plan.yaml")
    monkeypatch.setattr(plan_mod.paths, "plan_file", lambda: f)
    for title in ("one", "two", "six"):                       # the same size each time
        f.write_text("workstreams: [{id: a, title: A}]\nitems:\n"
                     f"  - {{id: 1, title: {title}, workstream: a, estimate_days: 1}}\n")
        assert plan_mod.current().by_id[1].title == title


def test_a_cache_entry_of_another_shape_is_a_miss_and_is_rewritten(cache, tmp_path):
    import json

    f = tmp_path / "chartfile.yaml"
    f.write_text("a: 1\n")
    _aged(f)
    assert cache.load_yaml(f) == {"a": 1}
    kept = tmp_path / "build/.cache/stat-yaml.json"
    stat = json.loads(kept.read_text())[str(f)]["stat"]
    for damage in (None, {"stat": stat}, {"stat": stat, "date": {"a": 2}}, [stat, {"a": 1}]):
        kept.write_text(json.dumps({str(f): damage}))
        cache._MEM.clear()
        assert cache.load_yaml(f) == {"a": 1}, damage
        assert json.loads(kept.read_text())[str(f)] == {"stat": stat, "data": {"a": 1}}
