"""Regenerate tests/fixtures/charts/real-shape.json from a directory of the real charts.

    python bench/real_chart_shape.py DIR --origin redis=bitnami/charts@COMMIT \\
        --origin gitea=... --origin keda=... --origin flux2=... [--note TEXT]

DIR holds the real upstream charts, one directory per chart of tanka/chartfile.yaml
(redis/, gitea/, keda/, flux2/), each renderable offline (dependencies under its charts/),
at the pinned versions. Run by hand, never by a test: the charts come from their public
repositories, which neither the repository nor the tests may hold or need. Renders every
environment in a temporary copy of the working tree with those charts (`doit render:<env>`,
as a user would) and writes the shape of each chart's objects (tests/chart_shape.py) with
where each chart came from.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(HERE))

from chart_shape import REAL_SHAPE, render_shape  # noqa: E402
from support import copy_project, run_doit  # noqa: E402
from tanka_fixtures import chart_directories  # noqa: E402

from tasks.render import rendered_objects  # noqa: E402

ENVS = ("local", "staging", "prod")


def chart_meta(chart: Path) -> dict:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    deps = sorted(f"{d.name} {yaml.safe_load((d / 'Chart.yaml').read_text())['version']}"
                  for d in sorted((chart / "charts").glob("*")) if (d / "Chart.yaml").is_file())
    return {"name": meta["name"], "version": meta["version"], "appVersion": meta.get("appVersion"),
            "dependencies": deps}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("charts", type=Path, help="directory with the real charts")
    ap.add_argument("--origin", action="append", default=[], metavar="CHART=REPO@COMMIT",
                    help="where a chart came from (one per chart)")
    ap.add_argument("--note", action="append", default=[], help="a note kept in the provenance")
    ap.add_argument("--out", type=Path, default=REAL_SHAPE)
    args = ap.parse_args(argv)
    origins = dict(o.split("=", 1) for o in args.origin)
    with tempfile.TemporaryDirectory(prefix="real-shape-") as tmp:
        project = copy_project(Path(tmp) / "project")
        charts = {}
        for name in chart_directories(project):
            src = args.charts / name
            if not (src / "Chart.yaml").is_file():
                ap.error(f"no {src}/Chart.yaml: DIR needs every chart of tanka/chartfile.yaml")
            if name not in origins:
                ap.error(f"--origin {name}=REPO@COMMIT is missing")
            shutil.copytree(src, project / "tanka" / "charts" / name)
            repo, _, commit = origins[name].partition("@")
            charts[name] = {**chart_meta(src), "repository": repo, "commit": commit}
        run_doit(project, *(f"render:{e}" for e in ENVS), check=True)
        shapes = {e: render_shape(rendered_objects(project / "build" / "manifests" / e))
                  for e in ENVS}
    doc = {
        "provenance": {
            "charts": charts,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "produced_by": "python bench/real_chart_shape.py DIR "
                           + " ".join(f"--origin {k}={v}" for k, v in sorted(origins.items())),
            "notes": args.note,
        },
        "environments": shapes,
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
