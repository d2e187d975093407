"""Calibrate a Profile pair to the real split executor: its per-call and per-byte overheads outside the blocks.

A measured Profile's block times come from timing hooks on the block modules (``executor.profiler``), so they leave
out what the real executor spends around them: the model's glue between blocks and each session's set-up (the
unsplit forward's unattributed time), the client's and the server's message hand-offs, websocket framing, the event
loops and the relay's threads, and the (de)serialisation of every byte. :func:`measure_overheads` measures them on
the real executor of this machine: a local ``CloudServer`` and an ``EdgeClient`` exchanging through a
``ShapedLink`` relay (the path the executor backend and the runtimes use) on a constant link of ``link_mbps`` and
``one_way_ms`` (a delay makes the relay sleep until each delivery, as on a real trace, so the time its threads take
to wake up is measured too), every cut ``runs`` times (in a seeded random order per run), with the profiler's timing hooks on the block modules of both
halves. Per cut (medians over the calls):

* edge: client compute + encode + decode - the same call's edge block time - the Profile's edge codec time,
* cloud (network cuts): the call's total - the edge's measured part - the server queue - the same call's cloud
  block time - the Profile's cloud codec time - the link's own time (the cut's bytes at ``link_mbps`` plus
  ``one_way_ms`` per direction of every exchange),

each less its share of the per-byte cost (``ms_per_mb``: the ``executor.wire`` encode + decode time of a large
payload on this CPU, half charged to the sender, half to the receiver). Block times come from the same call, so a
machine whose speed changes between profiling and calibration (a shared CPU) does not leak into the overheads.
Negative residuals (the call ran faster than its blocks and codec account for) count as 0. ``Overheads.apply``
stores them in ``Profile.overhead_ms`` / ``Profile.overhead_ms_per_mb``.

Two more parts, measured on the same calls, close what the per-call overheads leave open (``bench_sim2real``):

* message bytes (``Profile.overhead_up_bytes`` / ``overhead_down_bytes``): per cut, the bytes that crossed the relay
  per message beyond the Profile's payload (the wire header, the message envelope with its timing, websocket
  framing: some 250-420 bytes up and 320 down for the tiny OpenVLA). On a fast link they cost nothing; on a
  cellular trace of 1 Mbit/s they cost 2-4 ms per exchange, which the per-call overheads, measured on a fast link,
  cannot see; the env's link model moves them like the payload.
* block-time scale (``Profile.block_ms_scale``, per cut and side): the calls' own block times over the Profile's
  for the same blocks: at the network cuts the median of the per-cut ratios of each side wherever it runs blocks,
  at the edge-only cut its own ratio (1 where a side runs none). The profiler times back-to-back forwards with warm caches; the executor calls
  one inference at a time, after waits on the network and with the other half's model in between, and its blocks
  run slower (colder caches, a CPU that idled). Only a Profile measured on this machine (its ``device`` is this
  machine's ``executor.profiler.device_description``) gets a scale; another device's blocks stay as they are (an
  emulated pair's are padded to their target times by the emulator).

``executor.costs.cut_table`` charges all of them, so the env, training, evaluation and the runtime's planners price
them as one latency rule.

The Profiles only lend their cuts' bytes and codec times (priced under the calibration's wire configuration), so
the same overheads serve a measured pair and a time-scaled emulated pair (``agents.emulated_pair``: the emulator
pads the blocks, the overheads around them stay this machine's).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from executor.costs import cut_wire_bytes
from executor.profile import Profile
from traces import synthetic

if TYPE_CHECKING:  # pragma: no cover
    from executor.models import SplitModel

log = logging.getLogger(__name__)

PER_MB_PROBE_BYTES = 4_000_000  # payload whose encode + decode time gives the per-MB cost


@dataclass(frozen=True)
class CalibrationConfig:
    """How to calibrate: measured calls per cut (after ``warmup_runs`` unmeasured ones), the wire configuration the
    client sends under (``executor.wire_config``; must be the one the Profiles are priced under), the relay (True:
    through ``ShapedLink`` on a constant link of ``link_mbps`` both ways and ``one_way_ms``, as the executor backend
    runs; False: straight to the server over loopback, no shaping), the bound on each call, and the cloud model's
    weight seed."""

    runs: int = 5
    warmup_runs: int = 1
    wire: Any = "exact"
    relay: bool = True
    link_mbps: float = 1000.0
    one_way_ms: float = 5.0
    call_timeout_s: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.runs < 1 or self.warmup_runs < 0:
            raise ValueError(f"runs must be >= 1 and warmup_runs >= 0, got {self.runs}, {self.warmup_runs}")
        if not (math.isfinite(self.link_mbps) and self.link_mbps > 0):
            raise ValueError(f"link_mbps must be finite and > 0, got {self.link_mbps!r}")
        if not (math.isfinite(self.one_way_ms) and self.one_way_ms >= 0):
            raise ValueError(f"one_way_ms must be finite and >= 0, got {self.one_way_ms!r}")
        if not self.call_timeout_s > 0:
            raise ValueError(f"call_timeout_s must be > 0, got {self.call_timeout_s!r}")


@dataclass(frozen=True)
class Overheads:
    """Measured overheads: per cut on the edge and on the cloud (ms per inference), per MB on each side, per cut the
    link bytes of every message beyond its payload (up, down), and per cut and side the block-time scale (the calls'
    own block times over the Profile's; empty for a Profile not measured on this machine)."""

    edge_ms: tuple[float, ...]
    cloud_ms: tuple[float, ...]
    ms_per_mb: float
    wire: str = ""
    message_up_bytes: tuple[float, ...] = ()
    message_down_bytes: tuple[float, ...] = ()
    edge_block_scale: tuple[float, ...] = ()
    cloud_block_scale: tuple[float, ...] = ()

    def apply(self, edge: Profile, cloud: Profile) -> tuple[Profile, Profile]:
        """The (edge, cloud) pair carrying these overheads: the pair they were measured against (the number of cuts
        must match)."""
        n = edge.num_cuts
        if not (len(self.edge_ms) == n == cloud.num_cuts == len(self.cloud_ms)) or any(
            len(b) not in (0, n)
            for b in (self.message_up_bytes, self.message_down_bytes, self.edge_block_scale, self.cloud_block_scale)
        ):
            raise ValueError(
                f"overheads for {len(self.edge_ms)} cuts do not fit Profiles with {edge.num_cuts} / "
                f"{cloud.num_cuts} cuts"
            )
        note = {"overheads": f"calibrated on the real executor (executor.calibration, wire {self.wire or '?'})"}

        def carrying(profile: Profile, per_call_ms: tuple[float, ...], scale: tuple[float, ...]) -> Profile:
            return replace(
                profile,
                overhead_ms=per_call_ms,
                overhead_ms_per_mb=self.ms_per_mb,
                overhead_up_bytes=self.message_up_bytes,
                overhead_down_bytes=self.message_down_bytes,
                block_ms_scale=scale,
                notes={**profile.notes, **note},
            )

        edge_out = carrying(edge, self.edge_ms, self.edge_block_scale)
        return edge_out, carrying(cloud, self.cloud_ms, self.cloud_block_scale)


def serialisation_ms_per_mb(nbytes: int = PER_MB_PROBE_BYTES, repeats: int = 5) -> float:
    """``executor.wire`` encode + decode time of an ``nbytes`` float32 payload on this CPU, per MB (median)."""
    from executor import wire

    payload = {"x": np.zeros(max(nbytes // 4, 1), dtype=np.float32)}
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        wire.decode(wire.encode(payload))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3 / (nbytes / 1e6)


def _codec(profile: Profile) -> np.ndarray:
    return np.asarray(profile.codec_ms, dtype=np.float64) if profile.codec_ms else np.zeros(profile.num_cuts)


def _scale(called_ms: np.ndarray, profiled_ms: np.ndarray, network: np.ndarray) -> tuple[float, ...]:
    """Per cut: at the network cuts, the median over those where the side runs blocks of (the calls' block time / the
    Profile's), pooled because one cut's median of a few calls scatters by tens of percent on a shared CPU; at the
    local cut (edge-only, every block in one warm forward, no wait on the network) its own ratio, which is lower
    (the pooled network-cut factor overpriced edge-only by 21% on the idle machine); 1.0 where the side runs none."""
    runs = profiled_ms > 0
    ratios = np.clip(np.where(runs, called_ms / np.where(runs, profiled_ms, 1.0), 1.0), 0.1, 100.0)
    pool = runs & network
    pooled = float(np.median(ratios[pool])) if pool.any() else 1.0
    return tuple(float(1.0 if not r else (pooled if n else x)) for r, n, x in zip(runs, network, ratios))


def measure_overheads(
    model: SplitModel, edge: Profile, cloud: Profile, config: CalibrationConfig = CalibrationConfig()
) -> Overheads:
    """Run every cut of ``model`` on the real executor (this machine, see the module docstring) and return the
    overheads beyond its blocks and the (edge, cloud) Profiles' codec times. Takes a few seconds for a ``tiny``
    model; imports torch and the networking stack."""
    from executor.client import ClientConfig, EdgeClient
    from executor.link import LinkConfig, ShapedLink
    from executor.models import build_model
    from executor.profiler import _BlockTimer, device_description
    from executor.server import CloudServer, ServerConfig
    from executor.wire_config import WireConfig

    if edge.num_cuts != model.num_cuts or cloud.num_cuts != model.num_cuts:
        raise ValueError(
            f"Profiles have {edge.num_cuts} / {cloud.num_cuts} cuts, {model.family}/{model.preset} has {model.num_cuts}"
        )
    wire = WireConfig.parse(config.wire)
    net = np.array([c.uses_network for c in edge.cuts], dtype=bool)
    per_mb = serialisation_ms_per_mb()
    nbytes = cut_wire_bytes(edge)
    byte_ms = nbytes * 1e-6 * per_mb / 2  # each side's share of the per-byte cost
    messages = np.array([1 + c.round_trips for c in edge.cuts], dtype=np.float64)  # each way, per inference
    payload_up = np.array([c.up_bytes + c.round_trips * c.round_trip_up_bytes for c in edge.cuts], dtype=np.float64)
    payload_down = nbytes - payload_up
    cloud_model = build_model(model.family, model.preset, device=model.device, dtype=model.dtype, seed=config.seed)
    cuda = str(model.device).startswith("cuda")
    edge_timer = _BlockTimer(tuple(model.block_modules), cuda)
    cloud_timer = _BlockTimer(tuple(cloud_model.block_modules), cuda)
    server = CloudServer(cloud_model, ServerConfig(port=0, ping_interval_s=None))
    relay = client = None
    n = model.num_cuts
    edge_side: list[list[float]] = [[] for _ in range(n)]
    cloud_side: list[list[float]] = [[] for _ in range(n)]
    edge_blocks: list[list[float]] = [[] for _ in range(n)]  # the calls' own block times, per side
    cloud_blocks: list[list[float]] = [[] for _ in range(n)]
    link_up: list[list[float]] = [[] for _ in range(n)]  # bytes on the link per call, per direction
    link_down: list[list[float]] = [[] for _ in range(n)]
    try:
        server.start(timeout_s=max(config.call_timeout_s, 10.0))
        url = server.url
        if config.relay:
            host_port = url.split("://", 1)[1]
            host, _, port = host_port.rpartition(":")
            link = synthetic.constant(config.link_mbps, rtt_ms=2 * config.one_way_ms, duration_s=3600.0)
            relay = ShapedLink(link, host.strip("[]") or "127.0.0.1", int(port), LinkConfig()).start()
            url = f"ws://127.0.0.1:{relay.port}"
        client = EdgeClient(model, url, ClientConfig(wire=wire, ping_interval_s=None, probe_interval_s=None))
        client.connect()
        observations = [model.make_observation(seed=config.seed + i) for i in range(4)]
        order = np.random.default_rng(config.seed)
        for run in range(config.warmup_runs + config.runs):
            obs = observations[run % len(observations)]
            # cuts interleaved, so a burst of load spreads over all of them, in a new order every run, so that no cut
            # always follows the same one (a call after a long multi-trip one, or after calls that left the other
            # half's model idle, runs colder): the runtime's planner switches cuts too
            for i in order.permutation(n):
                edge_timer.reset()
                cloud_timer.reset()
                sent = (relay.bytes_up, relay.bytes_down) if relay is not None else (0, 0)
                result = client.infer(obs, i, deadline=time.perf_counter() + config.call_timeout_s)
                if run < config.warmup_runs:
                    continue
                t = result.timing
                edge_meas = t.edge_ms + t.encode_ms + t.decode_ms if net[i] else t.total_ms
                edge_blocks[i].append(edge_timer.totals_s.sum() * 1e3)
                cloud_blocks[i].append(cloud_timer.totals_s.sum() * 1e3)
                edge_side[i].append(edge_meas - edge_blocks[i][-1])
                cloud_side[i].append(t.total_ms - edge_meas - t.cloud_queue_ms - cloud_blocks[i][-1])
                if relay is not None:  # what crossed the link, websocket framing included
                    link_up[i].append(relay.bytes_up - sent[0])
                    link_down[i].append(relay.bytes_down - sent[1])
                else:
                    link_up[i].append(t.bytes_up)
                    link_down[i].append(t.bytes_down)
    finally:
        if client is not None:
            client.close()
        if relay is not None:
            relay.stop()
        server.stop()
        edge_timer.remove()
        cloud_timer.remove()
    up_extra = np.where(net, np.maximum(np.median(link_up, axis=1) - payload_up, 0.0) / messages, 0.0)
    down_extra = np.where(net, np.maximum(np.median(link_down, axis=1) - payload_down, 0.0) / messages, 0.0)
    link_ms = np.zeros(n)
    if config.relay:  # what the link itself takes: serialisation at link_mbps and the delay of every direction
        wire_bytes = nbytes + messages * (up_extra + down_extra)
        link_ms = np.where(net, wire_bytes * 8 / (config.link_mbps * 1e6) * 1e3 + 2 * config.one_way_ms * messages, 0.0)
    here = device_description(model.device)  # only a Profile measured on this machine has blocks to scale
    e_blocks, c_blocks = np.asarray(edge.block_ms), np.asarray(cloud.block_ms)
    prof_edge = np.array([e_blocks[list(edge.edge_blocks(i))].sum() for i in range(n)])
    prof_cloud = np.where(net, [c_blocks[list(cloud.cloud_blocks(i))].sum() for i in range(n)], 0.0)
    edge_ms = np.median(np.array(edge_side), axis=1) - _codec(edge) - np.where(net, byte_ms, 0.0)
    cloud_ms = np.where(net, np.median(np.array(cloud_side), axis=1) - _codec(cloud) - byte_ms - link_ms, 0.0)
    out = Overheads(
        edge_ms=tuple(float(max(x, 0.0)) for x in edge_ms),
        cloud_ms=tuple(float(max(x, 0.0)) for x in cloud_ms),
        ms_per_mb=per_mb / 2,
        wire=wire.label,
        message_up_bytes=tuple(float(x) for x in up_extra),
        message_down_bytes=tuple(float(x) for x in down_extra),
        edge_block_scale=_scale(np.median(edge_blocks, axis=1), prof_edge, net) if edge.device == here else (),
        cloud_block_scale=_scale(np.median(cloud_blocks, axis=1), prof_cloud, net) if cloud.device == here else (),
    )
    log.info(
        "calibrated %s/%s on the real executor (wire %s): edge overhead %s ms, cloud %s ms, %.3f ms/MB, message "
        "bytes up %s down %s, block-time scale edge %s cloud %s",
        model.family,
        model.preset,
        wire.label,
        [round(x, 2) for x in out.edge_ms],
        [round(x, 2) for x in out.cloud_ms],
        out.ms_per_mb,
        [round(x) for x in out.message_up_bytes],
        [round(x) for x in out.message_down_bytes],
        [round(x, 2) for x in out.edge_block_scale],
        [round(x, 2) for x in out.cloud_block_scale],
    )
    return out


def calibrated(
    model: SplitModel, edge: Profile, cloud: Profile, config: CalibrationConfig = CalibrationConfig()
) -> tuple[Profile, Profile]:
    """``(edge, cloud)`` carrying the overheads of ``model`` measured on the real executor of this machine."""
    return measure_overheads(model, edge, cloud, config).apply(edge, cloud)


def overheads_without(
    edge: Profile, cloud: Profile, *, scale: bool = False, message_bytes: bool = False
) -> tuple[Profile, Profile]:
    """A calibrated pair with parts of its calibration left out (``scale``: the block-time scale back to 1;
    ``message_bytes``: no link bytes beyond the payloads): the latency models ``bench_sim2real`` compares."""
    drop: dict[str, Any] = {}
    if scale:
        drop["block_ms_scale"] = ()
    if message_bytes:
        drop.update(overhead_up_bytes=(), overhead_down_bytes=())
    return replace(edge, **drop), replace(cloud, **drop)


__all__ = [
    "CalibrationConfig",
    "Overheads",
    "calibrated",
    "measure_overheads",
    "overheads_without",
    "serialisation_ms_per_mb",
]
