"""BandwidthTrace: piecewise-constant uplink/downlink bandwidth over time, and exact transfer-time integration.

Sample ``i`` holds for ``[times_s[i], times_s[i+1])``; the last sample holds for ``last_interval_s``. The trace loops
(wraps) after ``duration_s``, as Mahimahi's ``mm-link`` does. Bytes delivered between two instants are the integral of
the rate; ``transfer_time_s`` inverts that integral in closed form per segment (cumulative bytes + binary search),
so it is exact for any piecewise-constant trace and costs O(log n) per call.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from traces.units import BITS_PER_BYTE, MBIT, rate_mbps

log = logging.getLogger(__name__)

Direction = Literal["up", "down"]
DIRECTIONS: tuple[Direction, Direction] = ("up", "down")

#: A sample below this rate (Mbit/s) counts as an outage in statistics.
OUTAGE_MBPS = 0.01


class TransferTimeout(TimeoutError):
    """A transfer would take longer than the allowed wait (a long outage, or a direction with no bandwidth at all)."""


def _readonly_f64(values: object, what: str) -> np.ndarray:
    try:
        arr = np.array(values, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be numeric, got {values!r:.80}") from e
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    arr.flags.writeable = False
    return arr


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


class _Cumulative:
    """Integral of a piecewise-constant, periodic function: exact evaluation and inversion.

    ``edges`` has n+1 entries (0 .. period); ``values[i]`` holds on ``[edges[i], edges[i+1])``.
    """

    __slots__ = ("edges", "values", "cum", "total", "period", "_edges_l", "_cum_l", "_values_l", "_first_positive")

    def __init__(self, edges: np.ndarray, values: np.ndarray) -> None:
        self.edges = edges
        self.values = values
        self.cum = np.concatenate(([0.0], np.cumsum(values * np.diff(edges))))
        self.total = float(self.cum[-1])
        self.period = float(edges[-1])
        # Python lists for the scalar path: bisect on a list beats numpy's per-call overhead by ~10x.
        self._edges_l: list[float] = edges.tolist()
        self._cum_l: list[float] = self.cum.tolist()
        self._values_l: list[float] = values.tolist()
        self._first_positive = bisect.bisect_right(self._cum_l, 0.0)  # first j with cum[j] > 0

    # -- scalar path -------------------------------------------------------------------------------------------
    def local(self, t: float) -> float:
        """Integral from 0 to ``t`` for ``0 <= t <= period``."""
        i = bisect.bisect_right(self._edges_l, t) - 1
        if i >= len(self._values_l):
            return self.total
        if i < 0:
            i = 0
        return self._cum_l[i] + self._values_l[i] * (t - self._edges_l[i])

    def split(self, t: float) -> tuple[float, float]:
        """``t`` as (whole periods, offset in [0, period))."""
        k = math.floor(t / self.period)
        off = t - k * self.period
        if off >= self.period:  # float rounding
            k, off = k + 1, 0.0
        elif off < 0.0:
            off = 0.0
        return float(k), off

    def between(self, t0: float, t1: float) -> float:
        """Integral from ``t0`` to ``t1`` (``t1 >= t0``, any real times; wraps)."""
        k0, o0 = self.split(t0)
        k1, o1 = self.split(t1)
        return (k1 - k0) * self.total + self.local(o1) - self.local(o0)

    def local_inverse(self, amount: float) -> float:
        """Smallest ``t`` in (0, period] with integral(0, t) >= amount, for ``0 < amount <= total``.

        ``amount`` within 1e-12 of the loop total above a plateau (a zero-rate stretch) counts as reached at the
        plateau's start: rounding must not push a finished transfer across an outage."""
        j = max(bisect.bisect_left(self._cum_l, amount - self.total * 1e-12), self._first_positive)
        if j >= len(self._cum_l):
            j = len(self._cum_l) - 1
        i = j - 1
        rate = self._values_l[i]
        t = self._edges_l[i] + (amount - self._cum_l[i]) / rate
        end = self._edges_l[i + 1]
        return end if t > end else t

    def time_to_accumulate(self, amount: float, start: float) -> float:
        """Time from ``start`` until the integral reaches ``amount`` (> 0); requires ``total > 0``."""
        _, o0 = self.split(start)
        i = bisect.bisect_right(self._edges_l, o0) - 1
        if i >= len(self._values_l):
            i = len(self._values_l) - 1
        rate = self._values_l[i]
        if rate > 0.0 and amount <= rate * (self._edges_l[i + 1] - o0):
            return amount / rate  # fast, exact path: the transfer ends inside the current segment
        target = self._cum_l[i] + rate * (o0 - self._edges_l[i]) + amount
        k = math.floor(target / self.total)
        rem = target - k * self.total
        if rem > self.total:  # rounding of the division
            k, rem = k + 1, rem - self.total
        if rem <= self.total * 1e-12:  # a whole number of periods (to rounding): finish at the last period's bytes
            k -= 1
            rem = self.total
        return k * self.period + self.local_inverse(rem) - o0

    # -- vector path ------------------------------------------------------------------------------------------
    def local_v(self, t: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(self.edges, t, side="right") - 1, 0, len(self.values) - 1)
        return np.minimum(self.cum[i] + self.values[i] * (t - self.edges[i]), self.total)

    def split_v(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.floor(t / self.period)
        off = np.clip(t - k * self.period, 0.0, self.period)
        wrap = off >= self.period
        return k + wrap, np.where(wrap, 0.0, off)

    def time_to_accumulate_v(self, amount: np.ndarray, start: np.ndarray) -> np.ndarray:
        _, o0 = self.split_v(start)
        i0 = np.clip(np.searchsorted(self.edges, o0, side="right") - 1, 0, len(self.values) - 1)
        r0 = self.values[i0]
        inside = (r0 > 0) & (amount <= r0 * (self.edges[i0 + 1] - o0))  # ends in the current segment: exact
        target = self.cum[i0] + r0 * (o0 - self.edges[i0]) + amount
        k = np.floor(target / self.total)
        rem = target - k * self.total
        high = rem > self.total
        k = np.where(high, k + 1, k)
        rem = np.where(high, rem - self.total, rem)
        low = rem <= self.total * 1e-12
        k = np.where(low, k - 1, k)
        rem = np.where(low, self.total, rem)
        j = np.searchsorted(self.cum, rem - self.total * 1e-12, side="left")
        j = np.clip(j, self._first_positive, len(self.cum) - 1)
        i = j - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            t = self.edges[i] + (rem - self.cum[i]) / self.values[i]
        t = np.minimum(t, self.edges[i + 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(inside, amount / np.where(r0 > 0, r0, 1.0), k * self.period + t - o0)


@dataclass(frozen=True)
class TraceStats:
    """Summary of one trace (or a set). Percentiles and means are time-weighted; rates in Mbit/s.

    ``outage_fraction`` is the fraction of time with either direction below ``OUTAGE_MBPS`` (0.01 Mbit/s).
    """

    duration_s: float
    n_samples: int
    mean_up_mbps: float
    p10_up_mbps: float
    p90_up_mbps: float
    mean_down_mbps: float
    p10_down_mbps: float
    p90_down_mbps: float
    outage_fraction: float
    mean_rtt_ms: float

    def as_dict(self) -> dict[str, float]:
        """Plain dict (JSON-ready)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Time-weighted percentile ``q`` in [0, 100]: the smallest value whose cumulative weight reaches q%."""
    if len(values) == 0:
        return float("nan")
    order = np.argsort(values, kind="stable")
    cw = np.cumsum(weights[order])
    if cw[-1] <= 0:
        return float(np.percentile(values, q))
    idx = int(np.searchsorted(cw, q / 100.0 * cw[-1], side="left"))
    return float(values[order[min(idx, len(values) - 1)]])


def summarize(durations: np.ndarray, up: np.ndarray, down: np.ndarray, rtt: np.ndarray, n_samples: int) -> TraceStats:
    """TraceStats from per-sample durations, rates and RTTs (used for a trace and for a whole set)."""
    total = float(durations.sum())
    w = durations / total if total > 0 else np.full(len(durations), 1.0 / max(len(durations), 1))
    out = (up < OUTAGE_MBPS) | (down < OUTAGE_MBPS)
    return TraceStats(
        duration_s=total,
        n_samples=n_samples,
        mean_up_mbps=float(np.dot(w, up)),
        p10_up_mbps=weighted_percentile(up, durations, 10),
        p90_up_mbps=weighted_percentile(up, durations, 90),
        mean_down_mbps=float(np.dot(w, down)),
        p10_down_mbps=weighted_percentile(down, durations, 10),
        p90_down_mbps=weighted_percentile(down, durations, 90),
        outage_fraction=float(np.dot(w, out)),
        mean_rtt_ms=float(np.dot(w, rtt)),
    )


@dataclass(frozen=True, eq=False)
class BandwidthTrace:
    """Immutable piecewise-constant bandwidth trace (Mbit/s per direction, optional RTT in ms), looping at its end.

    times_s: sample start times in s, strictly increasing, starting at 0.0.
    up_mbps, down_mbps: rates in Mbit/s (finite, >= 0), one per sample.
    rtt_ms: round-trip time in ms, constant or one per sample (one-way delay = rtt / 2).
    last_interval_s: how long the last sample holds (default: median sample spacing, 1 s for a single sample).
    symmetric: True when one recorded direction serves both (stated by the reader or generator).
    notes: what a reader or generator did to the data (merged duplicates, looped a shorter direction, ...).
    Arrays are read-only copies. Equality is identity; compare ``content_hash()`` for content.
    """

    times_s: np.ndarray
    up_mbps: np.ndarray
    down_mbps: np.ndarray
    rtt_ms: float | np.ndarray = 0.0
    name: str = "trace"
    source: str = ""
    last_interval_s: float | None = None
    symmetric: bool = False
    notes: tuple[str, ...] = ()
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        t = _readonly_f64(self.times_s, "times_s")
        up = _readonly_f64(self.up_mbps, "up_mbps")
        down = _readonly_f64(self.down_mbps, "down_mbps")
        n = len(t)
        if n == 0:
            raise ValueError(f"trace {self.name!r}: no samples")
        if len(up) != n or len(down) != n:
            raise ValueError(
                f"trace {self.name!r}: length mismatch: times_s {n}, up_mbps {len(up)}, down_mbps {len(down)}"
            )
        if not np.isfinite(t).all():
            i = _first_bad(~np.isfinite(t))
            raise ValueError(f"trace {self.name!r}: times_s[{i}] = {t[i]} is not finite")
        if t[0] != 0.0:
            raise ValueError(f"trace {self.name!r}: times_s must start at 0.0, got {t[0]}")
        if n > 1 and not (np.diff(t) > 0).all():
            i = _first_bad(np.diff(t) <= 0) + 1
            raise ValueError(
                f"trace {self.name!r}: times_s must be strictly increasing; times_s[{i}] = {t[i]} "
                f"after times_s[{i - 1}] = {t[i - 1]}"
            )
        for what, arr in (("up_mbps", up), ("down_mbps", down)):
            bad = ~np.isfinite(arr) | (arr < 0)
            if bad.any():
                i = _first_bad(bad)
                raise ValueError(f"trace {self.name!r}: {what}[{i}] = {arr[i]} must be finite and >= 0")
        if isinstance(self.rtt_ms, np.ndarray) or isinstance(self.rtt_ms, (list, tuple)):
            rtt_arr = _readonly_f64(self.rtt_ms, "rtt_ms")
            rtt: float | np.ndarray = rtt_arr
            if len(rtt_arr) != n:
                raise ValueError(f"trace {self.name!r}: rtt_ms has {len(rtt_arr)} values for {n} samples")
            bad = ~np.isfinite(rtt_arr) | (rtt_arr < 0)
            if bad.any():
                i = _first_bad(bad)
                raise ValueError(f"trace {self.name!r}: rtt_ms[{i}] = {rtt_arr[i]} must be finite and >= 0")
        else:
            try:
                rtt = float(self.rtt_ms)  # type: ignore[arg-type]
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"trace {self.name!r}: rtt_ms must be a number or an array, got {self.rtt_ms!r}"
                ) from e
            if not math.isfinite(rtt) or rtt < 0:
                raise ValueError(f"trace {self.name!r}: rtt_ms = {rtt} must be finite and >= 0")
        last = self.last_interval_s
        if last is None:
            last = float(np.median(np.diff(t))) if n > 1 else 1.0
        last = float(last)
        if not math.isfinite(last) or last <= 0:
            raise ValueError(f"trace {self.name!r}: last_interval_s = {last} must be finite and > 0")
        object.__setattr__(self, "times_s", t)
        object.__setattr__(self, "up_mbps", up)
        object.__setattr__(self, "down_mbps", down)
        object.__setattr__(self, "rtt_ms", rtt)
        object.__setattr__(self, "last_interval_s", last)
        object.__setattr__(self, "symmetric", bool(self.symmetric))
        object.__setattr__(self, "notes", tuple(str(x) for x in self.notes))

    def __reduce__(self):  # type: ignore[no-untyped-def]
        """Pickle through the constructor: re-validated, read-only arrays, no cached integrators."""
        return (
            _rebuild,
            (
                self.times_s,
                self.up_mbps,
                self.down_mbps,
                self.rtt_ms,
                self.name,
                self.source,
                self.last_interval_s,
                self.symmetric,
                self.notes,
            ),
        )

    # -- basic properties ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.times_s)

    def __repr__(self) -> str:
        return (
            f"BandwidthTrace(name={self.name!r}, samples={len(self)}, duration_s={self.duration_s:.3f}, "
            f"symmetric={self.symmetric})"
        )

    @property
    def duration_s(self) -> float:
        """Length of one loop of the trace, s."""
        return float(self.times_s[-1]) + float(self.last_interval_s)  # type: ignore[arg-type]

    @property
    def edges_s(self) -> np.ndarray:
        """Segment boundaries: ``times_s`` followed by ``duration_s`` (n + 1 values)."""
        c = self._cache.get("edges")
        if c is None:
            c = np.append(self.times_s, self.duration_s)
            c.flags.writeable = False
            self._cache["edges"] = c
        return c

    @property
    def intervals_s(self) -> np.ndarray:
        """How long each sample holds, s."""
        return np.diff(self.edges_s)

    def rates_mbps(self, direction: Direction) -> np.ndarray:
        """The per-sample rate array of one direction."""
        if direction == "up":
            return self.up_mbps
        if direction == "down":
            return self.down_mbps
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")

    def rtt_array_ms(self) -> np.ndarray:
        """RTT per sample (a constant RTT broadcast)."""
        if isinstance(self.rtt_ms, np.ndarray):
            return self.rtt_ms
        return np.full(len(self), float(self.rtt_ms))

    def _bytes(self, direction: Direction) -> _Cumulative:
        key = ("bytes", direction)
        c = self._cache.get(key)
        if c is None:
            c = _Cumulative(self.edges_s, self.rates_mbps(direction) * (MBIT / BITS_PER_BYTE))
            self._cache[key] = c
        return c

    def _index(self, t_s: float) -> int:
        off = t_s % self.duration_s
        i = int(np.searchsorted(self.times_s, off, side="right")) - 1
        return min(max(i, 0), len(self) - 1)

    # -- point queries ---------------------------------------------------------------------------------------
    def bandwidth_mbps(self, t_s: float, direction: Direction) -> float:
        """Rate at time ``t_s`` (wraps)."""
        rates = self.rates_mbps(direction)
        return float(rates[self._index(t_s)])

    def bandwidth_at(self, t_s: np.ndarray, direction: Direction) -> np.ndarray:
        """Vectorised ``bandwidth_mbps`` for an array of times."""
        rates = self.rates_mbps(direction)
        off = np.mod(np.asarray(t_s, dtype=np.float64), self.duration_s)
        i = np.clip(np.searchsorted(self.times_s, off, side="right") - 1, 0, len(self) - 1)
        return rates[i]

    def rtt_at_ms(self, t_s: float) -> float:
        """Round-trip time at ``t_s`` in ms (wraps)."""
        if isinstance(self.rtt_ms, np.ndarray):
            return float(self.rtt_ms[self._index(t_s)])
        return float(self.rtt_ms)

    def one_way_delay_ms(self, t_s: float) -> float:
        """Propagation delay of one direction at ``t_s``: half the RTT, in ms."""
        return self.rtt_at_ms(t_s) / 2.0

    # -- integration -----------------------------------------------------------------------------------------
    def transfer_time_s(
        self, nbytes: int | float, start_s: float, direction: Direction, *, max_wait_s: float = 60.0
    ) -> float:
        """Seconds to push ``nbytes`` through ``direction`` starting at trace time ``start_s``.

        Integrates the piecewise-constant rate from ``start_s``, wrapping at the end of the trace; zero-rate
        stretches are waited through. Raises TransferTimeout when the transfer would take longer than
        ``max_wait_s`` or the direction has no bandwidth at all. A constant rate r gives nbytes * 8 / (r * 1e6).
        """
        if nbytes <= 0:
            if nbytes < 0 or nbytes != nbytes:
                raise ValueError(f"nbytes must be >= 0, got {nbytes}")
            return 0.0
        if not math.isfinite(start_s):
            raise ValueError(f"start_s must be finite, got {start_s}")
        c = self._bytes(direction)
        if c.total <= 0.0:
            raise TransferTimeout(f"trace {self.name!r} has no {direction} bandwidth at all; {nbytes} B never arrive")
        dt = c.time_to_accumulate(float(nbytes), float(start_s))
        if dt > max_wait_s:
            raise TransferTimeout(
                f"sending {nbytes} B {direction} from t={start_s:.3f} s on trace {self.name!r} takes {dt:.3f} s "
                f"> max_wait_s={max_wait_s}"
            )
        return dt

    def transfer_times_s(
        self, nbytes: np.ndarray, start_s: np.ndarray, direction: Direction, *, max_wait_s: float = math.inf
    ) -> np.ndarray:
        """Vectorised transfer time (broadcasts ``nbytes`` against ``start_s``).

        Entries that would exceed ``max_wait_s`` are ``inf`` (no exception); a direction with no bandwidth at all
        gives ``inf`` everywhere except for zero-byte transfers.
        """
        nb, st = np.broadcast_arrays(np.asarray(nbytes, dtype=np.float64), np.asarray(start_s, dtype=np.float64))
        if (nb < 0).any() or np.isnan(nb).any():
            raise ValueError("nbytes must be >= 0")
        if not np.isfinite(st).all():
            raise ValueError("start_s must be finite")
        c = self._bytes(direction)
        out = np.zeros(nb.shape)
        pos = nb > 0
        if c.total <= 0.0:
            out[pos] = np.inf
            return out
        if pos.any():
            out[pos] = c.time_to_accumulate_v(nb[pos], st[pos])
        out[out > max_wait_s] = np.inf
        return out

    def bytes_deliverable(self, start_s: float, duration_s: float, direction: Direction) -> float:
        """Bytes the link can carry in ``[start_s, start_s + duration_s)`` (the inverse of ``transfer_time_s``)."""
        if duration_s < 0 or not math.isfinite(duration_s):
            raise ValueError(f"duration_s must be finite and >= 0, got {duration_s}")
        if duration_s == 0:
            return 0.0
        c = self._bytes(direction)
        _, off = c.split(float(start_s))
        return c.between(off, off + float(duration_s))

    def _window(self, start_s: float, end_s: float) -> float:
        if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s <= start_s:
            raise ValueError(f"window must have end_s > start_s, got start_s={start_s}, end_s={end_s}")
        return end_s - start_s

    def mean_mbps(self, start_s: float, end_s: float, direction: Direction) -> float:
        """Time-weighted mean rate over ``[start_s, end_s)`` (wraps)."""
        width = self._window(start_s, end_s)
        return rate_mbps(self.bytes_deliverable(start_s, width, direction), width)

    def harmonic_mean_mbps(self, start_s: float, end_s: float, direction: Direction) -> float:
        """Time-weighted harmonic mean over ``[start_s, end_s)``; 0.0 if the window touches an outage (rate 0)."""
        width = self._window(start_s, end_s)
        key = ("inv", direction)
        pair = self._cache.get(key)
        if pair is None:
            rates = self.rates_mbps(direction)
            zero = rates <= 0.0
            inv = np.where(zero, 0.0, 1.0 / np.where(zero, 1.0, rates))
            pair = (_Cumulative(self.edges_s, inv), _Cumulative(self.edges_s, zero.astype(np.float64)))
            self._cache[key] = pair
        inv_c, zero_c = pair
        _, off = inv_c.split(float(start_s))
        if zero_c.between(off, off + width) > 0.0:
            return 0.0
        return width / inv_c.between(off, off + width)

    # -- transforms ------------------------------------------------------------------------------------------
    def rescaled(
        self,
        factor: float | None = None,
        *,
        target_mean_mbps: float | None = None,
        direction: Literal["up", "down", "both"] = "both",
    ) -> BandwidthTrace:
        """A copy with rates multiplied by ``factor``, or with each scaled direction's mean mapped to
        ``target_mean_mbps`` (time-weighted over the whole trace). ``direction`` picks what is scaled; scaling one
        direction of a symmetric trace makes it asymmetric."""
        if (factor is None) == (target_mean_mbps is None):
            raise ValueError("give exactly one of factor or target_mean_mbps")
        if direction not in ("up", "down", "both"):
            raise ValueError(f"direction must be 'up', 'down' or 'both', got {direction!r}")
        dirs: tuple[Direction, ...] = DIRECTIONS if direction == "both" else (direction,)
        new = {"up": self.up_mbps, "down": self.down_mbps}
        w = self.intervals_s / self.duration_s
        for d in dirs:
            rates = self.rates_mbps(d)
            if factor is not None:
                f = float(factor)
                if not math.isfinite(f) or f < 0:
                    raise ValueError(f"factor must be finite and >= 0, got {factor}")
            else:
                tgt = float(target_mean_mbps)  # type: ignore[arg-type]
                if not math.isfinite(tgt) or tgt < 0:
                    raise ValueError(f"target_mean_mbps must be finite and >= 0, got {target_mean_mbps}")
                mean = float(np.dot(w, rates))
                if mean <= 0:
                    raise ValueError(f"trace {self.name!r}: {d} mean is 0; cannot map it to {tgt} Mbit/s")
                f = tgt / mean
            new[d] = rates * f
        note = f"rescaled {direction} by " + (
            f"factor {factor}" if factor is not None else f"target mean {target_mean_mbps} Mbit/s"
        )
        symmetric = self.symmetric and direction == "both"
        return replace(self, up_mbps=new["up"], down_mbps=new["down"], symmetric=symmetric, notes=self.notes + (note,))

    def with_rtt(self, rtt_ms: float | np.ndarray) -> BandwidthTrace:
        """A copy with a different RTT (constant or per sample)."""
        return replace(self, rtt_ms=rtt_ms)

    def segment(self, start_s: float, duration_s: float, *, name: str | None = None) -> BandwidthTrace:
        """The slice ``[start_s, start_s + duration_s)`` re-based to time 0 (wrapping around the end as needed)."""
        if not (math.isfinite(start_s) and math.isfinite(duration_s)) or duration_s <= 0:
            raise ValueError(f"segment needs finite start_s and duration_s > 0, got {start_s}, {duration_s}")
        period = self.duration_s
        off = start_s % period
        end = off + duration_s
        n_periods = int(math.ceil(end / period))
        base = self.times_s
        tiled = (base[None, :] + period * np.arange(n_periods)[:, None]).ravel()
        idx = np.tile(np.arange(len(self)), n_periods)
        inside = (tiled > off) & (tiled < end)
        i0 = self._index(off)
        times = np.concatenate(([off], tiled[inside])) - off
        sel = np.concatenate(([i0], idx[inside]))
        rtt = self.rtt_ms[sel] if isinstance(self.rtt_ms, np.ndarray) else self.rtt_ms
        last = end - off - times[-1]
        return BandwidthTrace(
            times_s=times,
            up_mbps=self.up_mbps[sel],
            down_mbps=self.down_mbps[sel],
            rtt_ms=rtt,
            name=name or f"{self.name}[{start_s:g}+{duration_s:g}s]",
            source=self.source,
            last_interval_s=max(last, 1e-12),
            symmetric=self.symmetric,
            notes=self.notes,
        )

    # -- summaries -------------------------------------------------------------------------------------------
    def stats(self) -> TraceStats:
        """Duration, time-weighted mean/p10/p90 per direction, outage fraction (rate < OUTAGE_MBPS), mean RTT."""
        c = self._cache.get("stats")
        if c is None:
            c = summarize(self.intervals_s, self.up_mbps, self.down_mbps, self.rtt_array_ms(), len(self))
            self._cache["stats"] = c
        return c

    def content_hash(self) -> str:
        """sha256 of the numeric content (times, rates, RTT, last interval, symmetric flag); names excluded."""
        c = self._cache.get("hash")
        if c is None:
            h = hashlib.sha256()
            for arr in (self.times_s, self.up_mbps, self.down_mbps, self.rtt_array_ms()):
                h.update(np.ascontiguousarray(arr, dtype="<f8").tobytes())
                h.update(b"|")
            h.update(repr((float(self.last_interval_s), self.symmetric)).encode())  # type: ignore[arg-type]
            c = h.hexdigest()
            self._cache["hash"] = c
        return c


def _rebuild(*args: object) -> BandwidthTrace:
    return BandwidthTrace(*args)  # type: ignore[arg-type]
