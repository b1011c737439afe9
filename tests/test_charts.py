"""tasks/charts.py: the charts are those chartfile.yaml pins (no list kept beside it)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from support import REPO, run_doit, tool_or_fail
from tanka_fixtures import install_charts

EXTRA_PIN = """  - chart: example-charts/extra
    version: 0.3.1
    directory: extra
"""


@pytest.fixture
def charted(project, monkeypatch):
    """A project copy with the stand-in charts, as the process's project root."""
    install_charts(project)
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    return project


def test_a_chart_pinned_in_chartfile_is_vendored_checked_and_rendered_from(charted):
    from tasks import charts, render

    before = charts.chart_names()
    assert before and charts.charts_present() and charts.charts_at_pins()
    chartfile = charted / "tanka/chartfile.yaml"
    chartfile.write_text(chartfile.read_text() + EXTRA_PIN)

    assert charts.chart_names() == before + ["extra"]
    assert not charts.charts_present() and not charts.charts_at_pins()  # vendor:charts must run
    (vendor,) = charts.task_vendor()
    assert str(charted / "tanka/charts/extra/Chart.yaml") in vendor["targets"]
    assert "extra" in vendor["doc"]

    extra = charted / "tanka/charts/extra"
    extra.mkdir()
    (extra / "Chart.yaml").write_text("apiVersion: v2\nname: extra\nversion: 0.3.1\n")
    assert charts.charts_present() and charts.charts_at_pins()
    # its files are inputs of every render (a change to them renders again)
    assert "tanka/charts/extra/Chart.yaml" in render.render_inputs("local", [])
    (extra / "Chart.yaml").write_text("apiVersion: v2\nname: extra\nversion: 0.3.0\n")
    assert not charts.charts_at_pins()


def test_a_broken_chartfile_is_named_and_nothing_is_vendored(project):
    tool_or_fail("tk")
    tool_or_fail("helm")
    (project / "tanka/chartfile.yaml").write_text("requires:\n  - version: 1.0.0\n")
    listed = run_doit(project, "list")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    proc = run_doit(project, "vendor:charts")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out
    assert ("tanka/chartfile.yaml:2: requires entry 1 needs `chart: <repo>/<name>` and `version`"
            in out), out
    assert not (project / "tanka/charts").exists()


# --------------------------------------------------------------------------- hostile chartfiles

CHARTFILE = (REPO / "tanka/chartfile.yaml").read_text()


def _line(text: str, needle: str) -> int:
    """The last line with ``needle``."""
    return max(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture
def bare(tmp_path) -> Path:
    """A project root with only tanka/ (reading the chartfile needs no more)."""
    (tmp_path / "project/tanka").mkdir(parents=True)
    return tmp_path / "project"


def _problems(project: Path, text: str, monkeypatch, fetching=()):
    from tasks import charts

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    (project / "tanka/chartfile.yaml").write_text(text)
    with pytest.raises(charts.ChartfileError) as e:
        charts.read_chartfile(fetching) if fetching else charts.pinned_charts()
    msg = str(e.value)
    for p in e.value.problems:
        assert p.render("tanka/chartfile.yaml").startswith(f"tanka/chartfile.yaml:{p.line}:"), msg
        assert p.line >= 1 and p.render("tanka/chartfile.yaml") in msg
    assert len(msg) < 2000, msg
    return e.value.problems


@pytest.mark.parametrize("old, new", [
    ("directory: charts", "directory: ../../tanka"), ("directory: charts", "directory: .."),
    ("directory: charts", "directory: /tmp/elsewhere"),
    ("directory: charts", "directory: charts/../.."),
    ("directory: keda", "directory: ../../tanka"),
    ("directory: keda", "directory: ../../../victim"),
    ("directory: keda", "directory: /tmp/victim"), ("directory: keda", "directory: a/b"),
    ("directory: keda", "directory: .keda"), ("directory: keda", "directory: '..'"),
    ("directory: keda", "directory: '.'"), ("directory: keda", "directory: 'keda\\n'"),
    ("    directory: keda\n", ""),  # the name is the directory: checked as one
    ("chart: kedacore/keda", "chart: kedacore/../../victim"),
    ("chart: kedacore/keda", "chart: kedacore/keda/../.."),
    ("chart: kedacore/keda", "chart: ../../x/keda"),
    ("name: kedacore", "name: ../../../victim"),  # Helm names its cache files after it
    ("version: 2.20.2", "version: ../../x"), ("version: 2.20.2", "version: 2.0"),
], ids=lambda v: v.strip()[:40])
def test_every_path_in_the_chartfile_stays_in_tanka_charts(bare, monkeypatch, old, new):
    """Each path field (the charts' directory, each chart's directory or name, a repository's
    name) is one folder under tanka/charts/, or the file is refused at that field's line."""
    text = CHARTFILE.replace("directory: keda", "directory: keda")  # the real file, as pinned
    assert old in text
    if old == "    directory: keda\n":
        text = text.replace("chart: kedacore/keda", "chart: kedacore/../keda").replace(old, new)
        needle = "chart: kedacore/../keda"
    else:
        text = text.replace(old, new, 1)
        needle = new.strip()
    problems = _problems(bare, text, monkeypatch)
    assert any(p.line == _line(text, needle) for p in problems), problems


def _offline(text: str) -> str:
    """The chartfile with every repository on a closed loopback port (no network)."""
    import re

    return re.sub(r"url: (oci|https?)://\S+", lambda m: f"url: {m.group(1)}://127.0.0.1:9/charts",
                  text)


@pytest.fixture
def vendoring(charted, monkeypatch, tmp_path):
    """The stand-in charts vendored, tk and helm on PATH, Helm's homes in tmp_path."""
    bins = {str(Path(tool_or_fail(t)).parent) for t in ("tk", "helm")}
    monkeypatch.setenv("PATH", os.pathsep.join([*bins, os.environ.get("PATH", "")]))
    for home in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(home, str(tmp_path / home.lower()))
    return charted


@pytest.mark.parametrize("where", ["outside", "tanka"])
def test_a_chart_directory_outside_tanka_charts_deletes_nothing(vendoring, tmp_path, where):
    from tasks import charts

    victim = tmp_path / "victim" if where == "outside" else vendoring / "tanka"
    victim.mkdir(exist_ok=True)
    (victim / "keep").write_text("mine\n")
    rel = os.path.relpath(victim, vendoring / "tanka/charts")
    chartfile = vendoring / "tanka/chartfile.yaml"
    text = _offline(chartfile.read_text())
    chartfile.write_text(text.replace("directory: keda", f"directory: {rel}"))
    failed = charts._vendor_charts()
    assert (victim / "keep").read_text() == "mine\n"
    assert (vendoring / "tanka/charts/keda/Chart.yaml").is_file()
    assert f"tanka/chartfile.yaml:{_line(chartfile.read_text(), rel)}: " in failed.message


def _hidden(project: Path) -> list[str]:
    return sorted(p.name for p in (project / "tanka/charts").iterdir() if p.name.startswith("."))


def test_an_offline_pin_bump_keeps_the_vendored_chart(vendoring):
    from tasks import charts

    keda = vendoring / "tanka/charts/keda"
    before = sorted(str(p.relative_to(keda)) for p in keda.rglob("*"))
    chartfile = vendoring / "tanka/chartfile.yaml"
    text = _offline(chartfile.read_text())
    chartfile.write_text(text.replace("version: 2.20.2", "version: 2.20.3"))
    failed = charts._vendor_charts()
    assert sorted(str(p.relative_to(keda)) for p in keda.rglob("*")) == before
    assert "version: 2.20.2" in (keda / "Chart.yaml").read_text()
    assert failed is not None and "left as they were" in failed.message, failed
    assert _hidden(vendoring) == []


def _serve(directory: Path):
    """An HTTP server of ``directory`` on a loopback port, in a thread of this process."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_pin_bump_replaces_the_chart_once_the_new_one_is_downloaded(vendoring, tmp_path):
    """The new version is fetched into a temporary directory, then swapped in."""
    import tarfile

    import yaml

    from tasks import charts

    repo = tmp_path / "repo"
    repo.mkdir()
    (vendoring / "build").mkdir()  # where the parsed-YAML cache is kept
    src = vendoring / "tanka/charts/keda"
    meta = yaml.safe_load((src / "Chart.yaml").read_text())
    meta["version"] = "2.20.3"
    staged = tmp_path / "staged/keda"
    import shutil

    shutil.copytree(src, staged)
    (staged / "Chart.yaml").write_text(yaml.safe_dump(meta))
    (staged / "NEW").write_text("2.20.3\n")
    with tarfile.open(repo / "keda-2.20.3.tgz", "w:gz") as tar:
        tar.add(staged, arcname="keda")
    server = _serve(repo)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        entry = dict(meta, apiVersion=meta.get("apiVersion", "v2"), urls=[f"{url}/keda-2.20.3.tgz"])
        index = {"apiVersion": "v1", "entries": {"keda": [entry]}}
        (repo / "index.yaml").write_text(yaml.safe_dump(index))
        chartfile = vendoring / "tanka/chartfile.yaml"
        text = _offline(chartfile.read_text()).replace("version: 2.20.2", "version: 2.20.3")
        chartfile.write_text(text.replace("url: https://127.0.0.1:9/charts\n  - name: fluxcd",
                                          f"url: {url}\n  - name: fluxcd"))
        assert f"url: {url}" in chartfile.read_text()
        failed = charts._vendor_charts()
    finally:
        server.shutdown()
        server.server_close()
    assert failed is None, failed.message
    assert (src / "NEW").read_text() == "2.20.3\n" and charts.charts_at_pins()
    assert _hidden(vendoring) == []
    cache = (vendoring / "build/.cache/stat-yaml.json").read_text()
    assert "/tanka/charts/keda/Chart.yaml" in cache and ".vendor." not in cache  # no dead entry


def test_an_alias_bomb_is_refused_at_its_line_fast(bare, monkeypatch):
    """A few hundred bytes of aliases expand to millions of values in any reader that
    copies them (the parsed-YAML cache wrote 12 MB of it, a 1.4 KB one ran out of memory)."""
    project = bare
    (project / "build").mkdir()
    lines = ["a0: &a0 [" + ", ".join(["x"] * 8) + "]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 8) + "]" for n in range(1, 7)]
    text = CHARTFILE + "\n".join(lines) + "\n"
    start = time.monotonic()
    problems = _problems(project, text, monkeypatch)
    assert time.monotonic() - start < 2
    assert problems[0].line == _line(text, "a1: ") and "alias" in problems[0].message
    cache = project / "build/.cache/stat-yaml.json"
    assert not cache.exists() or cache.stat().st_size < 64 * 1024


@pytest.mark.parametrize("text, needle, what", [
    (CHARTFILE.replace("directory: gitea", "directory: redis"), "directory: redis", "also where"),
    (CHARTFILE.replace("chart: kedacore/keda", "chart: kedacores/keda"), "chart: kedacores/keda",
     "no repository"),
    (CHARTFILE.replace("directory: flux2", "directroy: flux2"), "directroy", "unknown key"),
    (CHARTFILE + "extra: 1\n", "extra: 1", "unknown key"),
    (CHARTFILE.split("requires:")[0] + "requires: 3\n", "requires: 3", "must be a list"),
    (CHARTFILE.replace("    version: 2.18.3", "    version: [2.18.3]\n    version: 2.18.4"),
     "version: 2.18.4", "duplicate key"),
    (CHARTFILE.replace("  - chart: kedacore/keda", "  - chart: kedacore/keda\n  x: [}"), "x: [}",
     "YAML"),
    (CHARTFILE.replace("url: https://kedacore.github.io/charts", "url: file:///etc"), "url: file",
     "address"),
    (CHARTFILE.replace("version: 2.18.3", "version: 0x" + "f" * 5000), "version: 0x", "too large"),
], ids=["directory-twice", "no-repository", "misspelt-key", "extra-key", "not-a-list",
        "duplicate-key", "syntax", "url", "huge-hex-version"])
def test_each_chartfile_problem_is_named_at_its_line(bare, monkeypatch, text, needle, what):
    fetching = {"keda"} if what == "no repository" else ()
    problems = _problems(bare, text, monkeypatch, fetching)
    assert any(p.line == _line(text, needle) and what in p.message for p in problems), problems


def test_a_chartfile_too_large_or_not_utf8_is_named_at_its_line(bare, monkeypatch):
    project = bare
    text = CHARTFILE + "# " + "x" * 100_000 + "\n"
    [p] = _problems(project, text, monkeypatch)
    assert p.line == _line(text, "# xxx") and "larger than" in p.message
    broken = CHARTFILE.encode().replace(b"directory: flux2", b"directory: flux\xff2")
    (project / "tanka/chartfile.yaml").write_bytes(broken)
    from tasks import charts

    with pytest.raises(charts.ChartfileError) as e:
        charts.pinned_charts()
    [p] = e.value.problems
    assert p.line == _line(CHARTFILE, "directory: flux2") and p.column


def test_a_chart_that_is_a_link_is_replaced_and_what_it_points_to_kept(charted, tmp_path,
                                                                        monkeypatch):
    """A vendored chart may be a link (to a chart kept elsewhere): a pin bump replaces the
    link with the downloaded chart and leaves the linked directory as it was."""
    import shutil
    import subprocess

    from tasks import charts

    elsewhere = tmp_path / "elsewhere/keda"
    shutil.move(charted / "tanka/charts/keda", elsewhere)
    (charted / "tanka/charts/keda").symlink_to(elsewhere, target_is_directory=True)
    before = sorted(p.name for p in elsewhere.rglob("*"))

    def tk(*args, cwd, **kw):  # what `tk tool charts vendor` leaves: the chart, downloaded
        chart = Path(cwd) / "charts/keda"
        chart.mkdir(parents=True)
        (chart / "Chart.yaml").write_text("name: keda\nversion: 2.20.3\n")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(charts, "tk", tk)
    chartfile = charted / "tanka/chartfile.yaml"
    chartfile.write_text(chartfile.read_text().replace("version: 2.20.2", "version: 2.20.3"))
    assert charts._vendor_charts() is None
    keda = charted / "tanka/charts/keda"
    assert not keda.is_symlink() and "2.20.3" in (keda / "Chart.yaml").read_text()
    assert sorted(p.name for p in elsewhere.rglob("*")) == before
    assert _hidden(charted) == []
