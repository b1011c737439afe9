import os
from pathlib import Path

import pytest

from support import REPO, Shims, copy_project

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
