"""Documentation tasks: the generated plan document and the checks that keep docs honest."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from . import atomic, paths, tools
from .core import offline_check

PLAN_DOC = "docs/PLAN.md"
PLAN_SVG = "docs/plan.svg"
WORKFLOW = ".github/workflows/ci.yml"
_GENERATORS = ("tasks/report.py", "tasks/graph.py", "tasks/status.py", "tasks/plan.py")
_DOIT_COMMANDS = {"auto", "clean", "dumpdb", "forget", "help", "ignore", "info", "list", "reset-dep",
                  "run", "strace", "tabcompletion", "plan", "graph", "doctor", "tools"}
_VALUE_OPTIONS = {"-n", "--process", "-P", "--parallel-type", "-f", "--file", "-d", "--dir", "-r",
                  "--reporter", "-o", "--output-file", "--db-file", "--backend", "-v", "--verbosity",
                  "--format", "--output", "--sort", "--template", "--codec-cls", "--check_file_uptodate"}
_SHELL_LANGS = {"bash", "sh", "shell", "console"}

offline_check("docs:check", "docs:workflow", "docs:actionlint")


def _doit(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=paths.root(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"doit {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def plan_view():
    """The plan as the repository alone says it: no statuses, which are machine-local."""
    from .plan import current
    from .report import PlanView

    return PlanView.build(current())


def plan_document() -> str:
    """docs/PLAN.md as `doit docs:plan` writes it: reproducible from the repository."""
    return plan_view().markdown(paths.plan_file().read_text(encoding="utf-8"), statuses=False)


def _write_plan_docs():
    from doit.exceptions import TaskFailed

    from . import tools
    from .plan import PlanError

    try:
        atomic.write_text(paths.root() / PLAN_DOC, plan_document())
        dot_src = plan_view().dot(statuses=False)
    except PlanError as e:
        return TaskFailed(str(e))
    dot = tools.which("dot")
    if dot:
        svg = subprocess.run([dot, "-Tsvg"], input=dot_src.encode(), capture_output=True, check=True).stdout
        atomic.write_bytes(paths.root() / PLAN_SVG, svg)
    else:
        print("Graphviz `dot` is not installed: docs/plan.svg was not redrawn (apt-get install graphviz)")
    return None


def task_docs():
    """Documentation: generate the plan document, check the docs, check the CI workflow."""
    yield {
        "name": "plan",
        "doc": "Regenerate docs/PLAN.md (and docs/plan.svg with Graphviz) from plan.yaml alone "
               "(statuses are machine-local: `doit plan`)",
        "actions": [_write_plan_docs],
        "file_dep": ["plan.yaml", *_GENERATORS],
        "targets": [PLAN_DOC],
    }
    yield {
        "name": "check",
        "doc": "Check the docs: cited `doit` tasks exist, relative links resolve, shell blocks parse, PLAN.md is fresh.",
        "actions": [check_docs],
        "file_dep": _doc_files() + ["plan.yaml", "dodo.py", *sorted(_task_modules())],
        "verbosity": 2,
    }
    yield {
        "name": "workflow",
        "doc": "Validate .github/workflows/ci.yml against the GitHub workflow schema (offline).",
        "actions": [check_workflow],
        "file_dep": [WORKFLOW],
    }
    yield tools.needs({
        "name": "actionlint",
        "doc": "Lint the GitHub workflows with the pinned actionlint (expressions, action inputs, needs, "
               "runner labels; offline)",
        "actions": [check_actionlint],
        "file_dep": workflow_files() + [str(paths.root() / "tools" / "actionlint" / "go.mod")],
    }, "actionlint")


def workflow_files() -> list[str]:
    """The GitHub workflows (.github/workflows/*.yml and *.yaml), relative to the root."""
    root = paths.root()
    return sorted(str(p.relative_to(root)) for pattern in ("*.yml", "*.yaml")
                  for p in (root / ".github" / "workflows").glob(pattern) if p.is_file())


def _task_modules() -> list[str]:
    return [f"tasks/{p.name}" for p in (paths.root() / "tasks").glob("*.py")]


def _doc_files() -> list[str]:
    root = paths.root()
    files = []
    for pattern in ("*.md", "docs/**/*.md", "*/README.md", "docs/*.md"):
        files += [p for p in root.glob(pattern) if p.is_file()]
    skip = {root / PLAN_DOC}
    return sorted({str(p.relative_to(root)) for p in files if p not in skip})


# --------------------------------------------------------------------------- docs:check

# patterns, compiled by re on first use (re's own cache): a doit start that checks no docs compiles none
_FENCE = r"(?ms)^```([\w+-]*)[^\n]*\n(.*?)^```"
_LINK = r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)"
_DOIT_CALL = r"(?:^|[\s`(;&|$])doit(?=$|[\s`;&|)])((?:[ \t]+[^\s`|;&)#]+)*)"


_CODE_SPAN = r"`([^`\n]+)`"


def doit_citations(text: str, in_code_block: bool = False) -> list[list[str]]:
    """The argument lists of every ``doit ...`` call cited as code in a Markdown line:
    inside an inline code span, or anywhere on a line of a fenced code block."""
    if in_code_block:  # a shell line: what follows `#` is a comment, not a command
        spans = [re.split(r"(?:^|\s)#", text, maxsplit=1)[0]]
    else:
        spans = re.findall(_CODE_SPAN, text)
    calls = []
    for span in spans:
        for m in re.finditer(_DOIT_CALL, span):
            calls.append(m.group(1).split())
    return calls


def cited_tasks(args: list[str]) -> list[str]:
    """Task names a ``doit`` command line selects (options and VAR=value skipped)."""
    words, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a.startswith("-"):
            skip = "=" not in a and a in _VALUE_OPTIONS
        elif "=" not in a and not a.startswith(("<", "[")):
            words.append(a)
    if not words:
        return []
    if words[0] in _DOIT_COMMANDS:
        return words[1:] if words[0] in ("run", "info", "forget", "clean", "ignore") else []
    return words


def _shell_ok(code: str, lang: str) -> str:
    if lang == "console":
        code = "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ "))
    proc = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True)
    return proc.stderr.strip()


def task_names() -> list[str]:
    """Every task name (subtasks included, private ones not), as `doit list --all` shows them:
    the tasks this doit run loaded (tasks.loader), else those a `doit list` in the root lists
    (doit run with another loader). Raises RuntimeError when they cannot be listed."""
    from .loader import loaded_task_names

    names = loaded_task_names()
    if names is None:
        return _doit("list", "--all", "--quiet", "--sort", "name").split()
    return [n for n in names if not n.startswith("_")]


def check_docs():
    from doit.exceptions import TaskFailed

    root = paths.root()
    try:
        listed = task_names()
    except RuntimeError as e:  # the task list itself cannot be read: say so, as the check's failure
        return TaskFailed(f"docs:check could not list the tasks: {e}")
    known = set(listed) | {n.split(":", 1)[0] for n in listed}
    problems = []
    for rel in _doc_files():
        path = root / rel
        text = path.read_text(encoding="utf-8")
        fence = False
        for n, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("```"):
                fence = not fence
                continue
            for args in doit_citations(line, in_code_block=fence):
                for name in cited_tasks(args):
                    if "<" in name:   # a placeholder such as render:<env>: its group must exist
                        name = name.split(":", 1)[0]
                    if name not in known:
                        problems.append(f"{rel}:{n}: `doit {' '.join(args)}` cites task {name!r}, "
                                        "which does not exist (see `doit list --all`)")
            for target in re.findall(_LINK, line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                    continue
                file_part = target.split("#", 1)[0]
                if file_part and not (path.parent / file_part).exists():
                    problems.append(f"{rel}:{n}: link to {target!r} does not resolve")
        for m in re.finditer(_FENCE, text):
            lang = m.group(1).lower()
            if lang in _SHELL_LANGS:
                err = _shell_ok(m.group(2), lang)
                if err:
                    line_no = text[: m.start()].count("\n") + 1
                    problems.append(f"{rel}:{line_no}: the {lang} block does not parse: {err}")
    problems += plan_doc_problems(root)
    if problems:
        return TaskFailed("docs:check found problems:\n  " + "\n  ".join(problems))
    print(f"docs ok: {len(_doc_files())} files checked")
    return None


def plan_doc_problems(root: Path) -> list[str]:
    """docs/PLAN.md must be exactly what `doit docs:plan` makes of the current plan.yaml."""
    from .plan import PlanError

    doc = root / PLAN_DOC
    if not doc.exists():
        return [f"{PLAN_DOC} is missing: run `doit docs:plan` and commit it"]
    try:
        want = plan_document()
    except PlanError as e:
        return [str(e)]
    if doc.read_text(encoding="utf-8") != want:
        return [f"{PLAN_DOC} is stale: it is not what plan.yaml generates now (plan.yaml or the "
                "generator changed, or it was edited by hand); run `doit docs:plan` and commit it"]
    return []


# --------------------------------------------------------------------------- docs:workflow


def check_workflow():
    from doit.exceptions import TaskFailed

    path = paths.root() / WORKFLOW
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                           "vendor.github-workflows", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        return TaskFailed(f"{WORKFLOW} is not a valid GitHub workflow:\n{proc.stdout}{proc.stderr}")
    print(proc.stdout.strip())
    return None


def check_actionlint():
    """Run the pinned actionlint on every workflow. shellcheck and pyflakes, which actionlint
    runs on `run:` scripts when it finds them on PATH, are left out: they are not pinned, so
    the result would depend on the machine."""
    from doit.exceptions import TaskFailed

    files = workflow_files()
    proc = subprocess.run([tools.which("actionlint") or "actionlint", "-no-color", "-shellcheck=",
                           "-pyflakes=", *files], cwd=paths.root(), capture_output=True, text=True)
    if proc.returncode != 0:
        return TaskFailed(f"actionlint found problems in the workflows (file:line:column):\n"
                          f"{(proc.stdout + proc.stderr).strip()}")
    print(f"actionlint {tools.TOOLS['actionlint'].version}: {len(files)} workflow(s) ok")
    return None
