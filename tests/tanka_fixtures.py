"""Test helpers for the Tanka project: stand-in charts and the kubectl shim handler.

Other test modules use them too (e.g. the Tilt tests): ``install_charts(project)``
drops a stand-in from tests/fixtures/charts for every chart the project's
tanka/chartfile.yaml pins into ``project/tanka/charts/`` and
gives them the pinned CRDs (tools/crds/go.mod), fetched once per test session with
the project's own ``tasks.crds.download`` (``go mod download``; offline once the Go
module cache has them), the way the real charts ship them: KEDA's in the keda chart,
each Flux controller's under ``files/crds/<values key>/`` of the flux2 chart, rendered
when that controller is created. ``KUBECTL_HANDLER`` answers what ``tk apply`` /
``tk diff`` / ``apply:<env>`` ask (tests/fixtures/shims/kubectl_handler.py).
"""
from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import yaml

from support import FIXTURES, REPO

CHART_FIXTURES = FIXTURES / "charts"
KUBECTL_HANDLER = FIXTURES / "shims" / "kubectl_handler.py"
#: the KEDA CRDs come from this pinned module (build/crds/<name>/)
KEDA_MODULE = "keda"


@functools.lru_cache(maxsize=None)
def pinned_crds() -> Path:
    """The pinned CRDs, fetched once per test process into a temporary directory."""
    from tasks import crds

    dest = Path(tempfile.mkdtemp(prefix="raibid-crds-")) / "crds"
    crds.download(REPO / "tools" / "crds", dest)
    return dest


def flux_controllers(values: dict) -> dict[str, str]:
    """``values key -> controller`` of the flux2 chart: every entry with an image
    ``ghcr.io/fluxcd/<controller>`` and a ``create`` switch (the Go module of the same
    name ships its CRDs)."""
    out = {}
    for key, v in values.items():
        if isinstance(v, dict) and "create" in v and str(v.get("image", "")).startswith("ghcr.io/fluxcd/"):
            out[key] = v["image"].rsplit("/", 1)[1]
    return out


def _copy_crds(src: Path, target: Path) -> None:
    files = sorted(src.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no pinned CRDs in {src}: is it in tools/crds/go.mod?")
    target.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, target / f.name)


def chart_directories(project: Path) -> list[str]:
    """The directories ``project/tanka/chartfile.yaml`` vendors its charts into (``directory``,
    or the chart's name as Tanka defaults it), in the file's order."""
    data = yaml.safe_load((project / "tanka" / "chartfile.yaml").read_text()) or {}
    return [r.get("directory") or r["chart"].split("/", 1)[1] for r in data.get("requires") or []]


def install_charts(project: Path, crds: Path | None = None, stand_ins: Path = CHART_FIXTURES) -> Path:
    """A stand-in (from ``stand_ins``) for every chart of the project's chartfile.yaml, with the
    pinned CRDs, in ``project/tanka/charts/``; returns that dir."""
    crds = crds or pinned_crds()
    charts = project / "tanka" / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    for chart in chart_directories(project):
        if not (stand_ins / chart / "Chart.yaml").is_file():
            raise FileNotFoundError(f"tanka/chartfile.yaml pins a chart in {chart}/ but there is no stand-in "
                                    f"{stand_ins / chart}/Chart.yaml: add one (tests/fixtures/charts/README.md)")
        dst = charts / chart
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(stand_ins / chart, dst)
    _copy_crds(crds / KEDA_MODULE, charts / "keda" / "files" / "crds")
    values = yaml.safe_load((charts / "flux2" / "values.yaml").read_text())
    for key, controller in flux_controllers(values).items():
        if (crds / controller).is_dir():
            _copy_crds(crds / controller, charts / "flux2" / "files" / "crds" / key)
        elif values[key]["create"]:
            raise FileNotFoundError(f"the flux2 chart creates {controller} by default but "
                                    f"tools/crds/go.mod pins no github.com/fluxcd/{controller}")
    return charts


def kubectl_shim(shims):
    """Install the recording kubectl with the handler; returns ``shims``."""
    return shims.add("kubectl", KUBECTL_HANDLER.read_text(), read_stdin=True)
