"""The step-latency model: one pure function pricing one inference at one cut over one link, with the deadline rule.

Used by the env's ``profile`` backend, by the hindsight oracle (issue 6) and, for its deadline rule, by the edge
runtime (issue 4). Cut costs come only from ``executor.costs.cut_table`` (via :func:`cut_rows`); transfer times
only from a link with ``BandwidthTrace``'s interface (``transfer_time_s``, ``one_way_delay_ms``): a
``traces.BandwidthTrace`` (exact piecewise-constant integration, wrapping at its end).

Timeline of one inference that starts at ``start_s`` (all compute of one side is charged as one lump):

edge_then_cloud cut k:  edge blocks [0, k) -> uplink ``up_bytes`` + one-way delay -> server queue -> cloud blocks
    [k, N) -> for each extra round trip: downlink ``round_trip_down_bytes`` + delay, uplink ``round_trip_up_bytes`` +
    delay -> downlink ``down_bytes`` (the actions) + delay.
cloud_then_edge cut k:  uplink ``up_bytes`` + delay -> server queue -> cloud blocks [0, k) -> (round trips as above)
    -> downlink ``down_bytes`` + delay -> edge blocks [k, N).
edge-only cut (no network): edge blocks only; never misses the deadline.

Deadline rule (the edge runtime implements the same): a step that uses the network and whose actions are not back
by ``start_s + deadline_ms`` is abandoned at the deadline and falls back to edge-only (the env and the runtime use
the deadline of :meth:`DeadlineConfig.resolve`: by default capped at the edge-only time). It then costs
``deadline_ms + fallback_ms`` where ``fallback_ms`` is the edge-only compute time, or, with
``resume_edge_prefix=True`` (the runtime keeps the edge blocks it already ran and continues locally),
``max(deadline_ms, edge prefix) + edge-only time - edge prefix``. Transfers are integrated only up to the deadline,
so an outage costs the deadline, never the seconds the transfer would take. When edge-only does not fit the edge's
memory, the caller passes ``fallback_ms`` = its hold-the-last-action time instead (see the env).

Hedged execution (``DeadlineConfig.hedge``): on a hedgeable cut (edge_then_cloud, no extra round trips: see
:func:`hedgeable`) the edge does not idle while the payload travels: right after the edge blocks it goes on locally
with the cloud's blocks, and the step takes whichever actions come first. The local continuation is done at
``max(edge prefix, fallback_ms)`` (the edge-only time: the prefix is already computed), so the network reply counts
only when it is back before then (and before ``deadline_ms``), and a miss costs the edge-only time, not the deadline
plus the edge-only time. The edge runtime's client does the same (``EdgeClient.infer(..., hedge=True)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple, Protocol

from executor.costs import cut_table
from executor.protocol import missed_upload_mbps
from executor.profile import Profile, hedgeable  # hedgeable: the rule is the executor's, re-exported here
from traces.units import rate_mbps

Direction = Literal["up", "down"]


class Link(Protocol):
    """What the latency model needs from a bandwidth trace (``traces.BandwidthTrace`` satisfies it)."""

    def transfer_time_s(
        self, nbytes: int, start_s: float, direction: Direction, *, max_wait_s: float = 60.0
    ) -> float: ...

    def one_way_delay_ms(self, t_s: float) -> float: ...


class CutRow(NamedTuple):
    """Cost of one cut (from ``executor.costs.CutTable``) plus its placement, as plain Python numbers."""

    index: int
    edge_ms: float
    cloud_ms: float
    up_bytes: float
    down_bytes: float
    round_trips: int
    round_trip_up_bytes: float
    round_trip_down_bytes: float
    edge_param_bytes: float
    uses_network: bool
    edge_first: bool  # True for edge_then_cloud (edge computes before the uplink)
    name: str


def cut_rows(edge: Profile, cloud: Profile) -> tuple[CutRow, ...]:
    """Per-cut rows priced by ``executor.costs.cut_table`` (the single source of cut costs)."""
    table = cut_table(edge, cloud)
    if table.num_cuts == 0:
        raise ValueError(f"profile {edge.model_id}/{edge.preset} has no cuts")
    rows = []
    for i, cut in enumerate(edge.cuts):
        rows.append(
            CutRow(
                index=i,
                edge_ms=float(table.edge_ms[i]),
                cloud_ms=float(table.cloud_ms[i]),
                up_bytes=float(table.up_bytes[i]),
                down_bytes=float(table.down_bytes[i]),
                round_trips=int(table.round_trips[i]),
                round_trip_up_bytes=float(table.round_trip_up_bytes[i]),
                round_trip_down_bytes=float(table.round_trip_down_bytes[i]),
                edge_param_bytes=float(table.edge_param_bytes[i]),
                uses_network=bool(table.uses_network[i]),
                edge_first=cut.placement == "edge_then_cloud",
                name=table.names[i],
            )
        )
    return tuple(rows)


@dataclass(frozen=True)
class DeadlineConfig:
    """The deadline rule's parameters.

    deadline_ms: time from the start of an inference by which a network step's actions must be back (inf: never).
    resume_edge_prefix: on a miss, continue locally from the edge blocks already computed instead of restarting.
    break_even: cap the deadline at the edge-only compute time (see :meth:`resolve`). A network reply later than
        that has already lost to edge-only, so waiting longer only adds to the miss: this is the ski-rental
        break-even rule, which bounds a miss at twice the edge-only time whatever the network does (an outage
        that begins during a transfer costs ``2 x edge-only`` instead of ``deadline_ms + edge-only``).
    hedge: hedged execution on hedgeable cuts (module docstring): the edge continues locally during the transfer
        and a miss costs the edge-only time. Needs edge-only to fit the edge: :meth:`resolve` turns it off when it
        does not.
    """

    deadline_ms: float = 300.0
    resume_edge_prefix: bool = False
    break_even: bool = True
    hedge: bool = False

    def __post_init__(self) -> None:
        if not (self.deadline_ms > 0):  # also rejects NaN
            raise ValueError(f"deadline_ms must be > 0, got {self.deadline_ms!r}")

    def resolve(self, edge_only_ms: float | None) -> DeadlineConfig:
        """The rule in force for a model whose edge-only inference takes ``edge_only_ms`` (None: edge-only does
        not fit the edge, so there is no break-even point): ``min(deadline_ms, edge_only_ms)`` with
        ``break_even``, else ``deadline_ms``. The result has ``break_even=False`` (resolving it again is a no-op).
        The env and the edge runtime both call this, so they abandon a network step at the same time. Without an
        edge-only time there is nothing to continue locally, so ``hedge`` is off in the result."""
        ms = self.deadline_ms
        if edge_only_ms is not None and not (edge_only_ms > 0 and math.isfinite(edge_only_ms)):
            raise ValueError(f"edge_only_ms must be a positive finite time, got {edge_only_ms!r}")
        if self.break_even and edge_only_ms is not None:
            ms = min(ms, float(edge_only_ms))
        return replace(self, deadline_ms=ms, break_even=False, hedge=self.hedge and edge_only_ms is not None)


class StepTiming(NamedTuple):
    """Timing of one inference in ms; ``service_ms`` = from the start of the inference to actions ready.

    Without fallback: service = edge + uplink + server_queue + cloud + downlink (uplink and downlink include their
    one-way delays and any extra round trips). With fallback: uplink = server_queue = cloud = downlink = 0,
    ``deadline_wait_ms`` is the time spent waiting before the fallback started and ``edge_ms`` the edge compute after
    it, so service = deadline_wait + edge. ``uplink_done_s`` / ``uplink_mbps`` are the uplink sample the edge records:
    the main upload's measured rate when the actions came back in time; after a miss, the upper bound
    ``executor.protocol.missed_upload_mbps`` (upload bits / time from its start to the deadline) stamped at the
    deadline; NaN for edge-only steps and when the deadline passed before the upload started.
    """

    edge_ms: float
    uplink_ms: float
    server_queue_ms: float
    cloud_ms: float
    downlink_ms: float
    deadline_wait_ms: float
    service_ms: float
    deadline_miss: bool
    fallback: bool
    delay_ms: float
    uplink_done_s: float
    uplink_mbps: float
    downlink_done_s: float
    downlink_mbps: float


_NAN = float("nan")


def _mbps(nbytes: float, seconds: float) -> float:
    return rate_mbps(nbytes, seconds)  # NaN for seconds <= 0


def step_timing(
    row: CutRow,
    link: Link,
    start_s: float,
    *,
    server_queue_ms: float = 0.0,
    deadline: DeadlineConfig,
    fallback_ms: float,
) -> StepTiming:
    """Price one inference at cut ``row`` starting at ``start_s`` (seconds of link time); see the module docstring.

    ``fallback_ms`` is the edge-only compute time (the edge-only cut's ``edge_ms``) used when the deadline is missed.
    """
    if not row.uses_network:
        return StepTiming(row.edge_ms, 0.0, 0.0, 0.0, 0.0, 0.0, row.edge_ms, False, False, 0.0, _NAN, _NAN, _NAN, _NAN)
    hedged = deadline.hedge and hedgeable(row.edge_first, row.round_trips)
    local_ms = max(row.edge_ms, fallback_ms)  # the hedge's local actions: prefix + the rest on the edge
    deadline_s = start_s + (min(deadline.deadline_ms, local_ms) if hedged else deadline.deadline_ms) * 1e-3
    edge_first = row.edge_first
    t = start_s + row.edge_ms * 1e-3 if edge_first else start_s
    up_ms = down_ms = delay_ms = 0.0
    up_done = up_mbps = down_done = down_mbps = _NAN
    up_start = t
    missed = t > deadline_s
    if not missed:
        missed, t, dt_ms, d_ms, up_done, up_mbps = _transfer(link, row.up_bytes, t, "up", deadline_s)
        up_ms += dt_ms
        delay_ms += d_ms
    if not missed:
        t += (server_queue_ms + row.cloud_ms) * 1e-3
        missed = t > deadline_s
    for _ in range(row.round_trips):
        if missed:
            break
        missed, t, dt_ms, d_ms, _, _ = _transfer(link, row.round_trip_down_bytes, t, "down", deadline_s)
        down_ms += dt_ms
        delay_ms += d_ms
        if missed:
            break
        missed, t, dt_ms, d_ms, _, _ = _transfer(link, row.round_trip_up_bytes, t, "up", deadline_s)
        up_ms += dt_ms
        delay_ms += d_ms
    if not missed:
        missed, t, dt_ms, d_ms, down_done, down_mbps = _transfer(link, row.down_bytes, t, "down", deadline_s)
        down_ms += dt_ms
        delay_ms += d_ms
    if not missed and not edge_first:
        t += row.edge_ms * 1e-3
        missed = t > deadline_s
    if not missed:
        service = (t - start_s) * 1e3
        return StepTiming(
            row.edge_ms,
            up_ms,
            server_queue_ms,
            row.cloud_ms,
            down_ms,
            0.0,
            service,
            False,
            False,
            delay_ms,
            up_done,
            up_mbps,
            down_done,
            down_mbps,
        )
    # Deadline missed: abandon the network step, finish on the edge.
    wait = deadline.deadline_ms
    after = fallback_ms
    if hedged:  # the local continuation ran alongside the transfer
        wait, after = 0.0, local_ms
    elif deadline.resume_edge_prefix and edge_first:
        wait = max(wait, row.edge_ms)
        after = max(fallback_ms - row.edge_ms, 0.0)
    # No reply by the deadline: the edge only knows the exchange did not fit, so it records the upper bound
    # main-upload bits / (deadline - upload start), stamped at the deadline (the runtime's client does the same).
    up_mbps = missed_upload_mbps(row.up_bytes, deadline_s - up_start)
    up_done = deadline_s if up_mbps == up_mbps else _NAN
    return StepTiming(after, 0.0, 0.0, 0.0, 0.0, wait, wait + after, True, True, 0.0, up_done, up_mbps, _NAN, _NAN)


def _transfer(
    link: Link, nbytes: float, t: float, direction: Direction, deadline_s: float
) -> tuple[bool, float, float, float, float, float]:
    """One transfer + one-way delay from ``t``; returns (missed, end time, transfer ms, delay ms, done_s, mbps)."""
    budget = deadline_s - t
    if budget < 0:
        return True, t, 0.0, 0.0, _NAN, _NAN
    if nbytes > 0:
        try:
            dur = link.transfer_time_s(int(nbytes), t, direction, max_wait_s=budget)
        except TimeoutError:  # traces.TransferTimeout: not done by the deadline
            return True, deadline_s, 0.0, 0.0, _NAN, _NAN
    else:
        dur = 0.0
    done = t + dur
    delay = link.one_way_delay_ms(done)
    end = done + delay * 1e-3
    missed = end > deadline_s
    return missed, end, (dur * 1e3) + delay, delay, done, _mbps(nbytes, dur)


@dataclass(frozen=True)
class ProbeConfig:
    """Background bandwidth probes of the edge (the runtime's client sends the same; ``ClientConfig.probe_*``).

    Every ``interval_s`` the edge sends a ping padded to ``nbytes``; the server's receive time gives an uplink
    sample (bits / transfer time), no matter whether the planner uses the network. A probe not through within
    ``interval_s`` leaves no sample, and none is sent while a network inference is in flight (from the step's start
    until its actions came back or its deadline passed). Probes never delay inferences; their load on the link
    (``nbytes`` per interval, 32 kB/s = 0.26 Mbit/s by default) is not charged to the inference transfers.
    One more probe goes out while the client connects, before the first observation: the env prices it on the
    segment's start and counts it as measured at t = 0, so a planner's first decision sees the link.
    ``interval_s=0`` disables them all.
    Both env backends price probes from the trace (the executor backend's real client sends none).

    The default, 8 kB every 0.25 s, keeps the newest sample at most a quarter second old at the load of one 32 kB
    probe per second: on 1 Hz mmWave traces, a planner that saw one probe per second offloaded into rates up to a
    second stale (on the Lumos 5G test traces, pi0 Orin+A100: 10.1 ms heuristic mean with 1 s probes,
    9.1 ms with 0.25 s).
    """

    interval_s: float = 0.25
    nbytes: int = 8_192

    def __post_init__(self) -> None:
        if not (self.interval_s >= 0 and self.interval_s != float("inf")):
            raise ValueError(f"interval_s must be finite and >= 0, got {self.interval_s!r}")
        if int(self.nbytes) != self.nbytes or self.nbytes < 1:
            raise ValueError(f"nbytes must be an integer >= 1, got {self.nbytes!r}")

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0


def probe_sample(link: Link, nbytes: int, start_s: float, timeout_s: float) -> tuple[float, float] | None:
    """Uplink sample of one background probe of ``nbytes`` sent at ``start_s``: (transfer end time s, Mbit/s), as
    the runtime measures it (bits / serialisation time, the one-way delay excluded); None when it is not through
    (transfer + one-way delay) within ``timeout_s``."""
    try:
        dur = link.transfer_time_s(int(nbytes), start_s, "up", max_wait_s=timeout_s)
    except TimeoutError:
        return None
    done = start_s + dur
    if dur <= 0 or dur + link.one_way_delay_ms(done) * 1e-3 > timeout_s:
        return None
    return done, _mbps(nbytes, dur)
