"""Trace file readers with format auto-detection. Every reader returns a ``BandwidthTrace`` re-based to t = 0.

Formats (``detect_format`` names):

* ``mahimahi``: one integer per line, the ms timestamp of one 1500-byte delivery opportunity (repeats = several
  packets in that ms); the file loops with a period equal to its last timestamp. Binned into ``bin_s`` bins (1 s
  default). A ``.up``/``.down`` pair is joined into one trace; a lone file serves both directions (symmetric).
* ``text``: ``<time_s> <Mbit/s>`` per line, tab or space separated (Pensieve / Lumos5G / Oboe / FCC / HSDPA style).
  A 3-column variant ``<time_s> <up Mbit/s> <down Mbit/s>`` is read when the file starts with the comment
  ``# time_s up_mbps down_mbps`` (what ``write_text`` writes for an asymmetric trace).
* ``csv``: ``<time_s>,<bytes/s>`` without header (MP-Traces WiFi/cellular).
* ``csv_header``: CSV whose header names a time column and one or more throughput columns with units, e.g.
  ``time_s,mbps`` or ``timestamp_ms,up_kbps,down_kbps,rtt_ms`` or ``timeInSeconds,BytesPerSecond``.
* ``json``: an object with a time array and a bandwidth array (see ``read_json``).

Samples that share a timestamp (seen in a few Lumos5G 4G files) are merged into one by averaging their rates; the
merge is stated in the trace's ``notes``. Timestamps going backwards, negative or non-finite rates, non-numeric lines,
empty files and unknown formats raise ``TraceFormatError`` naming the file and line.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from traces.trace import BandwidthTrace
from traces.units import BITS_PER_BYTE, MBIT

log = logging.getLogger(__name__)

MAHIMAHI_PACKET_BYTES = 1500
# plausibility bounds: a value beyond these is a wrong unit or a corrupt/hostile file, not a network
MAX_RATE_MBPS = 100_000.0  # 100 Gbit/s
MAX_DURATION_S = 86_400.0  # a trace spans at most a day
MAX_TIMESTAMP_S = 365 * 86_400.0  # timestamps are relative (seconds from the trace's start), at most a year
MAX_RTT_MS = 60_000.0  # a minute
TEXT3_HEADER = "# time_s up_mbps down_mbps"
FORMATS = ("mahimahi", "text", "csv", "csv_header", "json")
_COMMENT = "#"


class TraceFormatError(ValueError):
    """A trace file cannot be read: ``path``, ``line`` (1-based, or None) and ``reason`` say where and why."""

    def __init__(self, path: str | Path, reason: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.reason = reason
        self.line = line
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {reason}")


# -- helpers ------------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    if not path.exists():
        raise TraceFormatError(path, "no such file or directory")
    if path.is_dir():
        raise TraceFormatError(path, "is a directory, not a trace file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TraceFormatError(path, f"cannot read: {e.strerror or e}") from e
    if b"\x00" in raw[:4096]:
        raise TraceFormatError(path, "unknown format: binary data (NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TraceFormatError(path, f"unknown format: not UTF-8 text (byte {e.start})") from e
    if not text.strip():
        raise TraceFormatError(path, "empty file (no samples)")
    return text


def _data_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, stripped content) for non-blank, non-comment lines."""
    lines = text.splitlines()
    if _COMMENT not in text:
        return [(no, s) for no, line in enumerate(lines, start=1) if (s := line.strip())]
    return [(no, s) for no, line in enumerate(lines, start=1) if (s := line.strip()) and not s.startswith(_COMMENT)]


_LAST_RE = re.compile(r"^\s*#\s*last_interval_s\s*[=:]?\s*(\S+)\s*$", re.MULTILINE)


def _last_interval(path: Path, text: str) -> float | None:
    """The ``# last_interval_s X`` comment the writers add (the length of the last sample), if present."""
    m = _LAST_RE.search(text)
    if m is None:
        return None
    try:
        v = float(m.group(1))
    except ValueError as e:
        raise TraceFormatError(
            path, f"bad last_interval_s comment value {m.group(1)!r}", text[: m.start()].count("\n") + 1
        ) from e
    if not (math.isfinite(v) and v > 0):
        raise TraceFormatError(path, f"last_interval_s comment must be > 0, got {v}", text[: m.start()].count("\n") + 1)
    return v


def _first_data_line(text: str) -> tuple[int, str] | None:
    for no, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if s and not s.startswith(_COMMENT):
            return no, s
    return None


def _parse_rows(path: Path, lines: list[tuple[int, str]], split: Callable[[str], list[str]], ncols: int) -> np.ndarray:
    """Rows of exactly ``ncols`` floats; errors name the line."""
    if not lines:
        raise TraceFormatError(path, "empty file (no samples)")
    parts = [split(s) for _, s in lines]
    if all(len(p) == ncols for p in parts):
        try:
            return np.array(parts, dtype=np.float64)
        except ValueError:
            pass  # find and name the offending line below
    for (no, s), row in zip(lines, parts):
        if len(row) != ncols:
            raise TraceFormatError(path, f"expected {ncols} columns, got {len(row)}: {s[:60]!r}", no)
        try:
            [float(p) for p in row]
        except ValueError as e:
            raise TraceFormatError(path, f"non-numeric value: {s[:60]!r}", no) from e
    raise TraceFormatError(path, "cannot parse numbers")  # pragma: no cover - numpy and float() disagree


def _finish(
    path: Path,
    times_s: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    line_nos: Sequence[int],
    *,
    rtt_ms: float | np.ndarray = 0.0,
    symmetric: bool,
    name: str | None,
    notes: tuple[str, ...] = (),
    last_interval_s: float | None = None,
) -> BandwidthTrace:
    """Validate values (naming lines), merge equal timestamps, shift to t = 0 and build the trace."""
    rtt_arr = rtt_ms if isinstance(rtt_ms, np.ndarray) else None
    for what, arr in (("time", times_s), ("rate", up), ("rate", down)) + (
        (("rtt", rtt_arr),) if rtt_arr is not None else ()
    ):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TraceFormatError(path, f"non-finite {what} value {arr[i]}", line_nos[i])
    for arr in (up, down) + ((rtt_arr,) if rtt_arr is not None else ()):
        neg = arr < 0
        if neg.any():
            i = int(np.flatnonzero(neg)[0])
            raise TraceFormatError(path, f"negative value {arr[i]}", line_nos[i])
    _check_plausible(
        path, times_s, up, down, rtt_arr if rtt_arr is not None else np.asarray([rtt_ms]), line_nos, last_interval_s
    )
    d = np.diff(times_s)
    back = d < 0
    if back.any():
        i = int(np.flatnonzero(back)[0]) + 1
        raise TraceFormatError(path, f"timestamps go backwards: {times_s[i]:g} after {times_s[i - 1]:g}", line_nos[i])
    dup = d == 0
    if dup.any():
        keep = np.concatenate(([True], ~dup))
        group = np.cumsum(keep) - 1
        counts = np.bincount(group)
        dup_lines = [line_nos[int(i)] for i in np.flatnonzero(~keep)]
        where = ", ".join(map(str, dup_lines[:5])) + (", ..." if len(dup_lines) > 5 else "")
        note = (
            f"merged {len(dup_lines)} repeated timestamp(s) into the previous sample by averaging "
            f"(line{'s' if len(dup_lines) > 1 else ''} {where})"
        )
        log.debug("%s: %s", path, note)
        notes = notes + (note,)
        times_s = times_s[keep]
        up = np.bincount(group, weights=up) / counts
        down = np.bincount(group, weights=down) / counts
        if rtt_arr is not None:
            rtt_ms = np.bincount(group, weights=rtt_arr) / counts
    if times_s[0] != 0.0:
        notes = notes + (f"times shifted by {-times_s[0]:g} s to start at 0",)
        times_s = times_s - times_s[0]
    try:
        return BandwidthTrace(
            times_s=times_s,
            up_mbps=up,
            down_mbps=down,
            rtt_ms=rtt_ms,
            name=name if name is not None else path.name,
            source=str(path),
            symmetric=symmetric,
            notes=notes,
            last_interval_s=last_interval_s,
        )
    except ValueError as e:
        raise TraceFormatError(path, str(e)) from e


def _check_plausible(
    path: Path,
    times_s: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    rtt_ms: np.ndarray,
    line_nos: Sequence[int],
    last_interval_s: float | None = None,
) -> None:
    """Reject values no network trace holds (``MAX_RATE_MBPS``, ``MAX_TIMESTAMP_S``, ``MAX_DURATION_S``,
    ``MAX_RTT_MS``), naming the line: a wrong unit, a corrupt file or a hostile one."""

    def line(i: int) -> int | None:
        return line_nos[i] if 0 <= i < len(line_nos) else None

    for arr in (up, down):
        over = arr > MAX_RATE_MBPS
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise TraceFormatError(
                path,
                f"rate {arr[i]:g} Mbit/s is above {MAX_RATE_MBPS:g} Mbit/s (100 Gbit/s): "
                "not a network rate (wrong unit?)",
                line(i),
            )
    far = np.abs(times_s) > MAX_TIMESTAMP_S
    if far.any():
        i = int(np.flatnonzero(far)[0])
        raise TraceFormatError(
            path,
            f"timestamp {times_s[i]:g} s is beyond a year ({MAX_TIMESTAMP_S:g} s); "
            "timestamps are seconds from the trace's start (wrong unit?)",
            line(i),
        )
    span = float(times_s[-1] - times_s[0]) + (last_interval_s or 0.0) if len(times_s) else 0.0
    if span > MAX_DURATION_S:
        raise TraceFormatError(
            path, f"the trace spans {span:g} s, more than a day ({MAX_DURATION_S:g} s)", line(len(times_s) - 1)
        )
    slow = rtt_ms > MAX_RTT_MS
    if slow.any():
        i = int(np.flatnonzero(slow)[0])
        raise TraceFormatError(
            path, f"RTT {rtt_ms[i]:g} ms is above {MAX_RTT_MS:g} ms", line(i) if rtt_ms.size > 1 else None
        )


# -- format detection ---------------------------------------------------------------------------------------------


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def detect_format(path: str | Path) -> str:
    """Guess the format of ``path`` from its suffix and first data line; raises TraceFormatError if unknown."""
    path = Path(path)
    text = _read_text(path)
    return _detect(path, text)


def _detect(path: Path, text: str) -> str:
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "["):
        return "json"
    found = _first_data_line(text)
    if found is None:
        raise TraceFormatError(path, "empty file (only comments)")
    no, first = found
    if path.suffix.lower() in (".up", ".down"):
        return "mahimahi"
    if "," in first:
        fields = [f.strip() for f in first.split(",")]
        if all(_is_number(f) for f in fields):
            return "csv"
        if any(re.search(r"[A-Za-z]", f) for f in fields):
            return "csv_header"
        raise TraceFormatError(path, f"unknown format: cannot read first line {first[:60]!r}", no)
    fields = first.split()
    if len(fields) == 1 and re.fullmatch(r"\d+", fields[0]):
        return "mahimahi"
    if len(fields) in (2, 3) and all(_is_number(f) for f in fields):
        return "text"
    raise TraceFormatError(
        path,
        f"unknown format: first data line {first[:60]!r} is none of mahimahi (one integer), "
        "text (time_s Mbps), csv (time_s,bytes_per_s), csv with a header, json",
        no,
    )


# -- Mahimahi -----------------------------------------------------------------------------------------------------


def _mahimahi_ms(path: Path) -> np.ndarray:
    """The delivery-opportunity timestamps (ms) of one Mahimahi file, validated."""
    text = _read_text(path)
    try:
        ms = np.array(text.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        ms = None
    if ms is None or ms.size == 0 or (ms < 0).any() or (ms > MAX_TIMESTAMP_S * 1e3).any():
        for no, s in _data_lines(text):
            if not re.fullmatch(r"\d+", s):
                raise TraceFormatError(path, f"expected a non-negative integer ms timestamp, got {s[:60]!r}", no)
            if len(s) > 15 or int(s) > MAX_TIMESTAMP_S * 1e3:
                raise TraceFormatError(
                    path, f"timestamp {s[:30]} ms is beyond a year ({MAX_TIMESTAMP_S * 1e3:g} ms)", no
                )
        raise TraceFormatError(path, "empty file (no samples)")
    back = np.diff(ms) < 0
    if back.any():
        i = int(np.flatnonzero(back)[0]) + 1
        lines = text.splitlines()
        nonblank = [no for no, s in enumerate(lines, start=1) if s.strip()]
        raise TraceFormatError(path, f"timestamps go backwards: {ms[i]} after {ms[i - 1]}", nonblank[i])
    if ms[-1] <= 0:
        raise TraceFormatError(path, "last timestamp must be > 0 ms (it sets the loop period)")
    if ms[-1] > MAX_DURATION_S * 1e3:
        raise TraceFormatError(path, f"the trace spans {ms[-1] / 1e3:g} s, more than a day ({MAX_DURATION_S:g} s)")
    return ms


def _mahimahi_bins(ms: np.ndarray, bin_s: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(bin start times s, Mbit/s per bin, last bin length s).

    The period is the last timestamp (as in mm-link). An opportunity at ms ``m`` serves the millisecond (m-1, m], so
    bin k holds timestamps in (k * bin, (k+1) * bin]; a timestamp 0 counts in the first bin. Bytes per period are
    preserved exactly (a partial last bin gets its own length)."""
    period_ms = float(ms[-1])
    bin_ms = bin_s * 1e3
    n_bins = max(1, int(math.ceil(period_ms / bin_ms - 1e-9)))
    idx = np.clip(((ms - 1) / bin_ms).astype(np.int64), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins).astype(np.float64)
    starts = np.arange(n_bins) * bin_s
    last = period_ms / 1e3 - starts[-1]
    widths = np.full(n_bins, bin_s)
    widths[-1] = last
    mbps = counts * MAHIMAHI_PACKET_BYTES * BITS_PER_BYTE / MBIT / widths
    return starts, mbps, last


def _loop_to(mbps: np.ndarray, n: int) -> np.ndarray:
    """Rates of a binned trace looped (by bins) to ``n`` bins."""
    reps = int(math.ceil(n / len(mbps)))
    return np.tile(mbps, reps)[:n]


def read_mahimahi(
    path: str | Path,
    partner: str | Path | None | bool = True,
    *,
    bin_s: float = 1.0,
    name: str | None = None,
) -> BandwidthTrace:
    """Read a Mahimahi delivery-opportunity file (rate = opportunities * 1500 B per ``bin_s`` bin).

    ``partner=True`` looks for the other direction beside it (``X.up`` <-> ``X.down``) and joins them; a path gives
    it explicitly; ``False``/``None`` or no partner found: the one file serves both directions (``symmetric=True``).
    A file without a .up/.down suffix is treated as downlink. When the two directions have different lengths the
    shorter is looped to the longer one's length (as mm-link loops each file), stated in ``notes``.
    """
    path = Path(path)
    if not (bin_s > 0 and math.isfinite(bin_s)):
        raise ValueError(f"bin_s must be > 0, got {bin_s}")
    suffix = path.suffix.lower()
    this_dir = "up" if suffix == ".up" else "down"
    other: Path | None = None
    if partner is True:
        if suffix in (".up", ".down"):
            cand = path.with_suffix(".down" if suffix == ".up" else ".up")
            other = cand if cand.is_file() else None
    elif partner not in (None, False):
        other = Path(partner)  # type: ignore[arg-type]
    ms = _mahimahi_ms(path)
    starts, rates, last = _mahimahi_bins(ms, bin_s)
    _check_plausible(path, starts, rates, rates, np.zeros(1), [])
    stem = path.stem if suffix in (".up", ".down") else path.name
    label = name if name is not None else stem
    if other is None:
        return BandwidthTrace(
            times_s=starts,
            up_mbps=rates,
            down_mbps=rates,
            name=label,
            source=str(path),
            last_interval_s=last,
            symmetric=True,
            notes=(f"mahimahi {this_dir} file only; it serves both directions (symmetric)",),
        )
    ms2 = _mahimahi_ms(other)
    starts2, rates2, last2 = _mahimahi_bins(ms2, bin_s)
    _check_plausible(other, starts2, rates2, rates2, np.zeros(1), [])
    up_r, down_r = (rates, rates2) if this_dir == "up" else (rates2, rates)
    up_p, down_p = (path, other) if this_dir == "up" else (other, path)
    notes: tuple[str, ...] = (f"mahimahi pair joined: up={up_p.name}, down={down_p.name}, {bin_s:g} s bins",)
    n_up, n_down = len(up_r), len(down_r)
    last_up, last_down = (last, last2) if this_dir == "up" else (last2, last)
    if n_up == n_down:
        starts_j, last_j = starts if len(starts) >= len(starts2) else starts2, max(last_up, last_down)
        if last_up != last_down:
            # equalise the partial last bins: rate * width preserved per direction
            up_r = up_r.copy()
            down_r = down_r.copy()
            up_r[-1] *= last_up / last_j
            down_r[-1] *= last_down / last_j
            notes += (f"last bin lengths differ ({last_up:g} s up, {last_down:g} s down); both set to {last_j:g} s",)
    else:
        n = max(n_up, n_down)
        short = "up" if n_up < n_down else "down"
        # a partial last bin of the shorter direction is spread as a full bin when looped
        if short == "up":
            up_r = up_r.copy()
            up_r[-1] *= last_up / bin_s
            up_r = _loop_to(up_r, n)
        else:
            down_r = down_r.copy()
            down_r[-1] *= last_down / bin_s
            down_r = _loop_to(down_r, n)
        starts_j = np.arange(n) * bin_s
        last_j = last_up if short == "down" else last_down
        notes += (f"{short} is shorter ({min(n_up, n_down)} vs {n} bins); looped to the longer length",)
    return BandwidthTrace(
        times_s=starts_j,
        up_mbps=up_r,
        down_mbps=down_r,
        name=label,
        source=str(path),
        last_interval_s=last_j,
        symmetric=False,
        notes=notes,
    )


# -- text / csv ---------------------------------------------------------------------------------------------------


def read_text(path: str | Path, *, name: str | None = None) -> BandwidthTrace:
    """Read ``<time_s> <Mbit/s>`` lines (tab or space; int or float times); one direction serves both.

    With the header comment ``# time_s up_mbps down_mbps`` the file has 3 columns (up and down separately).
    """
    path = Path(path)
    return _text_from(path, _read_text(path), name)


def _text_from(path: Path, text: str, name: str | None) -> BandwidthTrace:
    three = any(line.strip().lower() == TEXT3_HEADER for line in text.splitlines()[:5])
    lines = _data_lines(text)
    if not lines:
        raise TraceFormatError(path, "empty file (no samples)")
    arr = _parse_rows(path, lines, str.split, 3 if three else 2)
    nos = [no for no, _ in lines]
    last = _last_interval(path, text)
    if three:
        return _finish(path, arr[:, 0], arr[:, 1], arr[:, 2], nos, symmetric=False, name=name, last_interval_s=last)
    return _finish(
        path,
        arr[:, 0],
        arr[:, 1],
        arr[:, 1],
        nos,
        symmetric=True,
        name=name,
        last_interval_s=last,
        notes=("one recorded direction (time_s Mbps text) serves both up and down",),
    )


def _csv_split(s: str) -> list[str]:
    return [p.strip() for p in s.split(",")]


def read_csv(path: str | Path, *, name: str | None = None) -> BandwidthTrace:
    """Read headerless CSV ``<time_s>,<bytes per second>`` (MP-Traces); one direction serves both."""
    path = Path(path)
    return _csv_from(path, _read_text(path), name)


def _csv_from(path: Path, text: str, name: str | None) -> BandwidthTrace:
    lines = _data_lines(text)
    if not lines:
        raise TraceFormatError(path, "empty file (no samples)")
    arr = _parse_rows(path, lines, _csv_split, 2)
    mbps = arr[:, 1] * BITS_PER_BYTE / MBIT
    return _finish(
        path,
        arr[:, 0],
        mbps,
        mbps,
        [no for no, _ in lines],
        symmetric=True,
        name=name,
        last_interval_s=_last_interval(path, text),
        notes=("one recorded direction (time_s,bytes_per_s CSV) serves both up and down",),
    )


def _tokens(col: str) -> list[str]:
    """'timeInSeconds' -> ['time', 'in', 'seconds']; 'up_Mbps' -> ['up', 'mbps']; 'Mbit/s' -> ['mbit', 's']."""
    return [p.lower() for p in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", col)]


_TIME_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "millis": 1e-3,
    "milliseconds": 1e-3,
    "us": 1e-6,
    "usec": 1e-6,
    "microseconds": 1e-6,
}
_RATE_UNITS = {
    "gbps": 1e3,
    "gbit": 1e3,
    "gbits": 1e3,
    "mbps": 1.0,
    "mbit": 1.0,
    "mbits": 1.0,
    "kbps": 1e-3,
    "kbit": 1e-3,
    "kbits": 1e-3,
    "bps": 1e-6,
}
_BYTE_PREFIX = {"bytes": 1.0, "byte": 1.0, "b": 1.0, "kbytes": 1e3, "kb": 1e3, "mbytes": 1e6, "mb": 1e6}


def _time_scale(col: str) -> float | None:
    toks = _tokens(col)
    if not toks or toks[0] not in ("time", "timestamp", "timestamps", "t", "ts", "elapsed"):
        return None
    for t in toks[1:]:
        if t in _TIME_UNITS:
            return _TIME_UNITS[t]
    return math.nan  # a time column without a unit


def _rate_scale(col: str) -> float | None:
    """Mbit/s per unit of the column, or None if the name carries no throughput unit.

    Bits: mbps, Mbit/s, kbps, gbps, bps (any case). Bytes: a capital-B ``Bps`` (``KBps``, ``MBps``), or the words
    ``bytes_per_s``, ``BytesPerSecond``, ``bytes/s``, ``kbytes_per_s``.
    """
    m = re.search(r"(?:^|[^A-Za-z])([kKM]?)Bps(?![a-z])|(?<=[a-z_])([KM]?)Bps(?![a-z])", col)
    if m:
        prefix = m.group(1) if m.group(1) is not None else (m.group(2) or "")
        return {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6}[prefix] * BITS_PER_BYTE / MBIT
    toks = _tokens(col)
    for t in toks:
        if t in _RATE_UNITS:
            return _RATE_UNITS[t]
    for i, t in enumerate(toks):
        if t in _BYTE_PREFIX and any(x in ("per", "s", "sec", "second", "ps") for x in toks[i + 1 : i + 3]):
            return _BYTE_PREFIX[t] * BITS_PER_BYTE / MBIT
    return None


def _direction_of(col: str) -> str:
    toks = set(_tokens(col))
    if toks & {"up", "ul", "uplink", "upload", "tx"}:
        return "up"
    if toks & {"down", "dl", "downlink", "download", "rx"}:
        return "down"
    return "both"


def _delay_kind(col: str) -> tuple[str, float] | None:
    """('rtt' | 'oneway', ms per unit) for an RTT/delay column."""
    toks = _tokens(col)
    kind = "rtt" if "rtt" in toks else "oneway" if toks and set(toks) & {"delay", "latency", "owd"} else None
    if kind is None:
        return None
    scale = 1.0
    for t in toks:
        if t in ("s", "sec", "seconds"):
            scale = 1e3
        elif t in ("us", "usec"):
            scale = 1e-3
    return kind, scale


def _columns_from_names(
    path: Path, names: list[str], line: int | None
) -> tuple[int, float, dict[str, tuple[int, float]], tuple[int, str, float] | None]:
    """Locate (time column, its scale to s, {direction: (col, scale to Mbit/s)}, delay column)."""
    t_col = None
    t_scale = 1.0
    rates: dict[str, tuple[int, float]] = {}
    delay = None
    for i, col in enumerate(names):
        ts = _time_scale(col)
        if ts is not None and t_col is None:
            if math.isnan(ts):
                raise TraceFormatError(
                    path, f"time column {col!r} has no unit (name it e.g. time_s or timestamp_ms)", line
                )
            t_col, t_scale = i, ts
            continue
        dk = _delay_kind(col)
        if dk is not None:
            delay = (i, dk[0], dk[1])
            continue
        rs = _rate_scale(col)
        if rs is not None:
            d = _direction_of(col)
            if d in rates:
                raise TraceFormatError(
                    path, f"two throughput columns for direction {d!r}: {names[rates[d][0]]!r}, {col!r}", line
                )
            rates[d] = (i, rs)
    if t_col is None:
        raise TraceFormatError(path, f"no time column in header {names} (expected e.g. time_s, timestamp_ms)", line)
    if not rates:
        raise TraceFormatError(
            path, f"no throughput column with a unit in header {names} (expected e.g. mbps, kbps, bytes_per_s)", line
        )
    if "both" in rates and len(rates) > 1:
        raise TraceFormatError(path, f"throughput columns mix directional and undirected names: {names}", line)
    return t_col, t_scale, rates, delay


def _assemble(
    path: Path,
    t: np.ndarray,
    t_scale: float,
    cols: dict[str, np.ndarray],
    delay: tuple[np.ndarray, str] | None,
    nos: Sequence[int],
    name: str | None,
    fmt: str,
    last_interval_s: float | None = None,
) -> BandwidthTrace:
    notes: tuple[str, ...] = ()
    if "both" in cols:
        up = down = cols["both"]
        symmetric = True
        notes += (f"one throughput column ({fmt}) serves both up and down",)
    elif "up" in cols and "down" in cols:
        up, down, symmetric = cols["up"], cols["down"], False
    else:
        only = "up" if "up" in cols else "down"
        up = down = cols[only]
        symmetric = True
        notes += (f"only {only} given ({fmt}); it serves both directions",)
    rtt: float | np.ndarray = 0.0
    if delay is not None:
        vals, kind = delay
        rtt = vals if kind == "rtt" else 2.0 * vals
        if kind != "rtt":
            notes += ("one-way delay column doubled into RTT",)
    return _finish(
        path,
        t * t_scale,
        up,
        down,
        nos,
        rtt_ms=rtt,
        symmetric=symmetric,
        name=name,
        notes=notes,
        last_interval_s=last_interval_s,
    )


def read_csv_header(path: str | Path, *, name: str | None = None) -> BandwidthTrace:
    """Read CSV with a header naming a time column (with unit: ``time_s``, ``timestamp_ms``, ``timeInSeconds``) and
    throughput columns with units (``mbps``, ``kbps``, ``gbps``, ``bps``, ``bytes_per_s``, ``BytesPerSecond``),
    optionally per direction (``up_*``/``down_*``, ``ul``/``dl``) and an ``rtt_ms`` or one-way ``delay_ms`` column.
    Other columns are ignored (named in ``notes``)."""
    path = Path(path)
    return _csv_header_from(path, _read_text(path), name)


def _csv_header_from(path: Path, text: str, name: str | None) -> BandwidthTrace:
    lines = _data_lines(text)
    if len(lines) < 2:
        raise TraceFormatError(path, "empty file (a header but no samples)")
    hno, header = lines[0]
    names = _csv_split(header)
    t_col, t_scale, rates, delay = _columns_from_names(path, names, hno)
    used = {t_col} | {c for c, _ in rates.values()} | ({delay[0]} if delay else set())
    ignored = [n for i, n in enumerate(names) if i not in used]
    arr = _parse_rows(path, lines[1:], _csv_split, len(names))
    nos = [no for no, _ in lines[1:]]
    cols = {d: arr[:, c] * s for d, (c, s) in rates.items()}
    dl = (arr[:, delay[0]] * delay[2], delay[1]) if delay else None
    tr = _assemble(path, arr[:, t_col], t_scale, cols, dl, nos, name, "csv header", _last_interval(path, text))
    if ignored:
        tr = replace(tr, notes=tr.notes + (f"ignored columns: {', '.join(ignored)}",))
    return tr


# -- JSON ---------------------------------------------------------------------------------------------------------


def read_json(path: str | Path, *, name: str | None = None) -> BandwidthTrace:
    """Read a JSON object holding equal-length arrays.

    Time: ``timestamps`` / ``time`` / ``times`` (seconds), or a key with a unit (``time_s``, ``timestamps_ms``).
    Bandwidth: ``bandwidth`` / ``throughput`` (Mbit/s), or keys with units (``bandwidth_mbps``, ``up_kbps``,
    ``down_mbps``, ``bytes_per_s``). Delay: ``delay`` / ``delay_ms`` (one-way ms, doubled into RTT) or ``rtt_ms``.
    """
    path = Path(path)
    return _json_from(path, _read_text(path), name)


def _json_from(path: Path, text: str, name: str | None) -> BandwidthTrace:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise TraceFormatError(path, f"invalid JSON: {e.msg}", e.lineno) from e
    except (ValueError, RecursionError) as e:  # an integer of more than 4,300 digits, nesting too deep
        raise TraceFormatError(path, f"invalid JSON: {type(e).__name__}: {str(e)[:120]}") from e
    if not isinstance(obj, dict):
        raise TraceFormatError(path, f"JSON must be an object of arrays, got {type(obj).__name__}")
    aliases = {
        "timestamps": "timestamps_s",
        "timestamp": "timestamp_s",
        "time": "time_s",
        "times": "times_s",
        "bandwidth": "bandwidth_mbps",
        "throughput": "throughput_mbps",
        "delay": "delay_ms",
        "rtt": "rtt_ms",
        "up": "up_mbps",
        "down": "down_mbps",
    }
    last = obj.pop("last_interval_s", None)
    if last is not None and not (
        isinstance(last, (int, float)) and not isinstance(last, bool) and math.isfinite(last) and last > 0
    ):
        raise TraceFormatError(path, f"last_interval_s must be a number > 0, got {last!r}")
    obj.pop("name", None)
    keys = list(obj.keys())
    names = [aliases.get(k, k) for k in keys]
    t_col, t_scale, rates, delay = _columns_from_names(path, names, None)
    arrays: dict[int, np.ndarray] = {}
    for i in [t_col] + [c for c, _ in rates.values()] + ([delay[0]] if delay else []):
        val = obj[keys[i]]
        if not isinstance(val, list):
            raise TraceFormatError(path, f"key {keys[i]!r} must be an array, got {type(val).__name__}")
        try:
            arrays[i] = np.array(val, dtype=np.float64)
        except OverflowError as e:
            bad = next((j for j, v in enumerate(val) if isinstance(v, int) and abs(v) > 1e300), 0)
            raise TraceFormatError(
                path,
                f"key {keys[i]!r}: element [{bad}] is an integer too large for a float ({val[bad].bit_length()} bits)",
                bad + 1,
            ) from e
        except (TypeError, ValueError) as e:
            bad = next((j for j, v in enumerate(val) if not isinstance(v, (int, float)) or isinstance(v, bool)), 0)
            raise TraceFormatError(
                path, f"key {keys[i]!r}: non-numeric element [{bad}] = {str(val[bad])[:60]!r}", bad + 1
            ) from e
        if arrays[i].ndim != 1:
            raise TraceFormatError(path, f"key {keys[i]!r} must be a flat array")
    n = len(arrays[t_col])
    if n == 0:
        raise TraceFormatError(path, "empty file (no samples)")
    for i, a in arrays.items():
        if len(a) != n:
            raise TraceFormatError(path, f"key {keys[i]!r} has {len(a)} elements, {keys[t_col]!r} has {n}")
    cols = {d: arrays[c] * s for d, (c, s) in rates.items()}
    dl = (arrays[delay[0]] * delay[2], delay[1]) if delay else None
    # no line numbers in JSON arrays: report the element index (+1) as the "line"
    return _assemble(path, arrays[t_col], t_scale, cols, dl, list(range(1, n + 1)), name, "json", last)


# -- dispatch -----------------------------------------------------------------------------------------------------

READERS: dict[str, Callable[..., BandwidthTrace]] = {
    "mahimahi": read_mahimahi,
    "text": read_text,
    "csv": read_csv,
    "csv_header": read_csv_header,
    "json": read_json,
}
_FROM_TEXT: dict[str, Callable[[Path, str, str | None], BandwidthTrace]] = {
    "text": _text_from,
    "csv": _csv_from,
    "csv_header": _csv_header_from,
    "json": _json_from,
}


def load_trace(
    path: str | Path, *, format: str = "auto", bin_s: float = 1.0, name: str | None = None
) -> BandwidthTrace:
    """Read one trace file (auto-detecting its format). A Mahimahi ``.up``/``.down`` file is joined with its partner."""
    path = Path(path)
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"format must be 'auto' or one of {FORMATS}, got {format!r}")
    if format == "mahimahi" or (format == "auto" and path.suffix.lower() in (".up", ".down")):
        return read_mahimahi(path, True, bin_s=bin_s, name=name)
    text = _read_text(path)
    if format == "auto":
        format = _detect(path, text)
    if format == "mahimahi":
        return read_mahimahi(path, True, bin_s=bin_s, name=name)
    return _FROM_TEXT[format](path, text, name)
