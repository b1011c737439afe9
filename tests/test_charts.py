"""tasks/charts.py: the charts are those chartfile.yaml pins (no list kept beside it)."""
from __future__ import annotations

import pytest

from support import run_doit, tool_or_fail
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
    assert "tanka/chartfile.yaml: requires entry 1 needs `chart: <repo>/<name>` and `version`" in out, out
    assert not (project / "tanka/charts").exists()
