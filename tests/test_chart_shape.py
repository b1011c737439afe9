"""The stand-in charts (tests/fixtures/charts) against the real charts' rendered shape.

tests/fixtures/charts/real-shape.json records, per environment, what the real upstream charts
render with our values (bench/real_chart_shape.py, run by hand with the real charts). The
stand-ins must render the same shape where it matters (chart_shape.differences), or a test that
passes with them says nothing of the real stack: a kube-system RoleBinding, a webhook or an
APIService that the apply and the test control plane never saw.
"""
from __future__ import annotations

import copy

import yaml

from chart_shape import chart_shape, differences, load, render_shape
from support import REPO
from tanka_fixtures import chart_directories

from tasks.render import rendered_objects

ENVS = ("local", "staging", "prod")
RBAC = "rbac.authorization.k8s.io/v1"


def _obj(kind, name, namespace=None, api="v1", **rest):
    meta = {"name": name, "labels": {"raibid.dev/component": "keda"}}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api, "kind": kind, "metadata": meta, **rest}


def _webhooks(service_ns="ns"):
    service = {"namespace": service_ns, "name": "keda-admission-webhooks", "path": "/validate"}
    return _obj("ValidatingWebhookConfiguration", "keda-admission",
                api="admissionregistration.k8s.io/v1",
                webhooks=[{"name": "vscaledobject.kb.io", "clientConfig": {"service": service}}])


REAL = [
    _obj("Deployment", "keda-operator", "ns", api="apps/v1"),
    _obj("Service", "keda-admission-webhooks", "ns"),
    _obj("Service", "keda-operator-metrics-apiserver", "ns"),
    _obj("RoleBinding", "keda-operator-auth-reader", "kube-system", api=RBAC),
    _obj("ClusterRole", "keda-operator", api=RBAC),
    _webhooks(),
    _obj("APIService", "v1beta1.external.metrics.k8s.io", api="apiregistration.k8s.io/v1",
         spec={"group": "external.metrics.k8s.io", "version": "v1beta1",
               "service": {"namespace": "ns", "name": "keda-operator-metrics-apiserver",
                           "port": 443}}),
    _obj("CustomResourceDefinition", "scaledjobs.keda.sh", api="apiextensions.k8s.io/v1"),
]


def _without(kind, name=None):
    return [o for o in REAL if o["kind"] != kind or (name and o["metadata"]["name"] != name)]


def test_the_same_shape_has_no_differences():
    assert differences(chart_shape(REAL), chart_shape(list(reversed(copy.deepcopy(REAL))))) == []


def test_each_unfaithful_stand_in_is_named():
    real = chart_shape(REAL)
    cases = {
        "a kube-system RoleBinding missing": (
            _without("RoleBinding"),
            f"no RoleBinding keda-operator-auth-reader ({RBAC}) in namespace kube-system"),
        "a kind missing in the release namespace": (
            _without("Deployment"), "no Deployment (apps/v1) in the release namespace"),
        "a cluster-scoped object missing": (
            _without("ClusterRole"), f"no ClusterRole keda-operator ({RBAC}) in cluster scope"),
        "an extra cluster-scoped object": (
            REAL + [_obj("ClusterRole", "extra", api=RBAC)],
            f"ClusterRole extra ({RBAC}) in cluster scope, which"),
        "an object in another namespace": (
            REAL + [_obj("Secret", "s", "elsewhere")],
            "Secret s (v1) in namespace elsewhere, which"),
        "another apiVersion": (
            _without("Deployment")
            + [_obj("Deployment", "keda-operator", "ns", api="apps/v1beta1")],
            "Deployment keda-operator is apps/v1beta1"),
        "no webhook configuration": (
            _without("ValidatingWebhookConfiguration"), "webhook configurations differ"),
        "a webhook naming another namespace": (
            _without("ValidatingWebhookConfiguration") + [_webhooks("other")],
            "webhook configurations differ"),
        "no APIService": (_without("APIService"), "APIServices differ"),
        "another CRD": (
            REAL + [_obj("CustomResourceDefinition", "x.keda.sh", api="apiextensions.k8s.io/v1")],
            "CRDs differ"),
        "the webhooks' Service missing": (
            _without("Service", "keda-admission-webhooks"),
            "no Service keda-admission-webhooks in namespace ns"),
        "the APIService's Service missing": (
            _without("Service", "keda-operator-metrics-apiserver"),
            "no Service keda-operator-metrics-apiserver in namespace ns"),
    }
    for case, (objects, expected) in cases.items():
        found = differences(real, chart_shape(objects))
        assert any(expected in d for d in found), (case, found)


def test_our_own_objects_are_not_a_charts():
    own = _obj("Secret", "raibid-redis", "ns")
    own["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "tanka"
    assert render_shape(REAL + [own])["keda"] == chart_shape(REAL)


def test_the_recorded_shape_is_of_the_pinned_chart_versions():
    """A pin bump in tanka/chartfile.yaml needs the real shape recorded again
    (bench/real_chart_shape.py)."""
    pins = {r.get("directory") or r["chart"].split("/", 1)[1]: str(r["version"])
            for r in yaml.safe_load((REPO / "tanka" / "chartfile.yaml").read_text())["requires"]}
    charts = load()["provenance"]["charts"]
    assert {c: charts[c]["version"] for c in charts} == pins
    assert sorted(charts) == sorted(chart_directories(REPO))
    assert all(charts[c]["commit"] and charts[c]["repository"] for c in charts)


def test_the_stand_ins_render_the_real_charts_shape(stack):
    real = load()["environments"]
    assert sorted(real) == sorted(ENVS)
    found = []
    for env in ENVS:
        stand_in = render_shape(rendered_objects(stack / "build" / "manifests" / env))
        for chart in sorted(real[env]):
            found += [f"{env}: {chart}: {d}"
                      for d in differences(real[env][chart], stand_in[chart])]
    assert not found, ("the stand-in charts (tests/fixtures/charts) render otherwise than the real "
                       "ones (tests/fixtures/charts/real-shape.json):\n" + "\n".join(found))
