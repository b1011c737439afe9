"""Property-based fuzzing of tanka/chartfile.yaml (Hypothesis), in process, through the
reader and through vendoring with a stand-in for tk.

Any input is a checked chartfile or a clean ChartfileError: never another exception (a
traceback), every problem named as ``tanka/chartfile.yaml:LINE`` in a message of bounded
length, no input over 2 s, the parsed-YAML cache (build/.cache/stat-yaml.json) small. A
chartfile that is accepted is then vendored with ``tk`` replaced by a function that does what
``tk tool charts vendor`` does to the paths it is given (removes each chart's directory and
writes the chart there): nothing outside tanka/charts/ changes, and nothing is left behind in
it. Inputs: random text, chartfile-shaped documents with hostile paths, structural mutations
and byte damage of the real file, alias and merge bombs, deep nesting, huge values.

With CI=1 (set by .ci/run) it runs more than 500 variants in all, derandomized.
"""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, strategies as st

from fuzzing import (alias_bomb, assert_enough_variants, assert_named, damage, damaged, documents,
                     fuzz_settings, huge, mutated, mutations, nested)
from support import REPO

FUZZ = fuzz_settings(90, 20, HealthCheck.function_scoped_fixture)

REAL_BYTES = (REPO / "tanka/chartfile.yaml").read_bytes()
REAL_DOC = yaml.safe_load(REAL_BYTES)
SOURCE = "tanka/chartfile.yaml"

PATHS = ["charts", "charts/", "./charts", "../../tanka", "..", ".", "/tmp/x", "a/b", ".hidden",
         "charts/../..", "~", "$HOME", "keda", "redis", "c:\\x", "..\\x", "charts\x00", "%2e%2e",
         "", " ", "keda\n", "x" * 70, "-", "é"]
CHARTS = ["kedacore/keda", "kedacore/../../x", "a/b/c", "x", "../x/y", "kedacore/.keda",
          "bitnami/redis", "nosuch/chart", "kedacore/", "/keda", "kedacore/keda\n"]
VERSIONS = ["2.20.2", "1.0", "../x", "v1", "1.0.0-rc.1+b", "", "latest", "1 0", "x" * 70]
KEYS = ["version", "directory", "repositories", "requires", "chart", "name", "url", "caFile",
        "username", "password", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10 ** 6), st.floats(),
                    st.text(max_size=10), st.sampled_from(PATHS + CHARTS + VERSIONS))
values = documents(scalars, KEYS, max_size=4, max_leaves=20)
pin = st.fixed_dictionaries({"chart": st.sampled_from(CHARTS)},
                            optional={"version": st.one_of(st.sampled_from(VERSIONS), scalars),
                                      "directory": st.one_of(st.sampled_from(PATHS), scalars)})
repository = st.fixed_dictionaries({"name": st.sampled_from(["kedacore", "bitnami", "../x", "a b",
                                                             "", "nosuch", "x" * 70])},
                                   optional={"url": st.sampled_from(["https://x.io/charts",
                                                                     "oci://r.io/c", "file:///etc",
                                                                     "http://127.0.0.1:9/c", ""]),
                                             "caFile": st.sampled_from(PATHS)})
chartfile_doc = st.fixed_dictionaries({}, optional={
    "version": st.one_of(st.just(1), scalars), "directory": st.sampled_from(PATHS),
    "repositories": st.one_of(st.lists(repository, max_size=3), values),
    "requires": st.one_of(st.lists(pin, max_size=4), values), "x": values})


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A project (tanka/, build/) beside a folder that must never change; the project is the
    process's project root while the module runs."""
    root = tmp_path_factory.mktemp("chartfile-fuzz")
    project = root / "project"
    (project / "tanka").mkdir(parents=True)
    (project / "build").mkdir()
    (project / "deploy.json").write_text("{}\n")
    (root / "victim").mkdir()
    (root / "victim" / "keep").write_text("mine\n")
    before = os.environ.get("RAIBID_DEPLOY_ROOT")
    os.environ["RAIBID_DEPLOY_ROOT"] = str(project)
    yield project
    if before is None:
        os.environ.pop("RAIBID_DEPLOY_ROOT", None)
    else:
        os.environ["RAIBID_DEPLOY_ROOT"] = before


def _tree(root: Path, *skip: Path) -> list:
    """Every path under ``root`` but those under ``skip``, with its size."""
    out = []
    for d, dirs, files in os.walk(root):
        if Path(d) in skip:
            dirs[:] = []
            continue
        out += [(os.path.join(d, f), os.path.getsize(os.path.join(d, f))) for f in files]
        out += [os.path.join(d, x) for x in dirs if Path(d, x) not in skip]
    return sorted(map(str, out))


def fake_tk(*args, cwd, **kw):
    """What ``tk tool charts vendor`` does to the paths of the chartfile in ``cwd``: each
    chart's directory is removed and written again (tanka/pkg/helm/charts.go)."""
    spec = json.loads((Path(cwd) / "chartfile.yaml").read_text())
    base = Path(cwd) / spec.get("directory", "charts")
    for r in spec["requires"]:
        target = Path(os.path.normpath(base / (r.get("directory") or r["chart"].split("/", 1)[1])))
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        (target / "Chart.yaml").write_text(f"name: x\nversion: {json.dumps(r['version'])}\n")
    return subprocess.CompletedProcess(["tk", *args], 0, "", "")


def check(sandbox: Path, data: bytes) -> None:
    from tasks import charts

    (sandbox / "tanka/chartfile.yaml").write_bytes(data)
    # what vendoring may change: tanka/charts/ and the caches in build/
    mine = (sandbox / "tanka" / "charts", sandbox / "build")
    outside = _tree(sandbox.parent, *mine)
    start = time.monotonic()
    try:
        cf = charts.read_chartfile()
    except charts.ChartfileError as e:
        assert_named(e, SOURCE)
        cf = None
    assert time.monotonic() - start < 2, "an input took 2 s"
    cache = sandbox / "build/.cache/stat-yaml.json"
    assert not cache.exists() or cache.stat().st_size < 256 * 1024
    if cf is None:
        return
    charts_dir = (sandbox / "tanka/charts").resolve()
    for p in cf.pins:
        assert (charts_dir / p.directory).resolve().parent == charts_dir
        assert not p.directory.startswith(".")
    with mock.patch.object(charts, "tk", fake_tk):
        failed = charts._vendor_charts()
    if failed is None:
        assert charts.charts_at_pins()
    else:
        assert f"{SOURCE}:" in failed.message, failed.message  # a repository not listed
    assert _tree(sandbox.parent, *mine) == outside
    if charts_dir.exists():  # the charts stay for the next input, as they would in a checkout
        assert [p.name for p in charts_dir.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- random input

@FUZZ
@given(text=st.text(max_size=300))
def test_any_text(sandbox, text):
    check(sandbox, text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(doc=chartfile_doc)
def test_chartfile_shaped_documents_with_hostile_paths(sandbox, doc):
    check(sandbox, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode())


# --------------------------------------------------------------------------- structural mutations

@FUZZ
@given(changes=mutations(REAL_DOC, st.one_of(st.sampled_from(PATHS + CHARTS + VERSIONS), values),
                         KEYS, ["delete", "replace", "replace", "duplicate", "rename"]))
def test_structural_mutations_of_the_real_chartfile(sandbox, changes):
    doc = mutated(REAL_DOC, changes)
    check(sandbox, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode())


# --------------------------------------------------------------------------- byte-level damage

CHUNKS = [b"\xff", b"\x00", b"\x07", b"\t", b"[", b"{", b"&a ", b"*a", b":", b"- ", b"../", b"/",
          b"..", b"'", b'"', b"\r", b"<<: *a\n"]


@FUZZ
@given(edits=damage(REAL_BYTES, CHUNKS))
def test_byte_level_damage_to_the_real_chartfile(sandbox, edits):
    check(sandbox, damaged(REAL_BYTES, edits))


# --------------------------------------------------------------------------- bombs and huge values

@FUZZ
@given(levels=st.integers(2, 12), fanout=st.integers(2, 12),
       kind=st.sampled_from(["list", "merge"]),
       where=st.sampled_from(["requires", "repositories", "extra", "directory"]))
def test_alias_and_merge_bombs(sandbox, levels, fanout, kind, where):
    lines, top = alias_bomb(levels, fanout, kind)
    text = REAL_BYTES.decode()
    if where == "extra":
        text += "\n".join(lines) + "\n"
    else:
        kept = [line for line in text.splitlines() if not line.startswith(f"{where}:")]
        text = "\n".join(lines + kept) + f"\n{where}: {top}\n"
    check(sandbox, text.encode())


@FUZZ
@given(depth=st.integers(1, 100_000), opener=st.sampled_from(["[", "{a: ", "- ", "[{a: ", "? "]),
       closed=st.booleans())
def test_deep_nesting(sandbox, depth, opener, closed):
    body = nested(opener, depth, closed, "x")
    check(sandbox, REAL_BYTES + b"x: " + body.encode() + b"\n")


@FUZZ
@given(field=st.sampled_from(["version: 2.20.2", "directory: keda", "chart: kedacore/keda",
                              "name: kedacore", "url: https://kedacore.github.io/charts"]),
       kind=st.sampled_from(["digits", "hex", "string", "list", "float"]),
       magnitude=st.integers(1, 6))
def test_huge_values(sandbox, field, kind, magnitude):
    # a string past 64 KiB is refused unread
    value = huge(kind, magnitude, chars=100_000, items=5_000)
    key = field.split(":")[0]
    check(sandbox, REAL_BYTES.replace(field.encode(), f"{key}: {value}".encode(), 1))


def test_the_fuzzer_runs_at_least_500_variants_in_ci():
    assert_enough_variants(globals(), FUZZ, 7)
