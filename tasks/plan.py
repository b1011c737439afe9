"""The plan model: plan.yaml read into plain frozen dataclasses, and checked.

Every problem is reported as ``plan.yaml:LINE: what is wrong; how to fix it`` and all
problems are reported at once. The loader never lets a traceback reach the user:
anything it cannot read becomes a :class:`PlanError`.
"""
from __future__ import annotations

import difflib
import re
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
STATUSES = ("done", "stale", "not run", "not built")
CRITERIA_LEVELS = ("must", "should", "nice")


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Settings:
    project: str = "raibid-ci"
    namespace: str = "raibid-system"
    cluster: str = "raibid-ci"
    environments: tuple[str, ...] = ("local", "staging", "prod")
    kubernetes_version: str = "1.33.0"
    registry: str = "raibid-registry.localhost"
    registry_port: int = 5111

    @property
    def registry_push(self) -> str:
        """Where the host pushes images (the k3d registry's published port)."""
        return f"localhost:{self.registry_port}"

    @property
    def registry_pull(self) -> str:
        """How the cluster names the same registry (k3d prefixes its container name)."""
        return f"k3d-{self.registry}:{self.registry_port}"

    @property
    def kube_context(self) -> str:
        return f"k3d-{self.cluster}"


@dataclass(frozen=True)
class Workstream:
    id: str
    title: str
    description: str = ""
    line: int = 0


@dataclass(frozen=True)
class Item:
    id: int
    title: str
    workstream: str
    estimate_days: float
    needs: tuple[int, ...] = ()
    tasks: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class Milestone:
    id: str
    title: str
    items: tuple[int, ...]
    target_day: float
    line: int = 0


@dataclass(frozen=True)
class Criterion:
    level: str
    text: str
    tasks: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class Plan:
    settings: Settings
    workstreams: tuple[Workstream, ...]
    items: tuple[Item, ...]
    milestones: tuple[Milestone, ...] = ()
    criteria: tuple[Criterion, ...] = ()
    source: str = "plan.yaml"

    @functools.cached_property
    def by_id(self) -> dict[int, Item]:
        return {i.id: i for i in self.items}

    def tasks(self) -> tuple[str, ...]:
        """Every task the plan names, in item order, without repeats."""
        seen: dict[str, None] = {}
        for item in self.items:
            for t in item.tasks:
                seen.setdefault(t)
        for c in self.criteria:
            for t in c.tasks:
                seen.setdefault(t)
        return tuple(seen)


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    line: int
    message: str
    fix: str = ""

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.message}" + (f"\n    fix: {self.fix}" if self.fix else "")


class PlanError(Exception):
    """plan.yaml is not a valid plan; ``str()`` lists every problem with its line."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = sorted(problems, key=lambda p: p.line)
        n = len(self.problems)
        head = f"{source}: {n} problem{'s' if n != 1 else ''} found"
        super().__init__("\n".join([head] + [p.render(source) for p in self.problems]))


# --------------------------------------------------------------------------- YAML with lines


class _Map(dict):
    """A mapping that remembers its own line and the line of each key (1-based)."""

    line = 0
    key_lines: dict


class _Seq(list):
    line = 0
    item_lines: list


class _DuplicateKey(Exception):
    def __init__(self, key, line, first):
        self.key, self.line, self.first = key, line, first


class _Unhashable(Exception):
    def __init__(self, line):
        self.line = line


@functools.lru_cache(maxsize=1)
def _loader_class():
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        pass

    def construct_mapping(loader, node):
        loader.flatten_mapping(node)
        m = _Map()
        m.line = node.start_mark.line + 1
        m.key_lines = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise _Unhashable(line) from None
            if key in m:
                raise _DuplicateKey(key, line, m.key_lines[key])
            m[key] = loader.construct_object(value_node, deep=True)
            m.key_lines[key] = line
        return m

    def construct_sequence(loader, node):
        s = _Seq(loader.construct_object(child, deep=True) for child in node.value)
        s.line = node.start_mark.line + 1
        s.item_lines = [child.start_mark.line + 1 for child in node.value]
        return s

    Loader.add_constructor("tag:yaml.org,2002:map", construct_mapping)
    Loader.add_constructor("tag:yaml.org,2002:seq", construct_sequence)
    return Loader


def _parse(text: str, source: str) -> Any:
    import gc

    import yaml

    gc_was_on = gc.isenabled()
    gc.disable()  # building a large tree of new objects: the cycle collector only slows it down
    try:
        return yaml.load(text, Loader=_loader_class())  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        raise PlanError(source, [Problem(e.line, f"duplicate key {e.key!r} (first at line {e.first})",
                                         "keep one of them")]) from None
    except _Unhashable as e:
        raise PlanError(source, [Problem(e.line, "a mapping key must be a plain value",
                                         "use a string such as `id` as the key")]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        what = " ".join(str(x) for x in (e.context, e.problem) if x)
        raise PlanError(source, [Problem(line, f"YAML syntax error: {what}",
                                         "check indentation, colons and quotes on this line")]) from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError, TypeError) as e:
        raise PlanError(source, [Problem(0, f"cannot read YAML: {e}", "fix the YAML syntax")]) from None
    finally:
        if gc_was_on:
            gc.enable()


# --------------------------------------------------------------------------- checking


class _Checker:
    def __init__(self):
        self.problems: list[Problem] = []

    def add(self, line, message, fix=""):
        self.problems.append(Problem(line, message, fix))

    def keys(self, m: _Map, where: str, required: tuple[str, ...], optional: tuple[str, ...]) -> bool:
        allowed = required + optional
        ok = True
        for key in m:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
                self.add(m.key_lines.get(key, m.line), f"{where}: unknown key {key!r}", hint)
        for key in required:
            if key not in m:
                self.add(m.line, f"{where}: missing key {key!r}", f"add `{key}:`")
                ok = False
        return ok


def _line(m, key):
    return m.key_lines.get(key, m.line) if isinstance(m, _Map) else 0


def _kind(v) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    if v is None:
        return "empty"
    return f"a {type(v).__name__}"


def _str(c: _Checker, m: _Map, key: str, where: str, default=None):
    if key not in m:
        return default  # a missing required key is reported once, by _Checker.keys
    v = m[key]
    if isinstance(v, str) and v.strip():
        return v
    c.add(_line(m, key), f"{where}: {key!r} must be a non-empty string, got {_kind(v)}",
          f"write `{key}: some text`")
    return default


def _number(c: _Checker, m: _Map, key: str, where: str):
    if key not in m:
        return None  # reported by _Checker.keys
    v = m[key]
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and 0 <= v < 10_000:
        return float(v)
    got = f"{v!r}" if isinstance(v, (int, float)) and not isinstance(v, bool) else _kind(v)
    c.add(_line(m, key), f"{where}: {key!r} must be a number of days between 0 and 10000, got {got}",
          f"write e.g. `{key}: 1.5`")
    return None


def _list(c: _Checker, m: _Map, key: str, where: str, ok, what: str, example: str, entry_fix: str) -> tuple:
    """A list under ``key`` whose entries pass ``ok``; each bad entry is reported at its line."""
    v = m.get(key, [])
    if v is None:
        v = []
    if not isinstance(v, list):
        c.add(_line(m, key), f"{where}: {key!r} must be a list of {what}, got {_kind(v)}",
              f"write `{key}: {example}`")
        return ()
    out = []
    for i, x in enumerate(v):
        if ok(x):
            out.append(x)
        else:
            line = v.item_lines[i] if isinstance(v, _Seq) else _line(m, key)
            c.add(line, f"{where}: {key!r} entries must be {what}, got {_kind(x)}", entry_fix)
    return tuple(out)


def _int_list(c: _Checker, m: _Map, key: str, where: str) -> tuple[int, ...]:
    return _list(c, m, key, where, lambda x: isinstance(x, int) and not isinstance(x, bool),
                 "item ids (whole numbers)", "[93, 94]", "write the number without quotes or '#', e.g. 93")


def _str_list(c: _Checker, m: _Map, key: str, where: str) -> tuple[str, ...]:
    return _list(c, m, key, where, lambda x: isinstance(x, str) and bool(x.strip()),
                 "non-empty strings", "[a, b]", "quote the value if YAML reads it as something else")


def _seq(c: _Checker, doc: _Map, key: str, required: bool) -> list:
    v = doc.get(key)
    if v is None and not required and key not in doc:
        return []
    if not isinstance(v, list):
        c.add(_line(doc, key), f"{key!r} must be a list, got {_kind(v)}", f"write `{key}:` followed by `- ...` entries")
        return []
    return v


def _entries(c: _Checker, seq: list, what: str):
    """Yield ``(index, mapping)`` for each entry that is a mapping; report the others."""
    for i, entry in enumerate(seq):
        if isinstance(entry, _Map):
            yield i, entry
        else:
            line = seq.item_lines[i] if isinstance(seq, _Seq) else 0
            c.add(line, f"{what}[{i}] must be a mapping, got {_kind(entry)}", "write `- id: ...` with its keys")


def _settings(c: _Checker, doc: _Map) -> Settings:
    m = doc.get("settings")
    if m is None:
        return Settings()
    if not isinstance(m, _Map):
        c.add(_line(doc, "settings"), f"'settings' must be a mapping, got {_kind(m)}", "write `settings:` with keys below it")
        return Settings()
    fields = ("project", "namespace", "cluster", "environments", "kubernetes_version", "registry",
              "registry_port")
    c.keys(m, "settings", (), fields)
    d = Settings()
    envs = _str_list(c, m, "environments", "settings") if "environments" in m else d.environments
    if "environments" in m and not envs:
        c.add(_line(m, "environments"), "settings: 'environments' must name at least one environment",
              "write `environments: [local]`")
    kv = m.get("kubernetes_version", d.kubernetes_version)
    if isinstance(kv, (int, float)) and not isinstance(kv, bool):
        c.add(_line(m, "kubernetes_version"), "settings: 'kubernetes_version' must be a string",
              'quote it: `kubernetes_version: "1.33.0"`')
        kv = d.kubernetes_version
    for key in ("namespace", "cluster"):
        v = m.get(key)
        if isinstance(v, str) and not _DNS_LABEL.match(v):
            c.add(_line(m, key), f"settings: {key!r} must be a Kubernetes name (lowercase letters, digits "
                  f"and '-', at most 63), got {v!r}", f"write e.g. `{key}: {v.lower().replace('_', '-')[:63]}`")
    port = m.get("registry_port", d.registry_port)
    if not (isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535):
        c.add(_line(m, "registry_port"), f"settings: 'registry_port' must be a port number, got {_kind(port)}",
              "write e.g. `registry_port: 5111`")
        port = d.registry_port
    return Settings(
        registry=_str(c, m, "registry", "settings", d.registry),
        registry_port=port,
        project=_str(c, m, "project", "settings", d.project),
        namespace=_str(c, m, "namespace", "settings", d.namespace),
        cluster=_str(c, m, "cluster", "settings", d.cluster),
        environments=envs or d.environments,
        kubernetes_version=_str(c, m, "kubernetes_version", "settings", d.kubernetes_version) if isinstance(kv, str) else kv,
    )


def build(doc: Any, source: str = "plan.yaml") -> Plan:
    """Check a parsed document and turn it into a :class:`Plan` (or raise PlanError)."""
    c = _Checker()
    if not isinstance(doc, _Map):
        raise PlanError(source, [Problem(1, f"the file must be a mapping at the top, got {_kind(doc)}",
                                         "start with `settings:`, `workstreams:` and `items:`")])
    c.keys(doc, "top level", ("workstreams", "items"), ("settings", "milestones", "success_criteria"))
    settings = _settings(c, doc)

    workstreams: list[Workstream] = []
    ws_lines: dict[str, int] = {}
    for i, m in _entries(c, _seq(c, doc, "workstreams", True), "workstreams"):
        where = f"workstreams[{i}]"
        c.keys(m, where, ("id", "title"), ("description",))
        wid = _str(c, m, "id", where)
        title = _str(c, m, "title", where)
        if wid is None or title is None:
            continue
        if wid in ws_lines:
            c.add(_line(m, "id"), f"{where}: duplicate workstream id {wid!r} (first at line {ws_lines[wid]})",
                  "give each workstream its own id")
            continue
        ws_lines[wid] = _line(m, "id")
        desc = m.get("description", "")
        workstreams.append(Workstream(wid, title, desc if isinstance(desc, str) else "", m.line))

    items: list[Item] = []
    item_lines: dict[int, int] = {}
    needs_lines: dict[int, _Map] = {}
    for i, m in _entries(c, _seq(c, doc, "items", True), "items"):
        iid = m.get("id")
        where = f"items[{i}]" + (f" (#{iid})" if isinstance(iid, int) else "")
        c.keys(m, where, ("id", "title", "workstream", "estimate_days"), ("needs", "tasks"))
        if not (isinstance(iid, int) and not isinstance(iid, bool)):
            if "id" in m:
                c.add(_line(m, "id"), f"{where}: 'id' must be a whole number (the issue number), got {_kind(iid)}",
                      "write e.g. `id: 93` without '#' or quotes")
            continue
        title = _str(c, m, "title", where)
        ws = _str(c, m, "workstream", where)
        est = _number(c, m, "estimate_days", where)
        needs = _int_list(c, m, "needs", where)
        tasks = _str_list(c, m, "tasks", where)
        if ws is not None and ws not in ws_lines and ws_lines:
            close = difflib.get_close_matches(ws, list(ws_lines), n=1)
            c.add(_line(m, "workstream"), f"{where}: unknown workstream {ws!r}",
                  f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(ws_lines)}")
        if iid in item_lines:
            c.add(_line(m, "id"), f"{where}: duplicate item id {iid} (first at line {item_lines[iid]})",
                  "each item needs its own id")
            continue
        item_lines[iid] = _line(m, "id")
        if iid in needs:
            c.add(_line(m, "needs"), f"{where}: item {iid} needs itself", f"remove {iid} from its `needs`")
        twice = sorted({n for n in needs if needs.count(n) > 1})
        if twice:
            c.add(_line(m, "needs"), f"{where}: `needs` lists {', '.join(map(str, twice))} more than once",
                  "list each item once")
        needs_lines[iid] = m
        if None in (title, ws, est):
            continue
        items.append(Item(iid, title, ws, est, tuple(dict.fromkeys(needs)), tasks, m.line))

    for item in items:
        for n in item.needs:
            if n not in item_lines:
                close = difflib.get_close_matches(str(n), [str(k) for k in item_lines], n=1)
                c.add(_line(needs_lines[item.id], "needs"), f"item {item.id} needs unknown item {n}",
                      f"did you mean {close[0]}?" if close else "list an item id defined under `items:`")

    milestones: list[Milestone] = []
    for i, m in _entries(c, _seq(c, doc, "milestones", False), "milestones"):
        where = f"milestones[{i}]"
        c.keys(m, where, ("id", "title", "items", "target_day"), ())
        mid = _str(c, m, "id", where)
        title = _str(c, m, "title", where)
        its = _int_list(c, m, "items", where)
        day = _number(c, m, "target_day", where)
        for n in its:
            if n not in item_lines:
                c.add(_line(m, "items"), f"{where}: unknown item {n}", "list an item id defined under `items:`")
        if None not in (mid, title, day):
            milestones.append(Milestone(mid, title, its, day, m.line))

    criteria: list[Criterion] = []
    sc = doc.get("success_criteria")
    if sc is not None or "success_criteria" in doc:
        if not isinstance(sc, _Map):
            c.add(_line(doc, "success_criteria"), f"'success_criteria' must be a mapping, got {_kind(sc)}",
                  "write `success_criteria:` with `must:`, `should:` and `nice:` lists")
        else:
            c.keys(sc, "success_criteria", (), CRITERIA_LEVELS)
            for level in CRITERIA_LEVELS:
                for i, m in _entries(c, _seq(c, sc, level, False), f"success_criteria.{level}"):
                    where = f"success_criteria.{level}[{i}]"
                    c.keys(m, where, ("text",), ("tasks",))
                    text = _str(c, m, "text", where)
                    if text is not None:
                        criteria.append(Criterion(level, text, _str_list(c, m, "tasks", where), m.line))

    if c.problems:
        raise PlanError(source, c.problems)
    plan = Plan(settings, tuple(workstreams), tuple(items), tuple(milestones), tuple(criteria), source)
    _check_cycles(plan, needs_lines)
    return plan


def _check_cycles(plan: Plan, needs_lines: dict) -> None:
    """Without networkx when there is no cycle (the common, fast case)."""
    order = topological_order(plan)
    if order is not None:
        return
    import networkx as nx

    g = nx.DiGraph((n, i.id) for i in plan.items for n in i.needs)
    cycle = nx.find_cycle(g)
    ids = [u for u, _ in cycle] + [cycle[0][0]]
    first = min(ids[:-1], key=lambda x: plan.by_id[x].line)
    arrow = " -> ".join(f"#{x}" for x in ids)
    raise PlanError(plan.source, [Problem(_line(needs_lines[first], "needs"),
                                          f"the items' needs form a cycle: {arrow}",
                                          "remove one of these `needs` so the work can start somewhere")])


def topological_order(plan: Plan) -> list[int] | None:
    """Kahn's order of item ids (needs first), or None when there is a cycle."""
    indeg = {i.id: len(i.needs) for i in plan.items}
    users: dict[int, list[int]] = {i.id: [] for i in plan.items}
    for i in plan.items:
        for n in i.needs:
            users[n].append(i.id)
    ready = [k for k, d in indeg.items() if d == 0]
    out = []
    while ready:
        k = ready.pop()
        out.append(k)
        for u in users[k]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    return out if len(out) == len(indeg) else None


# --------------------------------------------------------------------------- entry points


def loads(text: str, source: str = "plan.yaml") -> Plan:
    """Parse and check plan text. Raises :class:`PlanError` for any problem."""
    if not isinstance(text, str):
        raise PlanError(source, [Problem(0, "the plan must be text", "")])
    if "\x00" in text:
        raise PlanError(source, [Problem(0, "the file contains a NUL byte", "save it as UTF-8 text")])
    return build(_parse(text, source), source)


def load(path: Path | None = None) -> Plan:
    path = Path(path) if path else paths.plan_file()
    source = os.path.relpath(path) if path.is_absolute() else str(path)
    if len(source) > len(str(path)):
        source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(source, [Problem(0, "file not found", "run doit from the project root, next to plan.yaml")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise PlanError(source, [Problem(0, f"cannot read the file: {e}", "save it as UTF-8 text")]) from None
    return loads(text, source)


_CACHE: dict[Path, tuple[tuple[int, int], Plan]] = {}


def current() -> Plan:
    """The project's plan, read once per process (re-read when the file changes)."""
    path = paths.plan_file()
    try:
        st = path.stat()
        key = (st.st_mtime_ns, st.st_size)
    except OSError:
        key = (0, 0)
    hit = _CACHE.get(path)
    if hit and hit[0] == key:
        return hit[1]
    plan = load(path)
    _CACHE[path] = (key, plan)
    return plan
