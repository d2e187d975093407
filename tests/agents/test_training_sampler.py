"""Family-balanced episode sampling (agents.training.FamilyBalancedTraceSet) and its TrainConfig switch."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from agents.training import FamilyBalancedTraceSet, RescaledTraceSet, TrainConfig
from traces.trace import BandwidthTrace
from traces.traceset import TraceSet

N_BIG, N_SMALL, DRAWS = 30, 2, 4000


def _trace(name: str, mbps: float) -> BandwidthTrace:
    return BandwidthTrace(times_s=np.arange(10.0), up_mbps=np.full(10, mbps), down_mbps=np.full(10, mbps), name=name)


def _unequal_set() -> TraceSet:
    """Family ``big`` (30 traces at 1 Mbit/s, under a train_x folder that family_of drops) and ``small`` (2 traces
    at 100 Mbit/s): a segment's rate tells its family."""
    big = [_trace(f"root/big/train_x/t{i}", 1.0) for i in range(N_BIG)]
    small = [_trace(f"root/small/s{i}", 100.0) for i in range(N_SMALL)]
    return TraceSet(big + small, "unequal")


def _small_fraction(sampler, seed: int) -> float:
    rng = np.random.default_rng(seed)
    return float(np.mean([sampler.sample_segment(rng, 3.0).up_mbps[0] == 100.0 for _ in range(DRAWS)]))


def test_families_are_drawn_about_equally():
    s = FamilyBalancedTraceSet(_unequal_set(), power=0.0)
    assert s.families == ("root/big", "root/small")
    np.testing.assert_allclose(s.weights, [0.5, 0.5])
    frac = _small_fraction(s, seed=1)
    assert abs(frac - 0.5) < 0.04, frac  # binomial sd ~0.008
    # plain per-trace sampling would give the small family 2/32 of the episodes
    plain = _small_fraction(_unequal_set(), seed=1)
    assert abs(plain - N_SMALL / (N_BIG + N_SMALL)) < 0.02, plain


def test_power_one_weighs_traces_and_half_interpolates():
    one = FamilyBalancedTraceSet(_unequal_set(), power=1.0)
    np.testing.assert_allclose(one.weights, [N_BIG / 32, N_SMALL / 32])
    assert abs(_small_fraction(one, seed=2) - N_SMALL / 32) < 0.02
    half = FamilyBalancedTraceSet(_unequal_set(), power=0.5)
    expect = N_SMALL**0.5 / (N_SMALL**0.5 + N_BIG**0.5)
    np.testing.assert_allclose(half.weights[1], expect)
    assert abs(_small_fraction(half, seed=3) - expect) < 0.03


def test_traces_within_a_family_are_uniform():
    s = FamilyBalancedTraceSet(_unequal_set(), power=0.0)
    rng = np.random.default_rng(4)
    names = Counter(s.sample_segment(rng, 2.0).name.split("[", 1)[0] for _ in range(DRAWS))
    small = [names[f"root/small/s{i}"] for i in range(N_SMALL)]
    big = [names[f"root/big/train_x/t{i}"] for i in range(N_BIG)]
    assert min(small) > 0.4 * DRAWS / 2 and max(small) < 0.6 * DRAWS / 2, small
    assert min(big) > 0 and sum(big) + sum(small) == DRAWS, big


def test_deterministic_with_a_seed_and_segment_length():
    s = FamilyBalancedTraceSet(_unequal_set(), power=0.0)
    a = [s.sample_segment(np.random.default_rng(7), 4.0) for _ in range(3)]
    b = [s.sample_segment(np.random.default_rng(7), 4.0) for _ in range(3)]
    assert [x.name for x in a] == [y.name for y in b]
    assert all(x.content_hash() == y.content_hash() for x, y in zip(a, b))
    assert a[0].duration_s == pytest.approx(4.0)
    rng_a, rng_b = np.random.default_rng(8), np.random.default_rng(9)
    seq_a = [s.sample_segment(rng_a, 4.0).name for _ in range(20)]
    seq_b = [s.sample_segment(rng_b, 4.0).name for _ in range(20)]
    assert seq_a != seq_b


def test_rescaling_composes_with_balancing():
    r = RescaledTraceSet(FamilyBalancedTraceSet(_unequal_set(), power=0.0), 2.0, 2.0 + 1e-9)
    rng = np.random.default_rng(5)
    rates = {round(float(r.sample_segment(rng, 2.0).up_mbps[0])) for _ in range(200)}
    assert rates == {2, 200}


def test_bad_input_raises():
    with pytest.raises(ValueError, match="power"):
        FamilyBalancedTraceSet(_unequal_set(), power=-0.5)
    with pytest.raises(ValueError, match="empty"):
        FamilyBalancedTraceSet(TraceSet([], "none"))
    with pytest.raises(TypeError, match="Generator"):
        FamilyBalancedTraceSet(_unequal_set()).sample_segment(np.random.RandomState(0), 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="family_power"):
        TrainConfig(family_power=float("nan"))
    assert TrainConfig().family_power == 0.0  # family-balanced by default


def test_split_sources_keeps_each_source_split_unchanged():
    """Mixing a second source into training never moves a trace of the first to another side (no test leakage)."""
    from agents.training import split_sources

    a = TraceSet([_trace(f"dirs/fam{i % 3}/t{i}", 1.0 + i) for i in range(40)], "dirs")
    b = TraceSet([_trace(f"embedded/e{i % 2}/x{i}", 50.0 + i) for i in range(9)], "embedded")
    alone = a.split(0)
    mixed = split_sources([b, a], 0)
    for side in ("train", "val", "test"):
        got = {n for n in getattr(mixed, side).names if n.startswith("dirs/")}
        assert got == set(getattr(alone, side).names), side
    assert len(mixed.train) + len(mixed.val) + len(mixed.test) == 49
    assert set(mixed.test.names) & set(mixed.train.names) == set()
    assert split_sources([a], 0).test.names == alone.test.names


def test_exclude_families_leaves_out_matching_families_only():
    from agents.training import exclude_families

    train_side = _unequal_set()
    val_side = TraceSet([_trace("root/big/v0", 1.0), _trace("root/other/o0", 5.0)], "val")
    kept_train, kept_val = exclude_families([train_side, val_side], ("small",))
    assert len(kept_train) == N_BIG and all("/small/" not in t.name for t in kept_train)
    assert [t.name for t in kept_val] == ["root/big/v0", "root/other/o0"]
    kept_train, kept_val = exclude_families([train_side, val_side], ("big", "other"))
    assert [t.name for t in kept_train] == [f"root/small/s{i}" for i in range(N_SMALL)] and len(kept_val) == 0
    # a text is checked against the families of all the sets together: 'other' exists only on the val side
    with pytest.raises(ValueError, match="'wifi' matches no trace family; families: root/big, root/other, root/small"):
        exclude_families([train_side, val_side], ("wifi",))
    with pytest.raises(ValueError, match="non-empty"):
        TrainConfig(exclude_families=("",))


def test_train_leaves_out_a_family_after_the_split(tmp_path, toy):
    """The split comes first, so the remaining traces keep the sides they have without the exclusion; the run's
    config records what was trained on."""
    import json

    from agents.training import train
    from traces import synthetic

    base = toy.alternating_set(n=10)
    extra = [synthetic.constant(50.0, 50.0, rtt_ms=20.0, duration_s=20.0, name=f"fast/f{i}") for i in range(6)]
    full = TraceSet([*base, *extra], "mixed")
    split = full.split(0)
    assert any(t.name.startswith("fast/") for t in split.train)  # there is something to leave out
    cfg = toy.tiny_train_config(
        tmp_path, "lofo", total_timesteps=128, n_steps=64, eval_every_steps=128, exclude_families=("fast",)
    )
    res = train(cfg, trace_set=full, profiles=toy.three_block_profiles())
    rec = json.loads((res.run_dir / "config.json").read_text())
    assert rec["exclude_families"] == ["fast"]
    assert rec["train_traces"]["n"] == sum(not t.name.startswith("fast/") for t in split.train)
    assert rec["val_traces"]["n"] == sum(not t.name.startswith("fast/") for t in split.val) > 0
    with pytest.raises(ValueError, match="'nope' matches no trace family"):
        train(
            TrainConfig(run_dir=str(tmp_path), exclude_families=("nope",)),
            trace_set=full,
            profiles=toy.three_block_profiles(),
        )


def test_train_with_hedge_trains_and_records_the_hedged_rule(tmp_path, toy):
    """``TrainConfig.hedge`` reaches the training env's deadline rule and the policy metadata, and ``ecc eval`` /
    ``ecc edge`` warn (``hedge_mismatch``) when the policy runs under the other rule."""
    import json

    from agents.artifact import hedge_mismatch
    from agents.training import make_env, train

    profiles = toy.three_block_profiles()
    cfg = toy.tiny_train_config(tmp_path, "hedge", total_timesteps=128, n_steps=64, eval_every_steps=128, hedge=True)
    assert make_env(*profiles, toy.alternating_set(n=4), cfg).unwrapped.deadline.hedge
    res = train(cfg, trace_set=toy.alternating_set(n=10), profiles=profiles)
    meta = json.loads(res.policy_path.with_suffix(".json").read_text())
    assert meta["env"]["hedge"] is True and meta["train_config"]["hedge"] is True
    assert hedge_mismatch(meta, True) is None
    assert "trained with hedged execution, it runs without it" in hedge_mismatch(meta, False)
    assert hedge_mismatch({"env": {}}, False) is None  # artifacts from before the flag: trained without


def test_train_config_takes_every_model_family() -> None:
    from executor.models import FAMILIES

    assert [TrainConfig(model=f).model for f in FAMILIES] == list(FAMILIES)  # smolvla trains too (bench_codecs)
    with pytest.raises(ValueError, match=f"model must be one of {', '.join(FAMILIES)}"):
        TrainConfig(model="rt2")
