"""EdgeRuntime: split steps, fallback to edge-only on death / deadline / errors, recovery, skips, no lost steps."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.network

torch = pytest.importorskip("torch")

from executor.client import ClientConfig  # noqa: E402
from executor.emulation import HardwareEmulator  # noqa: E402
from executor.models import build_model  # noqa: E402
from executor.profile import Profile  # noqa: E402
from executor.runtime import EdgeRuntime, RuntimeConfig, StepContext  # noqa: E402
from executor.server import CloudServer, ServerConfig  # noqa: E402
from executor.server_process import ServerProcess  # noqa: E402

WAIT_S = 30.0
FAST = RuntimeConfig(control_period_s=0.1, deadline_s=5.0, realtime=False, connect_timeout_s=10.0)
CLIENT = ClientConfig(reconnect_initial_s=0.05, reconnect_max_s=0.2, connect_timeout_s=5.0)


class FixedPlanner:
    """Test double with SB3's predict signature: always the same (cut, skip)."""

    def __init__(self, cut: int, skip: int = 0) -> None:
        self.cut, self.skip = cut, skip

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        return np.array([self.cut, self.skip]), state


class RecordingBuilder:
    """Test double observation builder: keeps every context, returns a fixed-size vector."""

    def __init__(self) -> None:
        self.contexts: list[StepContext] = []

    def __call__(self, ctx: StepContext) -> np.ndarray:
        self.contexts.append(ctx)
        return np.zeros(4, dtype=np.float32)


@pytest.fixture(scope="module")
def edge():
    return build_model("openvla", "tiny", seed=0)


@pytest.fixture(scope="module")
def frames(edge):
    obs = [edge.make_observation(seed) for seed in range(6)]
    return obs, [edge.forward(o) for o in obs]


@pytest.mark.slow  # timing: a background probe can land between two steps on a loaded machine
def test_split_steps_return_the_models_actions(edge, frames):
    observations, expected = frames
    builder = RecordingBuilder()
    with CloudServer(build_model("openvla", "tiny", seed=0), ServerConfig(port=0)) as server:
        with EdgeRuntime(
            edge, FixedPlanner(cut=3), builder, server_url=server.url, client_config=CLIENT, config=FAST
        ) as runtime:
            records = runtime.run(observations)
            report = runtime.report()
    assert [r.mode for r in records] == ["split"] * len(observations)
    for r, exp in zip(records, expected, strict=True):
        assert r.new_chunk and r.cut_used == 3 and r.timing is not None and r.timing.bytes_up > 0
        np.testing.assert_array_equal(r.action, exp[0])
    # the builder sees past bandwidth measurements only: the connect probe's before the first transfer, then one
    # more per step
    assert [len(c.bandwidth) for c in builder.contexts] == list(range(1, len(observations) + 1))
    assert builder.contexts[0].connected and builder.contexts[1].previous_action == (3, 0)
    assert report["modes"] == {"split": len(observations)} and report["emulation"] == {"emulated": False}


@pytest.mark.slow  # heavy: two server processes, ~60 s on 2 cores
def test_server_death_falls_back_then_recovers_when_a_new_server_starts(edge, frames):
    observations, expected = frames
    server = ServerProcess("openvla", "tiny").start()
    port = server.port
    records = []
    try:
        runtime = EdgeRuntime(
            edge,
            FixedPlanner(cut=2),
            RecordingBuilder(),
            server_url=f"ws://127.0.0.1:{port}",
            client_config=CLIENT,
            config=FAST,
        ).start()
        for i in range(3):
            records.append(runtime.step(observations[i % 6]))
        assert [r.mode for r in records] == ["split"] * 3
        server.proc.kill()  # SIGKILL: no goodbye from the server
        server.proc.wait(10)
        for i in range(3, 6):
            records.append(runtime.step(observations[i % 6]))
        assert all(r.mode == "fallback" for r in records[3:])
        assert {r.fallback_reason for r in records[3:]} <= {"disconnected", "deadline"}
        assert records[-1].fallback_reason == "disconnected"
        server = ServerProcess("openvla", "tiny", port=port).start()
        recovered_at = None
        t_end = time.monotonic() + WAIT_S
        while time.monotonic() < t_end:
            i = len(records)
            records.append(runtime.step(observations[i % 6]))
            if records[-1].mode == "split":
                recovered_at = i
                break
            time.sleep(0.05)
        assert recovered_at is not None, "the runtime never resumed splitting"
        assert runtime.client is not None and runtime.client.connects == 2
        runtime.close()
    finally:
        server.stop()
    # every observation got actions, and they are the model's actions whichever side computed them
    for i, r in enumerate(records):
        assert r.step == i and r.action is not None and r.error is None
        np.testing.assert_array_equal(r.action, expected[i % 6][0])
    assert runtime.metrics.steps == len(records)
    assert runtime.metrics.fallback_reasons["disconnected"] >= 1


def _slow_profile(model, block_ms: float) -> Profile:
    return Profile(
        model_id=model.family,
        preset=model.preset,
        device="emulated-slow-cloud",
        dtype="float32",
        source="roofline",
        block_names=model.block_names,
        block_ms=(block_ms,) * model.num_blocks,
        cuts=tuple(model.cut_specs()),
    )


def test_deadline_miss_falls_back_to_edge_within_the_step(edge, frames):
    observations, expected = frames
    cloud = build_model("openvla", "tiny", seed=0)
    emulator = HardwareEmulator(cloud, _slow_profile(cloud, block_ms=100.0)).attach()  # >= 1 s per inference
    config = RuntimeConfig(deadline_s=0.15, realtime=False, connect_timeout_s=10.0)
    with CloudServer(cloud, ServerConfig(port=0), emulator=emulator) as server:
        with EdgeRuntime(
            edge, FixedPlanner(cut=1), RecordingBuilder(), server_url=server.url, client_config=CLIENT, config=config
        ) as runtime:
            assert runtime.client.server_info.emulation["emulated"] is True
            before = time.time()
            record = runtime.step(observations[0])
            after = time.time()
            runtime.step(observations[1])
            builder = runtime.observation_builder
    assert record.mode == "fallback" and record.fallback_reason == "deadline" and record.cut_used == edge.num_blocks
    assert record.latency_ms >= 150.0  # waited for the deadline, then computed locally
    np.testing.assert_array_equal(record.action, expected[0][0])
    # the miss left the env's upper-bound uplink sample: upload bytes / (deadline - upload start) >= bytes / 150 ms
    sample = builder.contexts[1].bandwidth[-1]
    assert sample.bytes_up > 0 and sample.bytes_down == 0 and np.isnan(sample.downlink_mbps)
    assert sample.uplink_mbps >= sample.bytes_up * 8 / 0.15 / 1e6
    assert sample.uplink_mbps < sample.bytes_up * 8 / 0.05 / 1e6  # the edge blocks of tiny take far less than 100 ms
    assert before + 0.1 <= sample.uplink_done_s <= after  # stamped at the deadline, before the local fallback


def test_skip_reuses_the_chunk_then_infers_again(edge, frames):
    observations, expected = frames
    runtime = EdgeRuntime(edge, FixedPlanner(cut=edge.num_blocks, skip=1), RecordingBuilder(), config=FAST)
    chunk_len = expected[0].shape[0]
    records = runtime.run(observations[:1] * (chunk_len + 1))
    assert [r.mode for r in records] == ["local"] + ["skipped"] * (chunk_len - 1) + ["local"]
    for i, r in enumerate(records[:chunk_len]):
        np.testing.assert_array_equal(r.action, expected[0][i])
    assert records[-1].new_chunk and records[-1].skip_requested


class _BrokenPlanner:
    def __init__(self, action=None) -> None:
        self.action = action

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        if self.action is None:
            raise RuntimeError("policy exploded")
        return self.action, None


@pytest.mark.parametrize("planner", [_BrokenPlanner(), _BrokenPlanner(np.array([999, 0])), _BrokenPlanner("x")])
def test_planner_failure_still_yields_edge_actions(edge, frames, planner):
    observations, expected = frames
    runtime = EdgeRuntime(edge, planner, RecordingBuilder(), config=FAST)
    record = runtime.step(observations[1])
    assert record.mode == "fallback" and record.fallback_reason == "planner_error"
    np.testing.assert_array_equal(record.action, expected[1][0])


def test_no_server_or_unreachable_server_falls_back(edge, frames):
    observations, expected = frames
    no_server = EdgeRuntime(edge, FixedPlanner(cut=2), RecordingBuilder(), config=FAST)
    assert no_server.step(observations[2]).fallback_reason == "no_server"
    import socket

    with socket.create_server(("127.0.0.1", 0)) as s:  # a port nobody serves websockets on once closed
        port = s.getsockname()[1]
    config = RuntimeConfig(realtime=False, connect_timeout_s=0.2)
    with EdgeRuntime(
        edge,
        FixedPlanner(cut=2),
        RecordingBuilder(),
        server_url=f"ws://127.0.0.1:{port}",
        client_config=CLIENT,
        config=config,
    ) as runtime:
        record = runtime.step(observations[2])
    assert record.mode == "fallback" and record.fallback_reason == "disconnected"
    np.testing.assert_array_equal(record.action, expected[2][0])


def test_edge_failure_is_recorded_not_dropped(edge):
    runtime = EdgeRuntime(edge, FixedPlanner(cut=edge.num_blocks), RecordingBuilder(), config=FAST)
    bad = edge.make_observation(0)
    bad["images"] = bad["images"][..., :2]  # wrong shape: the edge model refuses it
    record = runtime.step(bad)
    assert record.mode == "failed" and record.action is None and "images" in record.error
    assert runtime.metrics.modes["failed"] == 1 and runtime.metrics.steps == 1


def test_realtime_pacing_keeps_the_control_period(edge, frames):
    observations, _ = frames
    runtime = EdgeRuntime(
        edge,
        FixedPlanner(cut=edge.num_blocks),
        RecordingBuilder(),
        config=RuntimeConfig(control_period_s=0.05, realtime=True),
    )
    t0 = time.perf_counter()
    records = runtime.run(observations[:4])
    assert len(records) == 4
    assert time.perf_counter() - t0 >= 3 * 0.05  # the 4th step cannot start before 3 periods have passed


def test_edge_cli_runs_the_runtime_and_writes_every_step(tmp_path):
    import json

    from executor.edge_cli import main

    out = tmp_path / "steps.jsonl"
    with CloudServer(build_model("openvla", "tiny", seed=0), ServerConfig(port=0)) as server:
        rc = main(
            [
                "--server",
                server.url,
                "--model",
                "openvla",
                "--preset",
                "tiny",
                "--cut",
                "4",
                "--steps",
                "3",
                "--no-realtime",
                "--deadline-ms",
                "5000",
                "--out",
                str(out),
            ]
        )
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r["mode"] == "split" and r["cut_used"] == 4 and r["timing"]["bytes_up"] > 0 for r in rows)
    assert main(["--model", "openvla", "--preset", "tiny", "--cut", "99", "--steps", "1"]) == 2
