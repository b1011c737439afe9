"""tasks/jsonnet.py: the library test suites are the tanka/tests/*_test.jsonnet on disk."""
from __future__ import annotations

from support import run_doit, tool_or_fail

SUITE = """local t = import 'test.libsonnet';
{
  'adds numbers': t.eq(1 + 1, %s),
}
"""


def test_a_new_library_test_suite_runs_with_no_other_edit(project, monkeypatch):
    tool_or_fail("tk")
    tool_or_fail("helm")
    from tasks import jsonnet

    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    suite = project / "tanka/tests/foo_test.jsonnet"
    assert "foo" not in jsonnet.libtests()
    suite.write_text(SUITE % "3")
    assert "foo" in jsonnet.libtests()

    # the default `ci` runs the group `libtest`, which now holds libtest:foo
    info = run_doit(project, "info", "libtest")
    assert "libtest:foo" in info.stdout, info.stdout + info.stderr  # (exit 1: not up to date)
    ci = run_doit(project, "info", "ci")
    assert " - libtest\n" in ci.stdout, ci.stdout
    # and it really evaluates the suite: a failing case fails, readably, a fixed one passes
    proc = run_doit(project, "libtest:foo")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out
    assert "adds numbers" in out and "expected 3" in out and "actual   2" in out, out
    suite.write_text(SUITE % "2")
    proc = run_doit(project, "libtest:foo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
