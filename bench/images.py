"""Benchmark: `doit image:server` and `image:agent` on a real Docker engine (#20).

Prints numbers, asserts nothing. The engine and the stand-in base images are the tests'
(tests/engine.py: yours when one answers, else a private dockerd). The source is
``RAIBID_SRC`` (a raibid-ci checkout; copied first, never changed) or, unset, the fixture
workspace tests/fixtures/raibid-ci. Prints, per image: the first build (cold with
``--cold``: a fresh data root, stand-ins included), a rebuild from BuildKit's cache after
``docker rmi``, the build after a one-line change in a crate (and whether the cargo-chef
cook stage stayed cached, as it must), and the image sizes.

    python bench/images.py [--cold]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(HERE))

IMAGES = ("server", "agent")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cold", action="store_true", help="a fresh data root (a cold engine)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="raibid-bench-images-"))
    if args.cold:
        os.environ["RAIBID_TEST_CACHE"] = str(work / "cache")
    import engine as engmod  # reads RAIBID_TEST_CACHE at import

    src_in = Path(os.environ.get("RAIBID_SRC") or HERE / "tests" / "fixtures" / "raibid-ci")
    src = work / "src"
    shutil.copytree(src_in, src, symlinks=True, ignore=shutil.ignore_patterns("target"))
    project = work / "project"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=HERE, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (HERE / rel).is_file():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(HERE / rel, project / rel)
    from tasks import paths

    config = engmod.docker_config(work / "docker-config", HERE / ".tools" / "bin")
    eng, lock = engmod.start(config, work)
    print(f"engine: {'private dockerd' if eng.pid else 'yours'}; source: {src_in}")
    try:
        t = time.monotonic()
        engmod.ensure_standins(eng, engmod.dockerfile_arg("RUST_VERSION"))
        print(f"stand-in base images ready: {time.monotonic() - t:.1f} s")
        env = {**os.environ, **eng.env, "RAIBID_SRC": str(src), "RAIBID_BUILD_NETWORK": "host",
               "PYTHONPATH": str(project),
               "PATH": f"{paths.tools_bin()}{os.pathsep}{os.environ['PATH']}"}
        env.pop("RAIBID_DEPLOY_ROOT", None)

        def build(name: str) -> tuple[float, str]:
            t = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "doit", f"image:{name}"], cwd=project,
                                  env=env, capture_output=True, text=True)
            took = time.monotonic() - t
            if proc.returncode != 0:
                print(proc.stdout[-4000:], proc.stderr[-2000:])
                raise SystemExit(f"image:{name} failed")
            return took, proc.stdout

        def tag(name: str) -> str:
            return json.loads((project / "build" / "images" / f"{name}.json").read_text())["tag"]

        for name in IMAGES:
            print(f"{name}: first build {build(name)[0]:.1f} s")
        for name in IMAGES:
            eng.docker("rmi", tag(name))
            print(f"{name}: after docker rmi (BuildKit's cache) {build(name)[0]:.1f} s")
        crate = next(iter(sorted(src.glob("crates/*/src/lib.rs")) or sorted(src.glob("**/*.rs"))))
        crate.write_text(crate.read_text() + "\n// bench/images.py: a one-line change\n")
        for name in IMAGES:
            took, out = build(name)
            cook = _cook_cached(out)
            crates = len(re.findall(r"^#\d+ [\d.]+ +Compiling ", out, re.M))
            print(f"{name}: after a one-line change in {crate.relative_to(src)} {took:.1f} s "
                  f"(cook stage {'cached' if cook else 'REBUILT' if cook is False else '?'}; "
                  f"{crates} crates compiled)")
        for name in IMAGES:
            size = int(eng.docker("image", "inspect", "--format", "{{.Size}}", tag(name)).stdout)
            print(f"{name}: {tag(name)} {size / 1e6:.0f} MB")
    finally:
        engmod.stop(eng)
        if lock is not None:
            lock.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _cook_cached(out: str) -> bool | None:
    """Whether BuildKit reused the cook stage's `chef cook` step (None: not in the output)."""
    step = re.search(r"^#(\d+) \[cook \d+/\d+\] RUN .*chef cook", out, re.M)
    if not step:
        return None
    return re.search(rf"^#{step.group(1)} CACHED$", out, re.M) is not None


if __name__ == "__main__":
    raise SystemExit(main())
