"""The pinned CRDs (tools/crds/go.mod, `doit crds`) and the self-contained repository.

`go mod download` runs for real; after the first fetch of the session the Go module
cache answers, so these tests also run with GOPROXY=off (offline).
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from support import FIXTURES, REPO, copy_project, env_for, run_doit, tool_or_fail, tracked_files, yaml_docs
from tanka_fixtures import flux_controllers, pinned_crds


@pytest.fixture(scope="module")
def go():
    return tool_or_fail("go")


def _executed(proc) -> list[str]:
    return [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("ok ")]


def _offline(project: Path) -> dict:
    return env_for(project, {"GOPROXY": "off"})


def test_crds_are_fetched_from_the_pins_offline_and_only_again_when_a_pin_changes(tmp_path, go):
    pinned_crds()  # the session's first fetch fills the Go module cache
    project = copy_project(tmp_path / "project")
    first = run_doit(project, "crds", env=_offline(project), check=True)
    assert "crds" in _executed(first)
    out = project / "build" / "crds"
    index = json.loads((out / "crds.json").read_text())
    pinned = re.search(r"^\s*github\.com/kedacore/keda/v2 (\S+)$", (project / "tools/crds/go.mod").read_text(), re.M)
    assert {m["name"]: m["version"] for m in index["modules"]}["keda"] == pinned.group(1)
    kinds = {d["spec"]["names"]["kind"] for f in out.rglob("*.yaml") for d in yaml_docs(f.read_text())}
    assert {"ScaledJob", "TriggerAuthentication", "GitRepository", "Kustomization"} <= kinds
    # their schemas compiled with them, for every validate:<env> (manifests.crd_dir_index)
    compiled = json.loads((out / "schemas.json").read_text())
    assert {k for _, k, _ in compiled["schemas"]} == kinds
    assert "crds" not in _executed(run_doit(project, "crds", env=_offline(project), check=True))

    # an incomplete output (a file lost) is not trusted
    next(out.glob("keda/*.yaml")).unlink()
    assert "crds" in _executed(run_doit(project, "crds", env=_offline(project), check=True))

    # a changed pin: fetched again; a version nobody can serve offline fails clearly and
    # leaves the previous complete output in place
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    gomod = project / "tools" / "crds" / "go.mod"
    gomod.write_text(gomod.read_text().replace("github.com/fluxcd/source-controller v1.8.0",
                                               "github.com/fluxcd/source-controller v1.8.1"))
    proc = run_doit(project, "crds", env=_offline(project))
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "github.com/fluxcd/source-controller@v1.8.1" in text and "tools/crds/README.md" in text
    assert "Traceback" not in text
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_an_interrupted_fetch_leaves_the_previous_output(tmp_path, go, monkeypatch):
    import shutil

    from tasks import crds

    dest = tmp_path / "crds"
    crds.download(REPO / "tools" / "crds", dest)
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    copies = []
    real = shutil.copyfile

    def interrupted(src, dst, *a, **kw):
        copies.append(dst)
        if len(copies) == 3:
            raise KeyboardInterrupt
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(shutil, "copyfile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        crds.download(REPO / "tools" / "crds", dest)
    monkeypatch.setattr(shutil, "copyfile", real)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert crds.fetched(dest, REPO / "tools" / "crds")


def test_pins_follow_the_charts_and_every_difference_is_recorded(go):
    """The versions the pinned charts ship (the stand-in charts carry the real charts'
    tags: tests/fixtures/charts) are pinned, or the README says why not and what differs."""
    from tasks import crds

    pins = crds.pins(REPO / "tools" / "crds")
    shipped = {"github.com/kedacore/keda/v2":
               "v" + str(yaml.safe_load((FIXTURES / "charts/keda/Chart.yaml").read_text())["appVersion"])}
    values = yaml.safe_load((FIXTURES / "charts/flux2/values.yaml").read_text())
    for key, controller in flux_controllers(values).items():
        if values[key]["create"]:  # what the chart deploys by default must be pinned
            shipped[f"github.com/fluxcd/{controller}"] = values[key]["tag"]
    assert set(shipped) <= set(pins), set(shipped) - set(pins)
    table = {}
    for line in (REPO / "tools/crds/README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("github.com/"):
            table[cells[0]] = (cells[1], cells[2], cells[3])
    for module, version in pins.items():
        assert module in table, f"tools/crds/README.md does not record {module}"
        chart, pinned, why = table[module]
        assert (chart, pinned) == (shipped.get(module, chart), version), (module, table[module])
        if chart != pinned:
            assert why and why != "none", module


def _sibling_patterns() -> list[re.Pattern]:
    dots = ".."
    return [re.compile(re.escape(dots + "/shared")), re.compile(r"shared" + "/crds"),
            re.compile(r"DESIGN" + r"\.md"), re.compile(r"PLAN-" + r"NOTES"),
            re.compile(r"""parent\s*/\s*["']shared["']"""), re.compile(r"RAIBID_" + "CRDS")]


def test_nothing_tracked_reads_or_cites_the_sibling_reference_folder():
    """A clone has no sibling reference folder: no code, test, CI file or document may use or cite it."""
    hits = []
    for rel in tracked_files(REPO):
        try:
            text = (REPO / rel).read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if any(p.search(line) for p in _sibling_patterns()):
                hits.append(f"{rel}:{n}: {line.strip()[:120]}")
    assert hits == [], "\n".join(hits)


def test_a_clone_without_any_sibling_folder_validates(tmp_path, go):
    """The project's own git clone, alone in a directory: crds and validate:staging work."""
    from tanka_fixtures import install_charts

    tool_or_fail("tk")
    tool_or_fail("helm")
    lonely = tmp_path / "alone"
    lonely.mkdir()
    project = copy_project(lonely / "raibid-deploy")
    install_charts(project)
    assert sorted(p.name for p in lonely.iterdir()) == ["raibid-deploy"]
    proc = run_doit(project, "validate:staging", env=_offline(project))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validate:staging" in _executed(proc) and "crds" in _executed(proc)
    ok = subprocess.run(["git", "check-ignore", "-q", "build/crds/crds.json"], cwd=REPO)
    assert ok.returncode == 0  # the fetched CRDs are never committed
