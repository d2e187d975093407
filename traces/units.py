"""The one place where units are converted. Bandwidth is in Mbit/s (10**6 bits per second), sizes in bytes."""

from __future__ import annotations

BITS_PER_BYTE = 8
MBIT = 1_000_000


def mbps_to_bytes_per_s(mbps: float) -> float:
    """Mbit/s -> bytes per second."""
    return mbps * MBIT / BITS_PER_BYTE


def bytes_per_s_to_mbps(bytes_per_s: float) -> float:
    """bytes per second -> Mbit/s."""
    return bytes_per_s * BITS_PER_BYTE / MBIT


def transfer_ms(nbytes: float, mbps: float) -> float:
    """Serialisation time in ms of ``nbytes`` at a constant ``mbps``; inf for a zero rate and a non-empty payload."""
    if nbytes <= 0:
        return 0.0
    if mbps <= 0:
        return float("inf")
    return nbytes * BITS_PER_BYTE / (mbps * MBIT) * 1e3


def rate_mbps(nbytes: float, seconds: float) -> float:
    """The rate in Mbit/s of ``nbytes`` moved in ``seconds``; NaN (no measurement) when ``seconds <= 0``.

    Callers that need another answer for a zero duration (an error, 0.0) check it before calling.
    """
    if not seconds > 0:
        return float("nan")
    return nbytes * BITS_PER_BYTE / (seconds * MBIT)
