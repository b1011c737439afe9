"""The agents scale on the job stream, for real: the staging ScaledJob and its
TriggerAuthentication (Redis auth on) on the test control plane, a password-protected
redis-server, the KEDA operator out of cluster, kwok's fake node (tests/autoscale.py).
Timings are printed by bench/autoscale.py, never asserted here."""
from __future__ import annotations

import time

import pytest

from autoscale import Autoscale, reset
from support import tool_or_fail

PUSHED = 12
#: KEDA's pollingInterval in the test instead of the render's: the waits below are counted in polls
POLL_SECONDS = 1


@pytest.fixture(scope="module")
def scenario(controlplane, stack):
    """The scenario on the staging render of the session's ``stack`` (only read)."""
    for name in ("redis-server", "keda-operator"):
        tool_or_fail(name)
    s = Autoscale(controlplane, stack, polling_interval=POLL_SECONDS)
    try:
        s.setup()
        yield s
    finally:
        s.teardown()
        # the namespace's deletion (5 s at least) passes while the next tests run
        reset(controlplane, keep_crds=True, wait=False)


def test_keda_creates_agent_jobs_for_queued_work_within_its_bounds_then_scales_to_zero(scenario):
    s = scenario
    trigger = s.scaledjob["spec"]["triggers"][0]["metadata"]
    lag_count, most = int(trigger["lagCount"]), int(s.scaledjob["spec"]["maxReplicaCount"])
    want = -(-PUSHED // lag_count)  # ceil: 12 entries at 5 per agent = 3 agents
    assert s.jobs() == []  # nothing queued, nothing created

    t0 = s.push(PUSHED)
    seen = s.watch(t0, want, settle=2.5 * s.polling_interval())
    assert seen["first_job_s"] is not None, "KEDA created no agent Job for 12 queued jobs"
    assert want <= seen["jobs"] <= most, seen
    assert seen["max_active"] <= most, seen
    assert seen["running_pods"] >= want, seen  # scheduled on kwok's node and Running

    s.drain()
    assert s.lag_and_pending() == (0, 0)
    s.finish_agents()
    time.sleep(2.5 * s.polling_interval())  # two polls and more with an empty stream
    assert s.jobs() == [], "KEDA created agent Jobs for an empty stream"
