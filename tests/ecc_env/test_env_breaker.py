"""The env models the edge runtime's circuit breaker (``EnvConfig.breaker``, issue 21): after a missed deadline,
network cuts run edge-only until the link answers (a probe measured after the miss) or the retry time has passed."""

from __future__ import annotations

import numpy as np
import pytest

from ecc_env.latency import DeadlineConfig
from ecc_env.split_env import EdgeCloudSplitEnv, EnvConfig
from traces import synthetic
from traces.traceset import TraceSet

SHORT = DeadlineConfig(100.0, break_even=False)  # the toy's cut 0 needs ~126 ms on 10 Mbit/s: it always misses


def run(toy, cut: int, steps: int, **kw) -> list[dict]:
    args = dict(
        trace_set=toy.constant_set(),
        streams=[toy.known_stream(num_steps=60)],
        trace_split="all",
        episode_s=5.0,
        deadline=SHORT,
    )
    args.update(kw)
    env = EdgeCloudSplitEnv(*toy.make_profiles(), **args)
    env.reset(seed=0)
    return [env.step(np.array([cut, 0]))[4] for _ in range(steps)]


def test_after_a_miss_network_steps_run_edge_only_until_a_probe_answers(toy):
    infos = run(toy, 0, 12, breaker=True)
    edge_only = 3
    assert infos[0]["deadline_miss"] and not infos[0]["breaker"]
    opened = infos[0]["time_s"] + infos[0]["service_ms"] / 1e3  # 100 ms deadline + 60 ms edge-only
    assert opened == pytest.approx(0.16)
    # the next steps start before any probe is through after the miss: edge-only, no miss, the toy's 60 ms
    assert infos[1]["breaker"] and infos[1]["cut"] == edge_only
    assert not infos[1]["deadline_miss"] and infos[1]["service_ms"] == pytest.approx(60.0)
    # the probe sent at 0.25 s (10 Mbit/s: through in 6.6 ms) closes it: the first step after it tries the network
    tried = [i for i, info in enumerate(infos) if i > 0 and not info["breaker"]]
    assert tried and infos[tried[0]]["time_s"] > 0.25 and infos[tried[0]]["cut"] == 0
    assert all(infos[i]["time_s"] < 0.2566 for i in range(1, tried[0]))
    assert infos[tried[0]]["deadline_miss"]  # and it misses again (reopening the breaker)
    off = run(toy, 0, 12)
    assert all(info["deadline_miss"] and not info["breaker"] for info in off)
    assert sum(i["deadline_miss"] for i in infos) < sum(i["deadline_miss"] for i in off)


def test_in_an_outage_the_breaker_retries_once_per_retry_time(toy):
    outage = TraceSet.from_traces([synthetic.step([10.0] + [0.0] * 100, 1.0, rtt_ms=40.0)], "outage")
    infos = run(toy, 0, 30, breaker=True, breaker_retry_s=0.5, trace_set=outage, segment_margin_s=0.0)
    tries = [info["time_s"] for info in infos if not info["breaker"]]
    assert all(info["deadline_miss"] for info in infos if not info["breaker"])  # no probe gets through
    assert len(tries) >= 3
    # each try reopens the breaker when its fallback is done; the next try comes once 0.5 s have passed since
    done = {info["time_s"]: info["time_s"] + info["service_ms"] / 1e3 for info in infos if not info["breaker"]}
    for a, b in zip(tries, tries[1:]):
        assert b - done[a] >= 0.5 - 1e-9
        assert b - done[a] < 0.5 + 0.1 + 1e-9  # the first step at or after the retry time tries
    assert all(info["cut"] == 3 and info["service_ms"] == pytest.approx(60.0) for info in infos if info["breaker"])


def test_edge_only_and_skips_are_not_affected_and_the_config_is_checked(toy):
    infos = run(toy, 3, 5, breaker=True)
    assert not any(info["breaker"] or info["deadline_miss"] for info in infos)
    with pytest.raises(ValueError, match="breaker_retry_s"):
        EnvConfig(breaker_retry_s=0.0)


def test_queue_capacity_one_is_the_runtimes_frame_dropping(toy):
    """The runtime drops every frame that arrived while a step ran except the newest, which it handles next; the env
    does exactly that with ``queue_capacity=1`` (its default, 3, serves the oldest of up to 3 waiting frames)."""
    outage = TraceSet.from_traces([synthetic.step([10.0] + [0.0] * 100, 1.0, rtt_ms=40.0)], "outage")
    env = EdgeCloudSplitEnv(
        *toy.make_profiles(),
        trace_set=outage,
        streams=[toy.known_stream()],
        trace_split="all",
        episode_s=2.0,
        segment_margin_s=0.0,
        deadline=DeadlineConfig(300.0, break_even=False),
        queue_capacity=1,
    )
    env.reset(seed=0)
    info = env.step(np.array([0, 0]))[4]  # 300 ms deadline + 60 ms edge-only: frames 1, 2, 3 arrived meanwhile
    assert info["deadline_miss"] and info["dropped"] == 2
    nxt = env.step(np.array([3, 0]))[4]
    assert nxt["obs_index"] == 3 and nxt["queue_ms"] == pytest.approx(60.0)  # the newest, 60 ms after it arrived
