"""The Helm charts of chartfile.yaml: their pins, and ``vendor:charts``, which vendors them
into tanka/charts/.

``vendor:charts`` runs when chartfile.yaml changed or a chart is missing or not at its
pin; ``tk tool charts vendor`` itself skips charts already at their pin, so with the
charts present nothing touches the network.
"""
from __future__ import annotations

from doit.exceptions import TaskFailed

from . import paths, tools
from .tanka import chartfile, charts_dir, files_under, tk

#: the chart directories chartfile.yaml vendors into tanka/charts/
CHARTS = ("redis", "gitea", "keda", "flux2")


def chart_files() -> list[str]:
    return files_under(*(charts_dir() / c for c in CHARTS))


def charts_present() -> bool:
    return all((charts_dir() / c / "Chart.yaml").is_file() for c in CHARTS)


def pinned_charts() -> dict[str, str]:
    """``directory -> version`` from chartfile.yaml."""
    import yaml

    data = yaml.safe_load(chartfile().read_text()) or {}
    return {(r.get("directory") or r["chart"].split("/", 1)[1]): str(r["version"])
            for r in data.get("requires", [])}


def charts_at_pins() -> bool:
    """True when every chart of chartfile.yaml is vendored at its pinned version."""
    import yaml

    try:
        pins = pinned_charts()
    except (OSError, KeyError, ValueError):
        return False
    for directory, version in pins.items():
        chart_yaml = charts_dir() / directory / "Chart.yaml"
        try:
            if str((yaml.safe_load(chart_yaml.read_text()) or {}).get("version")) != version:
                return False
        except OSError:
            return False
    return True


def _vendor_charts():
    proc = tk("tool", "charts", "vendor")
    if proc.returncode != 0:
        return TaskFailed(f"`tk tool charts vendor` failed (exit {proc.returncode}):\n{proc.stderr.strip()}\n"
                          f"Check {paths.rel(chartfile())} and the network; charts already at their "
                          "pinned version are never downloaded again.")
    missing = [c for c in CHARTS if not (charts_dir() / c / "Chart.yaml").is_file()]
    if missing:
        return TaskFailed(f"after vendoring, tanka/charts/ lacks {', '.join(missing)}: "
                          f"{paths.rel(chartfile())} must pin exactly {', '.join(CHARTS)}")
    return None


def task_vendor():
    """Vendor the pinned Helm charts into tanka/charts/ (offline once they are there)."""
    yield tools.needs({
        "name": "charts",
        "doc": "Vendor the four pinned Helm charts (redis, gitea, keda, flux2) with `tk tool charts vendor`",
        "actions": [_vendor_charts],
        "file_dep": [str(chartfile())],
        "targets": [str(charts_dir() / c / "Chart.yaml") for c in CHARTS],
        "uptodate": [charts_at_pins],
        "verbosity": 1,
    }, "tk", "helm")
