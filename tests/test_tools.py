"""The tools registry: pins agree with tools/<name>/go.mod, checks, doit tools."""
import os
import re
from pathlib import Path

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
    assert "tilt:check" in needed["tilt"]   # declared even while the check is skipped (no charts)
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


#: a `go` shim: `go version` / `go env -json` answer from the shim's state; `go build -v -o OUT`
#: records its pid, starts OUT, prints package lines (each after `sleep` seconds) and finishes OUT
_FAKE_GO = '''
import json, os, sys, time

def handle(argv, state, rec):
    version = state.get("version", "go1.26.0")
    if argv[:1] == ["version"]:
        print(f"go version {version} linux/amd64")
    elif argv[:1] == ["env"]:
        print(json.dumps({"GOVERSION": version, "GOOS": "linux", "GOARCH": "amd64"}))
    elif argv[:1] == ["build"]:
        out = argv[argv.index("-o") + 1]
        pid_file = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "build.pid")
        open(pid_file, "w").write(str(os.getpid()))
        open(out, "w").write("half")
        for n in range(state.get("packages", 2)):
            time.sleep(state.get("sleep", 0))
            print(f"example.com/pkg{n}", file=sys.stderr, flush=True)
        open(out, "w").write("#!/bin/sh\\necho built\\n")
        os.chmod(out, 0o755)
    return 0
'''


@pytest.fixture
def own_tools(project, shims):
    """``project`` with a .tools directory of its own (never the checkout's, which a CI run
    uses) and a fake `go` first on PATH."""
    link = project / ".tools"
    if link.is_symlink():
        link.unlink()  # the link only: what it points to is not touched
    (link / "bin").mkdir(parents=True)
    shims.add("go", _FAKE_GO)
    return project, shims, env_for(project, path_first=[shims.bin])


def _builds(shims) -> list[str]:
    return [argv[argv.index("-o") + 1] for argv in shims.calls("go") if argv[:1] == ["build"]]


def test_doit_tools_builds_a_tool_only_when_what_it_is_made_from_changed(own_tools):
    project, shims, env = own_tools
    first = run_doit(project, "tools", "tk", "jb", env=env, check=True).stdout
    assert len(_builds(shims)) == 2 and first.count("ok ") == 2, first
    second = run_doit(project, "tools", "tk", "jb", env=env, check=True).stdout
    assert len(_builds(shims)) == 2, second           # nothing built again
    assert second.count("up to date") == 2, second
    gomod = project / "tools" / "tk" / "go.mod"
    gomod.write_text(gomod.read_text() + "\n// a changed pin\n")
    run_doit(project, "tools", "tk", "jb", env=env, check=True)
    assert [Path(p).name for p in _builds(shims)[2:]] == [".tk.partial"]   # only the changed one
    shims.set_state(version="go1.26.1")               # another Go toolchain: both again
    run_doit(project, "tools", "tk", "jb", env=env, check=True)
    assert len(_builds(shims)) == 5
    (project / ".tools" / "bin" / "jb").write_text("replaced by hand")   # not what was built
    run_doit(project, "tools", "jb", env=env, check=True)
    assert len(_builds(shims)) == 6
    run_doit(project, "tools", "--force", "jb", env=env, check=True)
    assert len(_builds(shims)) == 7
    assert not list((project / ".tools" / "bin").glob(".*.tmp"))


def test_a_build_reports_progress_while_it_runs(own_tools, monkeypatch):
    project, shims, env = own_tools
    shims.set_state(packages=4, sleep=0.3)
    monkeypatch.setenv("RAIBID_DEPLOY_ROOT", str(project))
    monkeypatch.setenv("PATH", env["PATH"])
    seen = []
    result = tools.install_go_tool(tools.TOOLS["tk"], progress=lambda s, n: seen.append((s, n)),
                                   every=0.25)
    assert result.ok, result
    assert len(seen) >= 2 and seen == sorted(seen), seen     # elapsed time and packages only grow
    assert seen[-1][1] >= 2 and "-v" in result.argv


def test_a_killed_doit_tools_leaves_no_build_running_and_the_next_run_cleans_up(own_tools):
    import signal
    import subprocess
    import sys
    import time

    project, shims, env = own_tools
    shims.set_state(packages=1, sleep=120)
    code = "from tasks import tools; tools.install_go_tool(tools.TOOLS['tk'])"
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=project,
                              env={**env, "RAIBID_DEPLOY_ROOT": str(project)})
    pid_file, partial = shims.bin / "build.pid", project / ".tools" / "bin" / ".tk.partial"
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and partial.exists()):
            assert time.monotonic() < deadline and parent.poll() is None, "the build never started"
            time.sleep(0.05)
        build = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while _alive(build):
            assert time.monotonic() < deadline, "go build runs on after doit was killed"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert partial.exists()  # what the killed run left
    shims.set_state(packages=1, sleep=0)
    out = run_doit(project, "tools", "jb", env=env, check=True).stdout
    assert "removed .tools/bin/.tk.partial, left by a build that was killed" in out, out
    assert not partial.exists()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie has ended: only its exit status is left)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_doit_tools_help_describes_the_command(project):
    out = run_doit(project, "tools", "--help", check=True).stdout
    assert out.startswith("PURPOSE") and "--force" in out and "CmdOption" not in out


def test_a_tools_cache_restored_elsewhere_is_still_up_to_date(own_tools, tmp_path):
    """CI restores .tools from its cache (a tar: new inodes, maybe coarser times): the tools in
    it are not built again."""
    import shutil

    project, shims, env = own_tools
    run_doit(project, "tools", "jb", env=env, check=True)
    bin_dir = project / ".tools" / "bin"
    saved = tmp_path / "cache"
    shutil.copytree(bin_dir, saved)   # copies: other inodes and modification times
    shutil.rmtree(bin_dir)
    shutil.copytree(saved, bin_dir, copy_function=shutil.copy)
    out = run_doit(project, "tools", "jb", env=env, check=True).stdout
    assert len(_builds(shims)) == 1 and "up to date" in out, out
