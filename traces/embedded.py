"""The embedded default trace set: small, generated deterministically by this package (no files needed).

Twelve traces of 180 s at 0.5 s resolution: one Ethernet, two WiFi 6, two WiFi 7, three 4G and three 5G Markov
traces (``synthetic.markov`` with fixed seeds), plus a 4G drive with a 6 s tunnel outage (``synthetic.step``).
Names are ``embedded/<class>/<trace>``, so ``TraceSet.split`` stratifies by link class.
"""

from __future__ import annotations

import functools

import numpy as np

from traces import synthetic
from traces.trace import BandwidthTrace
from traces.traceset import TraceSet

DURATION_S = 180.0
INTERVAL_S = 0.5
_PLAN: tuple[tuple[str, int], ...] = (
    ("ethernet", 1),
    ("wifi6", 2),
    ("wifi7", 2),
    ("4g", 3),
    ("5g", 3),
)
_BASE_SEED = 20240601


def _tunnel() -> BandwidthTrace:
    """4G at its nominal rates with a dip, a 6 s outage (tunnel) and recovery."""
    lc = synthetic.LINK_CLASSES["4g"]
    pattern = [1.0] * 50 + [0.6] * 10 + [0.2] * 4 + [0.0] * 6 + [0.3] * 4 + [0.8] * 10 + [1.0] * 96  # 1 s steps
    f = np.array(pattern)
    tr = synthetic.step(
        lc.up_mbps * f, 1.0, down_levels_mbps=lc.down_mbps * f, rtt_ms=lc.rtt_ms, name="embedded/4g/4g-tunnel"
    )
    return tr


@functools.lru_cache(maxsize=1)
def embedded_default_set() -> TraceSet:
    """The deterministic default TraceSet (same contents and fingerprint on every call and machine)."""
    traces = []
    for k, (cls, count) in enumerate(_PLAN):
        for i in range(count):
            rng = np.random.default_rng([_BASE_SEED, k, i])
            traces.append(
                synthetic.markov(
                    cls, duration_s=DURATION_S, interval_s=INTERVAL_S, rng=rng, name=f"embedded/{cls}/{cls}-{i}"
                )
            )
    traces.append(_tunnel())
    return TraceSet.from_traces(traces, name="embedded")
