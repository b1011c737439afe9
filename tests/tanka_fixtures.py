"""Test helpers for the Tanka project: stand-in charts and the kubectl shim handler.

Other test modules use them too (e.g. the Tilt tests): ``install_charts(project)``
drops the stand-in charts of tests/fixtures/charts into ``project/tanka/charts/`` and
copies the real KEDA and Flux CRDs from ../shared/crds into them (they are test data
kept outside this repository, never duplicated here); ``KUBECTL_HANDLER`` answers what
``tk apply`` / ``tk diff`` / ``apply:<env>`` ask (tests/fixtures/shims/kubectl_handler.py).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from support import FIXTURES, SHARED_CRDS

CHART_FIXTURES = FIXTURES / "charts"
KUBECTL_HANDLER = FIXTURES / "shims" / "kubectl_handler.py"

#: which CRD groups of ../shared/crds each stand-in chart ships
CRD_GROUPS = {
    "keda": ("keda.sh", "eventing.keda.sh"),
    "flux2": ("source.toolkit.fluxcd.io", "source.extensions.fluxcd.io", "kustomize.toolkit.fluxcd.io",
              "helm.toolkit.fluxcd.io", "notification.toolkit.fluxcd.io", "image.toolkit.fluxcd.io"),
}


def install_charts(project: Path, crds: Path = SHARED_CRDS) -> Path:
    """Stand-in charts (with the real CRDs) in ``project/tanka/charts/``; returns that dir."""
    charts = project / "tanka" / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    for chart in ("redis", "gitea", "keda", "flux2"):
        dst = charts / chart
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(CHART_FIXTURES / chart, dst)
        groups = CRD_GROUPS.get(chart, ())
        if groups:
            target = dst / "files" / "crds"
            target.mkdir(parents=True)
            for group in groups:
                files = sorted((crds / group).glob("*.yaml"))
                if not files:
                    raise FileNotFoundError(f"no CRDs for {group} in {crds} (set RAIBID_CRDS)")
                for f in files:
                    shutil.copy2(f, target / f"{group}_{f.name}")
    return charts


def kubectl_shim(shims):
    """Install the recording kubectl with the handler; returns ``shims``."""
    return shims.add("kubectl", KUBECTL_HANDLER.read_text(), read_stdin=True)
