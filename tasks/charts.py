"""The Helm charts of chartfile.yaml: their pins, and ``vendor:charts``, which vendors them
into tanka/charts/.

The charts are those chartfile.yaml pins (``requires``): adding a chart there is all it
takes for vendoring, the render's inputs and the "charts present" check to include it.
``vendor:charts`` runs when chartfile.yaml changed or a chart is missing or not at its
pin, and downloads only those charts; with the charts present nothing touches the network.

chartfile.yaml is checked before ``tk`` sees any of it: every path it gives (``directory``,
each chart's ``directory`` or name, each repository's name, which names Helm's cache files)
stays inside tanka/charts/ (``tk tool charts vendor`` deletes a chart's directory, wherever
it points, before it downloads it again), and ``tk`` only ever reads a chartfile written
from what was checked. It vendors into a temporary directory inside tanka/charts/; each
chart then replaces its old version only once it is complete, so a failed download (say,
offline) leaves every vendored chart as it was.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from doit.exceptions import TaskFailed

from . import paths, tools
from .problems import InputError, Problem, shown, utf8_problem
from .tanka import chartfile, charts_dir, files_under, tk

#: chartfile.yaml takes a few hundred bytes; past this it is refused unread
MAX_BYTES = 64 * 1024
RESTORE = "restore it: git checkout tanka/chartfile.yaml"
#: the prefix of vendor:charts' temporary directory in tanka/charts/ (hidden: never a chart)
WORK = "vendor"

_TOP_KEYS = ("version", "directory", "repositories", "requires")
_REPO_KEYS = ("name", "url", "caFile", "certFile", "keyFile", "username", "password")
_PIN_KEYS = ("chart", "version", "directory")
_FILE_KEYS = ("caFile", "certFile", "keyFile")
#: the only top-level ``directory``: the render reads the charts from tanka/charts/
_CHARTS = ("charts", "charts/", "./charts", "./charts/")
# each matched whole (fullmatch); a name is one path component that is not hidden
_REPO = re.compile(r"[A-Za-z0-9_-]{1,63}")  # as `tk tool charts add-repo` allows
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}")
_URL = re.compile(r"(?:https?|oci)://[^\x00-\x20\x7f]{1,2000}")
_TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,4000}")
#: what can make a YAML reader expand or recurse (aliases, flow collections, compact nested
#: lists, deep indentation, tags): a file with none of it is read as it is; one with any is
#: first checked by the reader of plan.yaml (no aliases, no recursion, a depth limit)
_INTRICATE = re.compile(r"[&*!?\[{\t]|-[ ]+-[ ]|^ {40}", re.M)


class ChartfileError(InputError):
    """chartfile.yaml cannot be read or does not say what to vendor; ``str()`` lists every
    problem with its line."""


class Pin(NamedTuple):
    chart: str      # <repository>/<name>
    version: str
    directory: str  # its directory under tanka/charts/


class Chartfile(NamedTuple):
    repositories: dict  # name -> the repository's entry, as written
    pins: tuple         # of Pin, in the file's order


def _source() -> str:
    return paths.rel(chartfile())


#: the last chartfile.yaml checked in this process (its bytes and ``fetching``) and the
#: outcome: each doit start asks for the pins several times
_LAST: list = [None, None]


def read_chartfile(fetching=()) -> Chartfile:
    """chartfile.yaml, checked (raises :class:`ChartfileError`, every problem at its line);
    the charts of the directories ``fetching`` also need their repository listed (only a
    download needs it)."""
    path = chartfile()
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as e:
        raise ChartfileError(_source(), [Problem(0, f"cannot be read: {e.strerror or e}",
                                                 RESTORE)]) from None
    key = (str(path), data, frozenset(fetching))
    if _LAST[0] != key:
        try:
            _LAST[1] = _read(path, data, fetching)
        except ChartfileError as e:
            _LAST[1] = e
        _LAST[0] = key
    if isinstance(_LAST[1], ChartfileError):
        raise ChartfileError(_LAST[1].source, _LAST[1].problems)
    return _LAST[1]


def _read(path: Path, data: bytes, fetching) -> Chartfile:
    from .statcache import load_yaml

    source = _source()
    if len(data) > MAX_BYTES:
        raise ChartfileError(source, [Problem(
            data.count(b"\n", 0, MAX_BYTES) + 1, f"the file is larger than {MAX_BYTES // 1024} KiB "
            "(from this line on): a chartfile takes a few hundred bytes",
            "remove what is not a chart pin")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ChartfileError(source, [utf8_problem(data, e)]) from None
    if _INTRICATE.search(text):  # raises at an alias, past the depth limit, at a duplicate key
        doc = tree = _lines(text)
    else:
        tree = None
        try:
            doc = load_yaml(path)
        except OSError as e:
            raise ChartfileError(source, [Problem(0, f"cannot be read: {e.strerror or e}",
                                                  RESTORE)]) from None
        except ValueError as e:  # not YAML: the line-aware reader names where
            _lines(text)
            raise ChartfileError(source, [Problem(1, f"cannot read YAML: {shown(str(e))}",
                                                  "fix the YAML syntax")]) from None
    problems: list = []
    result = _check(doc, problems, fetching)
    if problems:
        tree = tree or _lines(text)
        raise ChartfileError(source, [Problem(_line_of(tree, where), msg, fix)
                                      for where, msg, fix in problems])
    return result


def _lines(text: str):
    """The document as the plan.yaml reader builds it (each mapping and list knows its
    lines), or a ChartfileError at the line of what it cannot read."""
    from .plan import parse_yaml

    return parse_yaml(text, _source(), ChartfileError, aliases=False)


def _line_of(tree, where: tuple) -> int:
    """The line of the key or list entry at ``where`` (or of the deepest one found)."""
    line, node = getattr(tree, "line", 0) or 1, tree
    for step in where:
        if isinstance(node, dict) and step in node:
            line, node = node.key_lines.get(step, line), node[step]
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            line, node = node.item_lines[step], node[step]
        else:
            break
    return line


def _unknown_keys(problems: list, m: dict, where: tuple, allowed: tuple, what: str) -> None:
    for k in m:
        if k not in allowed:
            problems.append((where + (k,), f"{what}: unknown key {shown(k)}",
                             f"the keys tk reads here: {', '.join(allowed)}"))


def _check(doc, problems: list, fetching=()) -> Chartfile:
    """What chartfile.yaml says to vendor; each problem is appended as (where, message, fix)."""
    add = lambda where, msg, fix="": problems.append((where, msg, fix))  # noqa: E731
    if not isinstance(doc, dict):
        add((), "the file must be a mapping (`version`, `repositories`, `requires`)", RESTORE)
        return Chartfile({}, ())
    _unknown_keys(problems, doc, (), _TOP_KEYS, "the top level")
    if "version" in doc and (doc["version"] != 1 or isinstance(doc["version"], bool)):
        add(("version",), "`version` must be 1 (the chartfile format tk reads), "
            f"got {shown(doc['version'])}", "write `version: 1`")
    if "directory" in doc and doc["directory"] not in _CHARTS:
        add(("directory",), "`directory` must be `charts`: the charts are vendored into "
            "tanka/charts/, where the render reads them, and nowhere else; "
            f"got {shown(doc['directory'])}",
            "write `directory: charts` or delete the line")

    repositories: dict = {}
    repos = doc.get("repositories")
    if repos is not None and not isinstance(repos, list):
        add(("repositories",), "`repositories` must be a list of `- name: ..., url: ...`",
            "write `repositories:` followed by `- name: <name>` and `url: <url>` entries")
        repos = []
    for i, r in enumerate(repos or []):
        where, what = ("repositories", i), f"repositories entry {i + 1}"
        if not isinstance(r, dict):
            add(where, f"{what} must be a mapping with `name` and `url`",
                "write `- name: <name>` and `url: <url>`")
            continue
        _unknown_keys(problems, r, where, _REPO_KEYS, what)
        name, url = r.get("name"), r.get("url")
        ok = True
        if not (isinstance(name, str) and _REPO.fullmatch(name)):
            add(where + ("name",), f"{what}: `name` must be letters, digits, '_' and '-' (it names "
                f"Helm's cache files), got {shown(name)}", "write e.g. `name: bitnami`")
            ok = False
        elif name in repositories:
            add(where + ("name",), f"{what}: the repository {name!r} is listed twice",
                "keep one of them")
        if not (isinstance(url, str) and _URL.fullmatch(url)):
            add(where + ("url",), f"{what}: `url` must be an http(s):// or oci:// address, "
                f"got {shown(url)}", "write e.g. `url: https://kedacore.github.io/charts`")
            ok = False
        for key in set(_REPO_KEYS[2:]) & set(r):
            if not (isinstance(r[key], str) and _TEXT.fullmatch(r[key])):
                add(where + (key,), f"{what}: `{key}` must be text on one line, "
                    f"got {shown(r[key])}", f"write `{key}: <value>` or delete it")
                ok = False
        if ok and name not in repositories:
            repositories[name] = {k: v for k, v in r.items() if k in _REPO_KEYS}

    requires = doc.get("requires")
    if not isinstance(requires, list):
        add(("requires",), "`requires` must be a list of charts (chart, version)",
            "write `requires:` followed by `- chart: <repo>/<name>` and `version: ...` entries")
        return Chartfile(repositories, ())
    named = {r["name"] for r in repos or []
             if isinstance(r, dict) and isinstance(r.get("name"), str)}
    pins, directories = [], {}
    for i, r in enumerate(requires):
        where, what = ("requires", i), f"requires entry {i + 1}"
        if not (isinstance(r, dict) and isinstance(r.get("chart"), str) and "/" in r["chart"]
                and r.get("version") is not None):
            add(where, f"{what} needs `chart: <repo>/<name>` and `version`",
                "write `- chart: <repo>/<name>` and `version: <version>`")
            continue
        _unknown_keys(problems, r, where, _PIN_KEYS, what)
        repo, _, name = r["chart"].partition("/")
        if not (_REPO.fullmatch(repo) and _NAME.fullmatch(name)):
            add(where + ("chart",), f"{what}: `chart` must be <repository>/<name>, each letters, "
                "digits, '.', '_' and '-' (the name is also its directory), "
                f"got {shown(r['chart'])}",
                "write e.g. `chart: kedacore/keda`")
            continue
        version = r["version"]
        if isinstance(version, int) and not isinstance(version, bool) and 0 <= version < 10 ** 60:
            version = str(version)
        if not (isinstance(version, str) and _VERSION.fullmatch(version)):
            add(where + ("version",), f"{what}: `version` must be the chart's exact version, got "
                f"{shown(version)}", 'quote it if YAML reads it as a number: `version: "1.10"`')
            continue
        directory = r.get("directory") or name
        if not (isinstance(directory, str) and _NAME.fullmatch(directory)):
            add(where + ("directory",), f"{what}: `directory` must be one folder name under "
                "tanka/charts/ (letters, digits, '.', '_' and '-'; no '/', no leading '.'), "
                f"got {shown(directory)}", f"write `directory: {name}` or delete the line")
            continue
        if directory in directories:
            add(where + ("directory" if "directory" in r else "chart",), f"{what}: tanka/charts/"
                f"{directory}/ is also where requires entry {directories[directory]} goes",
                "give each chart its own `directory`")
            continue
        if directory in fetching and repo not in named:  # one named in a bad entry: reported
            add(where + ("chart",), f"{what}: no repository is named {repo!r}",
                f"add `- name: {repo}` and its `url` under `repositories:`")
        directories[directory] = i + 1
        pins.append(Pin(r["chart"], version, directory))
    return Chartfile(repositories, tuple(pins))


def pinned_charts() -> dict[str, str]:
    """``directory -> version`` from chartfile.yaml, in its order (raises
    :class:`ChartfileError`, every problem at its line, when it cannot be used)."""
    return {p.directory: p.version for p in read_chartfile().pins}


def chart_names() -> list[str]:
    """The chart directories chartfile.yaml vendors into tanka/charts/ (none when it cannot
    be read: ``vendor:charts`` then runs and says why)."""
    try:
        return list(pinned_charts())
    except ChartfileError:
        return []


def chart_files() -> list[str]:
    return files_under(*(charts_dir() / c for c in chart_names()))


def charts_present() -> bool:
    """Every chart of chartfile.yaml is vendored (False when chartfile.yaml cannot be read)."""
    try:
        names = list(pinned_charts())
    except ChartfileError:
        return False
    return all((charts_dir() / c / "Chart.yaml").is_file() for c in names)


def _at_pin(root: Path, directory: str, version: str, cached: bool = True) -> bool:
    """``root/directory`` holds a chart of ``version`` (its Chart.yaml says so); read through
    the parsed-YAML cache unless ``cached`` is False (a download in a temporary directory,
    whose entry would never be read again)."""
    from .statcache import load_yaml

    chart_yaml = root / directory / "Chart.yaml"
    try:
        chart = load_yaml(chart_yaml, keep=cached)
        return isinstance(chart, dict) and str(chart.get("version")) == version
    except (OSError, ValueError):  # unreadable, not YAML, or a number str() refuses
        return False


def charts_at_pins() -> bool:
    """True when every chart of chartfile.yaml is vendored at its pinned version."""
    try:
        pins = pinned_charts()
    except ChartfileError:
        return False
    return all(_at_pin(charts_dir(), d, v) for d, v in pins.items())


def _work_chartfile(cf: Chartfile, pins: list[Pin]) -> str:
    """The chartfile tk reads in the temporary directory: the checked ``pins`` and their
    repositories only, their files' relative paths made absolute (tk runs elsewhere)."""
    import json

    repos = []
    for name in dict.fromkeys(p.chart.split("/", 1)[0] for p in pins):
        repo = dict(cf.repositories[name])
        for key in set(_FILE_KEYS) & set(repo):
            repo[key] = str(paths.tanka() / repo[key])  # an absolute one stays as it is
        repos.append(repo)
    return json.dumps({"version": 1, "directory": "charts", "repositories": repos,
                       "requires": [p._asdict() for p in pins]}, indent=2)


def _vendor_charts():
    import os
    import shutil
    import tempfile

    from . import atomic

    charts = charts_dir()
    try:
        stale = [p for p in read_chartfile().pins if not _at_pin(charts, p.directory, p.version)]
        if not stale:
            return None
        cf = read_chartfile(fetching={p.directory for p in stale})
    except ChartfileError as e:
        return TaskFailed(f"{e}\nNothing was vendored.")
    charts.mkdir(parents=True, exist_ok=True)
    with atomic.locked(charts):
        atomic.sweep_stale_temps(charts, [WORK] + [p.directory for p in cf.pins])
        work = Path(tempfile.mkdtemp(prefix=f".{WORK}.", suffix=".tmp", dir=charts))
        try:
            (work / "chartfile.yaml").write_text(_work_chartfile(cf, stale), encoding="utf-8")
            # tk writes the repositories (with any credentials) to a file in $TMPDIR: here
            proc = tk("tool", "charts", "vendor", cwd=work,
                      env=tools.short_run_env({"TMPDIR": str(work)}))
            if proc.returncode != 0:
                return TaskFailed(
                    f"`tk tool charts vendor` failed (exit {proc.returncode}):\n"
                    f"{proc.stderr.strip()}\nThe vendored charts were left as they were. Check "
                    f"{_source()} and the network; charts already at their pinned version are "
                    "never downloaded again.")
            wrong = [p.chart for p in stale
                     if not _at_pin(work / "charts", p.directory, p.version, cached=False)]
            if wrong:
                return TaskFailed(
                    f"`tk tool charts vendor` did not give {', '.join(wrong)} at the version "
                    f"{_source()} pins; the vendored charts were left as they were.")
            for p in stale:  # each old chart is replaced only now, by a complete new one
                target = charts / p.directory
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    target.unlink()  # a link is replaced, never what it points to
                with atomic.replace_dir(target) as new:
                    os.replace(work / "charts" / p.directory, new)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return None


def task_vendor():
    """Vendor the pinned Helm charts into tanka/charts/ (offline once they are there)."""
    names = chart_names()
    yield tools.needs({
        "name": "charts",
        "doc": f"Vendor the pinned Helm charts ({', '.join(names) or 'of tanka/chartfile.yaml'}) "
               "with `tk tool charts vendor`",
        "actions": [_vendor_charts],
        "file_dep": [str(chartfile())],
        "targets": [str(charts_dir() / c / "Chart.yaml") for c in names],
        "uptodate": [charts_at_pins],
        "verbosity": 1,
    }, "tk", "helm")
