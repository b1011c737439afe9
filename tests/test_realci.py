"""Opt in (``python -m pytest -m realci``, RAIBID_SRC naming a raibid-ci checkout): raibid-ci's
real server and agent run with the local render's environment on loopback (tests/realci.py)
and the agent clones the "Send test job" button's job from the loopback git server. The
cargo build takes minutes the first time; bench/realci.py prints the same run."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import realci

pytestmark = pytest.mark.realci


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> realci.Report:
    src = os.environ.get("RAIBID_SRC")
    if not src or not (Path(src) / "crates" / "agent").is_dir():
        pytest.fail("set RAIBID_SRC to a raibid-ci checkout (one with crates/agent)")
    return realci.run(Path(src), tmp_path_factory.mktemp("realci"))


def test_the_real_agent_clones_the_buttons_job_from_gitea_host(report):
    git = report.ports["git"]
    url = f"http://127.0.0.1:{git}/{realci.EXAMPLE_REPO}.git"
    assert report.contract_problems == []
    assert report.job["repo"] == realci.EXAMPLE_REPO
    assert f"Cloning repository: {url}" in report.agent_log
    assert [m for m in report.agent_log if m.startswith("Repository cloned to")], report.agent_log
    assert [ln for ln in report.git_requests if "git-upload-pack" in ln and '"POST ' in ln]
    # and built it: the job as the agent reports it in Redis
    assert report.status is not None and report.status["agent_id"] == realci.AGENT_POD
    assert (report.status["status"], report.status["message"]) == ("Success", "Exit code: 0")


def test_the_real_server_answers_health_and_fails_what_needs_redis(report):
    """raibid-ci at 74b52a8 (README: Known issues of raibid-ci): healthy, Redis never checked,
    and no Redis client: /jobs and a correctly signed webhook answer 500."""
    assert report.server["/health"][0] == 200
    status, body = report.server["/health/ready"]
    assert status == 200 and "Not implemented yet" in body
    for route in ("/jobs", "/webhooks/gitea (signed)"):
        status, body = report.server[route]
        assert status == 500 and "Redis client not configured" in body
