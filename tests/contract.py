"""The raibid-ci environment contract (tests/fixtures/contract/{agent,server}.json): each
variable's expected form, and a rendered container's environment resolved and checked
against it. Used by tests/test_contract.py and bench/realci.py.

A form is what raibid-ci at the pinned commit does with the value (the fixture's `read`
and `use` say where): the agent builds ``http://{GITEA_HOST}/{repo}.git``, so GITEA_HOST is
``host:port``, and a URL there makes every clone fail.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from support import FIXTURES

CONTRACT = FIXTURES / "contract"

#: the workload and container of each raibid-ci binary in a render
WORKLOADS = {"server": ("Deployment", "raibid-server", "server"),
             "agent": ("ScaledJob", "raibid-agent", "agent")}

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+\Z")
_ENCODED = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*\Z")
_LEVELS = {"trace", "debug", "info", "warn", "error", "off"}
_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_:]*\Z")
#: Kubernetes' expansion of an earlier variable in a value
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _host(v: str) -> bool:
    """A DNS name (RFC 1123 labels) or an IPv4 literal: what a socket address resolves."""
    try:
        return ipaddress.ip_address(v).version == 4
    except ValueError:
        pass
    return 0 < len(v) <= 253 and all(_LABEL.match(label) for label in v.lower().split("."))


def _port(v: str) -> bool:
    return v.isascii() and v.isdigit() and 0 < int(v) < 65536


def _host_port(v: str) -> bool:
    host, sep, port = v.rpartition(":")
    return bool(sep) and _host(host) and _port(port)


def _ip(v: str) -> bool:
    """An IP literal as Rust's SocketAddr parses ``{host}:{port}``: IPv4, or IPv6 in brackets."""
    bracketed = v.startswith("[") and v.endswith("]")
    try:
        return ipaddress.ip_address(v[1:-1] if bracketed else v).version == (6 if bracketed else 4)
    except ValueError:
        return False


def _positive(v: str) -> bool:
    return v.isascii() and v.isdigit() and 0 < int(v) < 2**64


def _env_filter(v: str) -> bool:
    """tracing's EnvFilter directives: ``level`` or ``target=level``, comma-separated."""
    def directive(d: str) -> bool:
        target, sep, level = d.partition("=")
        if not sep:
            return d.lower() in _LEVELS or bool(_TARGET.match(d))
        return bool(_TARGET.match(target)) and level.lower() in _LEVELS
    return bool(v) and all(directive(d) for d in v.split(","))


def _redis_url(v: str) -> bool:
    """redis://[[user]:password@]host[:port][/db], the userinfo percent-encoded."""
    try:
        u = urlsplit(v)
        port = u.port
    except ValueError:
        return False
    userinfo = u.netloc.rpartition("@")[0]
    return (u.scheme in ("redis", "rediss") and _host(u.hostname or "")
            and (port is None or 0 < port)
            and all(_ENCODED.match(p) for p in userinfo.split(":", 1))
            and (u.path in ("", "/") or u.path[1:].isdigit()) and not (u.query or u.fragment))


#: form name -> (predicate, what it means, for the message)
FORMS = {
    "string": (lambda v: v != "", "a non-empty string"),
    "host": (_host, "a bare host name or IPv4 address (no scheme, port or path)"),
    "host:port": (_host_port, "host:port (no scheme, no path)"),
    "ip": (_ip, "an IP literal (a host name does not parse)"),
    "port": (_port, "a port number, 1-65535"),
    "positive-integer": (_positive, "a positive decimal integer"),
    "bool": (lambda v: v in ("true", "false"), "true or false"),
    "log-format": (lambda v: v in ("json", "text"), "json or text"),
    "env-filter": (_env_filter, "tracing EnvFilter directives (LEVEL or TARGET=LEVEL, ...)"),
    "redis-url": (_redis_url, "redis://[:password@]host:port[/db], the password percent-encoded"),
    "url-safe": (lambda v: bool(_URL_SAFE.match(v)),
                 "only A-Z a-z 0-9 - . _ ~ (inserted into a URL unencoded)"),
    "absolute-path": (lambda v: v.startswith("/"), "an absolute path"),
}


def load(binary: str) -> dict:
    """The contract of ``binary`` (server or agent): its fixture as JSON."""
    return json.loads((CONTRACT / f"{binary}.json").read_text())


@dataclass(frozen=True)
class Unresolved:
    """A value the render cannot give: a Secret created in the cluster, a pod field."""
    why: str


def container(objs: list[dict], binary: str) -> dict:
    """The container of raibid-ci's ``binary`` in a render's objects."""
    kind, name, cname = WORKLOADS[binary]
    (obj,) = [o for o in objs if o.get("kind") == kind and o["metadata"]["name"] == name]
    spec = obj["spec"]["jobTargetRef" if kind == "ScaledJob" else "template"]
    pod = spec["template"]["spec"] if kind == "ScaledJob" else spec["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == cname]
    return c


def _source_data(objs: list[dict], kind: str, name: str) -> dict | None:
    hits = [o for o in objs if o.get("kind") == kind and o["metadata"]["name"] == name]
    if not hits:
        return None
    o = hits[0]
    data = dict(o.get("data") or {})
    if kind == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in data.items()}
    return {**data, **(o.get("stringData") or {})}


def resolve(objs: list[dict], env: list[dict],
            fields: dict | None = None) -> tuple[dict, list[str]]:
    """A container's ``env`` list as Kubernetes gives it to the process: NAME -> value (or
    :class:`Unresolved`), ConfigMap and Secret keys looked up in the render, ``$(VAR)`` of
    an earlier variable expanded; ``fields`` gives pod fields (fieldPath -> value). Also the
    references that cannot work (a ConfigMap or key the render lacks)."""
    out: dict = {}
    problems: list[str] = []
    for e in env:
        name, src = e["name"], e.get("valueFrom")
        if src is None:
            out[name] = _VAR.sub(lambda m: out[m[1]] if isinstance(out.get(m[1]), str) else m[0],
                                 e.get("value", ""))
        elif "fieldRef" in src:
            path = src["fieldRef"]["fieldPath"]
            out[name] = (fields or {}).get(path, Unresolved(f"pod field {path}"))
        else:
            ref_kind = "configMapKeyRef" if "configMapKeyRef" in src else "secretKeyRef"
            ref = src[ref_kind]
            kind = "ConfigMap" if ref_kind == "configMapKeyRef" else "Secret"
            data = _source_data(objs, kind, ref["name"])
            if data is None and kind == "Secret":
                out[name] = Unresolved(f"Secret {ref['name']} is created in the cluster")
            elif data is None or ref["key"] not in data:
                what = f"{kind} {ref['name']}"
                what += "" if data is None else f" has no key {ref['key']}"
                if not ref.get("optional"):
                    problems.append(f"{name}: {what} in the render")
                out[name] = Unresolved(what)
            else:
                out[name] = str(data[ref["key"]])
    return out, problems


def check(contract: dict, values: dict) -> list[str]:
    """Why ``values`` (NAME -> value, from :func:`resolve`) break ``contract``: a name
    raibid-ci does not read, a value not of its form, a non-secret value the render lacks."""
    problems = []
    for name, value in values.items():
        spec = contract["env"].get(name)
        if spec is None:
            problems.append(f"{name}: not read by raibid-ci (not in the contract)")
            continue
        if isinstance(value, Unresolved):
            if not (spec.get("secret") or spec["form"] == "string"):
                problems.append(f"{name}: {value.why}; the contract needs {FORMS[spec['form']][1]}")
            continue
        ok, meaning = FORMS[spec["form"]]
        if not ok(value):
            problems.append(f"{name}={value!r} is not {meaning}: raibid-ci reads it at "
                            f"{spec['read']}"
                            + (f", {spec['use']}" if "use" in spec else ""))
    return problems


def rendered_env(render_dir: Path, binary: str,
                 fields: dict | None = None) -> tuple[dict, list[str]]:
    """The resolved environment of ``binary`` in a render directory (build/manifests/<env>)."""
    from tasks.render import rendered_objects

    objs = rendered_objects(render_dir)
    return resolve(objs, container(objs, binary).get("env") or [], fields)


def loopback(values: dict, addresses: dict[str, str]) -> dict:
    """``values`` with every in-cluster address moved: ``addresses`` maps ``host:port`` to
    the loopback ``host:port`` standing in for it, in any value (a URL, a host:port) and in
    a pair of variables X_HOST and X_PORT that together name one."""
    out = {}
    for name, value in values.items():
        if isinstance(value, str):
            for old, new in addresses.items():
                value = value.replace(old, new)
        out[name] = value
    for name in [n for n in values if n.endswith("_HOST") and n[:-5] + "_PORT" in values]:
        port = name[:-5] + "_PORT"
        new = addresses.get(f"{values[name]}:{values[port]}")
        if new:
            out[name], out[port] = new.rsplit(":", 1)
    return out
