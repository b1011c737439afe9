"""The tools registry: pins agree with tools/<name>/go.mod, checks, doit tools."""
import os
import re

import pytest

from support import REPO, env_for, run_doit
from tasks import atomic, tools


@pytest.mark.parametrize("tool", [t for t in tools.TOOLS.values() if t.go_module], ids=lambda t: t.name)
def test_go_pins_match_the_tool_modules(tool):
    gomod = (REPO / "tools" / tool.name / "go.mod").read_text()
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(tool.go_module)}\s+(\S+)", gomod, re.M)
    assert m, f"tools/{tool.name}/go.mod does not require {tool.go_module}"
    assert m.group(1) == tool.version
    assert (REPO / "tools" / tool.name / "go.sum").read_text().count(tool.go_module) >= 2
    assert tool.go_package in (REPO / "tools" / tool.name / "tools.go").read_text()


def test_missing_message_names_each_tool_with_version_and_hint():
    msg = tools.missing_message([tools.TOOLS["tk"], tools.TOOLS["docker"]])
    assert msg.splitlines()[0] == "missing tools: nothing was run."
    assert "tk v0.32.0" in msg and "doit tools" in msg
    assert "docker >= 24.0" in msg and "docs.docker.com" in msg


def test_check_action_reports_all_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(tmp_path))
    result = tools.check_action(["tk", "helm", "k3d"])()
    assert result is not None
    text = result.get_msg()
    assert "tk v0.32.0" in text and "helm v3.22.0" in text and "k3d >= v5.7.0" in text


def test_needs_prepends_the_check_and_records_meta():
    task = tools.needs({"actions": ["echo hi"], "meta": {"x": 1}}, "tk", "helm")
    assert callable(task["actions"][0]) and task["actions"][1] == "echo hi"
    assert task["meta"] == {"x": 1, "tools": ("tk", "helm")}


def test_activate_puts_tools_bin_first(monkeypatch, tmp_path):
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", f"/usr/bin{os.pathsep}{tmp_path / '.tools' / 'bin'}")
    tools.activate()
    assert os.environ["PATH"].split(os.pathsep) == [str(tmp_path / ".tools" / "bin"), "/usr/bin"]


def test_version_comparison():
    tk, docker = tools.TOOLS["tk"], tools.TOOLS["docker"]
    assert tools.version_ok(tk, "v0.32.0") and not tools.version_ok(tk, "v0.31.1")
    assert tools.version_ok(docker, "28.2.2") and not tools.version_ok(docker, "20.10.1")
    assert not tools.version_ok(tk, "unknown") and not tools.version_ok(tk, None)


def test_doit_tools_rejects_unknown_names_and_needs_go(project, tmp_path):
    proc = run_doit(project, "tools", "docker")
    assert proc.returncode == 2 and "not a Go-built tool or group: docker" in proc.stdout
    (tmp_path / "empty").mkdir()
    env = env_for(project, {"PATH": str(tmp_path / "empty")})
    proc = run_doit(project, "tools", env=env)
    assert proc.returncode == 1 and "go go1.26" in proc.stdout.replace(">= ", "")


def test_replace_dir_keeps_the_old_output_on_failure(tmp_path):
    target = tmp_path / "out"
    with atomic.replace_dir(target) as tmp:
        (tmp / "a.yaml").write_text("one")
    assert (target / "a.yaml").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic.replace_dir(target) as tmp:
            (tmp / "a.yaml").write_text("half")
            raise RuntimeError("interrupted")
    assert (target / "a.yaml").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with atomic.replace_dir(target) as tmp:
        (tmp / "b.yaml").write_text("two")
    assert [p.name for p in target.iterdir()] == ["b.yaml"]


def test_write_text_is_atomic(tmp_path):
    f = tmp_path / "deep" / "x.json"
    atomic.write_text(f, "1")
    atomic.write_text(f, "2")
    assert f.read_text() == "2" and [p.name for p in f.parent.iterdir()] == ["x.json"]


def _path_without_go() -> str:
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if p and not os.access(os.path.join(p, "go"), os.X_OK))


@pytest.mark.parametrize("name", ["tk", "jb", "helm"])
def test_found_version_of_a_go_tool_needs_no_go(name, monkeypatch):
    """The version comes from the binary's build information, exact even when the binary
    prints `dev` and no Go toolchain is installed."""
    import shutil
    import subprocess

    from support import tool_or_fail

    exe = tool_or_fail(name)
    tool = tools.TOOLS[name]
    go = shutil.which("go")
    if go:  # the same answer as `go version -m`
        out = subprocess.run([go, "version", "-m", exe], capture_output=True, text=True).stdout
        assert f"\tmod\t{tool.go_module}\t{tool.version}\t" in out, out
    monkeypatch.setenv("PATH", _path_without_go())
    assert shutil.which("go") is None
    assert tools.found_version(tool) == tool.version


def _doctor_rows(out: str) -> dict[str, list[str]]:
    """The rows of `doit doctor`'s table (printed wide enough for one line each)."""
    rows = {}
    for line in out.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 5 and cells[0] in tools.TOOLS:
            rows[cells[0]] = cells[1:]
    return rows


def test_doctor_says_who_needs_each_tool(project):
    """Derived from the tasks that declare a tool (tools.needs), the commands whose preflight
    checks it (up, dev, e2e) and the registry's other users: no tool shows "-"."""
    out = run_doit(project, "doctor", env=env_for(project, {"COLUMNS": "300"})).stdout
    rows = _doctor_rows(out)
    assert set(rows) == set(tools.TOOLS), out
    needed = {name: row[0].split(", ") for name, row in rows.items()}
    assert all(who != ["-"] for who in needed.values()), needed
    assert "tilt:check" in needed["tilt"]        # declared even while the check is skipped (no charts)
    assert "up" in needed["docker"] and "up" in needed["k3d"]
    assert needed["keda-operator"] == ["the autoscaling test"] == needed["redis-server"]


def test_doctor_fits_80_columns(project):
    out = run_doit(project, "doctor", env=env_for(project, {"COLUMNS": "80"})).stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    starts = {line.split()[0] for line in lines if line.strip()}
    assert set(tools.TOOLS) <= starts, out  # each tool's name whole on its row, never folded
    assert "pip install -e '.[test]'" in out or "The offline tools are ready" in out


def test_doctor_without_go_trusts_the_built_tools_and_says_who_needs_go(project):
    from support import tool_or_fail

    for name in ("tk", "jb", "helm"):
        tool_or_fail(name)
    env = env_for(project, {"PATH": _path_without_go(), "COLUMNS": "300"})
    out = run_doit(project, "doctor", env=env).stdout
    rows = _doctor_rows(out)
    for name in ("tk", "jb", "helm"):
        assert rows[name][3] == "ok", (name, rows[name])
    assert "doit tools" in rows["go"][0].split(", "), rows["go"]  # and crds: it runs go mod download


def test_the_go_requirement_is_what_the_tool_modules_need_everywhere():
    """tools/*/go.mod decide the Go needed; the registry, README and the workflow agree."""
    import yaml

    needed = max(tuple(int(x) for x in re.search(r"^go (\d+)\.(\d+)", (d / "go.mod").read_text(), re.M).groups())
                 for d in (REPO / "tools").iterdir() if (d / "go.mod").is_file())
    want = f"{needed[0]}.{needed[1]}"
    assert tools.TOOLS["go"].version == f"go{want}"
    assert f"| Go | {want}+" in (REPO / "README.md").read_text()
    wf = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    versions = {s["with"]["go-version"] for job in wf["jobs"].values() for s in job["steps"]
                if "setup-go" in s.get("uses", "")}
    assert versions == {want}
