"""Benchmark: the input digest of an image over a 5,000-file Cargo workspace.

Prints numbers, asserts nothing. Goal (issue 4): warm digest <= 0.3 s. "Warm" means the
stat cache (build/images/.digest-cache.json) is filled and nothing changed, which is
what every no-op `doit image:*` run pays; "cold" hashes every file.

    python bench/digest.py [--files 5000] [--runs 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_workspace(root: Path, files: int) -> None:
    """A workspace shaped like raibid-ci: crates/*/src/**.rs plus target/ and .git noise."""
    (root / "Cargo.toml").write_text('[workspace]\nmembers = ["crates/*"]\n')
    (root / "Cargo.lock").write_text("version = 4\n")
    per_crate = 250
    for i in range(files):
        crate, n = divmod(i, per_crate)
        d = root / "crates" / f"c{crate:02d}" / "src" / f"m{n // 25:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{n:03d}.rs").write_text(f"// file {i}\npub fn f{i}() -> usize {{ {i} }}\n" + "// pad\n" * (i % 40))
    # excluded trees, which must cost nothing but a directory test
    for i in range(2000):
        d = root / "target" / "release" / "deps"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"lib{i}.rlib").write_bytes(b"x" * 64)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src, project = tmp / "raibid-ci", tmp / "deploy"
        src.mkdir()
        make_workspace(src, args.files)
        repo = Path(__file__).resolve().parent.parent
        (project / "docker").mkdir(parents=True)
        for name in ("server.Dockerfile", "server.Dockerfile.dockerignore"):
            (project / "docker" / name).write_bytes((repo / "docker" / name).read_bytes())
        # make every file older than the racy window, as in a real checkout
        old = time.time() - 3600
        for dirpath, _, names in os.walk(src):
            for n in names:
                os.utime(os.path.join(dirpath, n), (old, old))
        os.environ.update(RAIBID_DEPLOY_ROOT=str(project), RAIBID_SRC=str(src), RAIBID_PLATFORM="linux/amd64")

        t0 = time.perf_counter()
        from tasks import docker  # noqa: E402  (imports the matcher lazily, below)
        from docker.utils import build as _  # noqa: F401,E402
        imports = time.perf_counter() - t0

        t0 = time.perf_counter()
        docker.image_inputs("server")
        cold = time.perf_counter() - t0

        warm = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            inp = docker.image_inputs("server")
            warm.append(time.perf_counter() - t0)

        kept = len(docker.context_files(src, docker.ignore_patterns(docker.ignorefile("server"))))
        print(f"workspace: {args.files} source files + 2000 ignored (target/, .git); the ignore file keeps {kept}")
        print(f"imports (docker matcher): {imports:.3f} s")
        print(f"cold digest:   {cold:.3f} s")
        print(f"warm digest:   median {statistics.median(warm):.3f} s  "
              f"(min {min(warm):.3f}, max {max(warm):.3f}, {args.runs} runs)  goal <= 0.300 s")
        print(f"tag: {inp.tag}")


if __name__ == "__main__":
    main()
