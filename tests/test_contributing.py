"""CONTRIBUTING.md's recipes, followed in a scratch copy of the project: each touches only the
files it names, and the task list, the checks and Tilt follow. The code blocks are read from
CONTRIBUTING.md itself, so the document and the test cannot drift apart."""
from __future__ import annotations

import json
import re

import pytest

from support import REPO, env_for, run_doit, tool_or_fail
from tanka_fixtures import install_charts, kubectl_shim

DOC = REPO / "CONTRIBUTING.md"


def section(title: str) -> str:
    text = DOC.read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"CONTRIBUTING.md has no section {title!r}"
    return m.group(1)


def blocks(text: str, lang: str) -> list[str]:
    """The fenced code blocks of ``lang`` in ``text`` (indented ones in lists included)."""
    out = []
    for m in re.finditer(rf"^( *)```{lang}\n(.*?)^\1```", text, re.M | re.S):
        indent = len(m.group(1))
        out.append("\n".join(line[indent:] for line in m.group(2).splitlines()) + "\n")
    return out


def listed_tasks(project) -> set[str]:
    r = run_doit(project, "list", "--all", "--quiet", "--sort", "name", check=True)
    return set(r.stdout.split())


@pytest.fixture
def charted(project):
    for name in ("tk", "helm"):
        tool_or_fail(name)
    install_charts(project)
    return project


def test_add_an_environment(charted, shims):
    project = charted
    body = section("Add an environment")
    [main] = blocks(body, "jsonnet")
    [entry] = blocks(body, "json")
    name = re.search(r"environment\.new\('([a-z0-9-]+)'", main).group(1)
    assert f"tanka/environments/<name>/main.jsonnet" in body

    before = listed_tasks(project)
    (project / "tanka" / "environments" / name).mkdir()
    (project / "tanka" / "environments" / name / "main.jsonnet").write_text(main)
    settings = json.loads((project / "deploy.json").read_text())
    settings["environments"].update(json.loads("{" + entry.strip() + "}"))
    (project / "deploy.json").write_text(json.dumps(settings, indent=2))

    after = listed_tasks(project)
    assert after - before == {f"{t}:{name}" for t in ("context", "render", "validate", "diff", "apply", "publish")}
    # pasted as written, it is formatted as tanka:fmt wants
    r = run_doit(project, f"render:{name}", f"validate:{name}", "tanka:fmt")
    assert r.returncode == 0, r.stdout + r.stderr
    # its properties, not its name, decide: confirm_apply asks for --yes before applying
    # (its context, which apply asks for first, is in the kubeconfig)
    kubectl_shim(shims)
    shims.set_state(contexts=[json.loads("{" + entry.strip() + "}")[name]["context"]])
    r = run_doit(project, f"apply:{name}", env=env_for(project, path_first=[shims.bin]))
    assert r.returncode != 0 and f"run `doit apply:{name} --yes`" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_an_environment_folder_without_settings_is_named_before_anything_runs(project):
    (project / "tanka" / "environments" / "qa").mkdir()
    (project / "tanka" / "environments" / "qa" / "main.jsonnet").write_text("{}\n")
    r = run_doit(project, "list")
    assert r.returncode == 2
    assert "deploy.json:" in r.stderr and "tanka/environments/qa/ has no entry in 'environments'" in r.stderr
    assert "Traceback" not in r.stderr


def test_add_a_library_test(project):
    tool_or_fail("tk")
    body = section("Add a library test")
    [suite] = blocks(body, "jsonnet")
    assert "tanka/tests/<name>_test.jsonnet" in body
    (project / "tanka" / "tests" / "contrib_test.jsonnet").write_text(suite)
    assert "libtest:contrib" in listed_tasks(project)
    r = run_doit(project, "libtest:contrib", "tanka:fmt")
    assert r.returncode == 0, r.stdout + r.stderr
    # and it really runs: a wrong expectation fails with both values
    (project / "tanka" / "tests" / "contrib_test.jsonnet").write_text(suite.replace("'raibid-server'", "'other'"))
    r = run_doit(project, "libtest:contrib")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "names are prefixed" in out and "other" in out and "Traceback" not in out
