"""The closed loop through the real edge runtime: a MetaWorld robot (reach-v3) feeds EdgeRuntime frame by frame, the
tiny OpenVLA's edge half is padded to an emulated edge device, a real `ecc serve` child process (padded to an
emulated cloud) answers through a trace-shaped loopback link, and each chunk arrives at the step the runtime's
measured timing implies. One server process for the module, always stopped."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("metaworld")

from agents.closed_loop_runtime import (  # noqa: E402
    RuntimeClosedLoop,
    RuntimeLoopConfig,
    next_observation,
    run_sim_episode,
)
from agents.heuristics import CloudOnly, EdgeOnly  # noqa: E402
from agents.planner import PlannerContext  # noqa: E402
from executor.server_process import ServerProcess  # noqa: E402
from ecc_env.closed_loop import (  # noqa: E402
    ClosedLoopConfig,
    ClosedLoopSplitEnv,
    closed_loop_env_config,
)
from executor.profile import Profile  # noqa: E402
from traces import synthetic  # noqa: E402
from traces.traceset import TraceSet  # noqa: E402

EDGE_BLOCK_MS = 15.0  # emulated edge: 11 blocks of the tiny OpenVLA -> edge-only 165 ms, chunks arrive >= 2 steps late
CLOUD_BLOCK_MS = 4.0
RTT_MS = 20.0


def test_next_observation_follows_the_env_queue_rule():
    assert next_observation(0, 0.05, 0.1, 40, 3) == (1, 0.1, 0, 0)  # done within the period: wait for the next
    j, t, waiting, dropped = next_observation(0, 0.25, 0.1, 40, 3)  # frames 1, 2 arrived meanwhile: take 1 at once
    assert (j, waiting, dropped) == (1, 1, 0) and t == pytest.approx(0.25)
    j, t, waiting, dropped = next_observation(0, 0.65, 0.1, 40, 3)  # frames 1..6 arrived, 3 fit: 1-3 dropped
    assert (j, waiting, dropped) == (4, 2, 3) and t == pytest.approx(0.65)


@pytest.fixture(scope="module")
def pair():
    from executor.models import build_model

    m = build_model("openvla", "tiny", seed=0)
    common = dict(
        model_id=m.family,
        preset=m.preset,
        dtype="float32",
        source="measured",
        block_names=m.block_names,
        cuts=tuple(m.cut_specs()),
    )
    return (
        Profile(device="edge~emulated", block_ms=(EDGE_BLOCK_MS,) * m.num_blocks, **common),
        Profile(device="cloud~emulated", block_ms=(CLOUD_BLOCK_MS,) * m.num_blocks, **common),
    )


@pytest.fixture(scope="module")
def loop(pair):
    edge, cloud = pair
    traces = TraceSet.from_traces([synthetic.constant(20.0, 20.0, rtt_ms=RTT_MS, duration_s=600.0)], "const")
    env = ClosedLoopSplitEnv(
        edge,
        cloud,
        traces,
        closed_loop=ClosedLoopConfig("reach-v3"),
        config=closed_loop_env_config(episode_s=4.0),
        trace_split="all",
    )
    server = ServerProcess("openvla", "tiny", emulate=cloud)
    try:
        server.start()
        with RuntimeClosedLoop(env, server.url, RuntimeLoopConfig(), edge_emulate=edge) as runner:
            yield runner
    finally:
        server.stop()
        env.close()
    assert server.proc is None


def _arrival(t_s: float, latency_ms: float, obs_step: int) -> int:
    return max(int(math.ceil((t_s + latency_ms / 1e3) / 0.1 - 1e-9)), obs_step)


@pytest.mark.slow  # heavy and timing: an ecc serve child and a real-time runtime loop, ~10 s
def test_edge_only_runtime_loop_reaches_success_with_chunks_arriving_when_measured(loop):
    ctx = PlannerContext.from_env(loop.env)
    ep = loop.run_episode(EdgeOnly(ctx), seed=0, name="edge")
    assert ep.connected and ep.success and 0.2 < ep.time_to_success_s < 4.0
    robot = loop.env.robot
    assert ep.steps and all(s.mode == "local" and s.cut_used == loop.env.edge_only_index for s in ep.steps)
    # every block padded to the emulated edge: each inference takes at least the Profile's edge-only time
    assert min(s.latency_ms for s in ep.steps) >= 11 * EDGE_BLOCK_MS
    # each chunk reached the robot at the first step boundary after the runtime's measured completion
    deliveries = robot.timeline.deliveries
    assert ep.inferences == len(ep.steps) == len(deliveries)
    for s, d in zip(ep.steps, deliveries, strict=True):
        assert (
            (d.obs_step, d.arrival_step)
            == (s.obs_step, s.arrival_step)
            == (s.obs_step, _arrival(s.t_s, s.latency_ms, s.obs_step))
        )
        assert d.arrival_step >= d.obs_step + 2  # >= 165 ms after its observation
    first = deliveries[0].arrival_step
    assert all(a.holding for a in robot.timeline.executed[:first])  # nothing moved before the first chunk arrived
    # the next observation waits for the runtime: handled when the previous inference finished
    for a, b in zip(ep.steps, ep.steps[1:]):
        assert b.t_s == pytest.approx(max(a.t_s + a.latency_ms / 1e3, b.obs_step * 0.1))
    assert ep.up_bytes == 0 and ep.link_bytes_up > 0  # no payload; the client's probes still measured the link

    out = ep.outcome(vla="aware", events="off", period_s=0.1)  # as the closed-loop report tabulates it
    assert (out.success, out.inferences, out.decisions) == (True, ep.inferences, len(ep.steps))
    assert min(out.inference_latency_ms) >= 11 * EDGE_BLOCK_MS

    sim = run_sim_episode(loop.env, EdgeOnly(ctx), seed=0, name="edge")  # same scene, segment, events
    assert sim.success and all(s.latency_ms == pytest.approx(11 * EDGE_BLOCK_MS) for s in sim.steps)


def test_cloud_only_runtime_loop_sends_each_frame_through_the_shaped_link(loop, pair):
    ctx = PlannerContext.from_env(loop.env)
    ep = loop.run_episode(CloudOnly(ctx), seed=1, name="cloud")
    assert ep.connected and ep.steps
    split = [s for s in ep.steps if s.mode == "split"]
    assert len(split) >= len(ep.steps) // 2  # a loaded CI machine may miss a deadline now and then, never mostly
    raw = pair[0].cuts[0].up_bytes
    for s in split:
        assert s.cut_used == 0 and s.up_bytes >= raw  # the frame itself (plus framing) went up
        assert s.latency_ms >= RTT_MS + 11 * CLOUD_BLOCK_MS  # a round trip on the link + the emulated cloud
        assert s.arrival_step == _arrival(s.t_s, s.latency_ms, s.obs_step)
    # a missed deadline falls back to edge-only (and, with the runtime's circuit breaker, the steps right after it)
    assert {s.fallback_reason for s in ep.steps if s.mode == "fallback"} <= {"deadline", "breaker_open"}
    assert ep.inferences == len(ep.steps) == len(loop.env.robot.timeline.deliveries)
    assert ep.link_bytes_up >= ep.up_bytes == sum(s.up_bytes for s in split)
    assert ep.success
