"""A loop that never falls behind: against a frozen (SIGSTOPped) or killed server, one network step misses, the
circuit breaker runs the following ones edge-only at once, stale frames are dropped except the newest, and the link's
recovery closes the breaker."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.network

torch = pytest.importorskip("torch")

from executor.client import ClientConfig  # noqa: E402
from executor.edge_cli import FixedCutPlanner  # noqa: E402
from executor.models import build_model  # noqa: E402
from executor.runtime import EdgeRuntime, RuntimeConfig  # noqa: E402
from executor.server_process import ServerProcess  # noqa: E402

PERIOD_S = 0.25
DEADLINE_S = 0.2
CLIENT = ClientConfig(reconnect_initial_s=0.05, reconnect_max_s=0.2, connect_timeout_s=5.0)


@pytest.mark.slow  # heavy and timing: a server process and a real-time loop read against wall-clock periods, ~12 s each
@pytest.mark.parametrize("fault", ["freeze", "kill"])
def test_a_faulty_server_costs_one_miss_and_the_loop_never_falls_behind(fault):
    edge = build_model("openvla", "tiny", seed=0)
    frames = [edge.make_observation(seed=s % 4) for s in range(28)]
    server = ServerProcess("openvla", "tiny").start()
    proc, port = server.proc, server.port
    config = RuntimeConfig(
        control_period_s=PERIOD_S, deadline_s=DEADLINE_S, realtime=True, connect_timeout_s=10.0, breaker_retry_s=1.0
    )
    fault_at, resume_at = 1.0, 3.5

    def inject() -> None:
        time.sleep(fault_at)
        if fault == "freeze":
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(resume_at - fault_at)
            os.kill(proc.pid, signal.SIGCONT)
        else:
            proc.kill()

    try:
        with EdgeRuntime(
            edge,
            FixedCutPlanner(cut=3),
            lambda ctx: np.zeros(1, np.float32),
            server_url=f"ws://127.0.0.1:{port}",
            client_config=CLIENT,
            config=config,
        ) as runtime:
            t = threading.Thread(target=inject, daemon=True)
            t.start()
            records = runtime.run(frames)
            t.join(10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
        server.stop()
    acted = [r for r in records if r.mode != "dropped"]
    assert len(records) == len(frames) and [r.step for r in records] == list(range(len(frames)))
    assert acted[0].mode == "split"
    reasons = [r.fallback_reason for r in acted]
    local = [r.latency_ms for r in acted if r.fallback_reason in ("breaker_open", "disconnected")]
    assert local, reasons
    edge_only_ms = max(local)
    bound_ms = max(DEADLINE_S * 1e3, edge_only_ms) + PERIOD_S * 1e3
    assert max(r.latency_ms for r in acted) <= bound_ms, [round(r.latency_ms) for r in acted]
    # no frame is acted on a period or more after its time
    assert max(r.late_ms for r in acted) < PERIOD_S * 1e3, [round(r.late_ms) for r in acted]
    # one miss per breaker opening (plus one per half-open retry), not one per step of the fault
    misses = reasons.count("deadline")
    fault_steps = int((resume_at - fault_at) / PERIOD_S)
    assert misses <= 1 + int((resume_at - fault_at) / config.breaker_retry_s) < fault_steps
    if fault == "freeze":
        assert misses >= 1 and reasons.count("breaker_open") >= 3
        assert acted[-1].mode == "split", reasons  # the probes saw the link answer again and closed the breaker
    else:
        assert reasons.count("disconnected") + reasons.count("deadline") >= fault_steps
