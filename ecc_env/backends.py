"""Latency backends behind the env: ``profile`` (Profile pair + trace integration) and ``executor`` (measured).

A backend prices one inference at a cut starting at a given episode time. Both return ``latency.StepTiming`` so
the env's dynamics, observation and reward do not depend on where the numbers come from. The executor backend
imports torch and the networking stack lazily, when it is built.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from ecc_env.latency import CutRow, DeadlineConfig, Link, StepTiming, step_timing
from executor.profile import Profile
from traces.trace import Direction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLoadConfig:
    """Other clients' load on the cloud server (profile backend only).

    mean_queue_len: mean number of requests ahead of ours (0 = a dedicated server).
    change_every_s: the load level is redrawn (Gamma, shape ``burstiness_shape``) this often; the queue length
    itself is Poisson around that level, one draw per control period.
    per_request_ms: service time of one queued request; None = the cloud-only cut's cloud time.
    batch_ms: a batching server: service time of a batch of b requests at index b-1 (up to the maximum batch size),
        e.g. ``executor.roofline.batched_cloud_ms`` for b = 1..B; the requests ahead are served in full batches, the
        rest in one smaller batch. Empty (default): one at a time, ``per_request_ms`` each, unless ``max_batch`` > 1.
    max_batch: the server batches up to this many requests (``ecc serve --max-batch``). With ``batch_ms`` empty, the
        env prices the batches with the roofline (``priced_server_load``): the cloud Profile's model on its hardware,
        a batch of b cloud-only requests costing ``executor.roofline.batch_cost_ratios`` [b-1] x ``per_request_ms``.
    """

    mean_queue_len: float = 0.0
    change_every_s: float = 5.0
    burstiness_shape: float = 2.0
    per_request_ms: float | None = None
    batch_ms: tuple[float, ...] = ()
    max_batch: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean_queue_len) and self.mean_queue_len >= 0):
            raise ValueError(f"mean_queue_len must be finite and >= 0, got {self.mean_queue_len!r}")
        if not (self.change_every_s > 0 and self.burstiness_shape > 0):
            raise ValueError(f"change_every_s and burstiness_shape must be > 0, got {self}")
        if self.per_request_ms is not None and not (self.per_request_ms >= 0):
            raise ValueError(f"per_request_ms must be >= 0, got {self.per_request_ms!r}")
        if not all(math.isfinite(b) and b >= 0 for b in self.batch_ms):
            raise ValueError(f"batch_ms must be finite and >= 0, got {self.batch_ms!r}")
        if isinstance(self.max_batch, bool) or int(self.max_batch) != self.max_batch or self.max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {self.max_batch!r}")
        if self.batch_ms and self.max_batch not in (1, len(self.batch_ms)):
            raise ValueError(f"max_batch {self.max_batch} disagrees with the {len(self.batch_ms)} batch_ms entries")

    def queue_wait_ms(self, queue_len: int, per_request_ms: float) -> float:
        """Wait behind ``queue_len`` requests: one at a time, or in batches per ``batch_ms``."""
        if not self.batch_ms or queue_len <= 0:
            return queue_len * per_request_ms
        full, rest = divmod(queue_len, len(self.batch_ms))
        return full * self.batch_ms[-1] + (self.batch_ms[rest - 1] if rest else 0.0)


def priced_server_load(load: ServerLoadConfig, cloud: Profile, per_request_ms: float) -> ServerLoadConfig:
    """``load`` with its batches priced: when it batches (``max_batch`` > 1) and gives no ``batch_ms``, a batch of b
    requests costs ``per_request_ms`` x the roofline's batch-of-b over one ratio for the cloud Profile's model and
    hardware at the cloud-only cut (``executor.roofline.batch_cost_ratios``; imports torch once, cached). So a busy
    batching server costs what the roofline says: little more per batch where the cloud half is memory-bound."""
    if load.max_batch <= 1 or load.batch_ms:
        return load
    from executor.roofline import batch_cost_ratios  # lazy: builds the model on the meta device

    hardware = str(cloud.notes.get("hardware") or cloud.device)
    try:
        ratios = batch_cost_ratios(cloud.model_id, cloud.preset, hardware, load.max_batch)
    except ValueError as e:
        raise ValueError(
            f"cannot price batches of {load.max_batch} for {cloud.model_id}/{cloud.preset} on "
            f"{hardware!r} with the roofline ({e}); give ServerLoadConfig.batch_ms"
        ) from e
    return replace(load, batch_ms=tuple(per_request_ms * r for r in ratios))


class LatencyBackend(Protocol):
    """Prices inferences for one episode at a time."""

    name: str

    def reset(self, link: Link, rng: np.random.Generator, horizon_s: float, period_s: float) -> None:
        """Start an episode on ``link`` (the episode's trace segment) covering ``horizon_s`` seconds."""

    def infer(self, cut_index: int, start_s: float) -> tuple[StepTiming, int]:
        """Run one inference at ``cut_index`` from ``start_s``; returns its timing and the server's queue length."""


class ProfileBackend:
    """Fast backend: cut costs from the Profile pair (``executor.costs``), transfers integrated over the trace,
    the server queue drawn per episode from ``ServerLoadConfig``, the deadline rule of ``latency.step_timing``.
    ``cloud``: the cloud Profile, which prices a batching server's batches (``priced_server_load``)."""

    name = "profile"

    def __init__(
        self,
        rows: tuple[CutRow, ...],
        deadline: DeadlineConfig,
        fallback_ms: float,
        server_load: ServerLoadConfig = ServerLoadConfig(),
        cloud: Profile | None = None,
    ) -> None:
        if not rows:
            raise ValueError("ProfileBackend needs at least one cut row, got none")
        self.rows = rows
        self.deadline = deadline
        self.fallback_ms = float(fallback_ms)
        self.per_request_ms = (
            rows[0].cloud_ms if server_load.per_request_ms is None else float(server_load.per_request_ms)
        )
        if server_load.max_batch > 1 and not server_load.batch_ms:
            if cloud is None:
                raise ValueError("a batching server (max_batch > 1) needs batch_ms or the cloud Profile to price it")
            server_load = priced_server_load(server_load, cloud, self.per_request_ms)
        self.server_load = server_load
        self.link: Link | None = None
        self.queue_len: list[int] = [0]
        self._slot_s = 1.0

    def reset(self, link: Link, rng: np.random.Generator, horizon_s: float, period_s: float) -> None:
        self.link = link
        self._slot_s = period_s
        n = int(math.ceil(horizon_s / period_s)) + 1
        cfg = self.server_load
        if cfg.mean_queue_len <= 0:
            self.queue_len = [0] * n
            return
        per_level = max(int(round(cfg.change_every_s / period_s)), 1)
        levels = rng.gamma(cfg.burstiness_shape, cfg.mean_queue_len / cfg.burstiness_shape, n // per_level + 1)
        lam = np.repeat(levels, per_level)[:n]
        self.queue_len = rng.poisson(lam).tolist()

    def queue_at(self, t_s: float) -> int:
        """Server queue length (requests ahead) at episode time ``t_s``."""
        q = self.queue_len
        i = int(t_s / self._slot_s)
        return q[i] if i < len(q) else q[-1]

    def infer(self, cut_index: int, start_s: float) -> tuple[StepTiming, int]:
        if self.link is None:
            raise RuntimeError("ProfileBackend.infer called before reset()")
        row = self.rows[cut_index]
        q = self.queue_at(start_s) if row.uses_network else 0
        timing = step_timing(
            row,
            self.link,
            start_s,
            server_queue_ms=self.server_load.queue_wait_ms(q, self.per_request_ms),
            deadline=self.deadline,
            fallback_ms=self.fallback_ms,
        )
        return timing, q


@dataclass(frozen=True)
class ExecutorConfig:
    """Settings of the ``executor`` backend (see :class:`ExecutorBackend`).

    family / preset / seed: the split model both halves build (random weights from the preset; edge and cloud
        must use one seed). The env's Profiles must describe this model (same number of cuts).
    server_url: ``ws://host:port`` of a running ``ecc serve`` with the same model, or None to start a local
        ``CloudServer`` on a background thread (loopback, OS-chosen port) and stop it on ``close()``.
    wire: how frames and activations travel (``executor.wire_config`` text: ``IMAGE,DTYPE``, ``default``, ``exact``
        for bit-exact results); None (the default): the configuration the env's Profiles were priced under
        (``wire_config.priced_wire``, resolved by ``for_profile`` when the env is built), so the executor sends the
        payloads the simulator charges. A wire given that differs from the Profiles' is logged as a warning. An
        ``ExecutorBackend`` built from cut rows alone (no Profile to ask) sends exact when it is None.
    emulate_edge / emulate_cloud: target Profiles for ``executor.emulation.HardwareEmulator`` on the edge model and
        (local server only) the cloud model; None = run at this machine's speed (the default).
    connect_timeout_s: bound on one (re)connection through the link.
    link_max_wait_s: a chunk that would wait longer than this in an outage closes the relayed connection (None:
        the deadline, so an abandoned transfer never holds the link for longer than the deadline itself).
    link_chunk_bytes: pacing granularity of the shaped link.
    observations: distinct model inputs (``model.make_observation(seed)``) cycled through the steps.
    torch_threads: torch CPU threads of this process (the local server shares it).
    """

    family: str = "openvla"
    preset: str = "tiny"
    seed: int = 0
    server_url: str | None = None
    wire: str | None = None
    emulate_edge: Any = None
    emulate_cloud: Any = None
    connect_timeout_s: float = 5.0
    link_max_wait_s: float | None = None
    link_chunk_bytes: int = 16 * 1024
    observations: int = 4
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.server_url is not None and not str(self.server_url).startswith(("ws://", "wss://")):
            raise ValueError(f"server_url must start with ws:// or wss://, got {self.server_url!r}")
        if not (self.connect_timeout_s > 0 and (self.link_max_wait_s is None or self.link_max_wait_s > 0)):
            raise ValueError(
                f"connect_timeout_s and link_max_wait_s must be > 0, got {self.connect_timeout_s!r}, "
                f"{self.link_max_wait_s!r}"
            )
        if self.observations < 1 or self.torch_threads < 1 or self.link_chunk_bytes < 1:
            raise ValueError(
                f"observations, torch_threads and link_chunk_bytes must be >= 1, got {self.observations}, "
                f"{self.torch_threads}, {self.link_chunk_bytes}"
            )
        if self.emulate_cloud is not None and self.server_url is not None:
            raise ValueError("emulate_cloud applies to the local server only; pass --emulate to `ecc serve` instead")
        if self.wire is not None:
            from executor.wire_config import WireConfig

            WireConfig.parse(self.wire)  # ValueError naming the bad part

    def for_profile(self, profile: Any) -> ExecutorConfig:
        """This config with ``wire`` resolved against the env's (edge) Profile: None becomes the configuration the
        Profile was priced under (``wire_config.priced_wire``); a different wire given explicitly is kept and
        logged as a warning naming both."""
        from dataclasses import replace

        from executor.wire_config import WireConfig, priced_wire

        priced = priced_wire(profile)
        if self.wire is None:
            return replace(self, wire=priced.label)
        given = WireConfig.parse(self.wire)
        if given != priced:
            log.warning(
                "the executor sends under wire configuration %s but the env's Profiles were priced under %s: "
                "measured and simulated payloads differ",
                given.label,
                priced.label,
            )
        return self


class _PositionedTrace:
    """The episode's trace as the shaped link reads it, shifted so that link time maps onto episode time.

    ``position(t_s)`` makes the link's current trace time equal ``t_s``; ``free()`` turns shaping off (zero
    transfer time and delay) for connection set-up between steps.
    """

    def __init__(self, trace: Link) -> None:
        self.trace = trace
        self.shift_s = 0.0
        self.shaping = False

    def transfer_time_s(self, nbytes: int, start_s: float, direction: Direction, *, max_wait_s: float = 60.0) -> float:
        if not self.shaping:
            return 0.0
        return self.trace.transfer_time_s(nbytes, start_s + self.shift_s, direction, max_wait_s=max_wait_s)

    def one_way_delay_ms(self, t_s: float) -> float:
        return self.trace.one_way_delay_ms(t_s + self.shift_s) if self.shaping else 0.0


class _MeasuredLink:
    """A Link that replays one measured call to ``latency.step_timing``: the transfers come back in the order
    step_timing asks for them (main uplink, then per round trip down/up, then the final downlink)."""

    def __init__(self, up_s: list[float], down_s: list[float], delay_ms: float, missed: bool = False) -> None:
        self._up, self._down = list(up_s), list(down_s)
        self._delay_ms = delay_ms
        self._missed = missed

    def transfer_time_s(self, nbytes: int, start_s: float, direction: str, *, max_wait_s: float = 60.0) -> float:
        if self._missed:
            raise TimeoutError("the measured call did not return before its deadline")
        seq = self._up if direction == "up" else self._down
        dur = seq.pop(0) if seq else 0.0
        if dur > max_wait_s:
            raise TimeoutError(f"measured {direction} transfer of {dur:.4f} s exceeds the {max_wait_s:.4f} s left")
        return dur

    def one_way_delay_ms(self, t_s: float) -> float:
        return self._delay_ms


class ExecutorBackend:
    """Measured backend: every inference really runs on the networked split executor.

    An ``EdgeClient`` (edge half of ``config.family/preset``) talks to a ``CloudServer`` (local thread or
    ``config.server_url``) through an ``executor.link.ShapedLink`` relay that paces the bytes by the episode's trace
    segment and adds its one-way delay. Positioning: before each inference the link's trace is shifted so that the
    link's trace time at that instant equals the env's simulated start time of the step (and trace time then
    advances with wall time during the call, as on a real link). So the episode runs as fast as its inferences
    (no sleeping out control periods) while every transfer sees the bandwidth the env's clock says it should.

    Timing: the measured ``CallTiming`` becomes a ``StepTiming`` by replaying it through
    ``latency.step_timing`` (the one deadline rule): edge = edge compute + encode + decode; uplink / downlink =
    the measured transfer times (one-way delay included, split into serialisation + the trace's delay); server
    queue = the server's reported queue wait; cloud = the server's compute + whatever of the measured total is not
    in the other parts (server decode/encode, thread hand-offs), so ``service_ms`` equals the measured total. A call
    with no reply by the deadline (or a lost connection, or an error reply) is a miss: the edge-only fallback really
    runs (its measured time is the rule's ``fallback_ms``), and the link and connection are rebuilt so that bytes
    stuck in the abandoned transfer do not delay later steps (rebuilt with shaping off: set-up costs no trace time).
    """

    name = "executor"

    def __init__(
        self,
        rows: tuple[CutRow, ...],
        deadline: DeadlineConfig,
        fallback_ms: float,
        config: ExecutorConfig = ExecutorConfig(),
        *,
        edge_only_index: int | None = None,
        fallback_holds: bool = False,
    ) -> None:
        if not rows:
            raise ValueError("ExecutorBackend needs at least one cut row, got none")
        import torch

        from executor.models import build_model

        self.rows = rows
        self.deadline = deadline
        self.config = config
        self.fallback_holds = bool(fallback_holds)
        self._hold_ms = float(fallback_ms)
        torch.set_num_threads(config.torch_threads)
        self.model = build_model(config.family, config.preset, seed=config.seed)
        if self.model.num_cuts != len(rows):
            raise ValueError(
                f"the env's Profiles have {len(rows)} cuts but {config.family}/{config.preset} has "
                f"{self.model.num_cuts}: pass Profiles of this model (e.g. executor.profiler.profile_model)"
            )
        self.edge_only_index = self.model.num_blocks if edge_only_index is None else int(edge_only_index)
        self._obs = [self.model.make_observation(seed=config.seed + i) for i in range(config.observations)]
        self._calls = 0
        self.emulators: list[Any] = []
        if config.emulate_edge is not None:
            from executor.emulation import HardwareEmulator

            self.emulators.append(HardwareEmulator(self.model, config.emulate_edge).attach())
        self.server: Any = None
        if config.server_url is None:
            from executor.server import CloudServer, ServerConfig

            cloud = build_model(config.family, config.preset, seed=config.seed)
            emulator = None
            if config.emulate_cloud is not None:
                from executor.emulation import HardwareEmulator

                emulator = HardwareEmulator(cloud, config.emulate_cloud).attach()
                self.emulators.append(emulator)
            self.server = CloudServer(cloud, ServerConfig(port=0, ping_interval_s=None), emulator=emulator)
            self.server.start(timeout_s=max(config.connect_timeout_s, 10.0))
            self.url = self.server.url
        else:
            self.url = config.server_url
        host_port = self.url.split("://", 1)[1].split("/", 1)[0]
        host, _, port = host_port.rpartition(":")
        self._target = (host.strip("[]") or "127.0.0.1", int(port))
        self.link: Any = None
        self.trace: _PositionedTrace | None = None
        self.shaped: Any = None
        self.client: Any = None
        self._edge_ms: dict[int, float] = {}
        self.edge_only_ms = float(fallback_ms)
        self.reconnects = 0
        self.misses = 0
        self.last_timing: Any = None
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def reset(self, link: Link, rng: np.random.Generator, horizon_s: float, period_s: float) -> None:
        """Start an episode: a fresh shaped link over ``link`` (the segment) and a fresh connection through it."""
        if self._closed:
            raise RuntimeError("ExecutorBackend is closed")
        self.link = link
        self._open(link)
        self._warm_up()

    def _open(self, link: Link) -> None:
        from executor.client import ClientConfig, EdgeClient
        from executor.link import LinkConfig, ShapedLink

        self._close_connection()
        self.trace = _PositionedTrace(link)
        max_wait_s = self.config.link_max_wait_s
        if max_wait_s is None:
            max_wait_s = min(self.deadline.deadline_ms / 1e3, 60.0)
        cfg = LinkConfig(chunk_bytes=self.config.link_chunk_bytes, max_wait_s=max_wait_s)
        self.shaped = ShapedLink(self.trace, self._target[0], self._target[1], cfg).start()
        client_cfg = ClientConfig(
            connect_timeout_s=self.config.connect_timeout_s,
            wire=self.config.wire if self.config.wire is not None else "exact",  # rows without a Profile: exact
            ping_interval_s=None,
            probe_interval_s=None,
        )
        self.client = EdgeClient(self.model, f"ws://127.0.0.1:{self.shaped.port}", client_cfg)
        self.client.connect()

    def _warm_up(self) -> None:
        """One unshaped call at every cut (first calls pay allocation costs) and a first edge-only time."""
        for row in self.rows:
            result = self.client.infer(self._next_obs(), row.index, deadline=self._deadline_from_now(10.0))
            if row.index == self.edge_only_index:
                self.edge_only_ms = result.timing.total_ms

    def _close_connection(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.shaped is not None:
            self.shaped.stop()
            self.shaped = None

    def close(self) -> None:
        """Close the connection and the link; stop the local server. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._close_connection()
        for emulator in self.emulators:
            emulator.detach()
        if self.server is not None:
            self.server.stop()
            self.server = None

    def describe(self) -> dict[str, Any]:
        """What reports carry: model, server, emulation (on/off and targets)."""
        return {
            "backend": self.name,
            "model": f"{self.config.family}/{self.config.preset}",
            "server": "local" if self.config.server_url is None else self.config.server_url,
            "emulation": [e.describe() for e in self.emulators] or None,
        }

    # -- one inference ----------------------------------------------------------------------------------------------
    def _next_obs(self) -> dict[str, np.ndarray]:
        obs = self._obs[self._calls % len(self._obs)]
        self._calls += 1
        return obs

    @staticmethod
    def _deadline_from_now(seconds: float) -> float:
        import time

        return time.perf_counter() + seconds

    def infer(self, cut_index: int, start_s: float) -> tuple[StepTiming, int]:
        from executor.protocol import ProtocolError, RemoteError, ServerUnavailable, TransportTimeout

        if self.client is None or self.trace is None or self.link is None:
            raise RuntimeError("ExecutorBackend.infer called before reset()")
        row = self.rows[cut_index]
        obs = self._next_obs()
        if not row.uses_network:
            result = self.client.infer(obs, cut_index)
            self.last_timing = result.timing
            measured = row._replace(edge_ms=result.timing.total_ms)
            if cut_index == self.edge_only_index:
                self.edge_only_ms = result.timing.total_ms
            return self._price(measured, _MeasuredLink([], [], 0.0), start_s), 0
        # position the link: its trace time now == the step's simulated start time
        self.trace.shift_s = start_s - self.shaped.trace_time_s()
        self.trace.shaping = True
        try:
            result = self.client.infer(
                obs, cut_index, deadline=self._deadline_from_now(self.deadline.deadline_ms / 1e3)
            )
        except (TransportTimeout, ServerUnavailable, RemoteError, ProtocolError) as e:
            self.trace.shaping = False
            return self._missed(row, start_s, e), 0
        self.trace.shaping = False
        self.last_timing = t = result.timing
        trips = t.round_trips + 1
        delay_ms = self.link.one_way_delay_ms(start_s)
        up_each_s = max(t.uplink_ms / trips - delay_ms, 0.0) / 1e3
        down_each_s = max(t.downlink_ms / trips - delay_ms, 0.0) / 1e3
        edge_ms = t.edge_ms + t.encode_ms + t.decode_ms
        parts = edge_ms + t.uplink_ms + t.cloud_queue_ms + t.cloud_compute_ms + t.downlink_ms
        self._edge_ms[cut_index] = edge_ms
        measured = row._replace(
            edge_ms=edge_ms,
            cloud_ms=t.cloud_compute_ms + max(t.total_ms - parts, 0.0),
            up_bytes=t.bytes_up / trips,
            down_bytes=t.bytes_down / trips,
            round_trips=t.round_trips,
            round_trip_up_bytes=t.bytes_up / trips,
            round_trip_down_bytes=t.bytes_down / trips,
        )
        replay = _MeasuredLink([up_each_s] * trips, [down_each_s] * trips, delay_ms)
        return self._price(measured, replay, start_s, server_queue_ms=t.cloud_queue_ms), int(t.server_queue_length)

    def _price(self, row: CutRow, link: Link, start_s: float, server_queue_ms: float = 0.0) -> StepTiming:
        fallback = self._hold_ms if self.fallback_holds else self.edge_only_ms
        return step_timing(
            row, link, start_s, server_queue_ms=server_queue_ms, deadline=self.deadline, fallback_ms=fallback
        )

    def _missed(self, row: CutRow, start_s: float, error: BaseException) -> StepTiming:
        """No reply by the deadline: run the edge-only fallback for real, then rebuild link and connection."""
        self.misses += 1
        log.debug("executor step at %.3f s (cut %d) missed: %s", start_s, row.index, error)
        if not self.fallback_holds:
            result = self.client.infer(self._next_obs(), self.edge_only_index)
            self.edge_only_ms = result.timing.total_ms
        self._open(self.link)  # abandon the stuck transfer (fresh pacers, fresh connection)
        self.reconnects += 1
        measured = row._replace(edge_ms=self._edge_ms.get(row.index, row.edge_ms))
        return self._price(measured, _MeasuredLink([], [], 0.0, missed=True), start_s)


BACKENDS = ("profile", "executor")
