"""The shape of the charts' part of a render, and how a stand-in's differs from the real one's.

The shape of a render (build/manifests/<env>/) is, per chart, what the stack relies on and a
stand-in chart can get wrong unnoticed: every object's apiVersion, kind, namespace (None for a
cluster-scoped object) and name; the webhook configurations with their webhooks' Service
references; the APIServices with theirs; the CRDs. tests/fixtures/charts/real-shape.json holds
the real charts' (bench/real_chart_shape.py regenerates it by hand); test_chart_shape.py
compares the stand-ins' render with it.
"""
from __future__ import annotations

import json
from pathlib import Path

from support import FIXTURES

REAL_SHAPE = FIXTURES / "charts" / "real-shape.json"

#: the label main.libsonnet puts on every object, naming its component
COMPONENT_LABEL = "raibid.dev/component"
#: component -> the chart (tanka/charts/<directory>) it is rendered from
COMPONENT_CHART = {"redis": "redis", "gitea": "gitea", "keda": "keda", "flux": "flux2"}
#: what our own objects of a chart's component carry (config.libsonnet); the chart's do not
OWN_OBJECT = ("app.kubernetes.io/managed-by", "tanka")
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


def chart_of(obj: dict) -> str | None:
    """The chart an object of a render comes from, or None for our own objects."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(OWN_OBJECT[0]) == OWN_OBJECT[1]:
        return None
    return COMPONENT_CHART.get(labels.get(COMPONENT_LABEL))


def _service_ref(ref: dict | None) -> dict | None:
    if not ref:
        return None
    return {k: ref.get(k) for k in ("namespace", "name", "port", "path") if ref.get(k) is not None}


def chart_shape(objects: list[dict]) -> dict:
    """One chart's objects -> their shape (sorted, so equal renders give equal shapes)."""
    out: dict = {"objects": [], "webhooks": [], "apiservices": [], "crds": []}
    for o in objects:
        meta = o.get("metadata") or {}
        kind, name = o.get("kind"), meta.get("name")
        out["objects"].append([o.get("apiVersion"), kind, meta.get("namespace"), name])
        if kind in WEBHOOK_KINDS:
            hooks = [{"name": w.get("name"),
                      "service": _service_ref((w.get("clientConfig") or {}).get("service"))}
                     for w in o.get("webhooks") or []]
            out["webhooks"].append({"kind": kind, "name": name,
                                    "webhooks": sorted(hooks, key=lambda w: w["name"] or "")})
        elif kind == "APIService":
            spec = o.get("spec") or {}
            out["apiservices"].append({"name": name, "group": spec.get("group"),
                                       "version": spec.get("version"),
                                       "service": _service_ref(spec.get("service"))})
        elif kind == "CustomResourceDefinition":
            out["crds"].append(name)
    out["objects"].sort(key=lambda r: [x or "" for x in r])
    for key in ("webhooks", "apiservices"):
        out[key].sort(key=lambda w: (w.get("kind", ""), w["name"]))
    out["crds"].sort()
    return out


def render_shape(objects: list[dict]) -> dict[str, dict]:
    """``chart -> shape`` of a render's objects (our own objects left out)."""
    by_chart: dict[str, list[dict]] = {}
    for o in objects:
        chart = chart_of(o)
        if chart:
            by_chart.setdefault(chart, []).append(o)
    return {c: chart_shape(by_chart.get(c, [])) for c in sorted(set(COMPONENT_CHART.values()))}


def _where(ns: str | None) -> str:
    return f"namespace {ns}" if ns else "cluster scope"


def _services(refs: list[dict]) -> list[dict]:
    return [r["service"] for r in refs if r.get("service")]


def release_namespace(shape: dict) -> str | None:
    """The namespace most of a chart's objects are in (the release's)."""
    counts: dict[str, int] = {}
    for _, _, ns, _ in shape["objects"]:
        if ns:
            counts[ns] = counts.get(ns, 0) + 1
    return max(sorted(counts), key=counts.get) if counts else None


def differences(real: dict, stand_in: dict) -> list[str]:
    """How one chart's stand-in shape differs from the real one, in the respects that matter
    (empty: faithful). In the release namespace, every (apiVersion, kind) of the real render is
    in the stand-in's and no kind has another apiVersion. Outside it, cluster-scoped or in another
    namespace (kube-system), the objects are the same by name: they are shared by every
    environment of a cluster and need other permissions. The webhook configurations, APIServices
    and CRDs are the same, and the Services they name are there."""
    out = []
    real_objs, stand_objs = real["objects"], stand_in["objects"]
    release = release_namespace(real)
    inside = lambda objs: [o for o in objs if o[2] == release]  # noqa: E731
    outside = lambda objs: {tuple(o) for o in objs if o[2] != release}  # noqa: E731
    kinds = {(a, k) for a, k, _, _ in inside(real_objs)}
    for a, k in sorted(kinds - {(a, k) for a, k, _, _ in inside(stand_objs)}):
        names = sorted(n for a2, k2, _, n in inside(real_objs) if (a2, k2) == (a, k))
        out.append(f"no {k} ({a}) in the release namespace; the real chart has {', '.join(names)}")
    versions: dict[str, set] = {}
    for a, k, _, _ in real_objs:
        versions.setdefault(k, set()).add(a)
    for a, k, _, n in stand_objs:
        if k in versions and a not in versions[k]:
            out.append(f"{k} {n} is {a}; the real chart's {k} is {', '.join(sorted(versions[k]))}")
    real_out, stand_out = outside(real_objs), outside(stand_objs)
    for a, k, ns, n in sorted(real_out - stand_out, key=str):
        out.append(f"no {k} {n} ({a}) in {_where(ns)}, which the real chart creates")
    for a, k, ns, n in sorted(stand_out - real_out, key=str):
        out.append(f"{k} {n} ({a}) in {_where(ns)}, which the real chart does not create")
    for key, what in (("webhooks", "webhook configurations"), ("apiservices", "APIServices"),
                      ("crds", "CRDs")):
        if real[key] != stand_in[key]:
            out.append(f"{what} differ: real {json.dumps(real[key])}, "
                       f"stand-in {json.dumps(stand_in[key])}")
    services = {(ns, n) for a, k, ns, n in stand_objs if k == "Service"}
    hooks = [w for c in real["webhooks"] for w in c["webhooks"]]
    refs = _services(real["apiservices"]) + _services(hooks)
    for ref in refs:
        if (ref.get("namespace"), ref.get("name")) not in services:
            out.append(f"no Service {ref.get('name')} in {_where(ref.get('namespace'))}, "
                       "which a webhook or APIService of the real chart names")
    return out


def load(path: Path = REAL_SHAPE) -> dict:
    return json.loads(path.read_text())
