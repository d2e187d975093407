"""The RTT rule: every trace family gets a documented round-trip time, applied by default in training and evaluation.

The recorded datasets carry bandwidth only (their SOURCE.md lists no latency); a link without a round trip is not a
deployment. A trace keeps its own RTT when it has one (``rtt_ms`` > 0: the embedded synthetic set, a CSV/JSON file
with an ``rtt_ms`` / ``delay_ms`` column); otherwise its family's RTT below applies; ``override_ms`` (``--rtt-ms``)
replaces every trace's RTT.

Family RTTs come from the access-link one-way latencies of the network table in ``../shared/reference/
vla_systems.md`` (VLA-Perf), doubled; the cloud is taken to sit right behind the access network (add a WAN hop with
``--rtt-ms`` where it does not):

| family (folder) | link in the table | one-way | RTT |
|---|---|---|---|
| ``lumos5g_mmwave/4G`` | 4G LTE | 25 ms | 50 ms |
| ``lumos5g_mmwave/5G`` | 5G sub-6 (nearest row to mmWave) | 10 ms | 20 ms |
| ``mahimahi_cellular_us`` (LTE, UMTS, EVDO) | 4G LTE (a lower bound for the UMTS/EVDO files) | 25 ms | 50 ms |
| ``wifi_cellular_sbu_mptraces`` ``*_wifi*`` | WiFi 6 | 3.5 ms | 7 ms |
| ``wifi_cellular_sbu_mptraces`` ``*_cellular*`` | 4G LTE | 25 ms | 50 ms |
| ``hsdpa_norway_3g`` | 4G LTE (no 3G row; a lower bound) | 25 ms | 50 ms |
| ``fcc_broadband_2016`` | WAN hop, fast cloud (wired home broadband) | 10 ms | 20 ms |
| ``oboe`` | WAN hop, fast cloud (mixed broadband) | 10 ms | 20 ms |
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FamilyRtt:
    """One row of the RTT table: traces whose name contains ``folder`` (and ``name_contains`` if given)."""

    folder: str
    rtt_ms: float
    link: str
    name_contains: str = ""


FAMILY_RTT: tuple[FamilyRtt, ...] = (
    FamilyRtt("lumos5g_mmwave/4G", 50.0, "4G LTE"),
    FamilyRtt("lumos5g_mmwave/5G", 20.0, "5G sub-6"),
    FamilyRtt("mahimahi_cellular_us", 50.0, "4G LTE"),
    FamilyRtt("wifi_cellular_sbu_mptraces", 7.0, "WiFi 6", "_wifi"),
    FamilyRtt("wifi_cellular_sbu_mptraces", 50.0, "4G LTE", "_cellular"),
    FamilyRtt("hsdpa_norway_3g", 50.0, "4G LTE (lower bound for 3G)"),
    FamilyRtt("fcc_broadband_2016", 20.0, "WAN hop, fast cloud"),
    FamilyRtt("oboe", 20.0, "WAN hop, fast cloud"),
)
FAMILY_RULE = -1.0  # the ``rtt_ms`` config value that selects the family rule (the default)


def family_rtt(trace_name: str, source: str = "") -> FamilyRtt | None:
    """The table row of a trace, by its name or its source path (either holds the dataset folder: a set loaded
    from ``lumos5g_mmwave/4G`` names its traces ``4G/...``), or None."""
    for row in FAMILY_RTT:
        for text in (trace_name, str(source).replace("\\", "/")):
            if row.folder in text and row.name_contains in text.rsplit("/", 1)[-1]:
                return row
    return None


def rtt_rule_label(override_ms: float = FAMILY_RULE) -> str:
    """How RTTs were set, for every printed result: ``"family RTT (traces.rtt)"`` or ``"RTT 40 ms (--rtt-ms)"``."""
    if override_ms == FAMILY_RULE:
        return "family RTT (traces.rtt; a trace's own RTT where it has one)"
    return f"RTT {override_ms:g} ms for every trace (--rtt-ms)"


def check_rtt_ms(value: Any) -> float:
    """A valid ``rtt_ms`` setting: FAMILY_RULE (-1) or a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"rtt_ms must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if v != FAMILY_RULE and not (math.isfinite(v) and v >= 0):
        raise ValueError(f"rtt_ms must be -1 (each trace family's RTT) or a finite number >= 0 ms, got {value!r}")
    return v


def apply_rtt(trace_set: Any, override_ms: float = FAMILY_RULE) -> Any:
    """``trace_set`` (a TraceSet) with the RTT rule applied to every trace; returns a new TraceSet of the same name.

    ``override_ms`` >= 0 sets every trace's RTT; FAMILY_RULE keeps a trace's own RTT when it has one (> 0) and
    otherwise applies its family's; a trace of no known family keeps its own (possibly 0, logged once per family).
    """
    from traces.traceset import TraceSet

    override = check_rtt_ms(override_ms)
    out = []
    unknown: set[str] = set()
    for t in trace_set:
        if override != FAMILY_RULE:
            out.append(t.with_rtt(override))
            continue
        own = t.rtt_array_ms()
        if own.size and float(own.max()) > 0:
            out.append(t)
            continue
        row = family_rtt(t.name, t.source)
        if row is None:
            unknown.add(t.name.rsplit("/", 1)[0])
            out.append(t)
        else:
            out.append(t.with_rtt(row.rtt_ms))
    if unknown:
        log.warning("no RTT rule for trace families %s: they keep RTT 0 (set one with --rtt-ms)", sorted(unknown))
    return trace_set._derived(out, trace_set.name) if hasattr(trace_set, "_derived") else TraceSet(out, trace_set.name)


def rtt_mismatch(metadata: dict[str, Any], rtt_ms: float) -> str | None:
    """A warning text when a policy (its metadata's ``rtt_rule``) was trained under another RTT rule than ``rtt_ms``
    (None when equal or not recorded)."""
    rule = metadata.get("rtt_rule") if isinstance(metadata, dict) else None
    if not isinstance(rule, dict) or "rtt_ms" not in rule:
        return None
    try:
        trained = float(rule["rtt_ms"])
    except (TypeError, ValueError):
        return f"the policy records an unreadable RTT rule {rule!r}"
    if trained == float(rtt_ms):
        return None
    return (
        f"the policy was trained under {rtt_rule_label(trained)}, it is evaluated under {rtt_rule_label(rtt_ms)} "
        "(see --rtt-ms)"
    )


def rtt_summary(trace_set: Any) -> dict[str, float]:
    """Mean RTT (ms) per trace family folder of a TraceSet, for reports."""
    groups: dict[str, list[float]] = {}
    for t in trace_set:
        groups.setdefault(t.name.rsplit("/", 1)[0], []).append(float(t.rtt_array_ms().mean()) if len(t) else 0.0)
    return {k: round(sum(v) / len(v), 3) for k, v in sorted(groups.items())}


__all__ = [
    "FAMILY_RTT",
    "FAMILY_RULE",
    "FamilyRtt",
    "apply_rtt",
    "check_rtt_ms",
    "family_rtt",
    "rtt_mismatch",
    "rtt_rule_label",
    "rtt_summary",
]
