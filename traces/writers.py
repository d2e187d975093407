"""Trace writers: Mahimahi delivery-opportunity files, ``time_s Mbps`` text, CSV with a header, JSON.

Each writer's output is read back by the matching reader in ``traces.readers``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from traces.readers import MAHIMAHI_PACKET_BYTES, TEXT3_HEADER
from traces.trace import BandwidthTrace, Direction

log = logging.getLogger(__name__)


def _fmt(x: float) -> str:
    return repr(float(x))


def _warn_rtt(trace: BandwidthTrace, fmt: str) -> None:
    if np.any(trace.rtt_array_ms() != 0):
        log.warning(
            "%s: the %s format has no RTT; the trace's RTT (mean %.3g ms) is not written",
            trace.name,
            fmt,
            trace.stats().mean_rtt_ms,
        )


def write_text(trace: BandwidthTrace, path: str | Path) -> Path:
    """``<time_s> <Mbit/s>`` lines (tab separated) for a symmetric trace; for an asymmetric one the header comment
    ``# time_s up_mbps down_mbps`` and three columns. A final comment ``# last_interval_s X`` keeps the length of
    the last sample (other readers skip comments; ours honour it). RTT is not written (logged)."""
    path = Path(path)
    _warn_rtt(trace, "text")
    t = trace.times_s
    if trace.symmetric or np.array_equal(trace.up_mbps, trace.down_mbps):
        lines = [f"{_fmt(a)}\t{_fmt(b)}" for a, b in zip(t, trace.down_mbps)]
    else:
        lines = [TEXT3_HEADER] + [
            f"{_fmt(a)}\t{_fmt(u)}\t{_fmt(d)}" for a, u, d in zip(t, trace.up_mbps, trace.down_mbps)
        ]
    lines.append(f"# last_interval_s {_fmt(trace.last_interval_s)}")  # type: ignore[arg-type]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_csv(trace: BandwidthTrace, path: str | Path) -> Path:
    """CSV with header ``time_s,up_mbps,down_mbps,rtt_ms`` (``time_s,mbps,rtt_ms`` for a symmetric trace), read by
    ``read_csv_header``; a final ``# last_interval_s X`` comment keeps the last sample's length."""
    path = Path(path)
    rtt = trace.rtt_array_ms()
    if trace.symmetric:
        rows = ["time_s,mbps,rtt_ms"] + [
            f"{_fmt(a)},{_fmt(d)},{_fmt(r)}" for a, d, r in zip(trace.times_s, trace.down_mbps, rtt)
        ]
    else:
        rows = ["time_s,up_mbps,down_mbps,rtt_ms"] + [
            f"{_fmt(a)},{_fmt(u)},{_fmt(d)},{_fmt(r)}"
            for a, u, d, r in zip(trace.times_s, trace.up_mbps, trace.down_mbps, rtt)
        ]
    rows.append(f"# last_interval_s {_fmt(trace.last_interval_s)}")  # type: ignore[arg-type]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_json(trace: BandwidthTrace, path: str | Path) -> Path:
    """JSON object ``{"time_s": [...], "up_mbps": [...], "down_mbps": [...], "rtt_ms": [...], "last_interval_s": x}``
    (``"bandwidth_mbps"`` instead of up/down for a symmetric trace), read by ``read_json``."""
    path = Path(path)
    obj: dict[str, object] = {"time_s": trace.times_s.tolist()}
    if trace.symmetric:
        obj["bandwidth_mbps"] = trace.down_mbps.tolist()
    else:
        obj["up_mbps"] = trace.up_mbps.tolist()
        obj["down_mbps"] = trace.down_mbps.tolist()
    obj["rtt_ms"] = trace.rtt_array_ms().tolist()
    obj["last_interval_s"] = trace.last_interval_s
    obj["name"] = trace.name
    path.write_text(json.dumps(obj))
    return path


def mahimahi_timestamps(trace: BandwidthTrace, direction: Direction) -> np.ndarray:
    """Delivery-opportunity timestamps (ms, 1..period) for one loop of ``direction``.

    The packet that completes byte ``k * 1500`` is stamped with the first ms ``m`` whose cumulative bytes reach it,
    so bytes of the millisecond (m-1, m] leave at ``m``; the period is the trace duration rounded to whole ms. The
    last ms must hold an opportunity (mm-link takes the period from the last line); if none completes there (an
    outage or a partial packet at the end) the final packet is moved there (logged). Less than one packet per loop
    is lost to rounding. Raises ValueError if the direction carries less than one
    packet per loop.
    """
    period_ms = int(round(trace.duration_s * 1e3))
    if period_ms < 1:
        raise ValueError(f"{trace.name}: duration {trace.duration_s} s is shorter than 1 ms")
    c = trace._bytes(direction)
    t = np.minimum(np.arange(1, period_ms + 1) / 1e3, trace.duration_s)
    t[-1] = trace.duration_s  # the whole loop's bytes, even when the duration is not a whole number of ms
    cum_bytes = c.local_v(t)
    packets = np.floor(cum_bytes / MAHIMAHI_PACKET_BYTES + 1e-6).astype(np.int64)
    counts = np.diff(np.concatenate(([0], packets)))
    if packets[-1] < 1:
        raise ValueError(
            f"{trace.name}: {direction} carries {c.total:.0f} B per loop, less than one {MAHIMAHI_PACKET_BYTES}-byte "
            "packet; it cannot be written as a Mahimahi trace"
        )
    if counts[-1] == 0:
        j = int(np.flatnonzero(counts)[-1])
        counts[j] -= 1
        counts[-1] += 1
        log.warning(
            "%s %s: no packet completes in the last ms; moved one packet from %d ms to %d ms so the "
            "file keeps its %d ms period",
            trace.name,
            direction,
            j + 1,
            period_ms,
            period_ms,
        )
    return np.repeat(np.arange(1, period_ms + 1), counts)


def write_mahimahi(trace: BandwidthTrace, path: str | Path) -> tuple[Path, Path]:
    """Write ``<path>.up`` and ``<path>.down`` (a trailing .up/.down on ``path`` is dropped). Returns (up, down)."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix.lower() in (".up", ".down") else path
    _warn_rtt(trace, "mahimahi")
    out = []
    for d in ("up", "down"):
        p = base.parent / f"{base.name}.{d}"
        ts = mahimahi_timestamps(trace, d)  # type: ignore[arg-type]
        p.write_text("\n".join(map(str, ts.tolist())) + "\n")
        out.append(p)
    return out[0], out[1]


WRITERS = {"mahimahi": write_mahimahi, "text": write_text, "csv": write_csv, "json": write_json}
