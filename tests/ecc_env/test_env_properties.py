"""Property tests: observations stay inside the declared space and the bookkeeping holds for any actions/traces."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecc_env.backends import ServerLoadConfig
from ecc_env.latency import DeadlineConfig
from ecc_env.split_env import EdgeCloudSplitEnv
from traces import synthetic
from traces.traceset import TraceSet

LINKS = ["ethernet", "wifi6", "4g", "5g"]


@st.composite
def traces(draw):
    kind = draw(st.sampled_from(["markov", "step", "constant"]))
    if kind == "markov":
        return synthetic.markov(draw(st.sampled_from(LINKS)), duration_s=120.0, rng=draw(st.integers(0, 10_000)))
    if kind == "step":
        levels = draw(st.lists(st.sampled_from([0.0, 0.5, 5.0, 50.0, 500.0]), min_size=1, max_size=8))
        step_s = draw(st.sampled_from([0.2, 1.0, 5.0]))
        return synthetic.step(levels, step_s, rtt_ms=draw(st.sampled_from([0.0, 30.0, 400.0])))
    mbps = draw(st.sampled_from([0.1, 2.0, 100.0, 9_000.0]))
    return synthetic.constant(mbps, rtt_ms=draw(st.sampled_from([1.0, 90.0])))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    trace=traces(),
    seed=st.integers(0, 2**31 - 1),
    period_ms=st.sampled_from([20.0, 100.0, 333.0]),
    queue_capacity=st.integers(1, 4),
    chunk_size=st.integers(1, 8),
    deadline_ms=st.sampled_from([50.0, 300.0, 5_000.0]),
    memory=st.sampled_from([0, 150_000_000, 350_000_000]),
    mean_queue=st.sampled_from([0.0, 3.0]),
)
def test_observations_always_inside_the_space(
    toy, trace, seed, period_ms, queue_capacity, chunk_size, deadline_ms, memory, mean_queue
):
    env = EdgeCloudSplitEnv(
        *toy.make_profiles(memory_bytes=memory),
        trace_set=TraceSet.from_traces([trace], "one"),
        streams=[toy.known_stream(num_steps=60)],
        trace_split="all",
        episode_s=6.0,
        period_ms=period_ms,
        queue_capacity=queue_capacity,
        chunk_size=chunk_size,
        deadline=DeadlineConfig(deadline_ms),
        server_load=ServerLoadConfig(mean_queue_len=mean_queue),
    )
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    space = env.observation_space
    assert space.contains(obs)
    processed = dropped = 0
    for _ in range(120):
        action = np.array([rng.integers(env.num_cuts), rng.integers(2)])
        obs, r, term, trunc, info = env.step(action)
        assert obs.dtype == np.float32 and space.contains(obs), obs
        assert np.isfinite(r) and r <= 0 and not term
        assert info["latency_ms"] >= info["queue_ms"] >= 0
        if info["deadline_miss"]:  # a miss never costs more than the deadline plus edge-only compute
            assert info["service_ms"] <= deadline_ms + 60.0 + 1e-9
        processed += 1
        dropped += info["dropped"]
        assert info["dropped_total"] == dropped
        if trunc:
            assert processed + dropped == env._n  # every observation accounted for
            obs, _ = env.reset()
            processed = dropped = 0
            assert space.contains(obs)
