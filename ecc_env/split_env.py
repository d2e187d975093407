"""EdgeCloudSplitEnv: where to split a VLA model between edge and cloud, and whether to skip an inference."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ecc_env.backends import BACKENDS, ExecutorBackend, ExecutorConfig, ProfileBackend, ServerLoadConfig
from ecc_env.features import FeatureConfig, kinematic_scores, stream_visual_change
from ecc_env.latency import CutRow, DeadlineConfig, ProbeConfig, cut_rows, hedgeable, probe_sample
from ecc_env.observation import ObservationBuilder, ObservationConfig
from ecc_env.reward import RewardConfig, step_reward
from ecc_env.streams import ObservationStream, ProceduralConfig, procedural_stream
from executor.control import DEFAULT_BREAKER_RETRY_S, DEFAULT_CHUNK_SIZE, DEFAULT_PERIOD_MS
from executor.profile import Profile

log = logging.getLogger(__name__)

ENV_ID = "ecc_env/EdgeCloudSplit-v0"


@dataclass(frozen=True)
class EnvConfig:
    """Scalar settings of the env (sub-configs for the deadline, reward, observation scales, features, server).

    period_ms: control period: one observation (camera frame + joint state) arrives every period
        (default ``executor.control.DEFAULT_PERIOD_MS``, the runtime's too).
    episode_s: episode length in trace time (also capped by the stream's remaining steps).
    queue_capacity: observations that may wait at the edge; beyond it the oldest is dropped (and counted).
    chunk_size: actions per inferred chunk; a skip consumes one, so at most chunk_size - 1 skips in a row
        (default ``executor.control.DEFAULT_CHUNK_SIZE``, the runtime's too).
    skip_ms: the controller's own time for a skipped step (no inference).
    edge_memory_bytes: the edge's memory for parameters; None = the edge Profile's ``device_memory_bytes``
        (0 there means unlimited). Cuts whose edge parameter bytes exceed it are masked.
    allowed_cuts: if given, only these cut indices may be chosen (the others are masked like cuts that do not fit),
        e.g. ``executor.cutmap.candidate_cuts``: the cuts that are optimal at some bandwidth. The deadline fallback
        to edge-only is not affected.
    trace_split: which split of the trace set episodes come from ("train", "val", "test" or "all").
    split_seed: seed of the trace set's train/val/test split.
    segment_margin_s: extra trace time sampled beyond the episode for steps that finish after it.
    procedural_streams: number of procedural streams generated when no streams are given.
    stream_seed: first seed of the procedural streams (stream i uses stream_seed + i).
    deadline: the deadline rule (``latency.DeadlineConfig``); the env applies ``deadline.resolve(edge-only ms)``,
        kept as ``env.deadline``.
    probe: background bandwidth probes (``latency.ProbeConfig``): an uplink sample every ``interval_s`` of trace
        time whatever the planner does, plus one at connect (before the first observation), as the runtime's client
        measures them.
    breaker / breaker_retry_s: model the edge runtime's circuit breaker (``executor.runtime``, on there by default):
        after a network step misses its deadline (a hedged step never opens it), a network cut chosen later runs
        edge-only (``info["breaker"]``, and ``info["cut"]`` is the edge-only cut) until an uplink sample (a probe or
        a step's upload) is measured after the failure, or ``breaker_retry_s`` has passed since it (half-open: one
        network step may try; a miss reopens it). Off by default, which prices every chosen cut as chosen.
    """

    period_ms: float = DEFAULT_PERIOD_MS
    episode_s: float = 60.0
    queue_capacity: int = 3
    chunk_size: int = DEFAULT_CHUNK_SIZE
    skip_ms: float = 1.0
    edge_memory_bytes: int | None = None
    allowed_cuts: tuple[int, ...] | None = None
    trace_split: str = "train"
    split_seed: int = 0
    segment_margin_s: float = 30.0
    procedural_streams: int = 4
    stream_seed: int = 0
    deadline: DeadlineConfig = field(default_factory=DeadlineConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    server_load: ServerLoadConfig = field(default_factory=ServerLoadConfig)
    procedural: ProceduralConfig = field(default_factory=ProceduralConfig)
    breaker: bool = False
    breaker_retry_s: float = DEFAULT_BREAKER_RETRY_S

    def __post_init__(self) -> None:
        if not (isinstance(self.period_ms, (int, float)) and math.isfinite(self.period_ms) and self.period_ms > 0):
            raise ValueError(f"period_ms must be finite and > 0, got {self.period_ms!r}")
        if not (math.isfinite(self.episode_s) and self.episode_s * 1e3 >= self.period_ms):
            raise ValueError(f"episode_s must cover at least one period ({self.period_ms} ms), got {self.episode_s!r}")
        if int(self.queue_capacity) != self.queue_capacity or self.queue_capacity < 1:
            raise ValueError(f"queue_capacity must be an integer >= 1, got {self.queue_capacity!r}")
        if int(self.chunk_size) != self.chunk_size or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {self.chunk_size!r}")
        if not (math.isfinite(self.skip_ms) and self.skip_ms >= 0):
            raise ValueError(f"skip_ms must be finite and >= 0, got {self.skip_ms!r}")
        if self.edge_memory_bytes is not None and self.edge_memory_bytes < 0:
            raise ValueError(f"edge_memory_bytes must be >= 0 or None, got {self.edge_memory_bytes!r}")
        if self.allowed_cuts is not None and (
            len(self.allowed_cuts) == 0 or any(int(k) != k or k < 0 for k in self.allowed_cuts)
        ):
            raise ValueError(f"allowed_cuts must be a non-empty tuple of cut indices >= 0, got {self.allowed_cuts!r}")
        if self.trace_split not in ("train", "val", "test", "all"):
            raise ValueError(f"trace_split must be 'train', 'val', 'test' or 'all', got {self.trace_split!r}")
        if not (self.segment_margin_s >= 0):
            raise ValueError(f"segment_margin_s must be >= 0, got {self.segment_margin_s!r}")
        if self.procedural_streams < 1:
            raise ValueError(f"procedural_streams must be >= 1, got {self.procedural_streams!r}")
        if not (math.isfinite(self.breaker_retry_s) and self.breaker_retry_s > 0):
            raise ValueError(f"breaker_retry_s must be finite and > 0, got {self.breaker_retry_s!r}")


@dataclass(frozen=True, eq=False)
class StreamData:
    """What the env needs of a stream, precomputed once: change features, reference actions, phases."""

    name: str
    visual: np.ndarray  # (T, 3) mad, changed, structural of (t-1, t)
    kinematic: np.ndarray  # (T, 3) joint speed, accel anomaly, torque change
    ref_actions: np.ndarray  # (T, A)
    phases: np.ndarray  # (T,)
    phase_names: tuple[str, ...]

    @property
    def num_steps(self) -> int:
        return int(self.visual.shape[0])

    @classmethod
    def from_stream(cls, stream: ObservationStream, features: FeatureConfig) -> StreamData:
        return cls(
            name=stream.name,
            visual=stream_visual_change(stream.frames, features),
            kinematic=kinematic_scores(stream.joint_vel, stream.joint_torque, stream.dt_s, features),
            ref_actions=np.array(stream.ref_actions, dtype=np.float64),
            phases=np.array(stream.phases),
            phase_names=stream.phase_names,
        )


@functools.lru_cache(maxsize=32)
def _procedural_data(seed: int, num_steps: int, proc: ProceduralConfig, features: FeatureConfig) -> StreamData:
    return StreamData.from_stream(procedural_stream(seed, num_steps, proc), features)


@functools.lru_cache(maxsize=4)
def default_profiles() -> tuple[Profile, Profile]:
    """Roofline Profiles of the ``full`` OpenVLA on a Jetson AGX Orin (edge) and an A100 (cloud), priced under the
    default wire configuration (``executor.wire_config.DEFAULT_WIRE``: JPEG-90 frames, fp16 activations).

    Read from the package data (``ecc_env.profile_data``: computed by ``executor.roofline``, checked by a test).
    """
    from ecc_env.profile_data import load_default_profiles

    return load_default_profiles()


def _mean_abs_diff(a: Sequence[float], b: Sequence[float]) -> float:
    """Action deviation: mean absolute difference of two actions (action units)."""
    return sum(abs(x - y) for x, y in zip(a, b)) / len(b)


def _default_trace_set():
    from traces.embedded import embedded_default_set

    return embedded_default_set()


class EdgeCloudSplitEnv(gym.Env):
    """Split a VLA model between the robot's edge computer and a cloud GPU, and skip redundant inferences.

    ## Description
    Every control period (default 100 ms) the robot's camera and joints give a new observation. For each
    observation the planner chooses a cut of the model (which blocks run on the edge, which on the cloud) and
    whether to skip inference and keep executing the current action chunk. Inference time is priced by a latency
    backend from a Profile pair (edge and cloud device) and a recorded bandwidth trace; when a step takes longer
    than the period, observations wait in a bounded queue at the edge (the oldest is dropped when it is full).

    ## Action Space
    ``MultiDiscrete([num_cuts, 2])``:

    | Num | Action | Values                                                                                |
    |-----|--------|---------------------------------------------------------------------------------------|
    | 0   | cut    | index into ``Profile.cuts``: 0 = cloud-only (raw upload), N = edge-only, extra cuts after |
    | 1   | skip   | 0 = run inference at the cut, 1 = reuse the current action chunk (no inference)       |

    ``action_masks()`` (for sb3-contrib's MaskablePPO) masks cuts whose edge parameter bytes exceed the edge's
    memory, and skip when the current chunk has no actions left. A masked choice is still accepted: the cut is
    replaced by the nearest allowed one (ties: towards the cloud), a skip without actions runs inference, and the
    step pays ``RewardConfig.invalid_action_penalty`` (``info["invalid_action"]``).

    ## Observation Space
    ``Box(0, 1, (2H + 17,), float32)`` built by ``ecc_env.observation.ObservationBuilder`` (fixed scales; the
    table is in that module): last H uplink estimates from completed transfers and their ages, newest downlink
    estimate, RTT estimate, edge queue, server queue, age of the current actions, actions left, visual change
    (mean abs diff, changed-pixel fraction after blur, low-res structural distance, change since the current
    actions' observation), kinematic change (joint speed, acceleration anomaly, torque change), previous cut,
    skip, deadline miss and latency.

    ## Rewards
    ``ecc_env.reward.step_reward``: minus the step latency in periods, minus a penalty per deadline miss, minus
    a weighted action deviation for skipped steps, minus a penalty per dropped observation and per invalid
    (masked) action. The latency of a step is the age of its observation when its actions are ready.

    ## Starting State
    A trace segment of ``episode_s + segment_margin_s`` seconds (random trace and start point from the chosen
    split), a random stream and start offset, a server-load draw: all from ``self.np_random`` seeded in
    ``reset``. No bandwidth has been measured yet and there is no action chunk (skip is masked).

    ## Episode End
    Truncation (never termination: nothing in the task ends the latency process) when the next observation
    index reaches the episode's observation count (trace time ``episode_s`` or the end of the stream).

    ## Arguments
    ``gymnasium.make("ecc_env/EdgeCloudSplit-v0", edge_profile=..., cloud_profile=..., trace_set=...,
    streams=..., backend="profile", config=EnvConfig(...), **overrides)``; ``backend="executor"`` measures every
    inference on the networked split executor (``executor=ExecutorConfig(...)``: model, server, emulation; the
    Profiles must describe that model; ``close()`` stops its server and link) where ``overrides`` are ``EnvConfig``
    field names (``period_ms=50``, ``deadline=DeadlineConfig(250.0)``, ...). Profiles default to the roofline
    OpenVLA ``full`` on Orin + A100, the trace set to the embedded default set, streams to procedural ones.

    ## Info
    Per step, in named units: ``edge_ms``, ``uplink_ms``, ``cloud_ms``, ``server_queue_ms`` (cloud queue),
    ``queue_ms`` (wait at the edge), ``downlink_ms``, ``deadline_wait_ms``, ``service_ms``, ``latency_ms``,
    ``deadline_miss``, ``fallback``, ``deviation``, ``dropped`` (this step), ``dropped_total``, ``cut``, ``skip``
    (as executed), ``invalid_action``, ``obs_index``, ``phase``, ``time_s`` and the reward terms ``r_latency``,
    ``r_deadline``, ``r_deviation``, ``r_drop``, ``r_invalid``.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        edge_profile: Profile | None = None,
        cloud_profile: Profile | None = None,
        trace_set: Any = None,
        streams: Sequence[ObservationStream] | None = None,
        backend: str = "profile",
        config: EnvConfig | None = None,
        render_mode: str | None = None,
        executor: ExecutorConfig | None = None,
        **overrides: Any,
    ) -> None:
        cfg = config or EnvConfig()
        if overrides:
            known = {f.name for f in fields(EnvConfig)}
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise TypeError(f"unknown EdgeCloudSplitEnv arguments {unknown}; EnvConfig fields: {sorted(known)}")
            cfg = replace(cfg, **overrides)
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported (none available)")
        self.render_mode = None
        self.config = cfg
        if (edge_profile is None) != (cloud_profile is None):
            raise ValueError("give both edge_profile and cloud_profile, or neither (for the default pair)")
        if edge_profile is None:
            edge_profile, cloud_profile = default_profiles()
        assert cloud_profile is not None
        self.edge_profile, self.cloud_profile = edge_profile, cloud_profile
        if edge_profile.num_cuts == 0:
            raise ValueError(f"profile {edge_profile.model_id}/{edge_profile.preset} has no cuts")
        self.rows: tuple[CutRow, ...] = cut_rows(edge_profile, cloud_profile)
        n_cuts = len(self.rows)
        self.num_cuts = n_cuts

        # ---- memory masks and the deadline fallback
        mem = cfg.edge_memory_bytes if cfg.edge_memory_bytes is not None else edge_profile.device_memory_bytes
        mem_fits = np.array([mem <= 0 or r.edge_param_bytes <= mem for r in self.rows], dtype=bool)
        if not mem_fits.any():
            raise ValueError(f"no cut fits the edge memory of {mem} bytes")
        fits = mem_fits.copy()
        if cfg.allowed_cuts is not None:
            bad = [k for k in cfg.allowed_cuts if k >= n_cuts]
            if bad:
                raise ValueError(f"allowed_cuts {bad} outside 0..{n_cuts - 1}")
            fits &= np.isin(np.arange(n_cuts), cfg.allowed_cuts)
            if not fits.any():
                raise ValueError(f"none of allowed_cuts {cfg.allowed_cuts} fits the edge memory of {mem} bytes")
        self.cut_fits = fits
        allowed = np.flatnonzero(fits)
        self._nearest_allowed = [int(allowed[np.argmin(np.abs(allowed - i))]) for i in range(n_cuts)]
        edge_only = edge_profile.num_blocks  # cuts[N] is edge-only by the Profile convention
        self.edge_only_index = edge_only
        self.fallback_holds = not bool(mem_fits[edge_only])
        fallback_ms = cfg.skip_ms if self.fallback_holds else self.rows[edge_only].edge_ms
        if self.fallback_holds:
            log.warning("edge-only does not fit %d bytes of edge memory: a missed deadline holds the last action", mem)
        # the rule in force (``DeadlineConfig.resolve``: by default capped at the edge-only time); planners and the
        # policy artifact read it from here
        self.deadline = cfg.deadline.resolve(None if self.fallback_holds else fallback_ms)

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if executor is not None and backend != "executor":
            raise ValueError(f"executor settings were given but backend is {backend!r}; use backend='executor'")
        if backend == "executor":
            self.backend = ExecutorBackend(
                self.rows,
                self.deadline,
                fallback_ms,
                (executor or ExecutorConfig()).for_profile(edge_profile),
                edge_only_index=edge_only,
                fallback_holds=self.fallback_holds,
            )
        else:
            self.backend = ProfileBackend(self.rows, self.deadline, fallback_ms, cfg.server_load, cloud_profile)

        # ---- traces
        if trace_set is None:
            trace_set = _default_trace_set()
        if len(trace_set) == 0:
            raise ValueError(f"trace set {getattr(trace_set, 'name', trace_set)!r} is empty")
        if cfg.trace_split != "all":
            trace_set = getattr(trace_set.split(cfg.split_seed), cfg.trace_split)
            if len(trace_set) == 0:
                raise ValueError(f"the {cfg.trace_split!r} split of the trace set is empty")
        self.trace_set = trace_set

        # ---- streams
        self.period_s = cfg.period_ms * 1e-3
        self.max_obs = int(math.floor(cfg.episode_s / self.period_s + 1e-9))
        self.streams = self._load_streams(streams)

        # ---- spaces
        obs_cfg = replace(
            cfg.observation, queue_capacity=cfg.queue_capacity, chunk_size=cfg.chunk_size, num_cuts=n_cuts
        )
        self.builder = ObservationBuilder(obs_cfg, cfg.features)
        self.observation_space = self.builder.space
        self.action_space = spaces.MultiDiscrete([n_cuts, 2])
        self._obs = self.builder.empty()
        self._hist = obs_cfg.bandwidth_history
        self._reset_state()

    def _load_streams(self, streams: Sequence[ObservationStream] | None) -> tuple[StreamData, ...]:
        """Precomputed stream data: procedural streams for None, else the given ones (a subclass with a live
        robot, ``ecc_env.closed_loop.ClosedLoopSplitEnv``, overrides this and ``_start_stream``)."""
        cfg = self.config
        if streams is None:
            n = self.max_obs + 100
            return tuple(
                _procedural_data(cfg.stream_seed + i, n, cfg.procedural, cfg.features)
                for i in range(cfg.procedural_streams)
            )
        streams = list(streams)
        if not streams:
            raise ValueError("streams is empty; pass None for procedural streams")
        for s in streams:
            if not isinstance(s, ObservationStream):
                raise TypeError(f"streams must hold ObservationStream objects, got {type(s).__name__}")
            if abs(s.dt_s - self.period_s) > 1e-9:
                log.warning(
                    "stream %s was recorded at %.3f s per step, the env's period is %.3f s",
                    s.name,
                    s.dt_s,
                    self.period_s,
                )
        return tuple(StreamData.from_stream(s, cfg.features) for s in streams)

    def close(self) -> None:
        """Release the backend's resources (the executor backend's server, link and connection)."""
        closer = getattr(self.backend, "close", None)
        if closer is not None:
            closer()
        super().close()

    # ------------------------------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self.link = None
        self._idx = 0
        self._n = 0
        self._t_dec = 0.0
        self._dropped_total = 0
        self._actions_left = 0
        self._held: list[float] | None = None
        self._chunk_arrival = math.nan
        self._chunk_idx = 0
        self._bw: list[float] = []
        self._bw_t: list[float] = []
        self._next_probe_s = self.config.probe.interval_s if self.config.probe.enabled else math.inf
        self._probes: list[tuple[float, float]] = []  # (done_s, mbps) of probes sent but not through yet
        self._busy = (0.0, 0.0)  # [start, end) s of the last network exchange: no probe is sent within it
        self._down_mbps: float | None = None
        self._rtt_ms: float | None = None
        self._server_q = 0
        self._prev = (self.edge_only_index, False, False, 0.0)
        self._waiting = 0
        self._breaker_s: float | None = None  # trace time the circuit breaker (re)opened; None: closed

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        rng = self.np_random
        cfg = self.config
        self._reset_state()
        seg_s = cfg.episode_s + cfg.segment_margin_s
        self.link = self.trace_set.sample_segment(rng, seg_s)
        stream_info = self._start_stream(rng, options)
        self.backend.reset(self.link, rng, seg_s, self.period_s)
        self._connect_probe()
        obs = self._observe()
        return obs, {"obs_index": 0, "trace": getattr(self.link, "name", ""), **stream_info}

    def _start_stream(self, rng: np.random.Generator, options: dict | None) -> dict:
        """Pick the episode's stream and start offset; fill the per-step lists ``_observe`` and ``step`` read."""
        s = self.streams[int(rng.integers(len(self.streams)))]
        span = s.num_steps - self.max_obs
        offset = int(rng.integers(span + 1)) if span > 0 else 0
        self._n = min(self.max_obs, s.num_steps - offset)
        self.stream = s
        self._offset = offset
        # per-episode Python lists: scalar indexing of lists is several times cheaper than of numpy rows
        vis = s.visual[offset : offset + self._n]
        self._vis = vis.tolist()
        self._kin = s.kinematic[offset : offset + self._n].tolist()
        self._ref = s.ref_actions[offset : offset + self._n].tolist()
        self._phase = s.phases[offset : offset + self._n].tolist()
        self._cum_mad = np.concatenate([[0.0], np.cumsum(vis[:, 0])]).tolist()
        return {"stream": s.name, "offset": offset}

    def _chunk_ready(self, obs_index: int, completion_s: float) -> None:
        """Called by ``step`` when an inference on observation ``obs_index`` yields a new chunk, complete at
        ``completion_s`` (trace time): a closed-loop subclass computes and schedules the chunk here."""

    def _add_uplink_sample(self, mbps: float, done_s: float) -> None:
        """Insert one uplink sample into the newest-first history (ordered by when it was measured)."""
        i = 0
        while i < len(self._bw_t) and self._bw_t[i] > done_s:
            i += 1
        self._bw.insert(i, mbps)
        self._bw_t.insert(i, done_s)
        if len(self._bw) > self._hist:
            self._bw.pop()
            self._bw_t.pop()

    def _connect_probe(self) -> None:
        """The probe the client sends while connecting, before the first observation (``EdgeClient`` does the same):
        priced on the segment's start and counted as measured at t = 0, so the first decision sees the link."""
        probe = self.config.probe
        if probe.enabled:
            got = probe_sample(self.link, probe.nbytes, 0.0, probe.interval_s)
            if got is not None:
                self._add_uplink_sample(got[1], 0.0)

    def _run_probes(self, t: float) -> None:
        """Background probes sent up to time ``t``: their samples join the history once through. A probe due while a
        network inference is in flight is not sent (the client skips it too: it would queue behind the upload)."""
        probe = self.config.probe
        b0, b1 = self._busy
        while self._next_probe_s <= t:
            if not b0 <= self._next_probe_s < b1:
                got = probe_sample(self.link, probe.nbytes, self._next_probe_s, probe.interval_s)
                if got is not None:
                    self._probes.append(got)
            self._next_probe_s += probe.interval_s
        if self._probes:
            ready = [p for p in self._probes if p[0] <= t]
            if ready:
                self._probes = [p for p in self._probes if p[0] > t]
                for done, mbps in sorted(ready):
                    self._add_uplink_sample(mbps, done)

    def _breaker_answered(self) -> bool:
        """Whether an uplink sample was measured after the open breaker opened (the link answered: it closes)."""
        opened = self._breaker_s
        return opened is not None and any(done > opened for done in self._bw_t)

    def breaker_would_hold(self, t: float) -> bool:
        """:meth:`_breaker_holds` without closing the breaker: a pure query (for planners that look ahead)."""
        opened = self._breaker_s
        return opened is not None and not self._breaker_answered() and t - opened < self.config.breaker_retry_s

    def _breaker_holds(self, t: float) -> bool:
        """Whether the open circuit breaker turns a network step at ``t`` into edge-only (``EnvConfig.breaker``):
        closes it when an uplink sample was measured after it opened; lets one step try after the retry time."""
        if self._breaker_answered():
            self._breaker_s = None  # the link answered after the failure
        return self.breaker_would_hold(t)

    def _observe(self) -> np.ndarray:
        j = min(self._idx, self._n - 1)
        t = self._t_dec
        if self._next_probe_s <= t or self._probes:
            self._run_probes(t)
        prev_cut, prev_skip, prev_miss, prev_lat = self._prev
        chunk = self._held is not None
        return self.builder.build(
            uplink_mbps=self._bw,
            uplink_age_s=[t - x for x in self._bw_t],
            downlink_mbps=self._down_mbps,
            rtt_ms=self._rtt_ms,
            edge_queue=self._waiting,
            server_queue=self._server_q,
            action_age_s=(t - self._chunk_arrival) if chunk else None,
            actions_left=self._actions_left,
            visual=self._vis[j],
            visual_since_action=(self._cum_mad[j + 1] - self._cum_mad[self._chunk_idx + 1]) if chunk else 0.0,
            kinematic=self._kin[j],
            prev_cut=prev_cut,
            prev_skip=prev_skip,
            prev_deadline_miss=prev_miss,
            prev_latency_ms=prev_lat,
            out=self._obs,
        ).copy()

    _STATE = (
        "_idx",
        "_t_dec",
        "_dropped_total",
        "_actions_left",
        "_held",
        "_chunk_arrival",
        "_chunk_idx",
        "_bw",
        "_bw_t",
        "_down_mbps",
        "_rtt_ms",
        "_server_q",
        "_prev",
        "_waiting",
        "_next_probe_s",
        "_probes",
        "_breaker_s",
        "_busy",
    )

    def get_state(self) -> dict[str, Any]:
        """Snapshot of everything ``step`` changes within an episode (for search planners such as the oracle).

        The episode's trace segment, stream slice and server-load draw are fixed at ``reset`` and not included;
        ``step`` uses no randomness, so ``set_state(get_state())`` followed by the same actions replays exactly.
        """
        d = self.__dict__
        return {k: (list(d[k]) if isinstance(d[k], list) else d[k]) for k in self._STATE}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a ``get_state`` snapshot taken in the current episode."""
        missing = [k for k in self._STATE if k not in state]
        if missing:
            raise ValueError(f"state snapshot lacks {missing}")
        d = self.__dict__
        for k in self._STATE:
            v = state[k]
            d[k] = list(v) if isinstance(v, list) else v

    def action_masks(self) -> np.ndarray:
        """Boolean mask of length num_cuts + 2 (cut choices, then skip = 0 / 1), sb3-contrib's MultiDiscrete format."""
        return np.concatenate([self.cut_fits, [True, self._actions_left > 0]])

    def _parse_action(self, action: Any) -> tuple[int, int]:
        try:
            if isinstance(action, np.ndarray):
                if action.shape != (2,):
                    raise ValueError
                if action.dtype.kind not in "iu" and not np.array_equal(action, np.round(action)):
                    raise ValueError
                k, s = action.tolist()
            else:
                k, s = action
            if k != int(k) or s != int(s):
                raise ValueError
            k, s = int(k), int(s)
        except (TypeError, ValueError) as e:
            raise ValueError(f"action {action!r} is not a pair of integers (cut, skip)") from e
        if not (0 <= k < self.num_cuts and 0 <= s <= 1):
            raise ValueError(f"action {action!r} outside MultiDiscrete([{self.num_cuts}, 2])")
        return k, s

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.link is None:
            raise RuntimeError("call reset() before step()")
        if self._idx >= self._n:
            raise RuntimeError("episode is over (truncated); call reset()")
        k, skip = self._parse_action(action)
        invalid = False
        if not self.cut_fits[k]:
            k = self._nearest_allowed[k]
            invalid = True
        if skip and self._actions_left <= 0:
            skip = 0
            invalid = True
        i = self._idx
        period = self.period_s
        t0 = self._t_dec
        arrival = i * period
        ref_i = self._ref[i]
        deviation = 0.0
        breaker = False
        if not skip and self._breaker_s is not None and self.rows[k].uses_network and self._breaker_holds(t0):
            k, breaker = self.edge_only_index, True
        if skip:
            service_ms = self.config.skip_ms
            deviation = _mean_abs_diff(self._held, ref_i)
            self._actions_left -= 1
            edge_ms = up_ms = sq_ms = cloud_ms = down_ms = wait_ms = 0.0
            miss = fallback = False
        else:
            timing, q = self.backend.infer(k, t0)
            edge_ms, up_ms, sq_ms, cloud_ms, down_ms, wait_ms, service_ms, miss, fallback = timing[:9]
            if fallback and self.fallback_holds:
                held = self._held
                deviation = _mean_abs_diff([0.0] * len(ref_i) if held is None else held, ref_i)
                self._actions_left = max(self._actions_left - 1, 0)
            else:
                self._held = ref_i
                self._actions_left = self.config.chunk_size - 1
                self._chunk_arrival = arrival
                self._chunk_idx = i
                self._chunk_ready(i, t0 + service_ms * 1e-3)
            up_mbps = timing.uplink_mbps
            if up_mbps == up_mbps:  # not NaN: a measured upload, or a missed deadline's upper bound
                self._add_uplink_sample(up_mbps, timing.uplink_done_s)
                if not miss:
                    self._rtt_ms = 2.0 * self.link.one_way_delay_ms(timing.uplink_done_s)
            if timing.downlink_mbps == timing.downlink_mbps:
                self._down_mbps = timing.downlink_mbps
            if not fallback and self.rows[k].uses_network:
                self._server_q = q
            if self.rows[k].uses_network:  # the exchange: until the actions came back, or until the deadline
                self._busy = (t0, t0 + (wait_ms if fallback else service_ms) * 1e-3)
                if self.config.breaker:
                    row = self.rows[k]
                    hedged = self.deadline.hedge and hedgeable(row.edge_first, row.round_trips)
                    if miss and not hedged:
                        self._breaker_s = t0 + service_ms * 1e-3  # the runtime opens it when the step is done
                    elif not miss:
                        self._breaker_s = None
        completion = t0 + service_ms * 1e-3
        latency_ms = (completion - arrival) * 1e3
        # ---- next observation: wait for it, or take it from the queue (dropping the oldest beyond capacity)
        j = i + 1
        n = self._n
        t_next = completion if completion > j * period else j * period
        newest = min(int(t_next / period + 1e-9), n - 1)
        dropped = 0
        waiting = newest - j + 1
        if waiting > self.config.queue_capacity:
            dropped = waiting - self.config.queue_capacity
            j += dropped
            waiting = self.config.queue_capacity
        self._dropped_total += dropped
        self._idx = j
        arrival_j = j * period
        self._t_dec = t_next if t_next > arrival_j else arrival_j  # (float rounding of a just-arrived obs)
        self._waiting = max(waiting - 1, 0)
        truncated = j >= n
        self._prev = (k, bool(skip), bool(miss), latency_ms)
        total, r_lat, r_dead, r_dev, r_drop, r_inv = step_reward(
            self.config.reward,
            latency_ms=latency_ms,
            period_ms=self.config.period_ms,
            deadline_miss=miss,
            deviation=deviation,
            dropped=dropped,
            invalid=invalid,
        )
        obs = self._observe()
        info = {
            "edge_ms": edge_ms,
            "uplink_ms": up_ms,
            "server_queue_ms": sq_ms,
            "cloud_ms": cloud_ms,
            "downlink_ms": down_ms,
            "deadline_wait_ms": wait_ms,
            "service_ms": service_ms,
            "queue_ms": (t0 - arrival) * 1e3,
            "latency_ms": latency_ms,
            "deadline_miss": bool(miss),
            "fallback": bool(fallback),
            "deviation": deviation,
            "dropped": dropped,
            "dropped_total": self._dropped_total,
            "cut": k,
            "skip": bool(skip),
            "invalid_action": invalid,
            "breaker": breaker,
            "obs_index": i,
            "phase": self._phase[i],
            "time_s": t0,
            "r_latency": r_lat,
            "r_deadline": r_dead,
            "r_deviation": r_dev,
            "r_drop": r_drop,
            "r_invalid": r_inv,
        }
        return obs, float(total), False, truncated, info
