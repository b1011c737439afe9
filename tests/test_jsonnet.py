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


def test_files_under_lists_a_tree_in_walk_order_without_hidden_or_linked_directories(tmp_path):
    from tasks.tanka import files_under

    for rel in ("b.libsonnet", "a.jsonnet", "z/inner.jsonnet", "c/deeper/x.jsonnet", "c/y.txt",
                ".git/skip.jsonnet", "c/.hidden/skip.jsonnet", ".visible-file.jsonnet"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}\n")
    (tmp_path / "link").symlink_to(tmp_path / "z", target_is_directory=True)
    (tmp_path / "file-link.jsonnet").symlink_to(tmp_path / "a.jsonnet")
    got = [p[len(str(tmp_path)) + 1:] for p in files_under(tmp_path, tmp_path / "missing")]
    assert got == [".visible-file.jsonnet", "a.jsonnet", "b.libsonnet", "file-link.jsonnet",
                   "c/y.txt", "c/deeper/x.jsonnet", "z/inner.jsonnet"]
    only = [p[len(str(tmp_path)) + 1:] for p in files_under(tmp_path / "c", suffixes=(".jsonnet",))]
    assert only == ["c/deeper/x.jsonnet"]
    assert files_under(tmp_path / "a.jsonnet") == []  # a file is not a directory to list
