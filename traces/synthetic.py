"""Synthetic bandwidth traces: constant, step, log-normal random walk, and a Markov-modulated model per link class.

Link classes take their effective up/down rates and one-way latency from the VLA-Perf network table
(``../shared/reference/vla_systems.md``); RTT = 2 x one-way latency. The variability parameters (coefficient of
variation, outage rate and length, state dwell time) are this package's modelling choices, not published figures:
Ethernet is nearly flat, WiFi fluctuates with rare short drops, cellular fluctuates more with more outages.
Every random generator takes an explicit seed or ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from traces.trace import BandwidthTrace


@dataclass(frozen=True)
class LinkClass:
    """A network link's nominal figures and this package's variability model for it.

    up_mbps, down_mbps, one_way_ms: VLA-Perf table values (effective rates, base one-way latency).
    cv: coefficient of variation of the within-state log-normal fluctuation.
    dwell_s: mean time in one quality state (good / fair / poor) before moving to a neighbour.
    outages_per_min: expected outage onsets per minute; mean_outage_s: their mean length.
    level_spread: how far the fair/poor states sit from the mean (0 = one flat level, 1 = full spread).
    """

    name: str
    up_mbps: float
    down_mbps: float
    one_way_ms: float
    cv: float
    dwell_s: float
    outages_per_min: float
    mean_outage_s: float
    level_spread: float = 1.0

    @property
    def rtt_ms(self) -> float:
        return 2.0 * self.one_way_ms


LINK_CLASSES: dict[str, LinkClass] = {
    c.name: c
    for c in (
        LinkClass(
            "ethernet",
            1000.0,
            1000.0,
            0.1,
            cv=0.02,
            dwell_s=60.0,
            outages_per_min=0.0,
            mean_outage_s=0.0,
            level_spread=0.0,
        ),
        LinkClass(
            "ethernet10g",
            10000.0,
            10000.0,
            0.05,
            cv=0.02,
            dwell_s=60.0,
            outages_per_min=0.0,
            mean_outage_s=0.0,
            level_spread=0.0,
        ),
        LinkClass("wifi6", 560.0, 800.0, 3.5, cv=0.25, dwell_s=8.0, outages_per_min=0.2, mean_outage_s=1.0),
        LinkClass("wifi7", 2100.0, 3000.0, 2.5, cv=0.25, dwell_s=8.0, outages_per_min=0.2, mean_outage_s=1.0),
        LinkClass("4g", 19.0, 75.0, 25.0, cv=0.35, dwell_s=6.0, outages_per_min=0.5, mean_outage_s=2.0),
        LinkClass("5g", 80.0, 500.0, 10.0, cv=0.45, dwell_s=5.0, outages_per_min=0.5, mean_outage_s=1.5),
    )
}

# quality states of the Markov model: relative rate and relative RTT
_LEVELS = np.array([1.3, 0.85, 0.35, 0.0])
_RTT_LEVELS = np.array([1.0, 1.2, 2.0, 2.0])
_OUTAGE = 3


def _rng(rng: int | np.random.Generator) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {value}")
    return v


def constant(
    up_mbps: float,
    down_mbps: float | None = None,
    *,
    duration_s: float = 60.0,
    rtt_ms: float = 0.0,
    name: str | None = None,
) -> BandwidthTrace:
    """One sample lasting ``duration_s``; ``down_mbps`` defaults to ``up_mbps`` (symmetric)."""
    up = _positive("up_mbps", up_mbps, allow_zero=True)
    down = up if down_mbps is None else _positive("down_mbps", down_mbps, allow_zero=True)
    dur = _positive("duration_s", duration_s)
    return BandwidthTrace(
        times_s=np.array([0.0]),
        up_mbps=np.array([up]),
        down_mbps=np.array([down]),
        rtt_ms=_positive("rtt_ms", rtt_ms, allow_zero=True),
        name=name or f"constant-{up:g}-{down:g}mbps",
        source=f"synthetic.constant(up={up:g}, down={down:g}, duration_s={dur:g})",
        last_interval_s=dur,
        symmetric=down_mbps is None,
    )


def step(
    levels_mbps: Sequence[float] | np.ndarray,
    step_s: float,
    *,
    down_levels_mbps: Sequence[float] | np.ndarray | None = None,
    rtt_ms: float = 0.0,
    name: str | None = None,
) -> BandwidthTrace:
    """Piecewise-constant levels, each held for ``step_s``; down defaults to the same levels (symmetric)."""
    up = np.asarray(levels_mbps, dtype=np.float64)
    if up.ndim != 1 or len(up) == 0:
        raise ValueError(f"levels_mbps must be a non-empty sequence, got {levels_mbps!r}")
    down = up if down_levels_mbps is None else np.asarray(down_levels_mbps, dtype=np.float64)
    if down.shape != up.shape:
        raise ValueError(f"down_levels_mbps has {len(down)} levels, levels_mbps has {len(up)}")
    st = _positive("step_s", step_s)
    return BandwidthTrace(
        times_s=np.arange(len(up)) * st,
        up_mbps=up,
        down_mbps=down,
        rtt_ms=_positive("rtt_ms", rtt_ms, allow_zero=True),
        name=name or f"step-{len(up)}x{st:g}s",
        source=f"synthetic.step(levels={list(up)}, step_s={st:g})",
        last_interval_s=st,
        symmetric=down_levels_mbps is None,
    )


def _ar1_lognormal(rng: np.random.Generator, n: int, cv: float, rho: float) -> np.ndarray:
    """Mean-1 log-normal multipliers with lag-1 correlation ``rho`` in log space."""
    if cv <= 0:
        return np.ones(n)
    sigma = math.sqrt(math.log1p(cv * cv))
    eps = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = eps[0] * sigma
    a = math.sqrt(1.0 - rho * rho) * sigma
    for i in range(1, n):
        x[i] = rho * x[i - 1] + a * eps[i]
    return np.exp(x - sigma * sigma / 2.0)


def random_walk(
    mean_mbps: float,
    *,
    down_mean_mbps: float | None = None,
    duration_s: float = 300.0,
    interval_s: float = 1.0,
    cv: float = 0.3,
    rho: float = 0.9,
    rtt_ms: float = 0.0,
    rng: int | np.random.Generator = 0,
    name: str | None = None,
) -> BandwidthTrace:
    """Log-normal AR(1) random walk around ``mean_mbps`` (expected mean), one sample per ``interval_s``.

    With ``down_mean_mbps`` the downlink gets its own walk (independent noise); otherwise one walk serves both.
    """
    g = _rng(rng)
    m = _positive("mean_mbps", mean_mbps)
    dur = _positive("duration_s", duration_s)
    dt = _positive("interval_s", interval_s)
    if not 0 <= rho < 1:
        raise ValueError(f"rho must be in [0, 1), got {rho}")
    n = max(1, int(round(dur / dt)))
    up = m * _ar1_lognormal(g, n, _positive("cv", cv, allow_zero=True), rho)
    sym = down_mean_mbps is None
    down = up if sym else _positive("down_mean_mbps", down_mean_mbps) * _ar1_lognormal(g, n, cv, rho)  # type: ignore[arg-type]
    return BandwidthTrace(
        times_s=np.arange(n) * dt,
        up_mbps=up,
        down_mbps=down,
        rtt_ms=_positive("rtt_ms", rtt_ms, allow_zero=True),
        name=name or f"walk-{m:g}mbps",
        source=f"synthetic.random_walk(mean={m:g}, cv={cv:g}, rho={rho:g}, interval_s={dt:g})",
        last_interval_s=dt,
        symmetric=sym,
    )


def _transition_matrix(lc: LinkClass, dt: float) -> np.ndarray:
    """Per-step transitions between good(0) / fair(1) / poor(2) / outage(3)."""
    move = 1.0 - math.exp(-dt / lc.dwell_s)
    p_out = min(lc.outages_per_min * dt / 60.0, 0.5)
    p_back = 1.0 if lc.mean_outage_s <= 0 else min(dt / lc.mean_outage_s, 1.0)
    P = np.zeros((4, 4))
    P[0, 1] = move
    P[1, 0] = move / 2
    P[1, 2] = move / 2
    P[2, 1] = move
    for s in range(3):
        P[s, _OUTAGE] = p_out
        P[s, s] = 1.0 - P[s].sum()
    P[_OUTAGE, 2] = p_back
    P[_OUTAGE, _OUTAGE] = 1.0 - p_back
    return P


def _stationary(P: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eig(P.T)
    pi = np.real(v[:, np.argmin(np.abs(w - 1.0))])
    return pi / pi.sum()


def markov(
    link_class: str | LinkClass,
    *,
    duration_s: float = 300.0,
    interval_s: float = 0.5,
    rng: int | np.random.Generator = 0,
    name: str | None = None,
) -> BandwidthTrace:
    """Markov-modulated trace for a link class (``LINK_CLASSES`` key or a LinkClass).

    A 4-state chain (good / fair / poor / outage) sets the level; within a state the rate fluctuates as a mean-1
    log-normal AR(1) process with the class's ``cv``; up and down share the state but have independent noise. Levels
    are normalised by the chain's stationary distribution so the long-run mean equals the class's up/down rates.
    RTT per sample = 2 x one-way latency x a state factor (1.0 good .. 2.0 poor/outage).
    """
    if isinstance(link_class, str):
        key = link_class.lower().replace(" ", "").replace("-", "").replace("_", "")
        if key not in LINK_CLASSES:
            raise ValueError(f"unknown link class {link_class!r}; known: {', '.join(LINK_CLASSES)}")
        lc = LINK_CLASSES[key]
    elif isinstance(link_class, LinkClass):
        lc = link_class
    else:
        raise TypeError(f"link_class must be a name or a LinkClass, got {type(link_class).__name__}")
    g = _rng(rng)
    dur = _positive("duration_s", duration_s)
    dt = _positive("interval_s", interval_s)
    n = max(1, int(round(dur / dt)))
    P = _transition_matrix(lc, dt)
    pi = _stationary(P)
    levels = np.where(np.arange(4) == _OUTAGE, 0.0, 1.0 + lc.level_spread * (_LEVELS - 1.0))
    norm = float(pi @ levels)
    cum = np.cumsum(P, axis=1)
    u = g.random(n)
    states = np.empty(n, dtype=np.int64)
    s = int(np.searchsorted(np.cumsum(pi), g.random()))
    s = min(s, 3)
    for i in range(n):
        states[i] = s
        s = min(int(np.searchsorted(cum[s], u[i], side="right")), 3)
    level = levels[states] / norm
    rho = math.exp(-dt / 2.0)  # ~2 s correlation time of the fluctuation
    up = lc.up_mbps * level * _ar1_lognormal(g, n, lc.cv, rho)
    down = lc.down_mbps * level * _ar1_lognormal(g, n, lc.cv, rho)
    rtt = lc.rtt_ms * (1.0 + lc.level_spread * (_RTT_LEVELS[states] - 1.0))
    return BandwidthTrace(
        times_s=np.arange(n) * dt,
        up_mbps=up,
        down_mbps=down,
        rtt_ms=rtt,
        name=name or f"{lc.name}-markov",
        source=f"synthetic.markov({lc.name!r}, duration_s={dur:g}, interval_s={dt:g})",
        last_interval_s=dt,
        symmetric=False,
    )
