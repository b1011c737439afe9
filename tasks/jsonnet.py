"""Jsonnet checks of the Tanka project: ``tanka:fmt`` (``tk fmt --test``), the library
tests ``libtest:<name>`` (tanka/tests/<name>_test.jsonnet, evaluated by ``tk eval``), and
``tanka:manifests``, every environment rendered and validated.

``tanka:manifests`` needs the vendored charts, which a clean clone without network
lacks: the ``ci`` task includes it only when the charts are present (it says so
otherwise).
"""
from __future__ import annotations

import json
from pathlib import Path

from doit.exceptions import TaskFailed

from . import core, paths, tools
from .charts import charts_present
from .tanka import files_under, jsonnet_sources, tk

#: how a library test suite is named: tanka/tests/<name>_test.jsonnet runs as libtest:<name>
SUITE_SUFFIX = "_test.jsonnet"

# "libtest" is the group of every libtest:<name>, whichever suites are on disk
core.offline_check("tanka:fmt", "libtest", "tanka:manifests")


def _fmt_check():
    proc = tk("fmt", "--test", ".")
    if proc.returncode == 0:
        return None
    if proc.returncode == 16:
        files = [line.strip() for line in (proc.stdout + proc.stderr).splitlines()
                 if line.strip().endswith((".jsonnet", ".libsonnet"))]
        listed = "\n".join(f"  tanka/{f}" if not f.startswith("tanka/") else f"  {f}" for f in files)
        return TaskFailed("jsonnet files are not formatted:\n"
                          f"{listed or (proc.stdout + proc.stderr).strip()}\n"
                          f"Fix (from the project root): {fmt_fix_command()}")
    return TaskFailed(f"`tk fmt --test` failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr).strip()}")


def fmt_fix_command() -> str:
    """The command that formats the jsonnet files, as it runs in the user's shell from the
    project root: the tk every task runs, which `doit tools` put in .tools/bin (not on the
    shell's PATH)."""
    import shlex

    exe = tools.which("tk")
    if exe is None or exe == str(paths.tools_bin() / "tk"):
        exe = str((paths.tools_bin() / "tk").relative_to(paths.root()))
    return f"{shlex.quote(exe)} fmt tanka/"


def test_file(name: str) -> Path:
    return paths.tanka() / "tests" / f"{name}{SUITE_SUFFIX}"


def libtests() -> list[str]:
    """The library test suites on disk: tanka/tests/<name>_test.jsonnet (a new one runs
    with no other edit)."""
    return sorted(p.name[: -len(SUITE_SUFFIX)] for p in (paths.tanka() / "tests").glob(f"*{SUITE_SUFFIX}")
                  if p.is_file())


def run_libtest(name: str):
    """Evaluate one jsonnet test suite and report every failing case readably.

    A suite evaluates to ``{ 'case name': t.eq(actual, expected) or t.ok(bool), ... }``
    (tanka/tests/test.libsonnet); a jsonnet error (a failed ``assert``) fails too.
    """
    f = test_file(name)
    if not f.is_file():
        return TaskFailed(f"no test suite {paths.rel(f)}: libtest:{name} needs it")
    proc = tk("eval", str(f.relative_to(paths.tanka())))
    if proc.returncode != 0:
        return TaskFailed(f"libtest:{name}: {paths.rel(f)} does not evaluate:\n{proc.stderr.strip()}")
    try:
        cases = json.loads(proc.stdout)
    except ValueError:
        return TaskFailed(f"libtest:{name}: {paths.rel(f)} did not evaluate to JSON:\n{proc.stdout[:2000]}")
    if not isinstance(cases, dict) or not cases:
        return TaskFailed(f"libtest:{name}: {paths.rel(f)} must evaluate to a non-empty object of test cases")
    failed = []
    for case, result in cases.items():
        if not (isinstance(result, dict) and "ok" in result):
            failed.append(f"  {case}: not a test result (use t.eq or t.ok from test.libsonnet)")
        elif result["ok"] is not True:
            if "expected" in result:
                failed.append(f"  {case}:\n      expected {json.dumps(result['expected'], sort_keys=True)}\n"
                              f"      actual   {json.dumps(result.get('actual'), sort_keys=True)}")
            else:
                failed.append(f"  {case}: {result.get('message', 'false')}")
    if failed:
        return TaskFailed(f"libtest:{name}: {len(failed)} of {len(cases)} cases failed ({paths.rel(f)}):\n"
                          + "\n".join(failed))
    print(f"libtest:{name}: {len(cases)} cases passed")
    return None


def task_tanka():
    """Tanka project checks: jsonnet formatting and the validated renders."""
    yield tools.needs({
        "name": "fmt",
        "doc": "Check jsonnet formatting with `tk fmt --test` (fix: .tools/bin/tk fmt tanka/)",
        "actions": [_fmt_check],
        "file_dep": jsonnet_sources(),
        "verbosity": 1,
    }, "tk")
    if charts_present():
        yield {
            "name": "manifests",
            "doc": "Render and validate every environment (part of `ci` when the charts are vendored)",
            "actions": None,
            "task_dep": [f"validate:{e}" for e in core.environments()],
        }
    else:
        yield {
            "name": "manifests",
            "doc": "Render and validate every environment: skipped until `doit vendor:charts` ran",
            "actions": [core.skip_action("tanka:manifests: charts are not vendored (tanka/charts/); "
                                         "render and validate are skipped. Run `doit vendor:charts` "
                                         "(needs network once), then `doit` again.")],
            "uptodate": [False],
            "verbosity": 2,
        }


def task_libtest():
    """Run the jsonnet library tests (tanka/tests/<name>_test.jsonnet)."""
    libs = files_under(paths.tanka() / "lib") + files_under(paths.tanka() / "tests")
    for name in libtests():
        yield tools.needs({
            "name": name,
            "doc": f"Library tests of {name} (tanka/tests/{name}_test.jsonnet)",
            "actions": [(run_libtest, [name])],
            "file_dep": sorted(set(libs + [str(test_file(name))])),
            "verbosity": 1,
        }, "tk", "helm")
