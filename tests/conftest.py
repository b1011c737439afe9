import os
from pathlib import Path

import pytest

import shutil

from support import FIXTURES, REPO, Shims, copy_project

# tasks.tools looks for .tools/bin under the project root
os.environ.setdefault("RAIBID_DEPLOY_ROOT", str(REPO))


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh copy of this project's working tree (the files a clean clone has)."""
    return copy_project(tmp_path / "project")


@pytest.fixture
def shims(tmp_path) -> Shims:
    """An empty directory of recording shims (add them with ``shims.add(name)``)."""
    return Shims(tmp_path / "shims")


@pytest.fixture
def src(tmp_path) -> Path:
    """A fresh copy of the std-only raibid-ci Cargo workspace fixture (no target/)."""
    dst = tmp_path / "raibid-ci"
    shutil.copytree(FIXTURES / "raibid-ci", dst, ignore=shutil.ignore_patterns("target"))
    return dst
