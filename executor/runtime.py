"""`EdgeRuntime`: the on-robot control loop around a planner, the edge model and an ``EdgeClient``.

Each control period: take the observation, build the planner's input with the observation builder it was given,
ask the planner for ``(cut, skip)``, then

* skip (and the current action chunk has actions left): apply the chunk's next action, no inference;
* edge-only cut: run every block locally;
* any other cut: run the edge blocks, exchange payloads with the cloud, wait until the deadline.
  If the cloud is unreachable, the connection closes, the server reports an error or the reply misses the
  deadline, the step falls back to edge-only at once (the fallback costs the time already spent plus the edge-only
  compute, as the env prices it: up to deadline + edge-only time, which can be longer than a period), and the
  reason is recorded. With ``RuntimeConfig.hedge`` a hedgeable cut also goes on locally while the payload travels,
  and the first actions win (``executor.hedge``).

The loop never falls behind:

* circuit breaker (``RuntimeConfig.breaker``): after a network step fails (deadline, disconnection, protocol
  error), the next network steps run edge-only at once (reason ``breaker_open``, or ``disconnected`` while the
  client has no connection) instead of waiting for the deadline again. The client's background probes keep
  measuring the link; the breaker closes as soon as one of them (or any call) completes after it opened, and after
  ``breaker_retry_s`` one network step may try again (half-open). A frozen server thus costs one miss, not one per
  step. With ``min(deadline, edge-only time) <= control period`` no step takes longer than
  ``max(deadline, edge-only time) + one period``.
* stale frames (``realtime``): frames whose time came while a step ran are dropped except the newest, which is
  handled next, so no frame is acted on more than one period late. Each dropped frame still yields a record
  (mode ``dropped``) and counts as a step index, so step indices stay the frames' indices.

Every block stays loaded on the edge, so edge-only is always possible. The client reconnects in the background
with exponential backoff and the runtime resumes splitting as soon as the connection is back. No observation is
dropped silently: every observation yields a ``StepRecord`` with actions or an explicit failure.

The runtime does not import the environment or the agents: the planner (anything with SB3's
``predict(obs, state=None, episode_start=None, deterministic=True)``) and the observation builder (a callable
``StepContext -> np.ndarray``, e.g. ``ecc_env``'s builder adapted by the CLI) are constructor arguments, and the
deadline rule is given as seconds (or a function of the cut) by whoever owns it.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from executor.client import BandwidthSample, ClientConfig, EdgeClient
from executor.control import DEFAULT_BREAKER_RETRY_S, DEFAULT_CHUNK_SIZE, DEFAULT_PERIOD_MS
from executor.protocol import CallTiming, ProtocolError, RemoteError, ServerUnavailable, TransportTimeout

if TYPE_CHECKING:  # pragma: no cover
    from executor.emulation import HardwareEmulator
    from executor.models import SplitModel

log = logging.getLogger(__name__)

StepMode = Literal["local", "split", "skipped", "fallback", "failed", "dropped"]
_BREAKER_REASONS = frozenset({"deadline", "disconnected", "protocol_error", "error"})


class Planner(Protocol):
    """Stable-Baselines3's ``predict`` signature; the action is ``(cut, skip)``."""

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[Any, Any]: ...


@dataclass(frozen=True)
class RuntimeConfig:
    """Control loop settings.

    control_period_s: time between observations (default ``executor.control.DEFAULT_PERIOD_MS``, the env's).
    chunk_size: actions executed per inference (default ``executor.control.DEFAULT_CHUNK_SIZE``, the env's): a
        chunk holds the first ``min(chunk_size, actions returned)`` actions, so skips follow the env's budget
        rather than the model's raw output length.
    breaker: after a failed network step, run network steps edge-only until the link answers again (see the module
        docstring); breaker_retry_s: how long it stays open before one network step may try again.
    deadline_s: a split step whose actions are not back this long after its observation falls back to edge-only.
    realtime: pace steps to the control period (False runs them back to back: tests, replay).
    connect_timeout_s: how long ``start()`` waits for the first connection (the runtime starts edge-only anyway).
    hedge: hedged execution (``executor.hedge``): on a hedgeable cut the edge runs the cloud's blocks itself while
        the payload travels and takes whichever actions come first; a local win is recorded as a fallback with
        reason ``hedge`` (as the env's ``DeadlineConfig(hedge=True)`` counts it as a miss).
    """

    control_period_s: float = DEFAULT_PERIOD_MS / 1e3
    deadline_s: float = 0.1
    realtime: bool = True
    connect_timeout_s: float = 1.0
    hedge: bool = False
    chunk_size: int = DEFAULT_CHUNK_SIZE
    breaker: bool = True
    breaker_retry_s: float = DEFAULT_BREAKER_RETRY_S

    def __post_init__(self) -> None:
        if not self.breaker_retry_s > 0:
            raise ValueError(f"breaker_retry_s must be > 0, got {self.breaker_retry_s}")
        if isinstance(self.chunk_size, bool) or int(self.chunk_size) != self.chunk_size or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {self.chunk_size!r}")
        if self.control_period_s <= 0:
            raise ValueError(f"control_period_s must be > 0, got {self.control_period_s}")
        if self.deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0, got {self.deadline_s}")
        if self.connect_timeout_s < 0:
            raise ValueError(f"connect_timeout_s must be >= 0, got {self.connect_timeout_s}")


@dataclass(frozen=True)
class StepContext:
    """Everything the edge knows at the start of a step: what an observation builder may read.

    bandwidth: past measurements only (completed calls, and missed ones' upper bounds), oldest first; each has ``uplink_done_s`` (wall clock), so
    ``now_wall_s - uplink_done_s`` is its age. rtt_ms: propagation RTT estimate (smallest recent tiny-ping round
    trip), None before any ping. newest_action_age_s: time since the current chunk arrived; chunk_step: the step whose
    observation produced it. prev_*: the previous step's decision and outcome.
    """

    step: int
    now_wall_s: float
    frame: Mapping[str, np.ndarray]
    previous_frame: Mapping[str, np.ndarray] | None
    bandwidth: tuple[BandwidthSample, ...]
    rtt_ms: float | None
    server_queue_length: int
    connected: bool
    frames_waiting: int
    newest_action_age_s: float | None
    actions_left_in_chunk: int
    chunk_step: int | None
    previous_action: tuple[int, int] | None
    prev_deadline_miss: bool
    prev_latency_ms: float
    num_cuts: int
    edge_only_cut: int


@dataclass(frozen=True)
class StepRecord:
    """What happened to one observation.

    mode: local (edge-only by choice), split (cloud involved, succeeded), skipped (chunk reused), fallback (split
    failed, edge-only took over), failed (no actions: ``error`` says why). latency_ms: observation to actions.
    """

    step: int
    cut_requested: int
    skip_requested: bool
    mode: StepMode
    cut_used: int
    action: np.ndarray | None
    new_chunk: bool
    latency_ms: float
    decision_ms: float
    late_ms: float = 0.0
    fallback_reason: str | None = None
    error: str | None = None
    timing: CallTiming | None = None


@dataclass
class RuntimeMetrics:
    """Counters over a run."""

    steps: int = 0
    modes: collections.Counter = field(default_factory=collections.Counter)
    fallback_reasons: collections.Counter = field(default_factory=collections.Counter)
    late_steps: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    max_late_ms: float = 0.0

    def add(self, record: StepRecord) -> None:
        self.steps += 1
        self.modes[record.mode] += 1
        if record.fallback_reason:
            self.fallback_reasons[record.fallback_reason] += 1
        if record.mode == "dropped":
            return
        if record.late_ms > 0:
            self.late_steps += 1
        self.max_late_ms = max(self.max_late_ms, record.late_ms)
        self.latencies_ms.append(record.latency_ms)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "steps": self.steps,
            "modes": dict(self.modes),
            "fallback_reasons": dict(self.fallback_reasons),
            "late_steps": self.late_steps,
            "max_late_ms": self.max_late_ms,
            "latency_ms_max": float(lat.max()),
            "latency_ms_mean": float(lat.mean()),
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
        }


ObservationBuilder = Callable[[StepContext], np.ndarray]
DeadlineRule = float | Callable[[int], float]


class EdgeRuntime:
    """The real control loop on the robot (see the module docstring).

    ``server_url`` None runs edge-only (every split request falls back with reason ``no_server``).
    ``deadline`` overrides ``config.deadline_s``: seconds, or a function cut index -> seconds.
    """

    def __init__(
        self,
        model: SplitModel,
        planner: Planner,
        observation_builder: ObservationBuilder,
        *,
        server_url: str | None = None,
        client_config: ClientConfig | None = None,
        config: RuntimeConfig | None = None,
        deadline: DeadlineRule | None = None,
        emulator: HardwareEmulator | None = None,
    ) -> None:
        self.model = model
        self.planner = planner
        self.observation_builder = observation_builder
        self.config = config or RuntimeConfig()
        self.deadline = self.config.deadline_s if deadline is None else deadline
        self.emulator = emulator
        self.num_cuts = model.num_cuts
        self.edge_only_cut = model.num_blocks
        self.input_names = tuple(model.make_observation(seed=0))
        self.metrics = RuntimeMetrics()
        self.client: EdgeClient | None = None
        if server_url is not None:
            cc = dataclasses.replace(client_config or ClientConfig(), auto_reconnect=True)
            self.client = EdgeClient(model, server_url, cc)
        self._step = 0
        self._chunk: np.ndarray | None = None
        self._chunk_index = 0
        self._chunk_time: float | None = None
        self._previous_frame: Mapping[str, np.ndarray] | None = None
        self._previous_action: tuple[int, int] | None = None
        self._chunk_step: int | None = None
        self._prev_miss = False
        self._prev_latency_ms = 0.0
        self._started = False
        self._breaker_wall: float | None = None  # time.time() when the breaker opened; None: closed
        self._breaker_perf = 0.0
        self._tried_network = False

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def start(self) -> EdgeRuntime:
        """Start connecting (waits up to ``connect_timeout_s``; carries on edge-only if the server is not there)."""
        if self.client is not None and not self._started:
            try:
                self.client.connect(timeout_s=self.config.connect_timeout_s)
            except (TransportTimeout, ServerUnavailable, ProtocolError) as e:
                log.warning("cloud not reachable at start (%s); running edge-only until it is", e)
        self._started = True
        return self

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def __enter__(self) -> EdgeRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def report(self) -> dict[str, Any]:
        """Metrics summary; says whether hardware emulation was on."""
        out = self.metrics.summary()
        out["emulation"] = self.emulator.describe() if self.emulator is not None else {"emulated": False}
        if self.client is not None:
            out["connects"] = self.client.connects
        return out

    # -- loop -------------------------------------------------------------------------------------------------------
    def run(self, frames: Iterable[Mapping[str, np.ndarray]], max_steps: int | None = None) -> list[StepRecord]:
        """Run one step per frame (paced to the control period when ``realtime``); returns every record."""
        if not self._started:
            self.start()
        records: list[StepRecord] = []
        t0 = time.perf_counter()
        period = self.config.control_period_s
        it = iter(frames)
        i = 0
        while max_steps is None or i < max_steps:
            try:
                frame = next(it)
            except StopIteration:
                break
            late = 0.0
            if self.config.realtime:
                now = time.perf_counter()
                due = t0 + i * period
                if now < due:
                    time.sleep(due - now)
                else:
                    # frames whose time came while the last step ran: keep only the newest
                    newest = int((now - t0) // period)
                    while i < newest and (max_steps is None or i + 1 < max_steps):
                        try:
                            nxt = next(it)
                        except StopIteration:
                            break
                        records.append(self._dropped((now - due) * 1e3))
                        i += 1
                        frame, due = nxt, t0 + i * period
                    late = now - due
            records.append(self.step(frame, late_s=late))
            i += 1
        return records

    def _dropped(self, late_ms: float) -> StepRecord:
        record = StepRecord(
            self._step,
            -1,
            False,
            "dropped",
            -1,
            None,
            False,
            0.0,
            0.0,
            late_ms,
            error="dropped: a newer frame arrived while a step ran",
        )
        self.metrics.add(record)
        self._step += 1
        return record

    def _breaker_open(self) -> bool:
        """Whether network steps run edge-only now (see the module docstring); closes the breaker on recovery."""
        if self._breaker_wall is None:
            return False
        client = self.client
        if (
            client is not None
            and client.connected
            and any(s.uplink_done_s > self._breaker_wall for s in tuple(client.bandwidth))
        ):
            self._breaker_wall = None  # the link answered after the failure
            return False
        if time.perf_counter() - self._breaker_perf >= self.config.breaker_retry_s:
            return False  # half-open: this step may try; a failure reopens it
        return True

    def _deadline_s(self, cut: int) -> float:
        return float(self.deadline(cut)) if callable(self.deadline) else float(self.deadline)

    def context(self, frame: Mapping[str, np.ndarray], frames_waiting: int = 0) -> StepContext:
        client = self.client
        now = time.perf_counter()
        return StepContext(
            step=self._step,
            now_wall_s=time.time(),
            frame=frame,
            previous_frame=self._previous_frame,
            bandwidth=tuple(client.bandwidth) if client is not None else (),
            rtt_ms=client.base_rtt_ms if client is not None else None,
            server_queue_length=client.last_server_queue_length if client is not None else 0,
            connected=client is not None and client.connected,
            frames_waiting=frames_waiting,
            newest_action_age_s=None if self._chunk_time is None else now - self._chunk_time,
            actions_left_in_chunk=0 if self._chunk is None else len(self._chunk) - self._chunk_index,
            chunk_step=self._chunk_step,
            previous_action=self._previous_action,
            prev_deadline_miss=self._prev_miss,
            prev_latency_ms=self._prev_latency_ms,
            num_cuts=self.num_cuts,
            edge_only_cut=self.edge_only_cut,
        )

    def step(self, frame: Mapping[str, np.ndarray], *, late_s: float = 0.0, frames_waiting: int = 0) -> StepRecord:
        """Handle one observation (taken now) and return its record."""
        t_obs = time.perf_counter()
        obs = {name: frame[name] for name in self.input_names}
        reason: str | None = None
        try:
            features = self.observation_builder(self.context(frame, frames_waiting))
            action, _ = self.planner.predict(features, deterministic=True)
            cut, skip = _parse_action(action, self.num_cuts)
        except Exception as e:  # noqa: BLE001 - a broken planner must not cost the observation
            log.warning("planner failed (%s: %s); edge-only this step", type(e).__name__, e)
            cut, skip, reason = self.edge_only_cut, False, "planner_error"
        decision_ms = (time.perf_counter() - t_obs) * 1e3

        if skip and self._chunk is not None and self._chunk_index < len(self._chunk):
            applied = self._chunk[self._chunk_index]
            self._chunk_index += 1
            record = StepRecord(
                self._step,
                cut,
                True,
                "skipped",
                -1,
                applied,
                False,
                (time.perf_counter() - t_obs) * 1e3,
                decision_ms,
                late_s * 1e3,
            )
            return self._finish(record, frame, cut, skip)

        mode: StepMode
        timing: CallTiming | None = None
        error: str | None = None
        actions: np.ndarray | None = None
        cut_used = cut
        if cut == self.edge_only_cut or reason is not None:
            mode = "local" if reason is None else "fallback"
        elif self.client is None:
            mode, reason = "fallback", "no_server"
        elif self.config.breaker and self._breaker_open():
            mode, reason = "fallback", ("breaker_open" if self.client.connected else "disconnected")
        else:
            self._tried_network = True
            deadline = time.perf_counter() + self._deadline_s(cut)  # from the inference start, as ecc_env's rule
            try:
                result = self.client.infer(obs, cut, deadline=deadline, hedge=self.config.hedge)
                actions, timing = result.actions, result.timing
                mode = "split" if result.networked else "local"
                if result.hedged:
                    mode, reason = "fallback", "hedge"
            except TransportTimeout:
                mode, reason = "fallback", "deadline"
            except ServerUnavailable:
                mode, reason = "fallback", "disconnected"
            except RemoteError as e:
                mode, reason = "fallback", f"remote_error:{e.code}"
            except ProtocolError:
                mode, reason = "fallback", "protocol_error"
            except Exception as e:  # noqa: BLE001 - any failure of the split path falls back to the edge
                log.warning("split step failed (%s: %s); edge-only fallback", type(e).__name__, e)
                mode, reason = "fallback", "error"
        if actions is None:
            cut_used = self.edge_only_cut
            try:
                actions = _edge_only(self.model, obs, self.edge_only_cut)
            except Exception as e:  # noqa: BLE001 - recorded as an explicit failure
                log.error("edge-only inference failed: %s: %s", type(e).__name__, e)
                mode, error = "failed", f"{type(e).__name__}: {e}"
        if actions is not None:
            actions = np.asarray(actions)
            if actions.ndim >= 2:  # (chunk, dof): execute the deployment's chunk length, as the env does
                actions = actions[: self.config.chunk_size]
            self._chunk, self._chunk_index, self._chunk_time = actions, 1, time.perf_counter()
            self._chunk_step = self._step
            applied: np.ndarray | None = actions[0]
        else:
            applied = None
        record = StepRecord(
            step=self._step,
            cut_requested=cut,
            skip_requested=bool(skip),
            mode=mode,
            cut_used=cut_used,
            action=applied,
            new_chunk=actions is not None,
            latency_ms=(time.perf_counter() - t_obs) * 1e3,
            decision_ms=decision_ms,
            late_ms=late_s * 1e3,
            fallback_reason=reason,
            error=error,
            timing=timing,
        )
        return self._finish(record, frame, cut, skip)

    def _finish(self, record: StepRecord, frame: Mapping[str, np.ndarray], cut: int, skip: bool) -> StepRecord:
        self.metrics.add(record)
        tried, self._tried_network = self._tried_network, False
        if self.config.breaker and tried:
            if record.fallback_reason in _BREAKER_REASONS:
                if self._breaker_wall is None:
                    log.info(
                        "step %d: network step failed (%s); edge-only until the link answers",
                        record.step,
                        record.fallback_reason,
                    )
                self._breaker_wall, self._breaker_perf = time.time(), time.perf_counter()
            elif record.mode == "split":
                self._breaker_wall = None
        self._prev_miss = record.fallback_reason in ("deadline", "hedge")
        self._prev_latency_ms = record.latency_ms
        self._previous_frame = frame
        self._previous_action = (int(cut), int(bool(skip)))
        self._step += 1
        if record.fallback_reason:
            log.debug("step %d: %s (%s)", record.step, record.mode, record.fallback_reason)
        return record


def _edge_only(model: SplitModel, obs: Mapping[str, np.ndarray], edge_cut: int) -> np.ndarray:
    out = model.edge_session(edge_cut).start(obs)
    if not isinstance(out, np.ndarray):
        raise ProtocolError(f"edge-only cut {edge_cut} produced a {type(out).__name__}, expected actions")
    return out


def _parse_action(action: Any, num_cuts: int) -> tuple[int, bool]:
    """(cut, skip) from a planner action: ``[cut, skip]`` (MultiDiscrete) or a bare cut."""
    arr = np.asarray(action).reshape(-1)
    if arr.size not in (1, 2) or arr.dtype.kind not in "biuf":
        raise ValueError(f"planner action must be [cut, skip] or a cut, got {action!r}")
    cut = int(arr[0])
    skip = bool(int(arr[1])) if arr.size == 2 else False
    if not 0 <= cut < num_cuts:
        raise ValueError(f"planner chose cut {cut}, valid 0..{num_cuts - 1}")
    return cut, skip
