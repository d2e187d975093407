"""The RTT rule (traces.rtt): every recorded family gets its documented RTT, a trace's own RTT is kept, --rtt-ms
overrides every trace; bad values are refused."""

from __future__ import annotations

import numpy as np
import pytest

from traces import synthetic
from traces.rtt import (
    FAMILY_RULE,
    apply_rtt,
    check_rtt_ms,
    family_rtt,
    rtt_mismatch,
    rtt_rule_label,
)
from traces.traceset import TraceSet


def _flat(name: str, rtt_ms: float = 0.0):
    return synthetic.step(np.full(10, 20.0), 1.0, rtt_ms=rtt_ms, name=name)


def test_family_table() -> None:
    assert family_rtt("lumos5g_mmwave/4G/4g_trace_driving_1").rtt_ms == 50.0
    assert family_rtt("lumos5g_mmwave/5G/x").rtt_ms == 20.0
    assert family_rtt("mahimahi_cellular_us/ATT-LTE-driving").rtt_ms == 50.0
    assert family_rtt("wifi_cellular_sbu_mptraces/11_1_wifi.csv").rtt_ms == 7.0
    assert family_rtt("wifi_cellular_sbu_mptraces/11_1_cellular.csv").rtt_ms == 50.0
    assert family_rtt("fcc_broadband_2016/test_genet/t1").rtt_ms == 20.0
    assert family_rtt("4G/x", "/data/lumos5g_mmwave/4G/x").rtt_ms == 50.0  # a set loaded from the subfolder
    assert family_rtt("somewhere/else") is None


def test_apply_keeps_own_rtt_sets_family_rtt_and_overrides() -> None:
    ts = TraceSet.from_traces(
        [
            _flat("lumos5g_mmwave/4G/a"),
            _flat("wifi_cellular_sbu_mptraces/1_wifi.csv"),
            _flat("embedded/4g/4g-1", 37.0),
            _flat("unknown/x"),
        ],
        "mix",
    )
    out = apply_rtt(ts)
    assert [float(t.rtt_at_ms(0.0)) for t in out] == [50.0, 7.0, 37.0, 0.0]
    assert out.name == "mix" and out.names == ts.names
    assert [float(t.rtt_at_ms(3.0)) for t in apply_rtt(ts, 80.0)] == [80.0] * 4
    assert [float(t.rtt_at_ms(3.0)) for t in apply_rtt(ts, 0.0)] == [0.0] * 4


@pytest.mark.parametrize("bad", [-2.0, float("nan"), float("inf"), "40"])
def test_bad_rtt_refused(bad) -> None:
    with pytest.raises((ValueError, TypeError), match="rtt_ms"):
        check_rtt_ms(bad)


def test_labels_and_mismatch() -> None:
    assert "family RTT" in rtt_rule_label(FAMILY_RULE) and "40 ms" in rtt_rule_label(40.0)
    assert rtt_mismatch({"rtt_rule": {"rtt_ms": -1.0}}, -1.0) is None
    assert rtt_mismatch({}, 40.0) is None
    msg = rtt_mismatch({"rtt_rule": {"rtt_ms": -1.0}}, 40.0)
    assert msg is not None and "family RTT" in msg and "40 ms" in msg


def test_recorded_families_get_their_rtt_in_training(shared_traces) -> None:
    from agents.training import TrainConfig, load_trace_sources

    cfg = TrainConfig(
        traces=(str(shared_traces / "lumos5g_mmwave" / "4G"), str(shared_traces / "wifi_cellular_sbu_mptraces")),
        include_embedded=False,
    )
    (ts,) = load_trace_sources(cfg)
    by_kind: dict[str, set[float]] = {}
    for t in ts:  # the 4G folder's traces are named 4G/... (the set's root): matched by their source path
        kind = "wifi" if "_wifi" in t.name else "cellular" if "_cellular" in t.name else t.name.split("/")[0]
        by_kind.setdefault(kind, set()).add(float(t.rtt_at_ms(0.0)))
    assert by_kind == {"4G": {50.0}, "wifi": {7.0}, "cellular": {50.0}}
    (ts,) = load_trace_sources(TrainConfig(traces=cfg.traces, include_embedded=False, rtt_ms=12.5))
    assert {float(t.rtt_at_ms(0.0)) for t in ts} == {12.5}
