"""BandwidthTrace: validation, exact transfer-time integration (constant, wrap, outage, timeout), window estimates,
segments, rescaling, statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traces import BandwidthTrace, TransferTimeout
from traces import synthetic
from traces.units import transfer_ms


def mk(times, up, down=None, **kw) -> BandwidthTrace:
    return BandwidthTrace(times_s=times, up_mbps=up, down_mbps=up if down is None else down, **kw)


# -- validation --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(times_s=[0, 1, 2], up_mbps=[1, 2], down_mbps=[1, 2, 3]), "length mismatch"),
        (dict(times_s=[0, 2, 1], up_mbps=[1, 2, 3], down_mbps=[1, 2, 3]), r"strictly increasing; times_s\[2\] = 1.0"),
        (dict(times_s=[0, 1, 1], up_mbps=[1, 2, 3], down_mbps=[1, 2, 3]), "strictly increasing"),
        (dict(times_s=[0, 1], up_mbps=[1, -2], down_mbps=[1, 2]), r"up_mbps\[1\] = -2.0"),
        (dict(times_s=[0, 1], up_mbps=[1, 2], down_mbps=[1, np.nan]), r"down_mbps\[1\] = nan"),
        (dict(times_s=[0, 1], up_mbps=[1, 2], down_mbps=[1, np.inf]), r"down_mbps\[1\] = inf"),
        (dict(times_s=[1, 2], up_mbps=[1, 2], down_mbps=[1, 2]), "start at 0.0"),
        (dict(times_s=[], up_mbps=[], down_mbps=[]), "no samples"),
        (dict(times_s=[0, 1], up_mbps=[1, 2], down_mbps=[1, 2], rtt_ms=[1.0]), "rtt_ms has 1 values"),
        (dict(times_s=[0, 1], up_mbps=[1, 2], down_mbps=[1, 2], rtt_ms=-1.0), "rtt_ms = -1.0"),
        (dict(times_s=[0, 1], up_mbps=[1, 2], down_mbps=[1, 2], last_interval_s=0.0), "last_interval_s"),
        (dict(times_s=[[0, 1]], up_mbps=[[1, 2]], down_mbps=[[1, 2]]), "1-D"),
    ],
)
def test_invalid_traces_are_rejected_naming_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BandwidthTrace(**kwargs)


def test_trace_is_immutable_and_copies_its_input():
    times = np.array([0.0, 1.0])
    up = np.array([5.0, 6.0])
    tr = mk(times, up)
    up[0] = 99.0
    assert tr.up_mbps[0] == 5.0
    with pytest.raises(ValueError):
        tr.up_mbps[0] = 1.0
    with pytest.raises(AttributeError):
        tr.name = "other"  # type: ignore[misc]


def test_pickle_and_deepcopy_keep_content_and_immutability():
    import copy
    import pickle

    tr = synthetic.markov("4g", duration_s=30, rng=1)
    tr.transfer_time_s(1000, 0.0, "up")  # fill the cache first
    for other in (pickle.loads(pickle.dumps(tr)), copy.deepcopy(tr)):
        assert other.content_hash() == tr.content_hash() and other.name == tr.name
        assert not other.up_mbps.flags.writeable
        assert other.transfer_time_s(5000, 3.0, "up") == tr.transfer_time_s(5000, 3.0, "up")


def test_duration_defaults_to_median_spacing_for_the_last_sample():
    tr = mk([0.0, 1.0, 2.0, 4.0], [1, 1, 1, 1])
    assert tr.last_interval_s == 1.0
    assert tr.duration_s == 5.0
    assert mk([0.0], [3.0]).duration_s == 1.0


# -- transfer time -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.5, 19.0, 75.0, 1000.0])
@pytest.mark.parametrize("nbytes", [1, 1500, 150_528, 14_700_000])
@pytest.mark.parametrize("start", [0.0, 12.3, 59.999])
def test_constant_trace_transfer_time_is_bytes_times_8_over_rate(rate, nbytes, start):
    tr = synthetic.constant(rate, duration_s=60.0)
    expected = nbytes * 8 / (rate * 1e6)
    got = tr.transfer_time_s(nbytes, start, "up", max_wait_s=1e6)
    assert got == pytest.approx(expected, rel=1e-9)
    assert got * 1e3 == pytest.approx(transfer_ms(nbytes, rate), rel=1e-9)


def test_constant_trace_transfer_longer_than_the_trace_wraps_exactly():
    tr = synthetic.constant(8.0, duration_s=1.0)  # 1e6 B/s, 1 s loop
    assert tr.transfer_time_s(3_500_000, 0.25, "down") == pytest.approx(3.5, rel=1e-12)


def test_transfer_across_the_wrap_uses_the_start_of_the_trace():
    tr = synthetic.step([10.0, 20.0], 1.0)  # 10 Mbit/s in [0,1), 20 in [1,2), loops at 2 s
    # from 1.5 s: 0.5 s at 20 Mbit/s (1.25 MB), then wrap, 0.5 s at 10 Mbit/s (0.625 MB) -> ends at t = 2.5
    nbytes = 20e6 / 8 * 0.5 + 10e6 / 8 * 0.5
    assert tr.transfer_time_s(nbytes, 1.5, "up") == pytest.approx(1.0, rel=1e-12)
    # the same start, many loops later, gives the same answer
    assert tr.transfer_time_s(nbytes, 1.5 + 2 * 1000, "up") == pytest.approx(1.0, rel=1e-9)


def test_transfer_across_an_outage_waits_for_bandwidth():
    tr = synthetic.step([10.0, 0.0, 0.0, 10.0], 1.0)
    # 0.5 s of sending, 2 s of outage, 0.5 s of sending
    assert tr.transfer_time_s(10e6 / 8, 0.5, "down") == pytest.approx(3.0, rel=1e-12)
    # starting inside the outage: wait until t = 3, then 0.5 s
    assert tr.transfer_time_s(10e6 / 16, 1.2, "down") == pytest.approx(2.3, rel=1e-12)


def test_transfer_that_exactly_fills_the_bytes_before_an_outage_ends_before_it():
    tr = synthetic.step([8.0, 0.0], 1.0)  # 1 MB in [0, 1), then a 1 s outage
    assert tr.transfer_time_s(1_000_000, 0.0, "up") == pytest.approx(1.0, rel=1e-12)
    assert tr.transfer_time_s(2_000_000, 0.0, "up") == pytest.approx(3.0, rel=1e-12)


def test_all_zero_direction_raises_transfer_timeout_instead_of_hanging():
    tr = mk([0.0, 1.0], [0.0, 0.0], [5.0, 5.0])
    with pytest.raises(TransferTimeout, match="no up bandwidth"):
        tr.transfer_time_s(100, 0.0, "up")
    assert isinstance(TransferTimeout("x"), TimeoutError)
    assert tr.transfer_time_s(0, 0.0, "up") == 0.0
    assert tr.transfer_time_s(1_250_000, 0.0, "down") == pytest.approx(2.0)


def test_transfer_longer_than_max_wait_raises():
    tr = synthetic.step([10.0] + [0.0] * 100, 1.0)
    with pytest.raises(TransferTimeout, match="max_wait_s=5"):
        tr.transfer_time_s(10e6 / 8 * 2, 0.0, "up", max_wait_s=5)
    assert tr.transfer_time_s(10e6 / 8 * 2, 0.0, "up", max_wait_s=200) == pytest.approx(102.0)


def test_bad_transfer_arguments():
    tr = synthetic.constant(10.0)
    with pytest.raises(ValueError, match="nbytes"):
        tr.transfer_time_s(-1, 0.0, "up")
    with pytest.raises(ValueError, match="direction"):
        tr.transfer_time_s(10, 0.0, "sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start_s"):
        tr.transfer_time_s(10, math.nan, "up")


def test_vectorised_transfer_times_match_the_scalar_path():
    tr = synthetic.markov("4g", duration_s=60, rng=3)
    rng = np.random.default_rng(1)
    nb = rng.integers(0, 2_000_000, 500)
    st_ = rng.uniform(0, 500, 500)
    vec = tr.transfer_times_s(nb, st_, "up")
    ref = np.array([tr.transfer_time_s(int(b), float(s), "up", max_wait_s=1e9) for b, s in zip(nb, st_)])
    np.testing.assert_allclose(vec, ref, rtol=1e-9, atol=1e-12)
    capped = tr.transfer_times_s(nb, st_, "up", max_wait_s=0.05)
    assert np.all(np.isinf(capped[ref > 0.05])) and np.allclose(capped[ref <= 0.05], ref[ref <= 0.05])


rates_st = st.lists(st.one_of(st.just(0.0), st.floats(0.01, 2000.0)), min_size=1, max_size=12).filter(
    lambda r: sum(r) > 0
)


@settings(max_examples=150, deadline=None)
@given(
    rates=rates_st,
    gaps=st.lists(st.floats(0.01, 5.0), min_size=12, max_size=12),
    start=st.floats(0.0, 500.0),
    nbytes=st.integers(1, 50_000_000),
)
def test_transfer_time_and_bytes_deliverable_are_inverse(rates, gaps, start, nbytes):
    times = np.concatenate(([0.0], np.cumsum(gaps[: len(rates) - 1])))
    tr = mk(times, rates, last_interval_s=gaps[-1])
    t = tr.transfer_time_s(nbytes, start, "up", max_wait_s=math.inf)
    assert t > 0
    assert tr.bytes_deliverable(start, t, "up") == pytest.approx(nbytes, rel=1e-7, abs=1e-3)
    # the transfer is not done any earlier: a bit less time carries fewer bytes
    assert tr.bytes_deliverable(start, t * (1 - 1e-6), "up") < nbytes
    # and the other way round: what a window can carry takes at most that window
    b = tr.bytes_deliverable(start, 1.7, "up")
    if b > 0:
        assert tr.transfer_time_s(b, start, "up", max_wait_s=math.inf) <= 1.7 * (1 + 1e-9)


# -- windows ------------------------------------------------------------------------------------------------------


def test_mean_and_harmonic_mean_over_windows():
    tr = synthetic.step([10.0, 40.0], 1.0)
    assert tr.mean_mbps(0.0, 2.0, "up") == pytest.approx(25.0)
    assert tr.mean_mbps(0.5, 1.5, "up") == pytest.approx(25.0)
    assert tr.mean_mbps(1.5, 2.5, "up") == pytest.approx(25.0)  # wraps
    assert tr.harmonic_mean_mbps(0.0, 2.0, "up") == pytest.approx(2 / (1 / 10 + 1 / 40))
    out = synthetic.step([10.0, 0.0, 10.0], 1.0)
    assert out.harmonic_mean_mbps(0.0, 3.0, "up") == 0.0
    assert out.harmonic_mean_mbps(2.0, 3.0, "up") == pytest.approx(10.0)
    with pytest.raises(ValueError, match="end_s > start_s"):
        tr.mean_mbps(1.0, 1.0, "up")


def test_point_queries_wrap_and_rtt_is_halved_for_one_way_delay():
    tr = mk([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [4.0, 5.0, 6.0], rtt_ms=[10.0, 20.0, 30.0])
    assert tr.bandwidth_mbps(1.5, "up") == 2.0
    assert tr.bandwidth_mbps(4.2, "down") == 5.0  # 4.2 mod 3 = 1.2
    np.testing.assert_array_equal(tr.bandwidth_at(np.array([0.0, 2.5, 3.0]), "up"), [1.0, 3.0, 1.0])
    assert tr.rtt_at_ms(2.9) == 30.0
    assert tr.one_way_delay_ms(0.1) == 5.0


# -- transforms ---------------------------------------------------------------------------------------------------


def test_segment_rebases_and_wraps():
    tr = mk([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], rtt_ms=[10.0, 20.0, 30.0])
    seg = tr.segment(1.5, 3.0)  # [1.5, 4.5): 2 (0.5 s), 3 (1 s), 1 (1 s), 2 (0.5 s)
    np.testing.assert_allclose(seg.times_s, [0.0, 0.5, 1.5, 2.5])
    np.testing.assert_array_equal(seg.up_mbps, [2.0, 3.0, 1.0, 2.0])
    np.testing.assert_array_equal(seg.rtt_ms, [20.0, 30.0, 10.0, 20.0])
    assert seg.duration_s == pytest.approx(3.0)
    assert seg.bytes_deliverable(0.0, 3.0, "up") == pytest.approx(tr.bytes_deliverable(1.5, 3.0, "up"))


def test_rescale_by_factor_and_to_target_mean():
    tr = synthetic.markov("5g", duration_s=60, rng=0)
    doubled = tr.rescaled(2.0)
    np.testing.assert_allclose(doubled.up_mbps, 2 * tr.up_mbps)
    to50 = tr.rescaled(target_mean_mbps=50.0)
    assert to50.mean_mbps(0, to50.duration_s, "up") == pytest.approx(50.0)
    assert to50.mean_mbps(0, to50.duration_s, "down") == pytest.approx(50.0)
    only_up = tr.rescaled(target_mean_mbps=10.0, direction="up")
    assert only_up.stats().mean_up_mbps == pytest.approx(10.0)
    np.testing.assert_array_equal(only_up.down_mbps, tr.down_mbps)
    assert "rescaled up" in only_up.notes[-1]
    with pytest.raises(ValueError, match="exactly one"):
        tr.rescaled(2.0, target_mean_mbps=3.0)
    with pytest.raises(ValueError, match="mean is 0"):
        mk([0.0], [0.0]).rescaled(target_mean_mbps=1.0)


def test_stats_are_time_weighted():
    # 10 Mbit/s for 9 s, 0 for 1 s
    tr = mk([0.0, 9.0], [10.0, 0.0], last_interval_s=1.0)
    s = tr.stats()
    assert s.duration_s == 10.0
    assert s.mean_up_mbps == pytest.approx(9.0)
    assert s.outage_fraction == pytest.approx(0.1)
    assert s.p10_up_mbps == 0.0 and s.p90_up_mbps == 10.0
    assert tr.content_hash() == mk([0.0, 9.0], [10.0, 0.0], last_interval_s=1.0, name="x").content_hash()
    assert tr.content_hash() != mk([0.0, 9.0], [10.0, 0.1], last_interval_s=1.0).content_hash()
