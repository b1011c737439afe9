"""The deploy settings: ``deploy.json``, the one home of what the stack is deployed as.

One file, read by everything that needs a setting, never copied:

- doit reads it here (:func:`current`);
- jsonnet imports it (``tanka/lib/raibid/config.libsonnet`` and the inline Tanka
  environments of ``tanka/lib/raibid/environment.libsonnet``);
- the Tiltfile reads it (``read_json``);
- ``doit cluster`` generates the k3d config from it and ``cluster/k3d.yaml``.

Top-level keys: ``project``, ``namespace``, ``cluster`` (k3d cluster; kube context
``k3d-<cluster>``), ``registry`` and ``registry_port`` (the k3d registry), and
``kubernetes_version`` (schemas the manifests are validated against, and the version Helm
renders for). ``environments`` gives the properties of each Tanka environment in
``tanka/environments/`` (the environments themselves are what is on disk):

- ``kind``: ``local`` (this project's k3d cluster: images built and pushed to its registry,
  secrets generated on this machine, Tilt and ``doit up`` deploy it) or ``remote`` (a
  cluster of its own, ``context`` required);
- ``context``: the kube context of a remote environment;
- ``namespace``: default namespace (default: the top-level one);
- ``confirm_apply``: ``doit apply:<env>`` and ``publish:<env>`` refuse without ``--yes``
  (default false);
- ``image_policy``: ``pinned`` (every image names a version or digest; not ``latest``,
  ``dev`` or untagged) or ``any``. Default: ``any`` for local, ``pinned`` for remote.

The plan tracker (``plan.yaml``) is another file: a broken tracker never blocks a deploy.
Every problem here is reported as ``deploy.json:LINE: what is wrong`` with its fix.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import NamedTuple

from . import paths
from .problems import SHOWN_PROBLEMS, InputError, Problem, shown, utf8_problem

FILE = "deploy.json"
KINDS = ("local", "remote")
IMAGE_POLICIES = ("pinned", "any")

# matched with fullmatch: `$` also matches before a final newline ("raibid-ci\n")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HOST = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
                   r"(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*")
_K8S_VERSION = re.compile(r"(\d{1,3})\.(\d{1,3})(\.\d{1,4})?")
#: a kube context: any printable name, without surrounding spaces
_CONTEXT = re.compile(r"[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]{0,251}[^\x00-\x20\x7f])?")
#: deploy.json takes a few hundred bytes: a larger file is an accident (or an attack) and
#: is refused before it is parsed
MAX_BYTES = 256 * 1024
#: the settings are three levels deep
MAX_DEPTH = 32
#: longer integers are kept as :class:`_Digits` (Python refuses to read past 4300 digits)
MAX_DIGITS = 30
_TOP = ("project", "namespace", "cluster", "registry", "registry_port", "kubernetes_version", "environments")
_ENV_KEYS = ("kind", "context", "namespace", "confirm_apply", "image_policy")


class SettingsError(InputError):
    """deploy.json is not valid; ``str()`` lists every problem with its line."""


class Environment(NamedTuple):
    """One Tanka environment's deploy properties (``deploy.json`` ``environments.<name>``).
    NamedTuples, not frozen dataclasses: those cost every doit start milliseconds to create."""

    name: str
    kind: str
    context: str
    namespace: str
    confirm_apply: bool = False
    image_policy: str = "any"

    @property
    def local(self) -> bool:
        """Deployed to this project's k3d cluster (images from its registry, local secrets)."""
        return self.kind == "local"


class Settings(NamedTuple):
    project: str
    namespace: str
    cluster: str
    registry: str
    registry_port: int
    kubernetes_version: str
    envs: dict  # name -> Environment, in deploy.json's order

    @property
    def environments(self) -> tuple[str, ...]:
        """The environment names, in deploy.json's order."""
        return tuple(self.envs)

    def env(self, name: str) -> Environment:
        return self.envs[name]

    def local_env(self) -> Environment | None:
        """The environment of kind ``local`` (``doit up`` and Tilt deploy it), if there is one."""
        return next((e for e in self.envs.values() if e.local), None)

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
        """The kube context of the project's k3d cluster (k3d names it so)."""
        return f"k3d-{self.cluster}"


# --------------------------------------------------------------------------- reading


def file() -> Path:
    return paths.root() / FILE


def environments_dir() -> Path:
    return paths.tanka() / "environments"


def environments_on_disk(root: Path | None = None) -> list[str]:
    """The Tanka environments: every ``tanka/environments/<name>/main.jsonnet``."""
    base = (root / "tanka" / "environments") if root else environments_dir()
    return sorted(p.parent.name for p in base.glob("*/main.jsonnet"))


_CACHE: dict[Path, tuple[tuple, Settings]] = {}


def current() -> Settings:
    """The project's settings, read once per process (again when deploy.json or the set of
    environments on disk changes). Raises :class:`SettingsError`."""
    path = file()
    try:
        st = path.stat()
        envs = environments_dir()
        key = (st.st_mtime_ns, st.st_size, envs.stat().st_mtime_ns if envs.is_dir() else 0)
    except OSError:
        key = None
    hit = _CACHE.get(path)
    if key is not None and hit and hit[0] == key:
        return hit[1]
    s = load(path)
    if key is not None:
        _CACHE[path] = (key, s)
    return s


def current_or_exit() -> Settings:
    """:func:`current`; on a broken deploy.json print every problem and exit 2 (for task
    creators and commands: nothing has run yet)."""
    from .problems import or_exit

    return or_exit(current)


def load(path: Path, on_disk: list[str] | None = None) -> Settings:
    source = FILE if path == file() else paths.rel(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)  # no more than can be refused
    except FileNotFoundError:
        raise SettingsError(source, [Problem(0, "file not found", f"run doit from the project root, next to {FILE}")]) from None
    except OSError as e:
        raise SettingsError(source, [Problem(0, f"cannot read the file: {e.strerror or e}",
                                             "check the file (UTF-8 JSON) and its permissions")]) from None
    if len(data) > MAX_BYTES:
        raise SettingsError(source, [_too_large(data.count(b"\n", 0, MAX_BYTES) + 1)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SettingsError(source, [utf8_problem(data, e)]) from None
    if on_disk is None:
        on_disk = environments_on_disk(path.parent)
    return loads(text, source, on_disk)


def loads(text: str, source: str = FILE, on_disk: list[str] | None = None) -> Settings:
    """Parse and check deploy.json's text; ``on_disk`` is the environments found in
    tanka/environments/ (None: not checked). Raises :class:`SettingsError`."""
    if len(text) > MAX_BYTES:
        raise SettingsError(source, [_too_large(text.count("\n", 0, MAX_BYTES) + 1)])
    try:
        doc = json.loads(text, parse_int=_int)
    except json.JSONDecodeError as e:
        raise SettingsError(source, [Problem(e.lineno, f"not valid JSON: {e.msg}",
                                             "fix the JSON syntax (a missing comma or quote, a trailing comma?)",
                                             e.colno)]) from None
    except RecursionError:  # nested deeper than the parser goes: _layout names where
        doc = None
    layout = _layout(text)
    if layout.too_deep:
        line, column = layout.too_deep
        raise SettingsError(source, [Problem(line, f"nested more than {MAX_DEPTH} levels deep",
                                             "the settings are three levels deep: check the "
                                             "brackets here", column)])
    c = _Checker(layout.lines)
    for path, line, first in layout.duplicates:
        c.problems.append(Problem(line, f"duplicate key {shown(path[-1])} (first at line {first})",
                                  "keep one of them: JSON readers disagree on which one counts"))
    if not isinstance(doc, dict):
        raise SettingsError(source, [Problem(1, "the file must be a JSON object at the top",
                                             'start with `{"project": ..., "environments": {...}}`')])
    c.keys(doc, (), _TOP, _TOP)
    name = {k: c.name(doc, k) for k in ("project", "namespace", "cluster")}
    registry = doc.get("registry")
    if not (isinstance(registry, str) and _HOST.fullmatch(registry)):
        c.add(("registry",), f"'registry' must be a host name (lowercase letters, digits, '-' and '.'; "
              f"no scheme, port or path: the port is registry_port), got {shown(registry)}",
              '"registry": "raibid-registry.localhost"')
    port = doc.get("registry_port")
    if not (isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535):
        c.add(("registry_port",), f"'registry_port' must be a port number, got {shown(port)}",
              '"registry_port": 5111')
    version = doc.get("kubernetes_version")
    c.kubernetes_version(version)
    envs = _environments(c, doc.get("environments"), name["namespace"], name["cluster"], on_disk)
    if c.problems:
        raise SettingsError(source, c.problems)
    return Settings(project=name["project"], namespace=name["namespace"], cluster=name["cluster"],
                    registry=registry, registry_port=port, kubernetes_version=version, envs=envs)


def _environments(c: "_Checker", m, namespace: str, cluster: str, on_disk: list[str] | None) -> dict:
    if not isinstance(m, dict) or not m:
        c.add(("environments",), "'environments' must be an object with an entry per Tanka environment",
              '"environments": {"local": {"kind": "local"}}')
        return {}
    out: dict[str, Environment] = {}
    for name, e in m.items():
        where = ("environments", name)
        if not _DNS_LABEL.fullmatch(name):
            c.add(where, f"environment name {shown(name)} must be a lowercase Kubernetes-style "
                  "name (letters, digits and '-', at most 63; it names the folder "
                  "tanka/environments/<name>)", "rename it")
            continue
        if not isinstance(e, dict):
            c.add(where, f"environment {name!r} must be an object", f'"{name}": {{"kind": "remote", "context": "..."}}')
            continue
        c.keys(e, where, ("kind",), _ENV_KEYS)
        kind = e.get("kind")
        if kind not in KINDS:
            c.add(where + ("kind",), f"environment {name!r}: 'kind' must be one of "
                  f"{', '.join(KINDS)}, got {shown(kind)}",
                  '"kind": "local" (this project\'s k3d cluster) or "remote" (a cluster of its own, with "context")')
            continue
        ctx = e.get("context")
        if kind == "local":
            if ctx is not None:
                c.add(where + ("context",), f"environment {name!r} is local: its context is the project's k3d "
                      f"cluster's (k3d-{cluster}), never set here", 'delete "context" (or make the environment "remote")')
            ctx = f"k3d-{cluster}"
        elif not (isinstance(ctx, str) and ctx.strip()):
            c.add(where + ("context",) if "context" in e else where,
                  f"environment {name!r} is remote: it needs the kube context of its cluster",
                  f'"context": "{name}" (a context name in your kubeconfig)')
            continue
        elif not _CONTEXT.fullmatch(ctx):
            c.add(where + ("context",), f"environment {name!r}: 'context' must be a kube "
                  "context's name (no control characters or surrounding spaces), "
                  f"got {shown(ctx)}",
                  f'"context": "{name}" (a context name in your kubeconfig)')
            continue
        ns = e.get("namespace", namespace)
        if "namespace" in e and not (isinstance(ns, str) and _DNS_LABEL.fullmatch(ns)):
            c.add(where + ("namespace",), f"environment {name!r}: 'namespace' must be a "
                  f"Kubernetes name, got {shown(ns)}",
                  '"namespace": "raibid-system"')
        confirm = e.get("confirm_apply", False)
        if not isinstance(confirm, bool):
            c.add(where + ("confirm_apply",), f"environment {name!r}: 'confirm_apply' must be true or false, "
                  f"got {shown(confirm)}", '"confirm_apply": true')
        policy = e.get("image_policy", "any" if kind == "local" else "pinned")
        if policy not in IMAGE_POLICIES:
            c.add(where + ("image_policy",), f"environment {name!r}: 'image_policy' must be one of "
                  f"{', '.join(IMAGE_POLICIES)}, got {shown(policy)}", '"image_policy": "pinned"')
        out[name] = Environment(name, kind, ctx, ns, confirm is True, policy)
    locals_ = [n for n, e in out.items() if e.local]
    if len(locals_) > 1:
        c.add(("environments", locals_[1], "kind"), f"environments {', '.join(map(repr, locals_))} are all local: "
              "one environment deploys to the project's k3d cluster", 'make the others "remote", with their "context"')
    if on_disk is not None:
        for name in m:
            if isinstance(name, str) and _DNS_LABEL.fullmatch(name) and name not in on_disk:
                close = c.close(name, on_disk)
                c.add(("environments", name), f"environment {name!r} has no Tanka environment "
                      f"(tanka/environments/{name}/main.jsonnet does not exist)",
                      f"did you mean {close!r}?" if close else
                      f"create tanka/environments/{name}/main.jsonnet "
                      "(see CONTRIBUTING.md, \"Add an environment\"), or delete the entry")
        for name in on_disk:
            if name not in m:
                c.add(("environments",), f"tanka/environments/{name}/ has no entry in 'environments': its kind, "
                      "context and apply rules are not known", f'add "{name}": {{"kind": "remote", "context": '
                      f'"<kube context>"}} (see CONTRIBUTING.md, "Add an environment")')
    return out


@functools.lru_cache(maxsize=1)
def kubernetes_schemas() -> Path | None:
    """kubernetes-validate's ``kubernetes-json-schema/`` directory (its package data, found
    without importing it), None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("kubernetes_validate")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if (Path(loc) / "kubernetes-json-schema").is_dir():
            return Path(loc) / "kubernetes-json-schema"
    return None


@functools.lru_cache(maxsize=1)
def _schema_releases() -> tuple[tuple[int, int, int], ...]:
    """The Kubernetes releases kubernetes-validate has strict schemas of
    (``v1.33.0-local-strict/``), sorted; listed once per process."""
    root = kubernetes_schemas()
    found = (re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)-local-strict", d.name) for d in (root.iterdir() if root else ()))
    return tuple(sorted(tuple(int(x) for x in m.groups()) for m in found if m))


@functools.lru_cache(maxsize=None)
def kubernetes_schema_dir(k8s_version: str) -> Path | None:
    """kubernetes-validate's strict schemas of ``k8s_version``'s minor version, as its own
    ``validate`` picks them (the newest release not newer than that minor); None when the
    package or such a release is not there."""
    mm = re.match(r"v?(\d+)\.(\d+)", k8s_version)
    want = mm and (int(mm.group(1)), int(mm.group(2)))
    fits = [r for r in _schema_releases() if want and r[:2] <= want]
    return kubernetes_schemas() / "v{}.{}.{}-local-strict".format(*fits[-1]) if fits else None


def kubernetes_schema_stamp(k8s_version: str) -> str:
    """What validate's outcome takes from kubernetes-validate: the schema release it checks
    ``k8s_version`` against and its shared definitions' size and modification time (an
    upgrade or reinstall of the package changes it), or ``none``."""
    d = kubernetes_schema_dir(k8s_version)
    try:
        st = (d / "_definitions.json").stat() if d else None
    except OSError:
        st = None
    return f"{d.name}:{st.st_size}:{st.st_mtime_ns}" if d and st else "none"


def supported_kubernetes_versions() -> tuple[str, ...]:
    """The Kubernetes minor versions (``1.33``) whose schemas the installed kubernetes-validate has."""
    return tuple(f"{a}.{b}" for a, b in sorted({r[:2] for r in _schema_releases()}))


class _Digits(NamedTuple):
    """An integer too long to read (JSON puts no limit on digits): never a valid setting."""

    text: str

    def __repr__(self) -> str:
        return f"a number of {len(self.text.lstrip('-'))} digits"


def _int(text: str):
    return int(text) if len(text) <= MAX_DIGITS else _Digits(text)


def _too_large(line: int) -> Problem:
    return Problem(line, f"the file is larger than {MAX_BYTES // 1024} KiB (from this line on): "
                   "the deploy settings take a few hundred bytes",
                   "remove what does not belong in deploy.json")


class _Layout(NamedTuple):
    lines: dict          # key path -> line of its first occurrence
    duplicates: list     # (key path, line, line of the first occurrence)
    too_deep: tuple      # (line, column) of the first bracket past MAX_DEPTH, or ()


#: the JSON tokens that give the structure: strings (keys among them) and punctuation
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]')


def _layout(text: str) -> _Layout:
    """Where each key of the JSON ``text`` is, which keys are duplicates and where it is
    nested too deep, in one pass over its tokens (no recursion)."""
    lines: dict = {}
    duplicates: list = []
    stack: list[list] = []  # per open container: [is object, current key or index, {key: line}]
    line, counted = 1, 0
    pending = None  # a string: a key when ':' follows
    for m in _TOKEN.finditer(text):
        ch = m.group()[0]
        if ch == '"':
            pending = m
            continue
        if ch == ":" and pending is not None and stack and stack[-1][0]:
            line += text.count("\n", counted, pending.start())
            counted = pending.start()
            try:
                key = json.loads(pending.group())
            except ValueError:
                key = pending.group()[1:-1]
            top = stack[-1]
            top[1] = key
            if key in top[2]:
                duplicates.append((tuple(s[1] for s in stack), line, top[2][key]))
            else:
                top[2][key] = line
                lines.setdefault(tuple(s[1] for s in stack), line)
        pending = None
        if ch in "{[":
            if len(stack) >= MAX_DEPTH:
                line += text.count("\n", counted, m.start())
                column = m.start() - text.rfind("\n", 0, m.start())
                return _Layout(lines, duplicates, (line, column))
            stack.append([ch == "{", None if ch == "{" else 0, {}])
        elif ch in "}]":
            if stack:
                stack.pop()
        elif ch == "," and stack and not stack[-1][0]:
            stack[-1][1] += 1
    return _Layout(lines, duplicates, ())


class _Checker:
    """Collects problems; knows the line of each key path (:func:`_layout`)."""

    def __init__(self, lines: dict):
        self.lines = lines
        self.problems: list[Problem] = []

    def line(self, path: tuple) -> int:
        """The line of the last key of ``path`` (or of the deepest of its parents found)."""
        for n in range(len(path), 0, -1):
            line = self.lines.get(path[:n])
            if line:
                return line
        return 1

    def close(self, word, choices) -> str | None:
        """The choice ``word`` is a misspelling of, if any; not looked for in a long word or
        past the problems shown (difflib's cost grows with both)."""
        if not isinstance(word, str) or len(word) > 64 or len(self.problems) >= SHOWN_PROBLEMS:
            return None
        import difflib

        close = difflib.get_close_matches(word, choices, n=1)
        return close[0] if close else None

    def add(self, path: tuple, message: str, fix: str = "") -> None:
        self.problems.append(Problem(self.line(path), message, f"write {fix}" if fix.startswith(('"', "{")) else fix))

    def keys(self, m: dict, where: tuple, required: tuple, allowed: tuple) -> None:
        what = ".".join(where) or "the top level"
        for k in required:
            if k not in m:
                self.add(where, f"{what}: {k!r} is missing", f"add {k!r} (see README.md, \"Settings\")")
        for k in m:
            if k not in allowed:
                close = self.close(k, allowed)
                self.add(where + (k,), f"{what}: unknown key {shown(k)}",
                         f"did you mean {close!r}?" if close else
                         f"known keys: {', '.join(allowed)}")

    def name(self, m: dict, key: str) -> str:
        v = m.get(key)
        if not (isinstance(v, str) and _DNS_LABEL.fullmatch(v)):
            self.add((key,), f"{key!r} must be a Kubernetes name (lowercase letters, digits and "
                     f"'-', at most 63), got {shown(v)}",
                     '"namespace": "raibid-system"' if key == "namespace"
                     else f'"{key}": "raibid-ci"')
        return v

    def kubernetes_version(self, version) -> None:
        known = supported_kubernetes_versions()
        if not isinstance(version, str):
            self.add(("kubernetes_version",),
                     f"'kubernetes_version' must be a string, got {shown(version)}",
                     '"kubernetes_version": "1.33.0"')
            return
        mm = _K8S_VERSION.fullmatch(version)
        if mm and (not known or f"{int(mm.group(1))}.{int(mm.group(2))}" in known):
            return
        what = "is not a Kubernetes version (MAJOR.MINOR.PATCH)" if not mm else \
            "is a version the manifest validator cannot check"
        span = f"; kubernetes-validate knows {known[0]} to {known[-1]}" if known else ""
        self.add(("kubernetes_version",), f"'kubernetes_version' {shown(version)} {what}{span}",
                 f'"kubernetes_version": "{known[-1] if known else "1.33"}.0"')
