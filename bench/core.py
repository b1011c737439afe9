"""Benchmarks of the task-graph core. Prints numbers; asserts nothing.

    python bench/core.py            # from the project root

Targets (issue #2): `doit list` <= 0.35 s and a no-op default run <= 0.5 s (median, this
2-core machine); plan analysis of synthetic plans of 1k / 5k / 10k items with 4 needs
each, 10k <= 2 s, roughly linear growth.

Targets (issue #11), on synthetic plans in a scratch copy of the project, both shallow
(4 random needs per item) and a single long chain (each item needs the previous one):
10,000 items with 40,000 needs: `doit plan --format json` <= 3 s, the board (`doit plan`)
<= 2 s, `doit list` independent of the item count; plan loading linear in input size
(also for one id repeated 60,000 times in `needs`); 100,000 items must finish.

    python bench/core.py scale      # only the issue #11 scale runs

Targets (issue #9), measured in a scratch copy of the project with the stand-in charts of
the tests vendored (tests/fixtures/charts; the real charts need the network) and the default
tool groups of `doit tools` (tk, jb, helm, tilt: not the opt-in control plane, whose
server-side dry-run starts a kube-apiserver per validate:<env>, see README):

    python bench/core.py startup [N]   # no-op `doit` <= 1.5x and `doit list` <= 1.3x the time of
                                       # `python -c "import doit.doit_cmd"`, same run, median of N;
                                       # the cold default `doit` <= 5 s
    python bench/core.py validate [N]  # validate:<env> of a whole render <= 0.5 s

Ratios are of CPU time (user + system of the child): on a shared machine the wall time
swings with the load, the CPU time much less; both are printed.

Run the start-up numbers with the Python of the README's venv (`. .venv/bin/activate`):
each doit start looks its plugins up in every installed distribution, 3-4 times: ~10 ms a
look-up with this machine's system Python (~120 distributions) against ~3 ms in the venv
(~40), on top of the floor the ratios are taken against. The first line printed says which
Python ran.
"""
from __future__ import annotations

import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _cpu_wall(argv, cwd, env, out: list | None = None) -> tuple[float, float]:
    """CPU time (user + system of the child and its children) and wall time of a command;
    its standard output is appended to ``out`` when given."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out is not None:
        out.append(proc.stdout)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def bench_env(project: Path) -> dict:
    """The environment of a user's run: no RAIBID_DEPLOY_ROOT, and byte code written (the
    shell may set PYTHONDONTWRITEBYTECODE, which makes every start compile again)."""
    import os

    env = dict(os.environ, PYTHONPATH=str(project))
    for name in ("RAIBID_DEPLOY_ROOT", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    return env


def charted_project(tmp: Path) -> Path:
    """A scratch copy of the project with the stand-in charts vendored and a .tools/bin of
    the default `doit tools` groups only (links to this checkout's binaries)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support import copy_project
    from tanka_fixtures import install_charts
    from tasks import tools

    project = copy_project(tmp / "project")
    install_charts(project)
    if (project / ".tools").is_symlink():
        (project / ".tools").unlink()
    bin_dir = project / ".tools" / "bin"
    bin_dir.mkdir(parents=True)
    for t in tools.TOOLS.values():
        exe = ROOT / ".tools" / "bin" / t.name
        if t.group in tools.DEFAULT_GROUPS and exe.exists():
            (bin_dir / t.name).symlink_to(exe.resolve())
    return project


def interpreter() -> str:
    """Which Python runs the benchmark, and how many distributions doit's plugin look-ups scan."""
    from importlib.metadata import distributions

    venv = "a venv" if sys.prefix != sys.base_prefix else "not a venv (see the module's doc)"
    return f"python: {sys.executable}, {venv}, {sum(1 for _ in distributions())} installed distributions"


#: cold default runs of `startup` (a fresh project copy each; one swung 3.6-5.9 s wall)
COLD_RUNS = 3


def startup(runs: int = 9) -> None:
    import tempfile

    print(interpreter())
    doit = [sys.executable, "-m", "doit"]
    with tempfile.TemporaryDirectory() as tmp:
        cold = []
        for i in range(COLD_RUNS):  # each in a project of its own: nothing built, nothing cached
            project = charted_project(Path(tmp) / f"cold{i}")
            env = bench_env(project)
            log: list[str] = []
            cold.append((*_cpu_wall(doit, project, env, log), log[0]))
        cpu, wall, out = sorted(cold, key=lambda r: r[1])[len(cold) // 2]
        print(f"cold default `doit` (charts vendored, nothing built; median of {COLD_RUNS}, each in a "
              f"fresh copy): {wall:6.2f} s wall (cpu {cpu:5.2f} s, children included)   target <= 5 s;"
              f"  all: {', '.join(f'{w:.2f}' for _, w, _ in cold)} s")
        took = sorted(((float(m.group(2)), m.group(1)) for m in
                       re.finditer(r"^(?:ok|skipped) (\S+) ([\d.]+)s$", out, re.M)), reverse=True)
        print("  slowest tasks of that run (wall, as the reporter printed them): "
              + ", ".join(f"{name} {t:.2f} s" for t, name in took[:8]))
        _cpu_wall(doit, project, env)  # a second run records what the first one skipped, if anything
        floor = Path(tmp) / "floor"  # doit's own start-up: a dodo.py of one task, nothing else
        floor.mkdir()
        (floor / "dodo.py").write_text('def task_a():\n    return {"actions": None}\n')
        _cpu_wall(doit, floor, env)
        cases = {"import doit.doit_cmd": ([sys.executable, "-c", "import doit.doit_cmd"], project),
                 "doit (no-op)": (doit, project), "doit list": (doit + ["list"], project),
                 "floor: doit, 1 task": (doit, floor), "floor: doit list": (doit + ["list"], floor)}
        got: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
        for _ in range(runs):  # interleaved: the load of the machine hits every case alike
            for k, (argv, cwd) in cases.items():
                got[k].append(_cpu_wall(argv, cwd, env))
        base_cpu = statistics.median(c for c, _ in got["import doit.doit_cmd"])
        base_wall = statistics.median(w for _, w in got["import doit.doit_cmd"])
        targets = {"doit (no-op)": " target <= 1.5x", "doit list": " target <= 1.3x"}
        print(f"median of {runs}, as ratios to `python -c \"import doit.doit_cmd\"`:")
        for k, rows in got.items():
            c, w = statistics.median(c for c, _ in rows), statistics.median(w for _, w in rows)
            print(f"  {k:22} cpu {c:6.3f} s = {c / base_cpu:4.2f}x   wall {w:6.3f} s = {w / base_wall:4.2f}x"
                  f"{targets.get(k, '')}")


_VALIDATE_ONE = """
import sys, time
t0, c0 = time.perf_counter(), time.process_time()
from pathlib import Path
from tasks import crds, manifests
n, v = manifests.validate_dir(Path(sys.argv[1]), sys.argv[2], sys.argv[3], crds.crd_dir())
print(n, len(v), time.perf_counter() - t0, time.process_time() - c0)
"""


def validate(runs: int = 5) -> None:
    """validate:<env>'s offline checks of each environment's render, each in a fresh process
    (as `doit validate:<env>` runs them: imports, YAML, schemas, policies)."""
    import tempfile

    from tasks import settings

    doit = [sys.executable, "-m", "doit"]
    with tempfile.TemporaryDirectory() as tmp:
        project = charted_project(Path(tmp))
        env = bench_env(project)
        envs = sorted(p.name for p in (project / "tanka" / "environments").iterdir() if p.is_dir())
        subprocess.run(doit + ["run", "crds"] + [f"render:{e}" for e in envs], cwd=project, env=env,
                       capture_output=True, check=True)
        version = settings.load(project / settings.FILE).kubernetes_version

        def one(e: str) -> tuple[str, str, float, float]:
            out = subprocess.run([sys.executable, "-c", _VALIDATE_ONE, str(project / "build" / "manifests" / e),
                                  e, version], cwd=project, env=env, capture_output=True, text=True, check=True)
            n, bad, wall, cpu = out.stdout.split()
            return n, bad, float(cpu), float(wall)

        import shutil

        print("validate:<env>'s offline checks (imports, YAML, schemas, policies), each in a fresh process;"
              "   target <= 0.5 s")
        print(f"  first (nothing kept in build/.cache: a first run, or every chart object new; median of {runs}):")
        for e in envs:
            rows = []
            for _ in range(runs):
                shutil.rmtree(project / "build" / ".cache", ignore_errors=True)
                rows.append(one(e))
            n, bad = rows[0][:2]
            print(f"    validate:{e:8} {n:>3} objects, {bad} violations: cpu {statistics.median(r[2] for r in rows):5.2f} s"
                  f"   wall {statistics.median(r[3] for r in rows):5.2f} s   (fastest cpu {min(r[2] for r in rows):4.2f} s)")
        shutil.rmtree(project / "build" / ".cache", ignore_errors=True)
        print("  in turn, as one `doit` validates them (the chart objects of the first are kept for the others):")
        for e in envs:
            n, bad, cpu, wall = one(e)
            print(f"    validate:{e:8} {n:>3} objects, {bad} violations: cpu {cpu:5.2f} s   wall {wall:5.2f} s")
        print(f"  again, the same render (median of {runs}):")
        for e in envs:
            rows = [one(e) for _ in range(runs)]
            print(f"    validate:{e:8} cpu {statistics.median(r[2] for r in rows):5.2f} s"
                  f"   wall {statistics.median(r[3] for r in rows):5.2f} s   (fastest cpu {min(r[2] for r in rows):4.2f} s)")


def synthetic_plan_text(n: int, edges: int = 4, seed: int = 7) -> str:
    rnd = random.Random(seed)
    lines = ["workstreams:"] + [f"  - {{id: w{k}, title: W{k}}}" for k in range(6)] + ["items:"]
    for i in range(n):
        needs = sorted(rnd.sample(range(i), min(i, edges)))
        lines.append(f"  - {{id: {i}, title: item {i}, workstream: w{i % 6}, "
                     f"estimate_days: {rnd.choice([0.5, 1, 1.5, 2])}, needs: {needs}, tasks: [t{i}]}}")
    return "\n".join(lines) + "\n"


def chain_plan_text(n: int, tasks=("t",)) -> str:
    """A single long chain: item i needs item i-1."""
    lines = ["workstreams:"] + [f"  - {{id: w{k}, title: W{k}}}" for k in range(6)] + ["items:"]
    for i in range(n):
        needs = [i - 1] if i else []
        lines.append(f"  - {{id: {i}, title: item {i}, workstream: w{i % 6}, estimate_days: 1, "
                     f"needs: {needs}, tasks: [{tasks[i % len(tasks)]}]}}")
    return "\n".join(lines) + "\n"


def repeated_needs_text(times: int) -> str:
    return ("workstreams: [{id: w, title: W}]\nitems:\n"
            "  - {id: 1, title: a, workstream: w, estimate_days: 1}\n"
            f"  - {{id: 2, title: b, workstream: w, estimate_days: 1, needs: [{', '.join(['1'] * times)}]}}\n")


def scratch_project(tmp: Path, plan_text: str) -> Path:
    """The project's dodo.py and configuration with a synthetic plan.yaml (symlinks, no copy)."""
    for name in ("dodo.py", "pyproject.toml", "deploy.json", "tanka", "docker", "cluster", "tools", ".tools",
                 "Tiltfile"):
        if (ROOT / name).exists() and not (tmp / name).exists():
            (tmp / name).symlink_to(ROOT / name)
    (tmp / "plan.yaml").write_text(plan_text)
    for cached in (tmp / "build" / ".plan-order.json", tmp / ".doit.db"):
        cached.unlink(missing_ok=True)
    return tmp


def timed_once(argv, cwd, env, limit=600.0) -> str:
    """Wall time and the child's CPU time (user + system): on a shared, busy machine the CPU
    time is the steadier number."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return f"> {limit:.0f} s (killed)"
    took = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ok = "" if proc.returncode == 0 else f" (exit {proc.returncode}: {proc.stderr.decode()[-200:]!r})"
    return f"{took:6.2f} s (cpu {cpu:5.2f} s){ok}"


def scale() -> None:
    import os
    import tempfile

    from tasks.plan import load as load_plan, loads

    real_tasks = load_plan(ROOT / "plan.yaml").tasks()  # task names that exist in this project
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print("plan loading (parse + check), linear in input size?")
    for kind, make in (("shallow", lambda n: synthetic_plan_text(n)),
                       ("chain", lambda n: chain_plan_text(n))):
        for n in (1_000, 10_000, 100_000):
            text = make(n)
            t, c = time.perf_counter(), time.process_time()
            loads(text)
            took, cpu = time.perf_counter() - t, time.process_time() - c
            print(f"  {kind:7} {n:>7} items ({len(text) / 1e6:5.1f} MB): {took:6.2f} s (cpu {cpu:5.2f} s, "
                  f"{cpu / len(text) * 1e6:.2f} us/byte)")
    for times in (6_000, 60_000):
        text = repeated_needs_text(times)
        t, c = time.perf_counter(), time.process_time()
        try:
            loads(text)
        except Exception as e:  # noqa: BLE001 - a rejection is the expected outcome
            what = type(e).__name__
        else:
            what = "accepted"
        print(f"  needs with one id repeated {times:>6} times: {time.perf_counter() - t:6.2f} s "
              f"(cpu {time.process_time() - c:5.2f} s, {what})")

    doit = [sys.executable, "-m", "doit"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120")
    env.pop("RAIBID_DEPLOY_ROOT", None)
    print("doit commands on synthetic plans (one run each; the first `plan --format json` after writing\n"
          "plan.yaml checks it, later commands read the checked plan from build/):")
    d = scratch_project(Path(tempfile.mkdtemp()), (ROOT / "plan.yaml").read_text())
    print(f"  the real plan ({len(real_tasks)} tasks): list {timed_once(doit + ['list'], d, env)}  "
          f"list again {timed_once(doit + ['list'], d, env)}")
    cases = [("shallow", 1_000, synthetic_plan_text(1_000)), ("shallow", 10_000, synthetic_plan_text(10_000)),
             ("chain", 5_000, chain_plan_text(5_000, real_tasks)),
             ("chain", 10_000, chain_plan_text(10_000, real_tasks))]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, n, text in cases:
            d = scratch_project(Path(tmp), text)
            row = [f"  {kind:7} {n:>6} items:"]
            for label, args in (("plan --format json", ["plan", "--format", "json"]),
                                ("again", ["plan", "--format", "json"]),
                                ("plan (board)", ["plan"]), ("list", ["list"]), ("list again", ["list"])):
                row.append(f"{label} {timed_once(doit + args, d, env, 300)}")
            print("\n      ".join(row), flush=True)
        d = scratch_project(Path(tmp), chain_plan_text(100_000, real_tasks))
        print(f"  chain   100000 items: plan --format json {timed_once(doit + ['plan', '--format', 'json'], d, env)}",
              flush=True)
    print("  targets: 10k items json <= 3 s, board <= 2 s, list flat in the item count, 100k finishes")


def main() -> None:
    from tasks.graph import analyse
    from tasks.plan import loads
    from tasks.report import PlanView

    startup()
    validate()

    import networkx  # noqa: F401  (imported once, as in a real process; not part of the analysis)

    print("plan analysis (critical path, waves, schedule, forecast), 4 needs per item:")
    base = None
    for n in (1_000, 5_000, 10_000):
        text = synthetic_plan_text(n)
        t = time.perf_counter()
        plan = loads(text)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        a = analyse(plan)
        t_an = time.perf_counter() - t
        t = time.perf_counter()
        PlanView.build(plan).to_json()
        t_view = time.perf_counter() - t
        per = t_an / n * 1e6
        base = base or per
        print(f"  {n:>6} items: analysis {t_an:.3f} s ({per:.0f} us/item, x{per / base:.2f} of 1k)  "
              f"load+check {t_load:.3f} s  full view {t_view:.3f} s  "
              f"critical path {len(a.critical_path)} items / {a.length_days:g} days, {len(a.waves)} waves")
    print("  target: 10k analysis <= 2 s, roughly linear")


if __name__ == "__main__":
    if sys.argv[1:] == ["scale"]:
        scale()
    elif sys.argv[1:2] == ["startup"]:
        startup(*[int(a) for a in sys.argv[2:3]])
    elif sys.argv[1:2] == ["validate"]:
        validate(*[int(a) for a in sys.argv[2:3]])
    else:
        main()
        scale()
