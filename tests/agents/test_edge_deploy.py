"""Deploying a policy on the edge: chunk length and period checked at load, the guard names out-of-range fields,
`ecc edge` options (--strict, --help, deadline sanity), the runtime's chunk budget."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agents.artifact import PolicyExpectation, PolicyLoadError, load_policy, meta_path
from agents.compat import control_mismatch
from agents.edge_cli import DeadlineError, deployment_deadline_ms, main, network_floor_ms, resolved_deadline_ms
from agents.guard import GuardedPolicy
from agents.training import TrainConfig, train
from executor.control import DEFAULT_CHUNK_SIZE, DEFAULT_PERIOD_MS, ControlSpec, chunk_shortfall, model_chunk_length


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, toy):
    cfg = toy.tiny_train_config(tmp_path_factory.mktemp("runs"), "d")
    profiles = toy.three_block_profiles()
    res = train(cfg, trace_set=toy.alternating_set(), profiles=profiles)
    env = toy.make_env(profiles, toy.alternating_set(), episode_s=2.0)
    return res.policy_path, env


def test_control_spec_is_the_default_everywhere():
    from agents.eval_cli import EvalConfig
    from agents.planner import PlannerContext
    from ecc_env.observation import ObservationConfig
    from ecc_env.split_env import EnvConfig
    from executor.runtime import RuntimeConfig

    spec = ControlSpec()
    assert (spec.chunk_size, spec.period_ms) == (DEFAULT_CHUNK_SIZE, DEFAULT_PERIOD_MS)
    assert EnvConfig().chunk_size == ObservationConfig().chunk_size == TrainConfig().chunk_size == spec.chunk_size
    assert EvalConfig().chunk_size == RuntimeConfig().chunk_size == spec.chunk_size
    assert EnvConfig().period_ms == RuntimeConfig().control_period_s * 1e3 == spec.period_ms
    assert PlannerContext.__dataclass_fields__["chunk_size"].default == spec.chunk_size
    with pytest.raises(ValueError, match="chunk_size"):
        ControlSpec(chunk_size=0)
    with pytest.raises(ValueError, match="period_ms"):
        ControlSpec(period_ms=math.inf)


def test_model_chunk_lengths_and_the_shortfall_warning():
    assert model_chunk_length("openvla", "tiny") == 1
    assert model_chunk_length("pi0", "tiny") == 4 and model_chunk_length("pi0", "small") == 16
    assert chunk_shortfall(ControlSpec(8), "pi0", "small") is None
    msg = chunk_shortfall(ControlSpec(8), "openvla", "tiny")
    assert "returns 1 action(s)" in msg and "--chunk-size 1" in msg
    with pytest.raises(ValueError, match="unknown model"):
        model_chunk_length("openvla", "huge")


def test_chunk_or_period_mismatch_is_refused_at_load(artifact):
    path, env = artifact
    meta = json.loads(meta_path(path).read_text())
    assert meta["env"]["chunk_size"] == DEFAULT_CHUNK_SIZE and meta["env"]["period_ms"] == DEFAULT_PERIOD_MS
    assert control_mismatch(meta, chunk_size=DEFAULT_CHUNK_SIZE, period_ms=DEFAULT_PERIOD_MS) is None
    assert control_mismatch({}, chunk_size=4, period_ms=50.0) is None  # older metadata: nothing to compare
    assert load_policy(path, PolicyExpectation.for_env(env)).planner is not None
    with pytest.raises(PolicyLoadError, match=r"chunk length mismatch.*chunks of 8 actions.*executes 4"):
        load_policy(path, PolicyExpectation(chunk_size=4))
    with pytest.raises(PolicyLoadError, match=r"control period mismatch.*100 ms.*50 ms.*--period-ms 100"):
        load_policy(path, PolicyExpectation(period_ms=50.0))
    g = GuardedPolicy(path, _Fallback(), expect=PolicyExpectation(chunk_size=4))
    assert g.policy is None and "chunk length mismatch" in g.load_error


class _Fallback:
    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        return np.array([0, 0]), state


def test_guard_report_names_each_out_of_range_field(artifact):
    path, env = artifact
    loaded = load_policy(path)
    g = GuardedPolicy(loaded, _Fallback(), range_tolerance=0.05)
    obs, _ = env.reset(seed=0)
    i = env.unwrapped.builder.index["visual_changed"]
    assert loaded.obs_high[i] < 0.9
    bad = obs.copy()
    bad[i] = 1.0
    g.predict(bad)
    bad[i] = 0.97
    g.predict(bad)
    rep = g.report()["out_of_range_fields"]
    assert list(rep) == ["visual_changed"]
    assert rep["visual_changed"]["steps"] == 2 and rep["visual_changed"]["value"] == 1.0
    lo, hi = rep["visual_changed"]["train_range"]
    assert lo == pytest.approx(loaded.obs_low[i]) and hi == pytest.approx(loaded.obs_high[i])
    assert g.describe_out_of_range().startswith("visual_changed = 1 (trained ")


def test_deadline_never_drops_below_the_fastest_network_step(tmp_path):
    from executor.roofline import roofline_profile_for
    from traces import synthetic

    edge, cloud = roofline_profile_for("openvla", "tiny", "orin"), roofline_profile_for("openvla", "tiny", "a100")
    trace = synthetic.constant(20.0, 60.0, rtt_ms=30.0)
    floor, cut = network_floor_ms(edge, cloud, trace)
    assert floor > 30.0 and 0 <= cut < edge.num_blocks  # at least the round trip
    capped = resolved_deadline_ms(edge, cloud, 300.0)
    assert capped < 0.1  # the tiny model's roofline edge-only time: the README example's 0.013 ms
    with pytest.raises(
        DeadlineError,
        match=r"edge-only time .* caps the deadline below the fastest network step.*"
        r"--edge-profile/--cloud-profile.*--no-break-even-deadline",
    ):
        deployment_deadline_ms(edge, cloud, 300.0, trace=trace)  # the README example's silent 0.013 ms
    assert deployment_deadline_ms(edge, cloud, 300.0, break_even=False, trace=trace) == 300.0
    with pytest.raises(DeadlineError, match=r"--deadline-ms 10 is below .*pass --deadline-ms \d"):
        deployment_deadline_ms(edge, cloud, 10.0, break_even=False, trace=trace)
    # no trace: the server's round trip is the link; an ideal link (no RTT) leaves the env's deadline alone
    assert network_floor_ms(edge, cloud, rtt_ms=5.0)[0] > 5.0
    assert deployment_deadline_ms(edge, cloud, 300.0) == capped
    # Profiles whose edge-only time is above the floor keep the env's (capped) deadline
    pi_e, pi_c = roofline_profile_for("pi0", "full", "orin"), roofline_profile_for("pi0", "full", "a100")
    fast = synthetic.constant(500.0, 500.0, rtt_ms=5.0)
    assert network_floor_ms(pi_e, pi_c, fast)[0] < resolved_deadline_ms(pi_e, pi_c, 300.0)
    assert deployment_deadline_ms(pi_e, pi_c, 300.0, trace=fast) == resolved_deadline_ms(pi_e, pi_c, 300.0)


def test_connect_rtt_measures_a_listening_socket_and_none_when_closed():
    import socket

    from agents.edge_cli import connect_rtt_ms

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        rtt = connect_rtt_ms(f"ws://127.0.0.1:{port}")
    assert rtt is not None and 0 < rtt < 1000
    assert connect_rtt_ms(f"ws://127.0.0.1:{port}", timeout_s=0.2) is None


def test_ecc_edge_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in (
        "--policy",
        "--edge-profile",
        "--cloud-profile",
        "--hardware",
        "--budget-ms",
        "--strict",
        "--no-break-even-deadline",
        "--stream",
        "--stream-seed",
        "--chunk-size",
        "--period-ms",
        "--cut",
        "--server",
        "--trace",
        "--emulate",
    ):
        assert opt in out, opt


def test_strict_turns_an_unusable_policy_into_an_error(tmp_path, capsys):
    rc = main(
        [
            "--policy",
            str(tmp_path / "missing.zip"),
            "--hardware",
            "orin+a100",
            "--model",
            "openvla",
            "--preset",
            "tiny",
            "--steps",
            "3",
            "--no-realtime",
            "--strict",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "policy not usable (--strict)" in err and "not found" in err


def test_bad_stream_file_is_exit_2(tmp_path, capsys):
    bad = tmp_path / "s.npz"
    bad.write_bytes(b"not a zip")
    rc = main(["--stream", str(bad), "--model", "openvla", "--preset", "tiny", "--steps", "3", "--no-realtime"])
    assert rc == 2 and str(bad) in capsys.readouterr().err


def test_runtime_executes_the_deployments_chunk_length():
    """pi0 tiny returns 4 actions; with chunk_size 2 a planner that always asks to skip gets one skip per inference
    (the env's budget), not the model's three."""
    from executor.models import build_model
    from executor.runtime import EdgeRuntime, RuntimeConfig

    model = build_model("pi0", "tiny", seed=0)

    class AlwaysSkip:
        def predict(self, observation, state=None, episode_start=None, deterministic=True):
            return np.array([model.num_blocks, 1]), state

    frames = [model.make_observation(seed=0)] * 6
    for chunk, want in (
        (2, ["local", "skipped"] * 3),
        (8, ["local", "skipped", "skipped", "skipped"] + ["local", "skipped"]),
    ):
        rt = EdgeRuntime(
            model,
            AlwaysSkip(),
            lambda ctx: np.zeros(1, np.float32),
            config=RuntimeConfig(realtime=False, chunk_size=chunk),
        )
        assert [r.mode for r in rt.run(frames)] == want, chunk
