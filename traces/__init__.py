"""Recorded and synthetic bandwidth traces: readers, transfer-time integration, trace sets.

Imports numpy only; the CLI (``traces.cli``) imports rich and matplotlib when a sub-command needs them.
"""

from traces.readers import TraceFormatError, detect_format, load_trace
from traces.trace import OUTAGE_MBPS, BandwidthTrace, Direction, TraceStats, TransferTimeout
from traces.traceset import TraceSet, TraceSetStats, TraceSplit

__all__ = [
    "OUTAGE_MBPS",
    "BandwidthTrace",
    "Direction",
    "TraceFormatError",
    "TraceSet",
    "TraceSetStats",
    "TraceSplit",
    "TraceStats",
    "TransferTimeout",
    "detect_format",
    "load_trace",
]
