"""The Helm charts of chartfile.yaml: their pins, and ``vendor:charts``, which vendors them
into tanka/charts/.

The charts are those chartfile.yaml pins (``requires``): adding a chart there is all it
takes for vendoring, the render's inputs and the "charts present" check to include it.
``vendor:charts`` runs when chartfile.yaml changed or a chart is missing or not at its
pin; ``tk tool charts vendor`` itself skips charts already at their pin, so with the
charts present nothing touches the network.
"""
from __future__ import annotations

from doit.exceptions import TaskFailed

from . import paths, tools
from .tanka import chartfile, charts_dir, files_under, tk


class ChartfileError(ValueError):
    """chartfile.yaml cannot be read or does not say what to vendor."""


def _chartfile_error(what: str) -> ChartfileError:
    """chartfile.yaml's name (resolved only for a message: every doit start reads the pins)
    followed by ``what``."""
    return ChartfileError(f"{paths.rel(chartfile())}{what}")


def pinned_charts() -> dict[str, str]:
    """``directory -> version`` from chartfile.yaml, in its order (raises
    :class:`ChartfileError`, naming the file, when it cannot be read)."""
    from .statcache import load_yaml

    try:
        data = load_yaml(chartfile()) or {}
    except OSError as e:
        raise _chartfile_error(f" cannot be read: {e.strerror or e}") from None
    except ValueError as e:  # not YAML
        raise _chartfile_error(f" cannot be read: {e}") from None
    requires = data.get("requires") if isinstance(data, dict) else None
    if not isinstance(requires, list):
        raise _chartfile_error(": `requires` must be a list of charts (chart, version)")
    pins = {}
    for n, r in enumerate(requires, 1):
        if not (isinstance(r, dict) and isinstance(r.get("chart"), str) and "/" in r["chart"]
                and r.get("version") is not None):
            raise _chartfile_error(f": requires entry {n} needs `chart: <repo>/<name>` and `version`")
        pins[r.get("directory") or r["chart"].split("/", 1)[1]] = str(r["version"])
    return pins


def chart_names() -> list[str]:
    """The chart directories chartfile.yaml vendors into tanka/charts/ (none when it cannot
    be read: ``vendor:charts`` then runs and says why)."""
    try:
        return list(pinned_charts())
    except ChartfileError:
        return []


def chart_files() -> list[str]:
    return files_under(*(charts_dir() / c for c in chart_names()))


def charts_present() -> bool:
    """Every chart of chartfile.yaml is vendored (False when chartfile.yaml cannot be read)."""
    try:
        names = list(pinned_charts())
    except ChartfileError:
        return False
    return all((charts_dir() / c / "Chart.yaml").is_file() for c in names)


def charts_at_pins() -> bool:
    """True when every chart of chartfile.yaml is vendored at its pinned version."""
    from .statcache import load_yaml

    try:
        pins = pinned_charts()
    except ChartfileError:
        return False
    for directory, version in pins.items():
        chart_yaml = charts_dir() / directory / "Chart.yaml"
        try:
            chart = load_yaml(chart_yaml) or {}
        except (OSError, ValueError):
            return False
        if not isinstance(chart, dict) or str(chart.get("version")) != version:
            return False
    return True


def _vendor_charts():
    try:
        names = list(pinned_charts())
    except ChartfileError as e:
        return TaskFailed(f"{e}: nothing was vendored.")
    proc = tk("tool", "charts", "vendor")
    if proc.returncode != 0:
        return TaskFailed(f"`tk tool charts vendor` failed (exit {proc.returncode}):\n{proc.stderr.strip()}\n"
                          f"Check {paths.rel(chartfile())} and the network; charts already at their "
                          "pinned version are never downloaded again.")
    missing = [c for c in names if not (charts_dir() / c / "Chart.yaml").is_file()]
    if missing:
        return TaskFailed(f"after vendoring, tanka/charts/ lacks {', '.join(missing)}, which "
                          f"{paths.rel(chartfile())} pins: check its `directory` entries")
    return None


def task_vendor():
    """Vendor the pinned Helm charts into tanka/charts/ (offline once they are there)."""
    names = chart_names()
    yield tools.needs({
        "name": "charts",
        "doc": f"Vendor the pinned Helm charts ({', '.join(names) or 'of tanka/chartfile.yaml'}) "
               "with `tk tool charts vendor`",
        "actions": [_vendor_charts],
        "file_dep": [str(chartfile())],
        "targets": [str(charts_dir() / c / "Chart.yaml") for c in names],
        "uptodate": [charts_at_pins],
        "verbosity": 1,
    }, "tk", "helm")
