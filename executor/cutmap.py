"""The cut map: which cut is fastest at which uplink bandwidth, for a model on an (edge, cloud) device pair.

Every cut's latency (``executor.costs.CutTable.latency_ms``, the single place cuts are priced) is, at a fixed RTT
and a fixed (or symmetric) downlink, affine in x = 1 / uplink bandwidth::

    L_c(b) = a_c + s_c / b      (a_c: compute + RTTs [+ fixed-downlink transfer], s_c: bytes x 8 / 10**6 x 10**3)

so the optimal cut as a function of bandwidth is the lower envelope of N+1 lines in x, computed exactly (no grid):
``lower_envelope``. The coefficients are read off ``CutTable.latency_ms`` (a_c at infinite bandwidth, s_c at
1 Mbit/s) and the affine form is checked at a third bandwidth.

``roofline_cut_map`` builds the two Profiles from the roofline model of a catalogue device pair (camera frames
priced in the chosen ``executor.camera`` encoding); ``cut_map`` takes any Profile pair (measured or predicted).
``plot_cut_map`` draws latency per cut vs bandwidth (log x) with the envelope highlighted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from executor.costs import CutTable, cut_table
from executor.profile import Profile

log = logging.getLogger(__name__)

CutKind = Literal["cloud_only", "edge_only", "split", "reverse_split"]
DEFAULT_BW_RANGE_MBPS = (0.5, 10_000.0)
_AFFINE_RTOL = 1e-9
_TIE_RTOL = 1e-12


@dataclass(frozen=True)
class Interval:
    """A bandwidth range [lo_mbps, hi_mbps] where ``cut_index`` is optimal; latencies at both ends (ms)."""

    cut_index: int
    name: str
    kind: CutKind
    lo_mbps: float
    hi_mbps: float
    latency_at_lo_ms: float
    latency_at_hi_ms: float


@dataclass(frozen=True)
class MiddleRange:
    """A bandwidth range where some split (neither edge-only nor cloud-only) is optimal, and by how much it beats
    the better of edge-only and cloud-only at best (``max_gain_ms``, at ``best_gain_at_mbps``)."""

    lo_mbps: float
    hi_mbps: float
    cuts: tuple[str, ...]
    max_gain_ms: float
    best_gain_at_mbps: float


@dataclass(frozen=True)
class CutMap:
    """Optimal cut vs uplink bandwidth for one Profile pair at one RTT (intervals in increasing bandwidth)."""

    model_id: str
    preset: str
    edge_device: str
    cloud_device: str
    wire_dtype: str
    image_encoding: str
    rtt_ms: float
    down_mbps: float | None  # None: downlink = uplink
    bw_min_mbps: float
    bw_max_mbps: float
    table: CutTable
    kinds: tuple[CutKind, ...]
    intercept_ms: np.ndarray  # a_c
    slope_ms_mbps: np.ndarray  # s_c: latency = a_c + s_c / bandwidth_mbps
    intervals: tuple[Interval, ...]

    def latency_ms(self, up_mbps: float) -> np.ndarray:
        """Latency of every cut at this uplink bandwidth (via ``CutTable.latency_ms``)."""
        up = _check_bandwidth(up_mbps, "uplink bandwidth")
        return self.table.latency_ms(up, up if self.down_mbps is None else self.down_mbps, self.rtt_ms / 2)

    def best(self, up_mbps: float) -> tuple[int, float]:
        """(cut index, latency ms) of the optimal cut at this bandwidth (first index on ties)."""
        lat = self.latency_ms(up_mbps)
        i = int(np.argmin(lat))
        return i, float(lat[i])

    def interval_at(self, up_mbps: float) -> Interval:
        """The envelope interval holding this bandwidth (which must lie in the map's range)."""
        up = _check_bandwidth(up_mbps, "uplink bandwidth")
        if not self.bw_min_mbps <= up <= self.bw_max_mbps:
            raise ValueError(f"bandwidth {up} Mbit/s outside the map's range [{self.bw_min_mbps}, {self.bw_max_mbps}]")
        for iv in self.intervals:
            if iv.lo_mbps <= up <= iv.hi_mbps:
                return iv
        return self.intervals[-1]  # pragma: no cover - the intervals tile the range

    def cut_index(self, kind: CutKind) -> int:
        return self.kinds.index(kind)

    def middle_ranges(self) -> tuple[MiddleRange, ...]:
        """Maximal bandwidth ranges where a split beats both edge-only and cloud-only."""
        i_cloud, i_edge = self.cut_index("cloud_only"), self.cut_index("edge_only")
        a, s = self.intercept_ms, self.slope_ms_mbps
        groups: list[list[Interval]] = []
        prev_mid = False
        for iv in self.intervals:
            mid = iv.kind in ("split", "reverse_split")
            if mid:
                if prev_mid:
                    groups[-1].append(iv)
                else:
                    groups.append([iv])
            prev_mid = mid
        out = []
        for g in groups:
            lo, hi = g[0].lo_mbps, g[-1].hi_mbps
            # gain(x) = min(E(x), C(x)) - envelope(x): piecewise affine in x = 1/b, maximal at a breakpoint
            # or where edge-only and cloud-only cross
            xs = [1 / iv.lo_mbps for iv in g] + [1 / hi]
            if s[i_cloud] != s[i_edge]:
                xc = (a[i_edge] - a[i_cloud]) / (s[i_cloud] - s[i_edge])
                if 1 / hi <= xc <= 1 / lo:
                    xs.append(xc)
            best_gain, best_b = -math.inf, lo
            for x in xs:
                lines = a + s * x
                gain = float(min(lines[i_cloud], lines[i_edge]) - lines.min())
                if gain > best_gain:
                    best_gain, best_b = gain, 1 / x
            names = tuple(dict.fromkeys(iv.name for iv in g))
            out.append(MiddleRange(lo, hi, names, best_gain, best_b))
        return tuple(out)

    def describe(self) -> str:
        return (
            f"{self.model_id}/{self.preset} edge={self.edge_device} cloud={self.cloud_device} "
            f"wire={self.wire_dtype} images={self.image_encoding} RTT={self.rtt_ms:g} ms "
            f"down={'up' if self.down_mbps is None else f'{self.down_mbps:g} Mbit/s'}"
        )


def _check_bandwidth(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a number (Mbit/s), got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{what} must be a finite number > 0 Mbit/s, got {value!r}")
    return v


def lower_envelope(
    intercept: Sequence[float] | np.ndarray, slope: Sequence[float] | np.ndarray, x_lo: float, x_hi: float
) -> list[tuple[int, float, float]]:
    """Exact lower envelope of lines ``intercept[i] + slope[i] * x`` on [x_lo, x_hi].

    Returns (line index, x_start, x_end) segments covering the range in increasing x. Ties are broken towards the
    smaller slope (the line that stays optimal as x grows), then the lower index.
    """
    a = np.asarray(intercept, dtype=np.float64)
    s = np.asarray(slope, dtype=np.float64)
    if a.shape != s.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"intercept and slope must be equal-length non-empty 1-D, got {a.shape} and {s.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(s))):
        raise ValueError("intercepts and slopes must be finite")
    if not (math.isfinite(x_lo) and math.isfinite(x_hi)) or x_lo > x_hi:
        raise ValueError(f"need finite x_lo <= x_hi, got {x_lo}, {x_hi}")

    def argmin_at(x: float, candidates: np.ndarray) -> int:
        vals = a[candidates] + s[candidates] * x
        m = vals.min()
        near = candidates[vals <= m + _TIE_RTOL * max(1.0, abs(m))]
        return int(near[np.lexsort((near, s[near]))][0])

    everyone = np.arange(a.size)
    x = x_lo
    cur = argmin_at(x, everyone)
    segments: list[tuple[int, float, float]] = []
    for _ in range(a.size + 1):  # slopes strictly decrease at every switch: at most a.size segments
        lower = everyone[s < s[cur]]
        if lower.size:
            cross = (a[lower] - a[cur]) / (s[cur] - s[lower])
            ahead = cross > x
            lower, cross = lower[ahead], cross[ahead]
        if lower.size == 0 or cross.min() >= x_hi:
            segments.append((cur, x, x_hi))
            return segments
        xn = float(cross.min())
        nxt = argmin_at(xn, np.concatenate([lower[cross <= xn * (1 + _TIE_RTOL)], [cur]]))
        if nxt == cur:  # rounding: the crossing line is not lower after all; drop it
            nxt = int(lower[np.argmin(cross)])
        segments.append((cur, x, xn))
        x, cur = xn, nxt
    raise RuntimeError("lower envelope did not terminate")  # pragma: no cover


def _kinds(edge: Profile) -> tuple[CutKind, ...]:
    n = edge.num_blocks
    out: list[CutKind] = []
    for c in edge.cuts:
        if c.placement == "cloud_then_edge":
            out.append("reverse_split")
        elif c.k == 0:
            out.append("cloud_only")
        elif c.k == n:
            out.append("edge_only")
        else:
            out.append("split")
    return tuple(out)


def cut_map(
    edge: Profile,
    cloud: Profile,
    *,
    rtt_ms: float = 20.0,
    down_mbps: float | None = None,
    bw_min_mbps: float = DEFAULT_BW_RANGE_MBPS[0],
    bw_max_mbps: float = DEFAULT_BW_RANGE_MBPS[1],
    image_encoding: str | None = None,
) -> CutMap:
    """The cut map of a Profile pair (same model, same cuts) over [bw_min_mbps, bw_max_mbps] at ``rtt_ms``.

    ``down_mbps``: fixed downlink rate, or None for a symmetric link (downlink = uplink).
    ``image_encoding``: label recorded in the map (the Profiles' cuts must already price it; default: the
    Profiles' ``notes["image_encoding"]`` or "raw").
    """
    if (
        isinstance(rtt_ms, bool)
        or not isinstance(rtt_ms, (int, float, np.integer, np.floating))
        or not math.isfinite(rtt_ms)
        or rtt_ms < 0
    ):
        raise ValueError(f"rtt_ms must be a finite number >= 0, got {rtt_ms!r}")
    lo = _check_bandwidth(bw_min_mbps, "bw_min_mbps")
    hi = _check_bandwidth(bw_max_mbps, "bw_max_mbps")
    if lo >= hi:
        raise ValueError(f"bw_min_mbps {lo} must be below bw_max_mbps {hi}")
    down = None if down_mbps is None else _check_bandwidth(down_mbps, "down_mbps")
    table = cut_table(edge, cloud)
    one_way = float(rtt_ms) / 2

    def lat(up: float) -> np.ndarray:
        return table.latency_ms(up, up if down is None else down, one_way)

    a = lat(math.inf)
    s = lat(1.0) - a
    check_b = math.sqrt(lo * hi)
    if not np.allclose(lat(check_b), a + s / check_b, rtol=_AFFINE_RTOL, atol=1e-9):
        raise RuntimeError("cut latency is not affine in 1/bandwidth; the cut map's exact envelope does not apply")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(s))):
        bad = [table.names[i] for i in np.flatnonzero(~(np.isfinite(a) & np.isfinite(s)))]
        raise ValueError(f"cuts with infinite latency cannot be mapped: {bad}")
    kinds = _kinds(edge)
    segments = lower_envelope(a, s, 1 / hi, 1 / lo)
    intervals = []
    for i, x0, x1 in reversed(segments):  # increasing bandwidth
        b_lo, b_hi = (lo if x1 == 1 / lo else 1 / x1), (hi if x0 == 1 / hi else 1 / x0)
        intervals.append(
            Interval(i, table.names[i], kinds[i], b_lo, b_hi, float(a[i] + s[i] * x1), float(a[i] + s[i] * x0))
        )
    label = image_encoding or edge.notes.get("image_encoding", "raw")
    return CutMap(
        edge.model_id,
        edge.preset,
        edge.device,
        cloud.device,
        edge.wire_dtype,
        str(label),
        float(rtt_ms),
        down,
        lo,
        hi,
        table,
        kinds,
        a,
        s,
        tuple(intervals),
    )


def roofline_profiles(
    family: str,
    preset: str,
    edge: str,
    cloud: str,
    *,
    dtype: str = "bfloat16",
    wire_dtype: str = "float32",
    image_encoding: str | None = "raw",
    efficiency: float = 1.0,
) -> tuple[Profile, Profile]:
    """Roofline (edge, cloud) Profiles of a model preset priced under the wire configuration (``image_encoding``,
    ``wire_dtype``): ``executor.wire_config.roofline_pair`` (message framing and codec time included). Raises
    ValueError for unknown names, InfeasibleError if it does not fit."""
    from executor.wire_config import WireConfig, roofline_pair

    wire = WireConfig(image_encoding or "raw", wire_dtype)
    return roofline_pair(family, preset, edge, cloud, wire, dtype=dtype, efficiency=efficiency)


def roofline_cut_map(
    family: str,
    preset: str,
    edge: str,
    cloud: str,
    *,
    dtype: str = "bfloat16",
    wire_dtype: str = "float32",
    image_encoding: str | None = "raw",
    rtt_ms: float = 20.0,
    down_mbps: float | None = None,
    bw_min_mbps: float = DEFAULT_BW_RANGE_MBPS[0],
    bw_max_mbps: float = DEFAULT_BW_RANGE_MBPS[1],
    efficiency: float = 1.0,
) -> CutMap:
    """``cut_map`` of roofline Profiles for a catalogue device pair (see ``roofline_profiles``)."""
    e, c = roofline_profiles(
        family,
        preset,
        edge,
        cloud,
        dtype=dtype,
        wire_dtype=wire_dtype,
        image_encoding=image_encoding,
        efficiency=efficiency,
    )
    return cut_map(e, c, rtt_ms=rtt_ms, down_mbps=down_mbps, bw_min_mbps=bw_min_mbps, bw_max_mbps=bw_max_mbps)


# ------------------------------------------------------------------------------------------------------ plot

_KIND_COLOURS = {"cloud_only": "tab:blue", "edge_only": "tab:red"}
_SPLIT_COLOURS = ("tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def plot_cut_map(cm: CutMap, path: str | Path | None = None, *, points: int = 400, ax: Any = None) -> Any:
    """Latency of every cut vs uplink bandwidth (log-log), optimal cuts coloured, the lower envelope highlighted,
    the optimal-cut intervals shaded. Writes a PNG to ``path`` when given; returns the matplotlib Figure."""
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 5.8), layout="constrained")
    else:
        fig = ax.figure
    bw = np.geomspace(cm.bw_min_mbps, cm.bw_max_mbps, points)
    bw = np.unique(np.concatenate([bw, [iv.lo_mbps for iv in cm.intervals], [cm.bw_max_mbps]]))
    lat = np.stack([cm.latency_ms(b) for b in bw])  # (points, cuts)
    env = lat.min(axis=1)
    i_cloud, i_edge = cm.cut_index("cloud_only"), cm.cut_index("edge_only")
    optimal = list(dict.fromkeys(iv.cut_index for iv in cm.intervals))
    colours: dict[int, str] = {i_cloud: _KIND_COLOURS["cloud_only"], i_edge: _KIND_COLOURS["edge_only"]}
    for j, i in enumerate(c for c in optimal if c not in colours):
        colours[i] = _SPLIT_COLOURS[j % len(_SPLIT_COLOURS)]
    for i in range(cm.table.num_cuts):
        if i not in colours:
            ax.plot(bw, lat[:, i], color="0.6", lw=0.6, alpha=0.35, zorder=1)
    ax.plot([], [], color="0.6", lw=0.6, alpha=0.6, label="other cuts")
    for i, col in colours.items():
        label = f"#{i} {cm.table.names[i]}"
        ax.plot(bw, lat[:, i], color=col, lw=1.6, zorder=3, label=label)
    ax.plot(bw, env, color="#f2c200", lw=7, alpha=0.6, zorder=2, solid_capstyle="round", label="optimal (envelope)")
    splits = [i for i, k in enumerate(cm.kinds) if k in ("split", "reverse_split")]
    if splits:
        ax.plot(
            bw,
            lat[:, splits].min(axis=1),
            color="darkgreen",
            lw=1.2,
            ls="--",
            zorder=4,
            label="best split at each bandwidth",
        )
    top = min(float(lat[:, [i_cloud, i_edge]].max()), 4 * float(env.max()))
    bottom = 0.8 * float(env.min())
    for iv in cm.intervals:
        ax.axvspan(iv.lo_mbps, iv.hi_mbps, color=colours[iv.cut_index], alpha=0.08, lw=0, zorder=0)
        if iv.lo_mbps > cm.bw_min_mbps:
            ax.axvline(iv.lo_mbps, color="0.3", lw=0.8, ls=":", zorder=1)
            ax.text(
                iv.lo_mbps,
                0.02,
                f" {iv.lo_mbps:.3g}",
                transform=ax.get_xaxis_transform(),
                rotation=90,
                ha="right",
                va="bottom",
                fontsize=7,
                color="0.25",
            )
        if iv.hi_mbps / iv.lo_mbps > 1.15:
            ax.text(
                math.sqrt(iv.lo_mbps * iv.hi_mbps),
                0.97,
                f"#{iv.cut_index}",
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="top",
                fontsize=8,
                color=colours[iv.cut_index],
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(cm.bw_min_mbps, cm.bw_max_mbps)
    ax.set_ylim(bottom, max(top, 1.5 * bottom))
    ax.set_xlabel(
        "uplink bandwidth (Mbit/s)"
        + (" (downlink = uplink)" if cm.down_mbps is None else f" (downlink {cm.down_mbps:g} Mbit/s)")
    )
    ax.set_ylabel("latency per inference (ms)")
    ax.set_title(
        f"{cm.model_id}/{cm.preset}: {cm.edge_device} + {cm.cloud_device}, wire {cm.wire_dtype}, "
        f"images {cm.image_encoding}, RTT {cm.rtt_ms:g} ms",
        fontsize=10,
    )
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.03, 0.0), framealpha=0.85)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        log.info("wrote %s", path)
    return fig


__all__ = [
    "DEFAULT_BW_RANGE_MBPS",
    "CutMap",
    "Interval",
    "MiddleRange",
    "cut_map",
    "lower_envelope",
    "plot_cut_map",
    "roofline_cut_map",
    "roofline_profiles",
]


def candidate_cuts(
    edge: Profile,
    cloud: Profile,
    *,
    rtt_ms_values: Sequence[float] = (0.0, 10.0, 40.0, 100.0, 300.0),
    bw_min_mbps: float = 0.1,
    bw_max_mbps: float = 100_000.0,
) -> tuple[int, ...]:
    """Cut indices that are optimal somewhere on [bw_min_mbps, bw_max_mbps] at one of ``rtt_ms_values`` (symmetric
    link), plus edge-only and cloud-only: the only cuts a controller ever needs to choose among for this pair."""
    if not rtt_ms_values:
        raise ValueError("rtt_ms_values is empty")
    keep = {edge.num_blocks, 0}
    for rtt in rtt_ms_values:
        cm = cut_map(edge, cloud, rtt_ms=rtt, bw_min_mbps=bw_min_mbps, bw_max_mbps=bw_max_mbps)
        keep.update(iv.cut_index for iv in cm.intervals)
    return tuple(sorted(keep))
