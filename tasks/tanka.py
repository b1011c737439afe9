"""The Tanka project's layout and ``tk`` run in it: where the chartfile, the charts, the
environments and the renders (build/manifests/) are, and which jsonnet files are ours.

The tasks that use it live in one module per concern: charts.py (vendoring), jsonnet.py
(formatting, library tests), local_secrets.py, render.py (the depfile engine),
validate.py, kube.py (contexts, kubectl, server-side apply, the applied record) and
deploy.py (diff, apply).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from . import atomic, paths, tools


def chartfile() -> Path:
    return paths.tanka() / "chartfile.yaml"


def charts_dir() -> Path:
    return paths.tanka() / "charts"


def env_dir(env: str) -> Path:
    return paths.tanka() / "environments" / env


def manifests_dir(env: str) -> Path:
    return paths.build() / "manifests" / env


def depfile(env: str) -> Path:
    return paths.build() / "manifests" / f"{env}.deps.json"


def digest_file(env: str) -> Path:
    return paths.build() / "manifests" / f"{env}.sha256"


def read_digest(env: str) -> str | None:
    """The digest render:<env> recorded in :func:`digest_file`, or None when that is missing,
    not a file or not a sha256 (an edited or damaged record is never trusted)."""
    try:
        text = digest_file(env).read_bytes().strip()
    except OSError:
        return None
    return text.decode() if re.fullmatch(rb"[0-9a-f]{64}", text) else None


def files_under(*dirs: Path, suffixes: tuple[str, ...] = ()) -> list[str]:
    """Every file under ``dirs`` (with one of ``suffixes``, when given), sorted by name in each
    directory, a directory's files before its subdirectories (os.walk's order). Hidden
    directories are skipped; symbolic links to directories are not followed. Up-to-date
    checks call this on every run: one ``scandir`` per directory, no Path objects."""
    out: list[str] = []

    def walk(d: str) -> None:
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        subdirs = []
        for e in entries:
            try:
                is_dir = e.is_dir()
            except OSError:
                continue
            if not is_dir:
                if not suffixes or e.name.endswith(suffixes):
                    out.append(e.path)
            elif not e.name.startswith(".") and not e.is_symlink():
                subdirs.append(e.path)
        for s in subdirs:
            walk(s)

    for d in dirs:
        walk(str(d))
    return out


def jsonnet_sources() -> list[str]:
    """Our jsonnet files (libraries, environments, library tests), not vendored ones."""
    t = paths.tanka()
    return files_under(t / "lib", t / "environments", t / "tests",
                       suffixes=(".jsonnet", ".libsonnet"))


def tk(*args: str, **kw) -> subprocess.CompletedProcess:
    """Run ``tk`` in the Tanka project directory, capturing output, in the environment of a
    short Go run (:func:`tasks.tools.short_run_env`), ended with doit; ``kw`` (``env``,
    ``preexec_fn``, ...) replaces any of these."""
    return subprocess.run(["tk", *args], **{
        "cwd": paths.tanka(), "capture_output": True, "text": True, "stdin": subprocess.DEVNULL,
        "preexec_fn": atomic.child_setup(), "env": tools.short_run_env(), **kw})
