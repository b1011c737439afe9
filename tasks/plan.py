"""The plan model: plan.yaml read into plain frozen dataclasses, and checked.

Every problem is reported as ``plan.yaml:LINE: what is wrong; how to fix it`` and all
problems are reported at once. The loader never lets a traceback reach the user:
anything it cannot read becomes a :class:`PlanError`.
"""
from __future__ import annotations

import difflib
from collections import Counter
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths
from .problems import InputError, Problem, shown, utf8_problem

MAX_ID = 999_999_999
CRITERIA_LEVELS = ("must", "should", "nice")


# --------------------------------------------------------------------------- model


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


class PlanError(InputError):
    """plan.yaml is not a valid plan; ``str()`` lists every problem with its line."""


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, column) of the character at ``index`` in ``text``."""
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _character_problem(text: str, index: int) -> Problem:
    line, col = _position(text, index)
    ch = text[index] if index < len(text) else ""
    return Problem(line, f"the file contains a control character (U+{ord(ch):04X}) YAML does not allow"
                   if ch else "the file ends in the middle of a character",
                   "delete it, or write it as an escape inside double quotes (e.g. \"\\t\")", col)


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


class _Located(Exception):
    """A problem found while reading the YAML, at a mark (0-based line and column)."""

    def __init__(self, mark, message, fix):
        self.problem = Problem(mark.line + 1, message, fix, mark.column + 1)


#: larger whole numbers are refused as Python's decimal reading refuses them (4300 digits)
MAX_INT_BITS = 14_000
#: no plan needs more than a handful of levels; deeper input is an attack or an accident
MAX_DEPTH = 100
NESTING_FIX = "this file needs a few levels: check the brackets and `-` on this line"
_NO_KEY = object()
_MERGE_TAG = "tag:yaml.org,2002:merge"


@functools.lru_cache(maxsize=1)
def _event_source():
    """A class that reads YAML events and resolves and constructs scalars safely: libyaml's
    parser (C, not recursive) when PyYAML has it, else PyYAML's own."""
    import yaml
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    try:
        from yaml._yaml import CParser
    except ImportError:  # PyYAML without libyaml
        return yaml.SafeLoader

    class Events(CParser, SafeConstructor, Resolver):  # type: ignore[misc, valid-type]
        def __init__(self, stream):
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return Events


def _build(text: str, aliases: bool = True) -> Any:
    """The YAML document as _Map/_Seq/scalars with lines, built in one pass over the parser's
    events with an explicit stack: no recursion (libyaml's own composer recurses in C and
    crashes the interpreter on deeply nested input), a depth limit, aliases shared (so alias
    bombs cost nothing) or, without ``aliases``, refused, merge keys (``<<``) applied with
    explicit keys winning."""
    import yaml
    from yaml import events as ev
    from yaml.nodes import ScalarNode

    src = _event_source()(text)
    try:
        ctors, resolve = src.yaml_constructors, src.resolve
        anchors: dict[str, Any] = {}
        stack: list[list] = []   # [container, is_map, pending key, key line, anchor, merges]
        root, documents = None, 0

        def add(value, line):
            nonlocal root
            if not stack:
                root = value
                return
            top = stack[-1]
            c = top[0]
            if not top[1]:
                c.append(value)
                c.item_lines.append(line)
            elif top[2] is _NO_KEY:
                try:
                    hash(value)
                except TypeError:
                    raise _Unhashable(line) from None
                top[2], top[3] = value, line
            else:
                key, top[2] = top[2], _NO_KEY
                if key is _MERGE_KEY:
                    top[5].append((value, top[3]))
                elif key in c:
                    raise _DuplicateKey(key, top[3], c.key_lines[key])
                else:
                    c[key] = value
                    c.key_lines[key] = top[3]

        while True:
            e = src.get_event()
            kind = type(e)
            if kind is ev.ScalarEvent:
                line = e.start_mark.line + 1
                tag = e.tag if e.tag not in (None, "!") else resolve(ScalarNode, e.value, e.implicit)
                if tag == "tag:yaml.org,2002:str":
                    value = e.value
                elif tag == _MERGE_TAG and stack and stack[-1][1] and stack[-1][2] is _NO_KEY:
                    value = _MERGE_KEY
                else:
                    node = ScalarNode(tag, e.value, e.start_mark, e.end_mark, e.style)
                    try:
                        value = ctors.get(tag, ctors[None])(src, node)
                    except yaml.YAMLError:
                        raise
                    except ValueError as err:
                        if "integer string conversion" in str(err):
                            raise _Located(e.start_mark, "this number is too large", "write a smaller number") from None
                        raise _Located(e.start_mark, f"cannot read this value: {err}",
                                       "quote it to make it text, or correct it") from None
                    except (OverflowError, TypeError) as err:
                        raise _Located(e.start_mark, f"cannot read this value: {err}",
                                       "quote it to make it text, or correct it") from None
                    if type(value) is int and value.bit_length() > MAX_INT_BITS:
                        # hex, octal and binary are read past the decimal digit limit,
                        # which any message showing the number would then hit
                        raise _Located(e.start_mark, "this number is too large",
                                       "write a smaller number")
                if e.anchor:
                    anchors[e.anchor] = value
                add(value, line)
            elif kind is ev.MappingStartEvent or kind is ev.SequenceStartEvent:
                if len(stack) >= MAX_DEPTH:
                    raise _Located(e.start_mark, f"nested more than {MAX_DEPTH} levels deep", NESTING_FIX)
                is_map = kind is ev.MappingStartEvent
                if e.tag not in (None, "!", "tag:yaml.org,2002:map" if is_map else "tag:yaml.org,2002:seq"):
                    raise _Located(e.start_mark, f"the tag {e.tag} is not supported here",
                                   "remove the tag")
                c = _Map() if is_map else _Seq()
                c.line = e.start_mark.line + 1
                if is_map:
                    c.key_lines = {}
                else:
                    c.item_lines = []
                if e.anchor:
                    anchors.pop(e.anchor, None)  # not usable inside itself
                stack.append([c, is_map, _NO_KEY, 0, e.anchor, []])
            elif kind is ev.MappingEndEvent or kind is ev.SequenceEndEvent:
                c, _, _, _, anchor, merges = stack.pop()
                for value, line in merges:
                    _merge(c, value, line)
                if anchor:
                    anchors[anchor] = c
                add(c, c.line)
            elif kind is ev.AliasEvent:
                if not aliases:  # for a reader that expands them (an alias bomb)
                    raise _Located(e.start_mark, f"a YAML alias (*{e.anchor}) is not allowed here",
                                   "write the value out in full")
                if e.anchor not in anchors:
                    raise _Located(e.start_mark, f"unknown alias *{e.anchor} (or one used inside its own anchor)",
                                   f"define `&{e.anchor}` on a complete value before using `*{e.anchor}`")
                add(anchors[e.anchor], e.start_mark.line + 1)
            elif kind is ev.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _Located(e.start_mark, "more than one YAML document (a second `---`)",
                                   "keep one document: remove the `---` and what follows, or merge them")
            elif kind is ev.StreamEndEvent:
                return root
    finally:
        src.dispose()


_MERGE_KEY = object()


def _merge(m: _Map, value, line: int) -> None:
    """``<<: *x`` or ``<<: [*x, *y]``: keys of x (then y) that m does not set itself."""
    sources = value if isinstance(value, _Seq) else [value]
    for src in sources:
        if not isinstance(src, _Map):
            raise _MergeError(line)
        for k, v in src.items():
            if k not in m:
                m[k] = v
                m.key_lines[k] = line


class _MergeError(Exception):
    def __init__(self, line):
        self.line = line


def parse_yaml(text: str, source: str, error: type[InputError] = PlanError,
               aliases: bool = True) -> Any:
    """A YAML document whose mappings and lists know their lines (``_Map.key_lines``,
    ``_Seq.item_lines``); anything that is not a readable single document raises ``error``
    (an :class:`InputError`) at its line. The reader of plan.yaml and chartfile.yaml."""
    import gc

    import yaml

    gc_was_on = gc.isenabled()
    gc.disable()  # building a large tree of new objects: the cycle collector only slows it down
    try:
        return _build(text, aliases)
    except _Located as e:
        raise error(source, [e.problem]) from None
    except _MergeError as e:
        raise error(source, [Problem(e.line, "`<<:` (a merge key) must name a mapping or a list of "
                                     "mappings", "merge with `<<: *anchor` where &anchor is on a "
                                     "mapping")]) from None
    except _DuplicateKey as e:
        raise error(source, [Problem(e.line, f"duplicate key {shown(e.key)} (first at line "
                                     f"{e.first})",
                                     "keep one of them")]) from None
    except _Unhashable as e:
        raise error(source, [Problem(e.line, "a mapping key must be a plain value",
                                     "use a string such as `id` as the key")]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 0)
        what = " ".join(str(x) for x in (e.context, e.problem) if x)
        if "nesting depth" in what:  # PyYAML >= 6.0.4's scanner limit, met before the parser's depth check
            raise error(source, [Problem(line, f"nested more than {MAX_DEPTH} levels deep",
                                         NESTING_FIX, col)]) from None
        raise error(source, [Problem(line, f"YAML syntax error: {what}",
                                     "check indentation, colons and quotes on this line",
                                     col)]) from None
    except yaml.reader.ReaderError as e:
        raise error(source, [_character_problem(text, _char_index(text, e))]) from None
    except yaml.YAMLError as e:
        raise error(source, [Problem(1, f"cannot read YAML: {e}", "fix the YAML syntax")]) from None
    finally:
        if gc_was_on:
            gc.enable()


def _char_index(text: str, err) -> int:
    """The character index of a ReaderError: libyaml counts bytes of the UTF-8 text."""
    bad = getattr(err, "character", None)
    if isinstance(bad, int) and 0 <= bad <= 0x10FFFF:
        bad = chr(bad)
    if isinstance(bad, str) and bad:
        i = text.find(bad)
        if i >= 0:
            return i
    for i, ch in enumerate(text):  # the first character YAML does not accept
        o = ord(ch)
        if (o < 0x20 and ch not in "\t\n\r") or 0x7F <= o <= 0x84 or 0x86 <= o <= 0x9F \
                or 0xD800 <= o <= 0xDFFF or o in (0xFFFE, 0xFFFF):
            return i
    return len(text)


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
    got = shown(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else _kind(v)
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


def build(doc: Any, source: str = "plan.yaml") -> Plan:
    """Check a parsed document and turn it into a :class:`Plan` (or raise PlanError)."""
    c = _Checker()
    if not isinstance(doc, _Map):
        raise PlanError(source, [Problem(1, f"the file must be a mapping at the top, got {_kind(doc)}",
                                         "start with `workstreams:` and `items:`")])
    if "settings" in doc:
        c.add(_line(doc, "settings"), "the deploy settings moved to deploy.json: plan.yaml is the migration "
              "tracker only", "move `settings:` to deploy.json (see README.md, \"Settings\") and delete it here")
    c.keys(doc, "top level", ("workstreams", "items"), ("settings", "milestones", "success_criteria"))

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
        where = f"items[{i}]" + (f" (#{iid})" if isinstance(iid, int) and 0 <= iid <= MAX_ID else "")
        c.keys(m, where, ("id", "title", "workstream", "estimate_days"), ("needs", "tasks"))
        if not (isinstance(iid, int) and not isinstance(iid, bool) and 0 <= iid <= MAX_ID):
            if "id" in m:
                got = "a number out of range" if isinstance(iid, int) and not isinstance(iid, bool) else _kind(iid)
                c.add(_line(m, "id"), f"{where}: 'id' must be a whole number (the issue number, "
                      f"0 to {MAX_ID}), got {got}", "write e.g. `id: 93` without '#' or quotes")
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
        twice = sorted(n for n, k in Counter(needs).items() if k > 1)
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
    ms_lines: dict[str, int] = {}
    for i, m in _entries(c, _seq(c, doc, "milestones", False), "milestones"):
        where = f"milestones[{i}]"
        c.keys(m, where, ("id", "title", "items", "target_day"), ())
        mid = _str(c, m, "id", where)
        if mid is not None:
            if mid in ms_lines:
                c.add(_line(m, "id"), f"{where}: duplicate milestone id {mid!r} (first at line {ms_lines[mid]})",
                      "give each milestone its own id")
            else:
                ms_lines[mid] = _line(m, "id")
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
    plan = Plan(tuple(workstreams), tuple(items), tuple(milestones), tuple(criteria), source)
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
        raise PlanError(source, [_character_problem(text, text.index("\x00"))])
    return build(parse_yaml(text, source), source)


def load(path: Path | None = None) -> Plan:
    path = Path(path) if path else paths.plan_file()
    source = os.path.relpath(path) if path.is_absolute() else str(path)
    if len(source) > len(str(path)):
        source = str(path)
    text = read_text(path, source)
    plan = loads(text, source)
    return plan


def read_text(path: Path, source: str) -> str:
    """plan.yaml's text; a file that is not UTF-8 is a PlanError at the line and column."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PlanError(source, [Problem(0, "file not found", "run doit from the project root, next to plan.yaml")]) from None
    except IsADirectoryError:
        raise PlanError(source, [Problem(0, "is a directory, not a file", "plan.yaml must be a YAML file")]) from None
    except OSError as e:
        raise PlanError(source, [Problem(0, f"cannot read the file: {e.strerror or e}",
                                         "check the file's permissions")]) from None
    return decode(data, source)


def decode(data: bytes, source: str = "plan.yaml") -> str:
    """plan.yaml's bytes as text; bytes that are not UTF-8 are a PlanError at LINE:COLUMN."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PlanError(source, [utf8_problem(data, e)]) from None


_CACHE: dict[Path, tuple[tuple[int, ...], str, Plan]] = {}
#: a plan.yaml at least this large is kept checked in build/.plan-cache.json (about 700 items)
CACHE_MIN_BYTES = 100_000


def current() -> Plan:
    """The project's plan, read once per process (re-read when the file changes).

    A large checked plan is also kept in build/.plan-cache.json, keyed by the SHA-256 of
    plan.yaml's text and of this loader, so each doit command of a large plan does not
    parse and check it again (a damaged or stale cache is ignored and rewritten). A small
    plan is only read: no command writes anything for it before its tasks run."""
    from .statcache import settled

    path = paths.plan_file()
    source = "plan.yaml" if path.name == "plan.yaml" else str(path)
    try:
        st = path.stat()
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    except OSError:
        st, key = None, (0, 0)
    hit = _CACHE.get(path)
    same = hit is not None and hit[0] == key
    if same and (st is None or settled(st)):
        return hit[2]
    text = read_text(path, source)
    # written within a timestamp tick: a same-size rewrite keeps the stat, not the text
    if same and text == hit[1]:
        return hit[2]
    if len(text) < CACHE_MIN_BYTES:  # a plan this small is checked in milliseconds
        plan = loads(text, source)
    else:
        cache = paths.build() / ".plan-cache.json"
        digest = _digest(text)
        plan = _cached(cache, digest, source)
        if plan is None:
            plan = loads(text, source)
            _store(cache, digest, plan)
    _CACHE[path] = (key, text, plan)
    return plan


def current_or_exit() -> Plan:
    """:func:`current`; on a broken plan.yaml print every problem and exit 2 (for the commands
    that show the plan: ``doit plan``, ``graph``; never for a task creator)."""
    from .problems import or_exit

    return or_exit(current)


def _digest(text: str) -> str:
    import hashlib

    h = hashlib.sha256(Path(__file__).read_bytes())  # a changed loader checks again
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _to_json(plan: Plan) -> dict:
    from dataclasses import astuple

    return {"workstreams": [astuple(w) for w in plan.workstreams],
            "items": [[i.id, i.title, i.workstream, i.estimate_days, i.needs, i.tasks, i.line] for i in plan.items],
            "milestones": [astuple(m) for m in plan.milestones], "criteria": [astuple(c) for c in plan.criteria]}


def _from_json(data: dict, source: str) -> Plan:
    plan = object.__new__(_CachedPlan)
    for name, value in (("workstreams", tuple(Workstream(*w) for w in data["workstreams"])),
                        ("milestones", tuple(Milestone(i, t, tuple(its), d, line)
                                             for i, t, its, d, line in data["milestones"])),
                        ("criteria", tuple(Criterion(lv, t, tuple(ts), line) for lv, t, ts, line in data["criteria"])),
                        ("source", source), ("_rows", data["items"])):
        object.__setattr__(plan, name, value)
    if not isinstance(plan._rows, list):
        raise TypeError("items")
    return plan


class _CachedPlan(Plan):
    """A plan read from build/.plan-cache.json: its items are built when first used, so a
    command that needs only the task names does not pay
    for 10,000 items."""

    @functools.cached_property
    def items(self) -> tuple[Item, ...]:  # type: ignore[override]
        return tuple(Item(i, t, w, e, tuple(n), tuple(ts), line) for i, t, w, e, n, ts, line in self._rows)


def _cached(cache: Path, digest: str, source: str) -> Plan | None:
    import json

    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("digest") != digest:
            return None
        return _from_json(data["plan"], source)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def _store(cache: Path, digest: str, plan: Plan) -> None:
    import json

    from . import atomic

    try:
        atomic.write_text(cache, json.dumps({"digest": digest, "plan": _to_json(plan)}))
    except OSError:
        pass  # a read-only checkout: the next command checks the plan again
