"""Where things live. Every path is relative to the project root.

The project root is the directory doit runs in (doit changes into the directory of
``dodo.py``), so the same installed package serves any checkout, including the
temporary copies the tests make. ``RAIBID_DEPLOY_ROOT`` overrides it.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path


def root() -> Path:
    """The project root: ``$RAIBID_DEPLOY_ROOT`` or the current directory."""
    return _resolved(os.environ.get("RAIBID_DEPLOY_ROOT") or os.getcwd())


@functools.lru_cache(maxsize=16)
def _resolved(path: str) -> Path:
    # task creators ask for paths hundreds of times while doit loads: resolve once
    return Path(path).resolve()


def plan_file() -> Path:
    return root() / "plan.yaml"


def build() -> Path:
    """Generated output (never committed)."""
    return root() / "build"


def tools_bin() -> Path:
    """Where ``doit tools`` installs the pinned Go-built tools."""
    return root() / ".tools" / "bin"


def tanka() -> Path:
    return root() / "tanka"


def docker() -> Path:
    return root() / "docker"


def raibid_src() -> Path:
    """The raibid-ci Cargo workspace the images are built from (``RAIBID_SRC``)."""
    return Path(os.environ.get("RAIBID_SRC") or (root().parent / "raibid-ci")).resolve()


def rel(path: Path) -> str:
    """``path`` relative to the project root when it is inside it, for messages."""
    try:
        return str(Path(path).resolve().relative_to(root()))
    except ValueError:
        return str(path)
