"""Synthetic generators and the embedded default set."""

from __future__ import annotations

import numpy as np
import pytest

from traces import synthetic
from traces.embedded import embedded_default_set
from traces.paths import shared_traces_dir


def test_constant_and_step():
    c = synthetic.constant(19.0, 75.0, duration_s=10.0, rtt_ms=50.0)
    assert (c.up_mbps[0], c.down_mbps[0], c.duration_s, c.one_way_delay_ms(3.0)) == (19.0, 75.0, 10.0, 25.0)
    assert not c.symmetric and synthetic.constant(5.0).symmetric
    s = synthetic.step([1.0, 2.0, 3.0], 2.0)
    assert s.bandwidth_mbps(3.0, "up") == 2.0 and s.duration_s == 6.0
    with pytest.raises(ValueError, match="down_levels_mbps has 1 levels"):
        synthetic.step([1.0, 2.0], 1.0, down_levels_mbps=[1.0])
    with pytest.raises(ValueError, match="duration_s"):
        synthetic.constant(1.0, duration_s=0.0)


@pytest.mark.parametrize("name", list(synthetic.LINK_CLASSES))
def test_markov_long_run_mean_matches_the_link_table(name):
    lc = synthetic.LINK_CLASSES[name]
    tr = synthetic.markov(name, duration_s=20_000, interval_s=1.0, rng=11)
    s = tr.stats()
    assert s.mean_up_mbps == pytest.approx(lc.up_mbps, rel=0.1)
    assert s.mean_down_mbps == pytest.approx(lc.down_mbps, rel=0.1)
    assert np.min(tr.rtt_ms) == pytest.approx(2 * lc.one_way_ms)
    if lc.outages_per_min == 0:
        assert s.outage_fraction == 0.0
    else:
        assert s.outage_fraction > 0.0


def test_markov_is_seeded():
    a = synthetic.markov("5g", duration_s=60, rng=5)
    b = synthetic.markov("5g", duration_s=60, rng=np.random.default_rng(5))
    c = synthetic.markov("5g", duration_s=60, rng=6)
    assert a.content_hash() == b.content_hash() != c.content_hash()
    with pytest.raises(ValueError, match="unknown link class 'wifi9'"):
        synthetic.markov("wifi9")
    assert synthetic.markov("WiFi-6", duration_s=5).name == "wifi6-markov"


def test_random_walk_mean_and_independence():
    w = synthetic.random_walk(20.0, down_mean_mbps=80.0, duration_s=20_000, cv=0.3, rng=2)
    assert w.stats().mean_up_mbps == pytest.approx(20.0, rel=0.1)
    assert w.stats().mean_down_mbps == pytest.approx(80.0, rel=0.1)
    assert not np.allclose(w.up_mbps / 20.0, w.down_mbps / 80.0)


def test_embedded_set_is_deterministic_and_covers_the_link_classes():
    ts = embedded_default_set()
    assert len(ts) == 12
    classes = {t.name.split("/")[1] for t in ts}
    assert classes == {"ethernet", "wifi6", "wifi7", "4g", "5g"}
    assert all(170 <= t.duration_s <= 190 for t in ts)
    assert sum(t.stats().outage_fraction > 0 for t in ts) >= 3
    # regenerated from scratch: the same contents
    fresh = embedded_default_set.__wrapped__()
    assert fresh.fingerprint() == ts.fingerprint()
    split = ts.split(seed=0)
    assert len(split.train) + len(split.val) + len(split.test) == 12


def test_shared_traces_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("ECC_SHARED_TRACES", str(tmp_path))
    assert shared_traces_dir() == tmp_path
    monkeypatch.setenv("ECC_SHARED_TRACES", str(tmp_path / "absent"))
    assert shared_traces_dir() is None
