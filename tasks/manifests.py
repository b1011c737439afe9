"""Checks of rendered Kubernetes manifests, offline: schemas, CRDs and policies.

Three kinds of check, all reported together as :class:`Violation` lines naming the
object (kind/name), the container where it applies, and the rule:

- **schema**: every built-in object against the real Kubernetes JSON schemas of the
  pinned version (``kubernetes_validate``, strict: unknown fields are errors);
- **crd**: every custom resource against the ``openAPIV3Schema`` of its CRD, from
  the pinned CRDs (``doit crds``: build/crds/) and from the CRDs found in the render itself (converted to JSON
  Schema: ``nullable``, ``x-kubernetes-int-or-string``,
  ``x-kubernetes-preserve-unknown-fields``; unknown fields are errors elsewhere, as the
  API server would prune them);
- **policy**: on every pod template (Deployment, StatefulSet, DaemonSet, Job,
  CronJob, KEDA ScaledJob, Pod):

  ========================  ===============================================================
  ``resources``             every container and init container sets requests and limits
                            for cpu and memory
  ``probes``                every long-running container (Deployment, StatefulSet,
                            DaemonSet; ours and the charts') has readiness and liveness
                            probes; Jobs run to completion and are exempt
  ``non-root``              runAsNonRoot (container or pod) or a numeric non-zero runAsUser
  ``no-privilege-escalation``  allowPrivilegeEscalation: false on every container
  ``image-tag``             in an environment whose deploy.json ``image_policy`` is
                            ``pinned``: every image has an explicit tag or digest,
                            never ``:latest``
  ========================  ===============================================================

  and on the objects as a whole:

  ========================  ===============================================================
  ``url-secret``            no credential inside a URL in a plain env value or ConfigMap
                            (``scheme://user:password@``, ``$(VAR)`` expansions included):
                            such a URL comes whole from a Secret, percent-encoded
  ``pdb``                   a Deployment or StatefulSet with more than one replica (or an
                            HPA minimum above one) has a PodDisruptionBudget selecting its
                            pods
  ``service``               a headless Service (``clusterIP: None``) maps no port to a
                            different targetPort (clients reach the pods directly, the
                            mapping would do nothing)
  ``gitops``                every Flux Kustomization reads a GitRepository that
                            ``publish:<env>`` writes (annotation ``raibid.dev/publish-path``)
                            and a path the published tree has (tasks/gitops.py), and
                            changes nothing of it (no targetNamespace, patches, ...)
  ========================  ===============================================================

Heavy modules (yaml, jsonschema, kubernetes_validate) are imported inside the
functions, so importing this module costs nothing.
"""
from __future__ import annotations

import copy
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

#: where the pod spec of each workload kind lives
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "ScaledJob": ("spec", "jobTargetRef", "template", "spec"),
}
#: kinds whose containers run for ever and so need probes
LONG_RUNNING = frozenset({"Deployment", "StatefulSet", "DaemonSet"})


@dataclass(frozen=True, order=True)
class Violation:
    kind: str
    name: str
    rule: str
    detail: str
    container: str = ""

    def __str__(self) -> str:
        where = f"{self.kind}/{self.name}"
        if self.container:
            where += f" container {self.container}"
        return f"{where}: {self.detail} [{self.rule}]"


# --------------------------------------------------------------------------- loading


def yaml_docs(text: str):
    """The documents of a YAML stream (libyaml's safe loader when there is one)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: 5x faster
    return yaml.load_all(text, Loader=loader)


#: bump when what :func:`file_docs` keeps changes shape
_DOCS_CACHE_VERSION = b"yaml-docs-2\0"


def file_docs(f: Path) -> list:
    """The YAML documents of a file. A file under build/ (renders, pinned CRDs) is parsed
    once: its documents are kept as JSON in build/.cache/yaml/ (with their digest: a damaged
    entry is parsed again), keyed by the SHA-256 of its text (an unchanged object of a new
    render, the pinned CRDs of every validate): reading JSON is much faster than parsing
    YAML. Documents JSON cannot hold exactly (timestamps, non-string keys) are parsed every
    time. The least recently used entries
    go beyond :data:`DOCS_CACHE_FILES`."""
    import hashlib
    import json

    from . import paths

    text = Path(f).read_text()
    build = paths.build()
    if not Path(f).resolve().is_relative_to(build):
        return list(yaml_docs(text))
    # the same object in every environment's render differs only in Tanka's environment
    # label: it is kept once, with a placeholder put back to this file's value
    labels = [m for m in _ENV_LINE.finditer(text) if _indented(text, m.start())]
    values = {m.group(1) for m in labels}
    value = values.pop() if len(values) == 1 and _ENV_PLACEHOLDER not in text else None
    if value is None:
        keyed, subs = text, 0
    else:
        keyed = "".join(_masked(text, labels))
        subs = len(labels)
    key = hashlib.sha256(_DOCS_CACHE_VERSION + keyed.encode()).hexdigest()
    entry = _docs_cache(build) / f"{key}.json"
    docs = _read_entry(entry)
    if docs is not None:
        try:
            return _put_back(docs, value, subs) if subs else docs
        except ValueError:
            pass  # kept for another text (it cannot be: damaged): parse, and keep it again
    docs = list(yaml_docs(keyed))
    exact = _json_exact(docs)  # None: not JSON-exact (timestamps, ...), parsed each time
    if subs:
        try:  # into a copy: the JSON read back, else a deep one
            put = _put_back(exact[1] if exact else copy.deepcopy(docs), value, subs)
        except ValueError:  # the placeholder stood elsewhere than as the label's value
            return list(yaml_docs(text))
    if exact and not _holds_secret(docs) and _keep(entry, _entry_text(exact[0])):
        _prune(entry.parent, DOCS_CACHE_FILES)
    return put if subs else docs


def _entry_text(docs_json: str) -> str:
    """A build/.cache/yaml entry: the SHA-256 of the documents' JSON, a newline, the JSON."""
    import hashlib

    return hashlib.sha256(docs_json.encode()).hexdigest() + "\n" + docs_json


def _read_entry(entry: Path) -> list | None:
    """The documents kept in ``entry`` (its use recorded, see :func:`_prune`); None when it
    is missing or damaged in any way (its digest tells): then parsed and kept again."""
    import hashlib
    import json

    try:
        digest, _, text = entry.read_text(encoding="utf-8").partition("\n")
        if hashlib.sha256(text.encode()).hexdigest() != digest:
            return None
        docs = json.loads(text)
        os.utime(entry)  # used: kept longest
    except (OSError, ValueError, RecursionError):
        return None
    return docs if isinstance(docs, list) else None


def _json_exact(value) -> tuple[str, Any] | None:
    """``value`` as JSON text and the value read back from it, when JSON holds it exactly
    (no timestamps, non-string keys, NaN); None otherwise."""
    import json

    try:
        text = json.dumps(value, allow_nan=False)
        back = json.loads(text)
    except (TypeError, ValueError):
        return None
    return (text, back) if back == value else None


#: the yaml cache directory of each build/, made owner-only once per process
_DOCS_DIRS: dict[Path, Path] = {}


def _docs_cache(build: Path) -> Path:
    """build/.cache/yaml/, owner-only like all of build/.cache (:func:`_keep`). One left
    open by an older version may hold parsed Secrets that others could read: emptied."""
    if build not in _DOCS_DIRS:
        import shutil

        from . import atomic

        directory = build / ".cache" / "yaml"
        try:
            atomic.private_dir(build / ".cache")
            if atomic.private_dir(directory):
                for e in os.scandir(directory):
                    if e.is_dir(follow_symlinks=False):
                        shutil.rmtree(e.path)
                    else:
                        os.unlink(e.path)
        except OSError:
            pass  # a read-only build/: nothing is kept there (_keep), hits are read as they are
        _DOCS_DIRS[build] = directory
    return _DOCS_DIRS[build]


def _holds_secret(docs: list) -> bool:
    """A Secret is never kept in a cache (build/ is cached by CI): its file is parsed each time."""
    return any(isinstance(d, dict) and d.get("kind") == "Secret" for d in docs)


def _keep(path: Path, text: str) -> bool:
    """Write a cache file of build/.cache (replaced whole, not synced; owner-only: 0600 in
    0700 directories); False when it cannot be (a read-only build/: what it would keep is
    computed each time)."""
    from . import atomic

    try:
        atomic.private_dir(path.parent)
        atomic.write_text(path, text, mode=0o600, durable=False)
    except OSError:
        return False
    return True


#: Tanka's environment label (:data:`_ENV_LABEL`) with a hex digest with a letter as its
#: value (so YAML reads it as a string, as it reads the placeholder) to the end of the line;
#: that the key is indented on a line of its own is checked by :func:`_indented` (a pattern
#: that starts with the key's text is searched for ~10x faster than one anchored at ``^``)
_ENV_LINE = re.compile(r"tanka\.dev/environment: (?=[0-9]*[a-f])([0-9a-f]{16,64})$", re.M)
_ENV_PLACEHOLDER = "raibid-env-label-placeholder"


def _indented(text: str, at: int) -> bool:
    """Whether ``text[at:]`` starts a line's content after one or more spaces."""
    start = text.rfind("\n", 0, at) + 1
    return start < at and text.count(" ", start, at) == at - start


def _masked(text: str, labels: list) -> Iterator[str]:
    """``text`` in pieces, with the value of each label match replaced by the placeholder."""
    pos = 0
    for m in labels:
        yield text[pos:m.start(1)]
        yield _ENV_PLACEHOLDER
        pos = m.end(1)
    yield text[pos:]


def _put_back(docs: list, value: str, subs: int) -> list:
    """``docs`` with each string equal to the placeholder replaced by ``value`` (in place);
    ValueError unless there were exactly ``subs`` of them (one per label line replaced)."""
    found = 0
    stack: list = [docs]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            if isinstance(v, str):
                if v == _ENV_PLACEHOLDER:
                    node[k] = value
                    found += 1
            elif isinstance(v, (dict, list)):
                stack.append(v)
        if isinstance(node, dict) and _ENV_PLACEHOLDER in node:
            raise ValueError("placeholder as a key")
    if found != subs:
        raise ValueError(f"{found} placeholders for {subs} labels")
    return docs


#: build/.cache/yaml/ keeps at most this many files (about 20 renders of every environment)
DOCS_CACHE_FILES = 4000


#: how many files each cache directory holds, as counted by :func:`_prune` in this process
_COUNTS: dict[Path, int] = {}


def _prune(directory: Path, most: int) -> None:
    """Remove the least recently used files of ``directory`` beyond ``most`` (down to 3/4).
    Called after each new entry: the directory is listed once per process and then counted,
    and listed again only when it holds too many."""
    count = _COUNTS.get(directory)
    _COUNTS[directory] = count = (count + 1) if count is not None else sum(1 for _ in os.scandir(directory))
    if count <= most:
        return
    entries = list(os.scandir(directory))
    _COUNTS[directory] = len(entries)
    if len(entries) <= most:
        return
    _COUNTS[directory] = most * 3 // 4
    entries.sort(key=lambda e: e.stat().st_mtime_ns)
    for e in entries[: len(entries) - most * 3 // 4]:
        try:
            os.unlink(e.path)
        except OSError:
            pass


def load_dir(directory: Path) -> list[tuple[str, dict]]:
    """Every object in the YAML files of a ``tk export`` directory, with its file name."""
    out = []
    for f in sorted(Path(directory).rglob("*.yaml")):
        for doc in file_docs(f):
            if isinstance(doc, dict) and doc:
                out.append((str(f.relative_to(directory)), doc))
    return out


def load_crds(paths: Iterable[Path]) -> list[dict]:
    """The CustomResourceDefinitions in the given YAML files."""
    crds = []
    for f in paths:
        for doc in file_docs(Path(f)):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    return crds


def crd_files(directory: Path) -> list[Path]:
    """The YAML files under a CRD directory (``build/crds``), sorted."""
    d = Path(directory)
    return sorted(d.rglob("*.yaml")) if d.is_dir() else []


#: the compiled index of a CRD directory (see :func:`crd_dir_index`); bump the version when
#: what it keeps changes shape
CRD_INDEX_FILE = "schemas.json"
_CRD_INDEX_VERSION = "crd-index-2"


def crd_dir_index(directory: Path) -> dict[tuple[str, str], dict]:
    """:func:`_crd_index` of the CRDs in a CRD directory's YAML files (``build/crds``),
    compiled once: kept as JSON in ``<directory>/schemas.json`` (``doit crds`` writes it with
    the CRDs; validate writes it when it is missing), keyed by every file's path and stat
    (inode, size, modification and change times: any write moves the change time, as
    :mod:`tasks.statcache` relies on). A changed, added or removed file changes the key and
    the files are parsed again; a damaged or half-written index is ignored and written again."""
    import hashlib
    import json

    d = Path(directory)
    files = crd_files(d)
    key = [_CRD_INDEX_VERSION]
    for f in files:
        st = f.stat()
        key.append([str(f.relative_to(d)), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()
    kept = d / CRD_INDEX_FILE
    try:
        got = json.loads(kept.read_text(encoding="utf-8"))
        if got["digest"] == digest:
            return {(a, k): schema for a, k, schema in got["schemas"]}
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        pass  # missing, damaged or of other files: compiled again
    index = _crd_index(load_crds(files))
    exact = _json_exact({"digest": digest, "schemas": [[a, k, s] for (a, k), s in index.items()]})
    if exact and d.is_dir():  # (writing would create a missing d)
        _keep(kept, exact[0])
    return index


# --------------------------------------------------------------------------- CRD schemas


def to_json_schema(node: Any) -> Any:
    """An ``openAPIV3Schema`` converted to JSON Schema (draft 7), strict about unknown fields."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: to_json_schema(v) if k not in ("enum", "default", "example", "required") else v
            for k, v in node.items()}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["type"] = ["integer", "string"]
    if node.pop("nullable", False) and "type" in node:
        t = node["type"]
        node["type"] = (t if isinstance(t, list) else [t]) + ["null"]
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    for key in list(node):
        if key.startswith("x-kubernetes-"):
            node.pop(key)
    return node


def _crd_index(crds: Iterable[dict]) -> dict[tuple[str, str], dict]:
    """``(apiVersion, kind) -> openAPIV3Schema`` (not converted) of every served version."""
    out = {}
    for crd in crds:
        spec = crd.get("spec", {})
        group, kind = spec.get("group"), spec.get("names", {}).get("kind")
        for v in spec.get("versions", []):
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            if schema is None or not v.get("served", True):
                continue
            out[(f"{group}/{v['name']}", kind)] = schema
    return out


def _crd_json_schema(schema: dict) -> dict:
    js = to_json_schema(schema)  # a new tree (and the schema itself is parsed afresh by _crd_validator)
    # metadata is validated by the API server itself, not by the CRD schema
    js.setdefault("properties", {})["metadata"] = {"type": "object"}
    return js


# --------------------------------------------------------------------------- checks


def _ident(obj: dict) -> tuple[str, str]:
    return obj.get("kind", "?"), (obj.get("metadata") or {}).get("name", "?")


def _path(parts) -> str:
    return ".".join(str(p) for p in parts) or "(root)"


class SchemaMissing(LookupError):
    """kubernetes-validate has no schemas for this Kubernetes version."""


class SchemaBroken(ValueError):
    """A schema file of kubernetes-validate cannot be parsed."""


def _kube_schema_dir(k8s_version: str) -> Path:
    """kubernetes-validate's strict schemas of ``k8s_version`` (settings.kubernetes_schema_dir)."""
    from .settings import kubernetes_schema_dir

    found = kubernetes_schema_dir(k8s_version)
    if found is None:
        raise SchemaMissing(f"no schemas for Kubernetes {k8s_version}")
    return found


def _read_schema(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise SchemaBroken(f"Couldn't parse schema {path}") from None


@functools.lru_cache(maxsize=None)
def _kube_definitions(schema_dir: Path):
    """The shared definitions (1.4 MB) of one version, read once per process."""
    from referencing import Resource

    return Resource.from_contents(_read_schema(schema_dir / "_definitions.json"))


class _NotInlined(LookupError):
    """A ``$ref`` that :func:`_inline_refs` leaves to the schema registry."""


#: a ``$ref`` into the shared definitions, from a kind's schema or from a definition
_DEFS_REF = re.compile(r"(?:/api/_definitions\.json)?#/\$defs/([^/]+)")
#: keywords that annotate and never validate: a ``$ref`` beside only these is its target
_ANNOTATIONS = frozenset({"$ref", "description", "title", "default", "examples", "$comment",
                          "deprecated", "readOnly", "writeOnly"})


def _inline_refs(root: dict | list, defs: dict) -> None:
    """Replace (in place) every ``{"$ref": "…#/$defs/NAME", <annotations>}`` under ``root``
    by the definition ``defs[NAME]`` itself: the same validation without a look-up per
    ``$ref`` at every level of every object (jsonschema resolves each through the
    registry: a third of the time of a first check). Definitions that refer to themselves
    make the schema a cyclic graph, which validation only follows as far as the object
    goes. :class:`_NotInlined` for any other ``$ref`` (``root`` is then partly changed)."""
    stack = [root]
    while stack:
        node = stack.pop()
        for k, v in (node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(v, dict):
                ref = v.get("$ref")
                if not isinstance(ref, str):
                    stack.append(v)
                    continue
                m = _DEFS_REF.fullmatch(ref)
                name = m and m.group(1).replace("~1", "/").replace("~0", "~")
                if name not in defs or any(a not in _ANNOTATIONS and not a.startswith("x-") for a in v):
                    raise _NotInlined(ref)
                node[k] = defs[name]
            elif isinstance(v, list):
                stack.append(v)


@functools.lru_cache(maxsize=None)
def _kube_defs_inlined(schema_dir: Path) -> dict | None:
    """The shared definitions of one version, their ``$ref`` between each other inlined
    (:func:`_inline_refs`), read once per process; None when they cannot all be."""
    defs = _read_schema(schema_dir / "_definitions.json").get("$defs")
    try:
        _inline_refs(defs, defs)
    except (_NotInlined, AttributeError, TypeError):
        return None
    return defs


def _kube_schema_file(schema_dir: Path, api_version: str, kind: str) -> Path:
    # rbac.authorization.k8s.io/v1 -> rbac-v1, as kubernetes-validate names its files
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return schema_dir / f"{kind.lower()}-{group_version}.json"


@functools.lru_cache(maxsize=None)
def _kube_validator(path: Path):
    """The validator of one built-in kind, built once per process: kubernetes-validate's
    ``validate`` reads and parses every schema again for every object."""
    import jsonschema
    from referencing import Registry, Resource

    schema = _read_schema(path)
    defs = _kube_defs_inlined(path.parent)
    if defs is not None:
        holder = {"schema": schema}
        try:
            _inline_refs(holder, defs)
            return jsonschema.Draft202012Validator(holder["schema"])
        except _NotInlined:
            schema = _read_schema(path)  # through the registry, as it was
    registry = _kube_definitions(path.parent) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=None)
def _file_id(path: Path) -> str:
    """``path`` with its size and modification time (or ``missing``), for memo keys."""
    try:
        st = path.stat()
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


@functools.lru_cache(maxsize=None)
def _checker_id() -> str:
    """What a schema check's outcome depends on besides the schema and the object: this
    module and the installed jsonschema."""
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec("jsonschema")
    origin = Path(spec.origin) if spec and spec.origin else Path("-")
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest() + "|" + _file_id(origin)


#: a label Tanka stamps on every object, different in each environment; its value (a string,
#: never checked against a pattern by either kind of schema) does not change validity
_ENV_LABEL = "tanka.dev/environment"


def _memo_key(schema_id: str, obj: dict) -> str:
    import hashlib
    import json

    labels = (obj.get("metadata") or {}).get("labels") if isinstance(obj.get("metadata"), dict) else None
    if isinstance(labels, dict) and isinstance(labels.get(_ENV_LABEL), str):
        # the same chart object in every environment: one key
        obj = {**obj, "metadata": {**obj["metadata"], "labels": {**labels, _ENV_LABEL: ""}}}
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(f"{_checker_id()}|{schema_id}|{text}".encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def _crd_validator(schema_json: str):
    """The validator of one CRD version's schema (the same CRD in every environment's render
    and in the pinned CRDs is converted once per process)."""
    import json

    import jsonschema

    return jsonschema.Draft7Validator(_crd_json_schema(json.loads(schema_json)))


def schema_violations(objs: list[dict], k8s_version: str, crds: dict,
                      valid: set[str] | None = None) -> list[Violation]:
    """Built-in objects against the Kubernetes schemas, custom resources against their CRD
    (``crds``: ``(apiVersion, kind) ->`` the CRD's ``openAPIV3Schema``, see :func:`_crd_index`).

    ``valid``, when given, holds keys of (schema, object) pairs found valid before (see
    :func:`validate_dir`): such an object is not checked again, and each object found
    valid now adds its key."""
    import json

    out = []
    crd_ids: dict = {}
    for obj in objs:
        kind, name = _ident(obj)
        key = (obj.get("apiVersion"), kind)
        if key in crds:
            if key not in crd_ids:
                crd_ids[key] = json.dumps(crds[key], sort_keys=True)
            schema_id = "crd|" + crd_ids[key]
        else:
            path = _kube_schema_file(_kube_schema_dir(k8s_version), str(key[0]), str(kind))
            schema_id = _file_id(path) + "|" + _file_id(path.parent / "_definitions.json")
        memo = _memo_key(schema_id, obj) if valid is not None else ""
        if memo and memo in valid:
            continue
        if key in crds:
            validator = _crd_validator(crd_ids[key])
            found = [Violation(kind, name, "crd", f"{_path(err.absolute_path)}: {err.message} "
                                                  f"(CRD schema of {key[0]} {kind})")
                     for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))]
        else:
            found = _kube_violations(obj, path, k8s_version)
        out += found
        if memo and not found:
            valid.add(memo)
    return out


def _kube_violations(obj: dict, path: Path, k8s_version: str) -> list[Violation]:
    kind, name = _ident(obj)
    try:
        validator = _kube_validator(path)
    except FileNotFoundError:
        return [Violation(kind, name, "crd",
                          f"no schema for {obj.get('apiVersion')} {kind}: not a Kubernetes {k8s_version} "
                          "kind and no CRD for it in the pinned CRDs (tools/crds/go.mod) or in the render")]
    except SchemaBroken as err:
        return [Violation(kind, name, "schema", f"invalid schema: {err}")]
    err = next(validator.iter_errors(obj), None)  # the first error, as kubernetes-validate reports
    if err is None:
        return []
    return [Violation(kind, name, "schema", f"{_path(err.absolute_path)}: {err.message} (Kubernetes {k8s_version})")]


def _get(obj: dict, path: tuple[str, ...]):
    for p in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(p)
    return obj


def pod_spec(obj: dict) -> dict | None:
    """The pod spec of a Pod, a workload with a pod template, or a ScaledJob (else None)."""
    path = POD_SPEC_PATHS.get(obj.get("kind"))
    pod = _get(obj, path) if path else None
    return pod if isinstance(pod, dict) else None


def containers(pod: dict) -> Iterator[tuple[dict, bool]]:
    """Each container of a pod spec, init containers first, and whether it is one."""
    for c in pod.get("initContainers") or []:
        yield c, True
    for c in pod.get("containers") or []:
        yield c, False


def image_parts(image: str) -> tuple[str, str | None, str | None]:
    """``reg:5000/raibid-server:dev@sha256:…`` -> ``("reg:5000/raibid-server", "dev",
    "sha256:…")``: the repository, the tag and the digest (None when the ref has none)."""
    name, _, digest = image.partition("@")
    head, _, last = name.rpartition("/")
    repo, sep, tag = last.rpartition(":")
    if not sep:
        repo, tag = last, None
    return (f"{head}/{repo}" if head else repo), tag, (digest or None)


def image_problem(image: str) -> str | None:
    """Why ``image`` is not pinned (no tag, or ``:latest``), or None when it is."""
    if not image:
        return "no image"
    _, tag, digest = image_parts(image)
    if digest:
        return None
    if tag is None:
        return f"image {image!r} has no tag (pin a version)"
    if tag == "latest":
        return f"image {image!r} uses :latest (pin a version)"
    return None


def image_policy(env: str) -> str:
    """deploy.json's ``image_policy`` of ``env`` (``pinned`` for an environment it does not know)."""
    from .settings import SettingsError, current

    try:
        return current().env(env).image_policy
    except (KeyError, SettingsError):
        return "pinned"


def policy_violations(objs: list[dict], env: str) -> list[Violation]:
    """The policy rules of the module docstring, on every pod template."""
    pinned = image_policy(env) == "pinned"
    out = []
    for obj in objs:
        kind, name = _ident(obj)
        path = POD_SPEC_PATHS.get(kind)
        if path is None:
            continue
        pod = _get(obj, path)
        if not isinstance(pod, dict):
            out.append(Violation(kind, name, "schema", f"no pod spec at {'.'.join(path)}"))
            continue
        pod_sc = pod.get("securityContext") or {}
        for c, is_init in containers(pod):
            cname = c.get("name", "?") + (" (init)" if is_init else "")

            def v(rule, detail, _c=cname):
                out.append(Violation(kind, name, rule, detail, _c))

            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                missing = [r for r in ("cpu", "memory") if r not in (res.get(part) or {})]
                if missing:
                    v("resources", f"resources.{part} lacks {', '.join(missing)}")
            if kind in LONG_RUNNING and not is_init:
                for probe in ("readinessProbe", "livenessProbe"):
                    if not c.get(probe):
                        v("probes", f"no {probe}")
            sc = c.get("securityContext") or {}
            non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            if uid == 0:
                v("non-root", "runs as user 0 (root)")
            elif non_root is not True and not (isinstance(uid, int) and uid > 0):
                v("non-root", "neither runAsNonRoot: true nor a numeric non-zero runAsUser")
            if sc.get("allowPrivilegeEscalation") is not False:
                v("no-privilege-escalation", "securityContext.allowPrivilegeEscalation is not false")
            if pinned:
                problem = image_problem(c.get("image", ""))
                if problem:
                    v("image-tag", problem)
    return out


#: a URL that carries a credential: ``scheme://[user]:password@`` (a $(VAR) counts)
_URL_CREDENTIAL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@]*:[^\s@]+@")


def _namespace(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("namespace", "")


def url_secret_violations(objs: list[dict]) -> list[Violation]:
    """``url-secret``: credentials inside URLs in plain env values and ConfigMaps."""
    from .problems import redact

    out = []
    for obj in objs:
        kind, name = _ident(obj)
        if kind == "ConfigMap":
            for key, value in (obj.get("data") or {}).items():
                if isinstance(value, str) and _URL_CREDENTIAL.search(value):
                    out.append(Violation(kind, name, "url-secret",
                                         f"data.{key} embeds a credential in a URL: keep the URL in a Secret"))
            continue
        path = POD_SPEC_PATHS.get(kind)
        pod = _get(obj, path) if path else None
        if not isinstance(pod, dict):
            continue
        for c, is_init in containers(pod):
            for e in c.get("env") or []:
                value = e.get("value")
                if isinstance(value, str) and _URL_CREDENTIAL.search(value):
                    shown = redact(_URL_CREDENTIAL.search(value).group(0))  # never the password
                    out.append(Violation(
                        kind, name, "url-secret",
                        f"env {e.get('name')} embeds a credential in a URL ({shown}...): "
                        "take the whole URL from a Secret (secretKeyRef), the password percent-encoded",
                        c.get("name", "?") + (" (init)" if is_init else "")))
    return out


def _selects(selector: dict, labels: dict) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items()) \
        and not (selector or {}).get("matchExpressions")


def pdb_violations(objs: list[dict]) -> list[Violation]:
    """``pdb``: workloads running more than one replica have a PodDisruptionBudget."""
    hpa_min = {(_namespace(o), (o.get("spec") or {}).get("scaleTargetRef", {}).get("kind"),
                (o.get("spec") or {}).get("scaleTargetRef", {}).get("name")): (o.get("spec") or {}).get("minReplicas", 1)
               for o in objs if o.get("kind") == "HorizontalPodAutoscaler"}
    pdbs = [o for o in objs if o.get("kind") == "PodDisruptionBudget"]
    out = []
    for obj in objs:
        kind, name = _ident(obj)
        if kind not in ("Deployment", "StatefulSet"):
            continue
        spec = obj.get("spec") or {}
        replicas = hpa_min.get((_namespace(obj), kind, name), spec.get("replicas", 1))
        if not isinstance(replicas, int) or replicas <= 1:
            continue
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not any(_namespace(p) == _namespace(obj) and _selects((p.get("spec") or {}).get("selector"), labels)
                   for p in pdbs):
            out.append(Violation(kind, name, "pdb",
                                 f"runs {replicas} replicas but no PodDisruptionBudget selects its pods "
                                 "(a node drain may take them all at once)"))
    return out


def service_violations(objs: list[dict]) -> list[Violation]:
    """``service``: a headless Service cannot map a port to another targetPort."""
    pods = []  # (namespace, pod labels, {port name: number}) of every pod template
    for o in objs:
        path = POD_SPEC_PATHS.get(o.get("kind"))
        pod = _get(o, path) if path else None
        if isinstance(pod, dict):
            tmpl = _get(o, path[:-1]) or {}
            named = {cp.get("name"): cp.get("containerPort") for c, _ in containers(pod)
                     for cp in c.get("ports") or [] if cp.get("name")}
            pods.append((_namespace(o), (tmpl.get("metadata") or {}).get("labels") or {}, named))
    out = []
    for obj in objs:
        kind, name = _ident(obj)
        spec = obj.get("spec") or {}
        if kind != "Service" or spec.get("clusterIP") != "None":
            continue
        selector = spec.get("selector") or {}
        for p in spec.get("ports") or []:
            target = p.get("targetPort")
            if isinstance(target, str):  # a named port: the number of the selected pods' port
                numbers = {named.get(target) for ns, labels, named in pods if ns == _namespace(obj) and selector
                           and all(labels.get(k) == v for k, v in selector.items())} - {None}
                target = numbers.pop() if len(numbers) == 1 else p.get("port")
            if target is not None and target != p.get("port"):
                out.append(Violation(kind, name, "service",
                                     f"headless (clusterIP: None) yet maps port {p.get('port')} to {target}: "
                                     "clients connect to the pods' own port, the mapping does nothing "
                                     "(drop clusterIP: None, or use the pod port)"))
    return out


def gitops_violations(objs: list[dict]) -> list[Violation]:
    """``gitops``: each Flux Kustomization reads a path that ``publish:<env>`` writes."""
    from . import gitops

    published = gitops.published_dirs(objs)
    out = []
    for obj in objs:
        kind, name = _ident(obj)
        if kind != "Kustomization" or not str(obj.get("apiVersion", "")).startswith("kustomize.toolkit.fluxcd.io/"):
            continue
        spec = obj.get("spec") or {}
        ref = spec.get("sourceRef") or {}
        path = gitops.normalize(spec.get("path") or "./")
        key = (ref.get("namespace") or _namespace(obj), ref.get("kind"), ref.get("name"))
        if key not in published:
            out.append(Violation(kind, name, "gitops",
                                 f"reads {ref.get('kind')}/{ref.get('name')}, which nothing here publishes "
                                 f"({gitops.PUBLISH_PATH} annotation): nothing guarantees path {spec.get('path')!r} "
                                 "exists there"))
        elif path != published[key]:
            out.append(Violation(kind, name, "gitops",
                                 f"path {spec.get('path')!r} is not in the published tree of "
                                 f"{ref.get('kind')}/{ref.get('name')}: publish:<env> writes "
                                 f"./{published[key]}/ (kustomization.yaml and the render)"))
        changes = [f for f in gitops.FLUX_TRANSFORMS if spec.get(f) not in (None, "", [], {})]
        if changes:
            out.append(Violation(kind, name, "gitops",
                                 f"sets {', '.join(changes)}: Flux would apply the published render "
                                 "changed (e.g. targetNamespace moves objects of other namespaces "
                                 "into one), not what apply:<env> applies and validate checked; "
                                 "drop it (tanka/lib/raibid/flux.libsonnet)"))
    return out


class UnsupportedVersion(ValueError):
    """The Kubernetes version has no schemas in the installed kubernetes-validate."""


def check_version(k8s_version: str) -> None:
    """Raise :class:`UnsupportedVersion`, naming the versions there are schemas for, unless
    ``k8s_version`` (MAJOR.MINOR[.PATCH]) is one of them (kubernetes-validate itself fails
    with a bare exception, or an IndexError below its oldest)."""
    import re

    from .settings import supported_kubernetes_versions

    known = supported_kubernetes_versions() or ("none",)
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", str(k8s_version))
    if not m or f"{int(m.group(1))}.{int(m.group(2))}" not in known:
        raise UnsupportedVersion(
            f"Kubernetes {k8s_version!r} (deploy.json kubernetes_version) has no schemas in "
            f"the installed kubernetes-validate: it knows {known[0]} to {known[-1]}. Set one of "
            "those in deploy.json (or upgrade kubernetes-validate), then validate again.")


def validate_objects(objs: list[dict], env: str, k8s_version: str,
                     extra_index: dict | None = None, valid: set[str] | None = None) -> list[Violation]:
    """Every violation in ``objs`` (the CRDs among them are used for their resources);
    ``extra_index``: the schemas of more CRDs, as :func:`crd_dir_index` gives them (those of
    ``objs`` win); ``valid``: see :func:`schema_violations`."""
    check_version(k8s_version)
    in_render = [o for o in objs if o.get("kind") == "CustomResourceDefinition"]
    schemas = {**(extra_index or {}), **_crd_index(in_render)}
    return sorted(set(schema_violations(objs, k8s_version, schemas, valid) + policy_violations(objs, env)
                      + url_secret_violations(objs) + pdb_violations(objs) + service_violations(objs)
                      + gitops_violations(objs)))


def validate_dir(directory: Path, env: str, k8s_version: str, crd_dir: Path) -> tuple[int, list[Violation]]:
    """Validate a ``tk export`` directory: ``(number of objects, violations)``."""
    objs = [o for _, o in load_dir(directory)]
    valid = _load_valid()
    before = len(valid)
    found = validate_objects(objs, env, k8s_version, valid=valid, extra_index=crd_dir_index(crd_dir))
    if len(valid) != before:
        _store_valid(valid)
    return len(objs), found


#: at most this many (schema, object) pairs are kept in build/.cache/schema-valid.json (a
#: dropped one costs one check)
VALID_MEMO_SIZE = 20_000


def _valid_file() -> Path:
    from . import paths

    return paths.build() / ".cache" / "schema-valid.json"


def _load_valid() -> set[str]:
    """Keys of (schema, object) pairs an earlier validate found valid: an object of a chart
    or CRD that did not change (the same in every environment) is not checked again. A key
    covers the object, the schema file or CRD schema, this module and jsonschema."""
    import json

    try:
        keys = json.loads(_valid_file().read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return set()
    return {k for k in keys if isinstance(k, str)} if isinstance(keys, list) else set()


def _store_valid(valid: set[str]) -> None:
    import json

    _keep(_valid_file(), json.dumps(sorted(valid)[-VALID_MEMO_SIZE:]))  # False: all checked each time
