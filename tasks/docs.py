"""Documentation tasks: the generated plan document and the checks that keep docs honest."""
from __future__ import annotations

import fnmatch
import functools
import os
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
#: the commands whose positional arguments are task names
_TASK_ARGS = {"run", "info", "forget", "clean", "ignore", "strace", "list", "reset-dep"}
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
        "doc": "Check the docs: cited `doit` commands, tasks, options and paths exist, relative "
               "links resolve, shell blocks parse, PLAN.md is fresh.",
        "actions": [check_docs],
        # what it checks against: the task creators, doit's commands (pyproject.toml), what is
        # generated (.gitignore) and the file names the code uses
        "file_dep": _doc_files() + ["plan.yaml", "dodo.py", "pyproject.toml", ".gitignore",
                                    "Tiltfile", *sorted(_task_modules())],
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
        "doc": "Lint the GitHub workflows with the pinned actionlint (expressions, action "
               "inputs, needs, runner labels; offline)",
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
    return [word for kind, word, _ in _parse_citation(args) if kind == "task"]


@functools.lru_cache(maxsize=4)
def doit_commands(root: Path | None = None) -> dict[str, dict[str, object]]:
    """Every doit command of this project (doit's own and the plugins of pyproject.toml) ->
    its options, as ``{"--long": CmdOption, "-s": CmdOption}``: what doit itself parses."""
    from doit.doit_cmd import DoitConfig, DoitMain, get_loader

    main = DoitMain(config_filenames=())
    # doit reads [tool.doit] only of a file named exactly "pyproject.toml" (in the cwd)
    pyproject = str((root or paths.root()) / "pyproject.toml")
    toml = DoitConfig().load_config_toml(pyproject, "tool.doit")
    for section, values in toml.items():
        main.config[section].update(values)
    sub = main.get_cmds()
    loader = get_loader(main.config, None, sub)
    out = {}
    for name in sub:
        cmd = sub.get_plugin(name)(task_loader=loader, config=main.config, bin_name="doit",
                                   cmds=sub)
        opts = {}
        for opt in cmd.get_options():
            opts.update({f"--{opt.long}": opt} if opt.long else {})
            opts.update({f"-{opt.short}": opt} if opt.short else {})
        out[name] = opts
    return out


def _takes_value(opt) -> bool:
    return getattr(opt, "type", None) is not bool


def _placeholder(word: str) -> bool:
    """A word of a usage line, not a value: <env>, [TOOL ...], TOOL|GROUP, ..."""
    return word.startswith(("<", "[", "{")) or "..." in word or word.endswith("]")


def _parse_citation(args: list[str]):
    """(kind, word, scope) for each word of a cited ``doit`` command line: kind is
    "command", "task", "option" (scope: the command or task it belongs to), "value" (scope:
    its option), "arg" (a positional argument of a command: scope the command) or "var"."""
    commands = doit_commands()
    words = [a for a in args if not _placeholder(a)]
    out = []
    command = "run"
    if words and not words[0].startswith("-") and words[0] in commands:
        command = words.pop(0)
        out.append(("command", command, None))
    scope, pending = command, None
    for word in words:
        if pending is not None:
            out.append(("value", word, pending))
            pending = None
        elif word.startswith("-"):
            flag = word.split("=", 1)[0]
            out.append(("option", flag, scope))
            opt = commands[command].get(flag) if scope == command else None
            if opt is not None and _takes_value(opt) and "=" not in word:
                pending = opt
        elif "=" in word:
            out.append(("var", word, None))
        elif command in _TASK_ARGS:
            out.append(("task", word, None))
            scope = word
        else:
            out.append(("arg", word, command))
    return out


def citation_problems(args: list[str], tasks: dict[str, set[str]]) -> list[str]:
    """What is wrong with a cited ``doit`` command line: a command or task that does not
    exist, an option the command (or, after a task, the task's parameters) does not have, a
    value outside an option's choices, or an argument `doit tools`/`doit help` rejects.
    ``tasks``: task name -> its parameters' flags (`--yes`)."""
    commands = doit_commands()
    groups = {n.split(":", 1)[0] for n in tasks}
    call = f"`doit {' '.join(args)}`"
    problems = []

    def task_flags(name: str) -> set[str] | None:
        if "<" in name:  # render:<env>: what any task of its group takes
            base = name.split(":", 1)[0]
            return set().union(*(f for n, f in tasks.items() if n.split(":", 1)[0] == base))
        return tasks.get(name)

    for kind, word, scope in _parse_citation(args):
        if kind == "task":
            name = word.split(":", 1)[0] if "<" in word else word
            if name not in tasks and name not in groups:
                problems.append(f"{call} cites task {name!r}, which does not exist "
                                "(see `doit list --all`)")
        elif kind == "option":
            if scope in commands:
                if word not in commands[scope]:
                    problems.append(f"{call}: `doit {scope}` has no option {word} "
                                    f"(see `doit help {scope}`)")
            elif (flags := task_flags(scope)) is not None and word not in flags:
                problems.append(f"{call}: task {scope} has no parameter {word} "
                                f"(see `doit help {scope}`)")
        elif kind == "value" and getattr(scope, "choices", None):
            allowed = {c[0] if isinstance(c, (tuple, list)) else c for c in scope.choices}
            for value in word.split("|"):
                if value not in allowed:
                    choices = ", ".join(sorted(allowed))
                    problems.append(f"{call}: --{scope.long} {value} is not one of {choices}")
        elif kind == "arg":
            if scope == "help":
                if word not in commands and word not in tasks and word not in groups:
                    problems.append(f"{call}: {word!r} is neither a doit command nor a task")
            elif scope == "tools":
                if word not in tools.go_tool_args():
                    problems.append(f"{call}: {word!r} is not a Go-built tool or group of "
                                    "`doit tools`")
            else:
                problems.append(f"{call}: `doit {scope}` takes no argument {word!r}")
    return problems


# --------------------------------------------------------------------------- paths cited


@functools.lru_cache(maxsize=4)
def _ignore_patterns(root: Path) -> tuple[str, ...]:
    """The patterns of ``root``'s .gitignore (read once, as :func:`project_files` walks once)."""
    try:
        lines = (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    except OSError:
        return ()
    return tuple(ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith(("#", "!")))


def ignored(rel: str, patterns) -> bool:
    """Whether ``rel`` (a path relative to the root, maybe a glob) is generated or
    downloaded: under a .gitignore pattern (``/build/``, ``secrets.local.json``, ...)."""
    parts = [p for p in rel.split("/") if p]
    for pattern in patterns:
        pat = pattern.rstrip("/")
        if pat.startswith("/") or "/" in pat:
            pat = pat.lstrip("/")
            if any(fnmatch.fnmatchcase("/".join(parts[:k]), pat) for k in range(1, len(parts) + 1)):
                return True
        elif any(fnmatch.fnmatchcase(part, pat) for part in parts):
            return True
    return False


#: kinds of file this project keeps: a bare name of one of them cited in the docs must exist
_FILE_NAME = r"^[\w.-]+\.(?:json|ya?ml|jsonnet|libsonnet|toml|md|py|Dockerfile|dockerignore|cfg)$"
#: a cited word that may be a path: no URL, option, variable, home or absolute path
_NOT_A_PATH = r"://|^[-$~/]|^\.\.|[@=*?%]|^\w+:"


@functools.lru_cache(maxsize=4)
def project_files(root: Path) -> tuple[frozenset, frozenset]:
    """The top-level names and the file basenames of the project (generated and downloaded
    ones left out)."""
    patterns = _ignore_patterns(root)
    tops, names = set(), set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if d != ".git"
                       and not ignored(f"{rel_dir}{d}/", patterns)
                       and not os.path.islink(os.path.join(dirpath, d))]
        kept = [f for f in filenames if not ignored(rel_dir + f, patterns)]
        names.update(kept)
        if not rel_dir:
            tops.update(dirnames + kept)
    return frozenset(tops), frozenset(names)


def path_problems(words: list[str], root: Path, here: Path | None = None) -> list[str]:
    """Paths and file names among ``words`` (cited as code) that do not exist in the project:
    a path under one of its top-level entries (``<name>`` placeholders and globs match
    anything), or a bare file name of a kind it keeps, anywhere. Generated and downloaded
    paths (.gitignore) are not looked for. ``here``: the citing document's directory (a path
    may be relative to it)."""
    tops, names = project_files(root)
    patterns = _ignore_patterns(root)
    lasts = [last for p in patterns if (last := p.rstrip("/").rsplit("/", 1)[-1]).strip("*?")]
    problems = []
    for raw in words:
        word = raw.strip("'\"(").rstrip(",.;:)'\"")
        if "/" in word.split(":", 1)[0]:
            word = word.split(":", 1)[0]  # docker/compose.yaml:LINE
        if not word or re.search(_NOT_A_PATH, word.replace("*", "")):
            continue
        glob = re.sub(r"<[^>/]*>", "*", word).rstrip("/")
        if "/" in word:
            if (glob.split("/", 1)[0] not in tops or "{" in glob
                    or ignored(glob, patterns) or ignored(glob + "/*", patterns)):
                continue
            if not any(root.glob(glob)) and not any((here or root).glob(glob)):
                problems.append(f"`{raw}` names a path that does not exist")
        elif re.match(_FILE_NAME, glob) and "*" not in glob:
            generated = any(fnmatch.fnmatchcase(glob, last) for last in lasts)
            if glob not in names and not generated and glob not in project_words(root):
                problems.append(f"`{raw}` names a file that is nowhere in the project "
                                "(nor in its code)")
    return problems


@functools.lru_cache(maxsize=4)
def project_words(root: Path) -> frozenset:
    """The file names the project's code and configuration use (not its docs): a file the
    tool makes elsewhere (kustomization.yaml in the GitOps repository, recipe.json in an
    image build) is one of them."""
    patterns = _ignore_patterns(root)
    found = set()
    sources = [*root.glob("tasks/*.py"), *root.glob("docker/*"), root / "Tiltfile",
               root / "dodo.py"]
    for path in sources:
        if path.is_file() and not ignored(str(path.relative_to(root)), patterns):
            text = path.read_text(encoding="utf-8", errors="replace")
            found.update(re.findall(r"[\w.-]+\.[A-Za-z]+", text))
    return frozenset(found)


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


#: a task name cited as code on its own: `render:local`, `validate:<env>`
_TASK_NAME = r"([a-z][a-z0-9-]*):([a-z<][\w<>-]*)"


def task_name_problems(spans: list[str], tasks) -> list[str]:
    """Task names cited as code (`render:local`) that are not tasks, where the part before
    the colon is a task group (an image ref such as `raibid-server:dev` is not one); a
    placeholder (`validate:<env>`) needs only its group."""
    groups = {name.split(":", 1)[0] for name in tasks}
    problems = []
    for span in spans:
        m = re.fullmatch(_TASK_NAME, span.strip())
        if m and m.group(1) in groups and "<" not in m.group(2) and span.strip() not in tasks:
            problems.append(f"`{span}` names task {span.strip()!r}, which does not exist "
                            "(see `doit list --all`)")
    return problems


def task_parameters() -> dict[str, set[str] | None]:
    """Every task (:func:`task_names`) -> the flags of its parameters (``--yes``); None for
    each when the tasks themselves cannot be had here (only their names)."""
    names = task_names()
    dodo = sys.modules.get("dodo")
    where = getattr(dodo, "__file__", None)
    if not where or Path(where).resolve().parent != paths.root():
        return dict.fromkeys(names)
    from doit.loader import load_tasks

    flags: dict[str, set[str] | None] = {n: set() for n in names}
    for task in load_tasks(vars(dodo), allow_delayed=True):
        for param in (*task.creator_params, *task.params):
            if task.name in flags:
                flags[task.name].update(("--" if k == "long" else "-") + param[k]
                                        for k in ("long", "short") if param.get(k))
    return flags


def doc_problems(text: str, rel: str, tasks: dict[str, set[str] | None], root: Path) -> list[str]:
    """Every problem of one Markdown document: cited `doit` command lines
    (:func:`citation_problems`), paths and file names cited as code (:func:`path_problems`),
    links that do not resolve and shell blocks that do not parse; each as ``file:LINE: ...``."""
    problems = []
    fence = False
    here = (root / rel).parent
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        for args in doit_citations(line, in_code_block=fence):
            problems += [f"{rel}:{n}: {p}" for p in citation_problems(args, tasks)]
        if fence:
            words = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].split()
        else:
            spans = re.findall(_CODE_SPAN, line)
            problems += [f"{rel}:{n}: {p}" for p in task_name_problems(spans, tasks)]
            words = [w for span in spans for w in span.split()]
            words += re.findall(r"\*\*`?([\w./<>-]+/[\w./<>-]+)`?\*\*", line)
        problems += [f"{rel}:{n}: {p}" for p in path_problems(words, root, here)]
        for target in re.findall(_LINK, line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            file_part = target.split("#", 1)[0]
            if file_part and not (here / file_part).exists():
                problems.append(f"{rel}:{n}: link to {target!r} does not resolve")
    for m in re.finditer(_FENCE, text):
        lang = m.group(1).lower()
        if lang in _SHELL_LANGS:
            err = _shell_ok(m.group(2), lang)
            if err:
                line_no = text[: m.start()].count("\n") + 1
                problems.append(f"{rel}:{line_no}: the {lang} block does not parse: {err}")
    return problems


def check_docs():
    from doit.exceptions import TaskFailed

    root = paths.root()
    try:
        tasks = task_parameters()
    except RuntimeError as e:  # the task list itself cannot be read: say so, as the check's failure
        return TaskFailed(f"docs:check could not list the tasks: {e}")
    problems = []
    for rel in _doc_files():
        problems += doc_problems((root / rel).read_text(encoding="utf-8"), rel, tasks, root)
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
