"""docs:plan, docs:check and docs:workflow through real doit runs on a project copy."""
import os

import pytest

from support import REPO, env_for, run_doit
from tasks.docs import cited_tasks, doit_citations


def test_citations_are_parsed_like_a_shell_would():
    text = "run `doit up` then `doit -n 2 image:server image:agent`; `doit plan --format json`"
    calls = doit_citations(text)
    assert [cited_tasks(c) for c in calls] == [["up"], ["image:server", "image:agent"], []]
    assert cited_tasks(["run", "-a", "render:local"]) == ["render:local"]
    assert cited_tasks(["RAIBID_ENV=prod"]) == []
    assert doit_citations("`pydoit` is not `doit-like`") == []
    assert doit_citations("prose: the doit tasks of this project") == []
    assert doit_citations("doit up", in_code_block=True) == [["up"]]
    assert doit_citations("python bench/core.py  # doit list, a no-op doit", in_code_block=True) == []


def test_what_docs_check_accepts_is_what_the_tool_takes():
    """Placeholders, generated paths, options of a task and of a command: not problems."""
    from tasks import docs

    tasks = {"apply:prod": {"--yes"}, "apply": set(), "render:local": set(), "render": set()}
    for ok in (["apply:prod", "--yes"], ["apply:<env>", "--yes"], ["-n", "2", "render:local"],
               ["plan", "--format", "json|markdown"], ["tools", "--force", "control-plane"],
               ["help", "plan"], ["tools", "[TOOL|GROUP|all", "...]"]):
        assert docs.citation_problems(ok, tasks) == [], ok
    assert docs.path_problems(["build/manifests/<env>/", "tanka/charts/", "secrets.local.json",
                               "tools/<name>/go.mod", "docker/compose.yaml:LINE", ".tools/bin",
                               "kustomization.yaml", "../raibid-ci"], REPO) == []


def test_docs_check_passes_on_a_clean_copy(project):
    proc = run_doit(project, "docs:check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "docs ok" in proc.stdout


def test_docs_check_knows_the_tasks_the_run_loaded_else_asks_doit_list(project):
    """The task names docs:check accepts are what `doit list --all` lists: the tasks the run
    itself loaded (no second doit process), or, when another loader ran, a `doit list`."""
    from tasks import docs, loader

    listed = run_doit(project, "list", "--all", "--quiet", "--sort", "name", check=True).stdout.split()
    assert {"docs:check", "render", "ci"} <= set(listed)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        mp.delenv("RAIBID_DEPLOY_ROOT", raising=False)
        assert sorted(docs.task_names()) == listed      # recorded by the in-process run above
        mp.setattr(loader, "_loaded", None)              # as if doit ran with another loader
        mp.setenv("PYTHONPATH", str(project))
        assert docs.task_names() == listed


@pytest.mark.parametrize("addition, expected", [
    ("Run `doit nosuch:task` to fail.\n", "cites task 'nosuch:task', which does not exist"),
    ("Run `doit nosuch:<env>` to fail.\n", "cites task 'nosuch', which does not exist"),
    ("```bash\ndoit render:local nosuch\n```\n", "cites task 'nosuch', which does not exist"),
    ("See [the guide](docs/NOPE.md).\n", "link to 'docs/NOPE.md' does not resolve"),
    ("```bash\nif then fi (\n```\n", "the bash block does not parse"),
    # commands, options, their values and arguments: what doit itself parses
    ("Show it: `doit plan --format yaml`.\n",
     "--format yaml is not one of dot, json, markdown, mermaid"),
    ("List: `doit list --everything`.\n", "`doit list` has no option --everything"),
    ("Deploy: `doit apply:prod --confirm`.\n", "task apply:prod has no parameter --confirm"),
    ("Build: `doit tools kubectl`.\n", "'kubectl' is not a Go-built tool or group of `doit tools`"),
    ("Read `doit help nosuch`.\n", "'nosuch' is neither a doit command nor a task"),
    ("Run `doit doctor --fix`.\n", "`doit doctor` has no option --fix"),
    ("The check `tilt:chek` loads it.\n",
     "`tilt:chek` names task 'tilt:chek', which does not exist"),
    # paths and file names cited as code
    ("Edit `tanka/lib/raibid/nosuch.libsonnet`.\n", "names a path that does not exist"),
    ("```bash\npython bench/nosuch.py\n```\n",
     "`bench/nosuch.py` names a path that does not exist"),
    ("The settings are in `plan.yml`.\n", "`plan.yml` names a file that is nowhere in the project"),
])
def test_docs_check_names_each_problem_with_file_and_line(project, addition, expected):
    readme = project / "README.md"
    lines = readme.read_text().count("\n")
    readme.write_text(readme.read_text() + addition)
    proc = run_doit(project, "docs:check")
    assert proc.returncode != 0
    assert expected in proc.stdout
    assert f"README.md:{lines + 1}:" in proc.stdout or f"README.md:{lines + 2}:" in proc.stdout


def test_plan_doc_goes_stale_when_plan_yaml_changes(project):
    plan = project / "plan.yaml"
    plan.write_text(plan.read_text().replace("estimate_days: 0.5\n", "estimate_days: 0.75\n", 1))
    proc = run_doit(project, "docs:check")
    assert proc.returncode != 0 and "docs/PLAN.md is stale" in proc.stdout
    run_doit(project, "docs:plan", check=True)
    assert "0.75d" in (project / "docs" / "PLAN.md").read_text()
    assert run_doit(project, "docs:check").returncode == 0
    again = run_doit(project, "docs:plan", check=True)
    assert "nothing to do" in again.stdout


def test_the_plan_document_is_reproducible_from_the_repository_alone(project):
    """docs/PLAN.md is committed: `doit docs:plan` in a fresh clone gives it byte for byte,
    whatever the machine's build state (`doit plan` shows the statuses)."""
    committed = (REPO / "docs" / "PLAN.md").read_bytes()
    run_doit(project, "docs:plan", check=True)
    assert (project / "docs" / "PLAN.md").read_bytes() == committed
    run_doit(project, "docs:workflow", "tanka:fmt", check=True)   # tasks items name now ran
    proc = run_doit(project, "docs:plan", check=True)
    assert "nothing to do" in proc.stdout
    run_doit(project, "forget", "docs:plan", check=True)
    run_doit(project, "docs:plan", check=True)
    assert (project / "docs" / "PLAN.md").read_bytes() == committed
    assert run_doit(project, "docs:check").returncode == 0


def test_a_hand_edit_of_the_plan_document_is_stale(project):
    doc = project / "docs" / "PLAN.md"
    doc.write_text(doc.read_text().replace("Critical path", "Critical  path", 1))
    proc = run_doit(project, "docs:check")
    assert proc.returncode != 0 and "docs/PLAN.md is stale" in proc.stdout


def test_workflow_is_validated_against_the_github_schema(project):
    assert run_doit(project, "docs:workflow").returncode == 0
    wf = project / ".github" / "workflows" / "ci.yml"
    wf.write_text(wf.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest", 1))
    proc = run_doit(project, "docs:workflow")
    assert proc.returncode != 0 and "is not a valid GitHub workflow" in proc.stdout


def test_workflow_runs_the_same_steps_as_ci_run(project):
    import yaml

    wf = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    steps = " ".join(s.get("run", "") for s in wf["jobs"]["test"]["steps"])
    # `doit tools all`: the control plane too, which the tests need with RAIBID_REQUIRE_TOOLS=1
    for cmd in ("pip install -e '.[test]'", "doit tools all", "doit doctor", "doit", "pytest"):
        assert cmd in steps
    assert "RAIBID_REQUIRE_TOOLS" in wf["jobs"]["test"]["env"]
    apt = next(s["run"] for s in wf["jobs"]["test"]["steps"] if "apt-get install" in s.get("run", ""))
    assert "etcd-server" in apt and "redis-server" in apt
    ci_run = (project / ".ci" / "run").read_text()
    for cmd in ("pip install -q --disable-pip-version-check -e '.[test]'", "doit tools all", "doit doctor",
                "pytest"):
        assert cmd in ci_run
    assert wf["jobs"]["tanka"]["if"] == "needs.changes.outputs.tanka == 'true'"


def test_the_workflow_vendors_renders_and_validates_and_watches_the_task_modules(project):
    """A skipped check is not a pass: the test job vendors the charts before `doit`, so
    render:* and validate:* run in CI; the tanka job runs on any change of what renders."""
    import fnmatch

    import yaml

    wf = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    runs = [s.get("run", "") for s in wf["jobs"]["test"]["steps"]]
    lines = [line.strip() for r in runs for line in r.splitlines()]
    assert "doit vendor:charts" in lines and "doit" in lines
    assert lines.index("doit vendor:charts") < lines.index("doit")
    filters = yaml.safe_load(next(s for s in wf["jobs"]["changes"]["steps"]
                                  if s.get("id") == "filter")["with"]["filters"])["tanka"]
    watched = ["plan.yaml", "dodo.py", "pyproject.toml",
               *(str(p.relative_to(project)) for p in (project / "tasks").glob("*.py"))]
    assert [f for f in watched if not any(fnmatch.fnmatch(f, pat) for pat in filters)] == []
    # rendered local Secrets never go into a cache
    cached = next(s for s in wf["jobs"]["test"]["steps"] if "build" in str(s.get("with", {}).get("path")))
    assert "!build/manifests/local" in cached["with"]["path"].split()


def test_the_quick_start_makes_a_venv_before_pip_install():
    """Debian's system pip refuses to install (PEP 668): the first command is a venv."""
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = quick.split("```bash\n", 1)[1].split("```", 1)[0]
    venv = block.find("python3 -m venv")
    assert venv != -1 and venv < block.find("pip install"), block
    assert ". .venv/bin/activate" in block


def test_actionlint_checks_the_workflows(project):
    """The pinned actionlint (tools/actionlint) is part of the default run and reports a
    workflow problem the schema check lets pass, as file:line:column."""
    from support import tool_or_fail

    tool_or_fail("actionlint")
    from tasks.core import CI_CHECKS

    assert "docs:actionlint" in CI_CHECKS
    run_doit(project, "docs:actionlint", check=True)
    wf = project / ".github" / "workflows" / "ci.yml"
    text = wf.read_text()
    wf.write_text(text.replace("${{ github.ref_name }}", "${{ github.nosuch_context }}", 1))
    schema = run_doit(project, "docs:workflow")
    assert schema.returncode == 0, schema.stdout   # valid by the schema
    proc = run_doit(project, "docs:actionlint")
    assert proc.returncode != 0
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if "${{ github.ref_name }}" in ln)
    out = proc.stdout + proc.stderr
    assert f".github/workflows/ci.yml:{line}:" in out, out


def test_actionlint_missing_is_named_with_how_to_build_it(project, tmp_path):
    link = project / ".tools"
    if link.is_symlink():
        link.unlink()  # only the link: the checkout's tools are not touched
    (tmp_path / "empty").mkdir()
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if p and not os.access(os.path.join(p, "actionlint"), os.X_OK))
    proc = run_doit(project, "docs:actionlint", env=env_for(project, {"PATH": path}))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "actionlint v1.7.12" in out and "doit tools actionlint" in out, out
