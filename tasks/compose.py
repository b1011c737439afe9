"""Offline validation of a compose file: what ``docker compose config`` would reject.

1. YAML syntax (with the line of the problem);
2. variable interpolation as Compose does it (``$VAR``, ``${VAR}``, ``${VAR:-default}``,
   ``${VAR-default}``, ``${VAR:?message}``, ``${VAR?message}``, ``${VAR:+alt}``, ``$$``),
   with the shell environment over the env file (``docker/.env.example``);
3. the official compose-spec JSON schema (compose-spec/compose-spec, Apache-2.0), as
   shipped in the ``check-jsonschema`` package: nothing is downloaded;
4. references the schema cannot see: ``depends_on`` services, named volumes,
   networks, and a service outside every profile depending on one inside a profile.

Every problem is reported as ``FILE:LINE: path.in.document: what is wrong``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

from . import paths

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXPR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", re.S)


class ComposeError(Exception):
    """The compose file is invalid; the message lists every problem."""


# --------------------------------------------------------------------------- schema


def schema_path() -> Path:
    """The compose-spec schema vendored by the check-jsonschema package."""
    spec = importlib.util.find_spec("check_jsonschema")
    if spec is None or not spec.submodule_search_locations:
        raise ComposeError("the compose-spec schema comes with the Python package check-jsonschema, "
                           "which is not installed: pip install -e .  (or pip install 'check-jsonschema>=0.39')")
    path = Path(spec.submodule_search_locations[0]) / "builtin_schemas" / "vendor" / "compose-spec.json"
    if not path.is_file():
        raise ComposeError(f"check-jsonschema is installed but has no {path.name}: "
                           "pip install --upgrade 'check-jsonschema>=0.39'")
    return path


# --------------------------------------------------------------------------- env + interpolation


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose env file (comments, blank lines, ``export``, quotes)."""
    env: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return env
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        env[key.strip()] = value
    return env


def interpolate(text: str, env: dict[str, str], where: str, problems: list[str]) -> str:
    """``text`` with Compose's variable syntax expanded from ``env``; problems are appended."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while j < len(text) and depth:
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                if text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                problems.append(f"{where}: unclosed '${{' in {text!r}")
                return text
            out.append(_expand(text[i + 2:j - 1], env, where, problems))
            i = j
        else:
            m = _NAME.match(text, i + 1)
            if m:
                out.append(env.get(m.group(0), ""))
                i = m.end()
            else:
                out.append("$")
                i += 1
    return "".join(out)


def _expand(expr: str, env: dict[str, str], where: str, problems: list[str]) -> str:
    m = _EXPR.fullmatch(expr)
    if not m:
        problems.append(f"{where}: invalid interpolation '${{{expr}}}'")
        return ""
    name, op, arg = m.groups()
    value = env.get(name)
    if op is None:
        return value or ""
    ok = bool(value) if op.startswith(":") else value is not None
    kind = op[-1]
    if kind == "-":
        return value if ok else interpolate(arg, env, where, problems)
    if kind == "+":
        return interpolate(arg, env, where, problems) if ok else ""
    if not ok:  # "?"
        message = interpolate(arg, env, where, problems) or "required"
        problems.append(f"{where}: required variable {name} is {'empty' if value == '' else 'not set'}: {message}")
        return ""
    return value


def _interpolate_tree(node, env, path, problems):
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env, path + (k,), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(v, env, path + (i,), problems) for i, v in enumerate(node)]
    if isinstance(node, str):
        return interpolate(node, env, format_path(path), problems)
    return node


# --------------------------------------------------------------------------- locations


def format_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _lines(node, path=(), acc=None) -> dict:
    """Map each path of a composed YAML node tree to its 1-based line."""
    import yaml

    acc = {} if acc is None else acc
    acc.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "<<":
                continue
            acc.setdefault(path + (key.value,), key.start_mark.line + 1)
            _lines(value, path + (key.value,), acc)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _lines(value, path + (i,), acc)
    return acc


def _line_of(lines: dict, path) -> int:
    path = tuple(path)
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


# --------------------------------------------------------------------------- references


def _named(items) -> list[str]:
    if isinstance(items, dict):
        return list(items)
    if isinstance(items, list):
        return [i for i in items if isinstance(i, str)]
    return []


def _volume_source(entry):
    if isinstance(entry, dict):
        return entry.get("source") if entry.get("type", "volume") == "volume" else None
    if isinstance(entry, str) and ":" in entry:
        src = entry.split(":", 1)[0]
        if src and not src.startswith((".", "/", "~")) and "/" not in src and "\\" not in src:
            return src
    return None


def reference_problems(doc: dict) -> list[tuple[tuple, str]]:
    """(path, problem) for references Compose resolves but the schema cannot check."""
    services = doc.get("services") or {}
    volumes = set((doc.get("volumes") or {}).keys())
    networks = set((doc.get("networks") or {}).keys()) | {"default"}
    found = []
    for name, svc in services.items():
        if not isinstance(svc, dict):
            continue
        for dep in _named(svc.get("depends_on")):
            if dep not in services:
                found.append((("services", name, "depends_on", dep), f"no service named {dep!r}"))
            elif not svc.get("profiles") and (services[dep] or {}).get("profiles"):
                found.append((("services", name, "depends_on", dep),
                              f"{name!r} runs in every profile but {dep!r} only in profiles "
                              f"{services[dep]['profiles']}: `docker compose up` would fail"))
        for i, entry in enumerate(svc.get("volumes") or []):
            src = _volume_source(entry)
            if src and src not in volumes:
                found.append((("services", name, "volumes", i),
                              f"named volume {src!r} is not declared under the top-level `volumes:`"))
        for net in _named(svc.get("networks")):
            if net not in networks:
                found.append((("services", name, "networks", net),
                              f"network {net!r} is not declared under the top-level `networks:`"))
    return found


# --------------------------------------------------------------------------- validate


def validate(path: Path, env_file: Path | None = None, environ: dict | None = None) -> dict:
    """Validate the compose file at ``path``; return the interpolated document.

    Raises :class:`ComposeError` listing every problem as ``FILE:LINE: PATH: problem``.
    """
    import yaml
    from jsonschema import validators
    from jsonschema.exceptions import best_match

    shown = paths.rel(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ComposeError(f"{shown}: cannot be read ({e.strerror or e})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}" if mark else shown
        raise ComposeError(f"{where}: YAML syntax error: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(raw, dict):
        raise ComposeError(f"{shown}:1: (document): a compose file is a mapping with `services:`")
    lines = _lines(root)

    env = read_env_file(env_file) if env_file else {}
    env.update(os.environ if environ is None else environ)
    interp_problems: list[str] = []
    doc = _interpolate_tree(raw, env, (), interp_problems)

    problems: list[tuple[int, str]] = []
    for msg in interp_problems:
        where = msg.split(":", 1)[0]
        problems.append((_line_of(lines, _parse_path(where)), msg))

    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    validator = validators.validator_for(schema)(schema)
    leaves = [best_match([err]) or err for err in validator.iter_errors(doc)]
    paths_with_errors = [tuple(e.absolute_path) for e in leaves if e.validator != "unevaluatedProperties"]
    seen = set()
    for leaf in leaves:
        where = tuple(leaf.absolute_path)
        # a failing property also makes its siblings "unevaluated": report the cause only
        if leaf.validator == "unevaluatedProperties" and any(
                p[:len(where)] == where and len(p) > len(where) for p in paths_with_errors):
            continue
        msg = f"{format_path(where)}: {leaf.message}"
        if msg not in seen:
            seen.add(msg)
            problems.append((_line_of(lines, where), msg))
    if isinstance(doc.get("services"), dict):
        for where, problem in reference_problems(doc):
            problems.append((_line_of(lines, where), f"{format_path(where)}: {problem}"))
    elif "services" not in doc:
        problems.append((1, "(document): no `services:`"))
    if problems:
        problems.sort()
        body = "\n".join(f"  {shown}:{line}: {msg}" for line, msg in problems)
        n = len(problems)
        raise ComposeError(f"{shown} is not a valid compose file ({n} problem{'s' if n > 1 else ''}):\n{body}")
    return doc


def _parse_path(text: str) -> tuple:
    out: list = []
    for m in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", text):
        out.append(int(m.group(2)) if m.group(2) is not None else m.group(1))
    return tuple(out)
