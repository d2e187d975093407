"""The closed loop through the real edge runtime: a MetaWorld robot feeds ``executor.runtime.EdgeRuntime``.

The simulated closed loop (``ecc_env.closed_loop.ClosedLoopSplitEnv``) prices every inference with the env's latency
model. Here the same robot, scene, events and trace segment (drawn by that env's ``reset(seed)``) drive the real
control loop instead:

* every observation the runtime handles is the robot's own: its rendered camera frame (with the episode's visual
  noise) goes to the observation builder (``ecc_env.runtime_adapter``, the env's one ``ObservationBuilder``) and,
  resized, into the model's image input; its joint positions fill the model's state input; its joint velocities and
  torques feed the kinematic features;
* the runtime's planner (heuristic, edge, cloud, static, PPO ...) decides cut and skip; the real split executor
  runs the edge blocks (padded to the emulated edge device by ``HardwareEmulator``), sends the payload through a
  trace-shaped loopback relay (``executor.link.ShapedLink`` over the env's segment) to a real ``ecc serve`` child
  process (padded to the emulated cloud device), falls back to edge-only on a missed deadline, and measures it all;
* the measured observation-to-actions time (``StepRecord.latency_ms``) decides when the chunk arrives:
  ``ClosedLoopRobot.infer(obs_step, start + latency)``, the timing rule of ``ecc_env.closed_loop``;
* the chunk's *content* is the perfect VLA's (the task's scripted expert rolled forward from the observation the
  inference was made on). The real model has random weights: its actions are computed, sent and timed, then
  discarded. A random-weight model cannot drive a robot.

Clock. The robot lives in episode time (control steps of ``period_ms``), as in the env. The next observation the
runtime handles follows the env's rule: the step after the previous one, or, when an inference ran past it, the
oldest of the frames that arrived meanwhile (at most ``queue_capacity`` wait; older ones are dropped), handled as
soon as the runtime is free. With ``realtime`` the loop sleeps until each observation's episode time on the wall
clock, so the client's background probes, sample ages and pings see real time; when the robot's own simulation
makes the loop late, the shaped link is shifted so that its trace time equals the episode time at the start of every
step (as the env's executor backend positions it), so each transfer sees the bandwidth the episode's clock says.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


log = logging.getLogger(__name__)


class PositionedTrace:
    """The episode's trace segment as the shaped link reads it, shifted so that link time maps onto episode time:
    ``position(link, t_s)`` makes the link's current trace time equal ``t_s``."""

    def __init__(self, trace: Any) -> None:
        self.trace = trace
        self.shift_s = 0.0

    def position(self, link: Any, t_s: float) -> None:
        self.shift_s = t_s - link.trace_time_s()  # the link's own (unshifted) trace time

    def transfer_time_s(self, nbytes: int, start_s: float, direction: str, *, max_wait_s: float = 60.0) -> float:
        return self.trace.transfer_time_s(nbytes, start_s + self.shift_s, direction, max_wait_s=max_wait_s)

    def one_way_delay_ms(self, t_s: float) -> float:
        return self.trace.one_way_delay_ms(t_s + self.shift_s)


class _EpisodeStart:
    """A planner that sees ``episode_start=True`` on its first decision of an episode (the runtime passes none), so
    stateful heuristics and guarded policies reset as they do in ``agents.evaluate``."""

    def __init__(self, planner: Any) -> None:
        self.planner = planner
        self.first = True

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[Any, Any]:
        start, self.first = self.first, False
        return self.planner.predict(observation, state, np.array([start]), deterministic)


# ------------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class LoopStep:
    """One observation the loop handled: its step, episode time when handled, what the runtime (or env) did, the
    observation-to-actions latency and the step the chunk arrived at (-1: no new chunk)."""

    obs_step: int
    t_s: float
    mode: str
    skip_requested: bool
    cut_used: int
    latency_ms: float
    arrival_step: int
    up_bytes: int
    fallback_reason: str | None = None


@dataclass
class LoopEpisode:
    """One closed-loop episode (``backend``: "runtime" through the real EdgeRuntime, "sim" through the env)."""

    backend: str
    planner: str
    task: str
    seed: int
    success: bool
    time_to_success_s: float | None
    steps: list[LoopStep] = field(default_factory=list)
    dropped: int = 0
    link_bytes_up: int = 0
    wall_s: float = 0.0
    connected: bool = True

    @property
    def inferences(self) -> int:
        return sum(s.arrival_step >= 0 for s in self.steps)

    @property
    def skips(self) -> int:
        return sum(s.mode == "skipped" for s in self.steps)

    @property
    def refused_skips(self) -> int:
        """Skips the planner asked for but the runtime could not make (its own chunk had no actions left)."""
        return sum(s.skip_requested and s.mode != "skipped" for s in self.steps)

    @property
    def deadline_misses(self) -> int:
        return sum(s.fallback_reason in ("deadline", "hedge") for s in self.steps)

    @property
    def up_bytes(self) -> int:
        return sum(s.up_bytes for s in self.steps)

    @property
    def mean_inference_latency_ms(self) -> float:
        lat = [s.latency_ms for s in self.steps if s.arrival_step >= 0]
        return float(np.mean(lat)) if lat else math.nan

    def outcome(self, *, vla: str, events: str, period_s: float) -> Any:
        """This episode as ``agents.closed_loop_eval.EpisodeOutcome`` (its latency: the observation's age when its
        actions were ready, the env's definition), so the closed-loop report can tabulate runtime episodes too."""
        from agents.closed_loop_eval import EpisodeOutcome

        lat = [s.t_s - s.obs_step * period_s + s.latency_ms / 1e3 for s in self.steps if s.arrival_step >= 0]
        return EpisodeOutcome(
            planner=self.planner,
            task=self.task,
            vla=vla,
            events=events,
            seed=self.seed,
            success=self.success,
            time_to_success_s=self.time_to_success_s,
            inferences=self.inferences,
            decisions=len(self.steps),
            inference_latency_ms=[x * 1e3 for x in lat],
            deadline_misses=self.deadline_misses,
            up_bytes=float(self.up_bytes),
        )

    def summary(self) -> dict[str, Any]:
        modes = Counter(s.mode for s in self.steps)
        reasons = Counter(s.fallback_reason for s in self.steps if s.fallback_reason)
        return {
            "backend": self.backend,
            "planner": self.planner,
            "task": self.task,
            "seed": self.seed,
            "success": self.success,
            "time_to_success_s": self.time_to_success_s,
            "steps": len(self.steps),
            "inferences": self.inferences,
            "skips": self.skips,
            "refused_skips": self.refused_skips,
            "deadline_misses": self.deadline_misses,
            "mean_inference_latency_ms": self.mean_inference_latency_ms,
            "up_bytes": self.up_bytes,
            "link_bytes_up": self.link_bytes_up,
            "dropped": self.dropped,
            "modes": dict(modes),
            "fallback_reasons": dict(reasons),
            "wall_s": self.wall_s,
        }


# ------------------------------------------------------------------------------------------------ the runtime loop
@dataclass(frozen=True)
class RuntimeLoopConfig:
    """Settings of the runtime closed loop.

    family / preset / seed: the split model both halves build (random weights; the server must use the same).
    realtime: sleep until each observation's episode time on the wall clock (module docstring); False runs steps
        back to back (the link is positioned either way).
    connect_timeout_s: bound on the client's (re)connection through the link.
    link_chunk_bytes: pacing granularity of the shaped link.
    """

    family: str = "openvla"
    preset: str = "tiny"
    seed: int = 0
    realtime: bool = True
    connect_timeout_s: float = 10.0
    link_chunk_bytes: int = 16 * 1024

    def __post_init__(self) -> None:
        if not self.connect_timeout_s > 0 or self.link_chunk_bytes < 1:
            raise ValueError(
                f"need connect_timeout_s > 0 and link_chunk_bytes >= 1, got {self.connect_timeout_s}, "
                f"{self.link_chunk_bytes}"
            )


def _resize_nearest(img: np.ndarray, h: int, w: int) -> np.ndarray:
    rows = (np.arange(h) * img.shape[0] // h).clip(0, img.shape[0] - 1)
    cols = (np.arange(w) * img.shape[1] // w).clip(0, img.shape[1] - 1)
    return img[rows][:, cols]


class RuntimeClosedLoop:
    """Runs closed-loop episodes of ``env`` (a ``ClosedLoopSplitEnv``: robot, scene, events, trace segment, deadline
    rule, observation builder) through a real ``EdgeRuntime`` talking to the server at ``server_url``.

    The edge model is built once (``config.family/preset/seed``) and padded to ``edge_emulate`` (the env's edge
    Profile, normally). Each episode gets a fresh shaped link over the env's segment, a fresh runtime and client
    (as a robot that reboots between tasks) and a fresh observation adapter. ``close()`` detaches the emulator.
    """

    def __init__(
        self, env: Any, server_url: str, config: RuntimeLoopConfig = RuntimeLoopConfig(), *, edge_emulate: Any = None
    ) -> None:
        import torch

        from executor.models import build_model

        if not str(server_url).startswith("ws://"):
            raise ValueError(f"server_url must be ws://HOST:PORT, got {server_url!r}")
        self.env = env.unwrapped
        self.config = config
        self.server_url = server_url
        host_port = server_url.split("://", 1)[1].split("/", 1)[0]
        host, _, port = host_port.rpartition(":")
        self._target = (host.strip("[]") or "127.0.0.1", int(port))
        torch.set_num_threads(1)
        self.model = build_model(config.family, config.preset, seed=config.seed)
        if self.model.num_cuts != self.env.num_cuts:
            raise ValueError(
                f"the env's Profiles have {self.env.num_cuts} cuts, {config.family}/{config.preset} has "
                f"{self.model.num_cuts}: use Profiles of this model"
            )
        self.emulator = None
        if edge_emulate is not None:
            from executor.emulation import HardwareEmulator

            self.emulator = HardwareEmulator(self.model, edge_emulate).attach()
        self._template = {k: np.asarray(v) for k, v in self.model.make_observation(seed=config.seed).items()}

    def close(self) -> None:
        if self.emulator is not None:
            self.emulator.detach()
            self.emulator = None

    def __enter__(self) -> RuntimeClosedLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one frame ----------------------------------------------------------------------------------------------
    def frame(self, robot: Any) -> dict[str, np.ndarray]:
        """The runtime's input for the robot's current step: the model's inputs (the rendered frame resized into
        ``images``, joint positions into ``state``; the prompt and any noise input fixed) plus ``camera`` (the
        rendered frame the observation builder reads), ``joint_vel`` and ``joint_torque``."""
        img = np.asarray(robot.frame)
        q, qd, tau = robot.sim.joints()
        out = dict(self._template)
        tmpl = self._template.get("images")
        if tmpl is not None and tmpl.ndim >= 3:
            h, w = tmpl.shape[-3], tmpl.shape[-2]
            out["images"] = np.ascontiguousarray(
                np.broadcast_to(_resize_nearest(img, h, w), tmpl.shape), dtype=tmpl.dtype
            )
        st = self._template.get("state")
        if st is not None and st.ndim == 1:
            s = np.zeros_like(st)
            m = min(len(s), len(q))
            s[:m] = q[:m]
            out["state"] = s
        out["camera"] = img
        out["joint_vel"] = np.asarray(qd, dtype=np.float64)
        out["joint_torque"] = np.asarray(tau, dtype=np.float64)
        return out

    def _runtime_config(self) -> Any:
        from executor.runtime import RuntimeConfig

        env = self.env
        deadline_s = min(float(env.deadline.deadline_ms) / 1e3, 60.0)
        kw: dict[str, Any] = dict(
            control_period_s=env.period_s,
            deadline_s=deadline_s,
            realtime=False,
            connect_timeout_s=self.config.connect_timeout_s,
            hedge=bool(env.deadline.hedge),
        )
        names = {f.name for f in dataclasses.fields(RuntimeConfig)}
        if "chunk_size" in names:  # the runtime's own chunk length, where it has one: the env's
            kw["chunk_size"] = int(env.config.chunk_size)
        return RuntimeConfig(**kw)

    def _client_config(self) -> Any:
        from executor.client import ClientConfig
        from executor.wire_config import priced_wire

        probe = self.env.config.probe
        on = probe.interval_s > 0
        return ClientConfig(
            connect_timeout_s=self.config.connect_timeout_s,
            ping_interval_s=None,
            probe_interval_s=probe.interval_s if on else None,
            probe_bytes=probe.nbytes if on else 0,
            wire=priced_wire(self.env.edge_profile),
        )  # send what the env's Profiles charge

    # -- one episode --------------------------------------------------------------------------------------------
    def run_episode(self, planner: Any, seed: int, *, name: str = "") -> LoopEpisode:
        """One episode on scene/segment ``seed`` (``env.reset(seed=seed)``) with ``planner`` in the runtime."""
        from ecc_env.runtime_adapter import RuntimeObservationAdapter
        from executor.link import LinkConfig, ShapedLink
        from executor.runtime import EdgeRuntime

        env = self.env
        env.reset(seed=seed)
        robot = env.robot
        n = env.max_obs
        period = env.period_s
        cap = int(env.config.queue_capacity)
        trace = PositionedTrace(env.link)
        wait_s = min(float(env.deadline.deadline_ms) / 1e3, 60.0)
        link = ShapedLink(
            trace, *self._target, LinkConfig(chunk_bytes=self.config.link_chunk_bytes, max_wait_s=wait_s)
        ).start()
        adapter = RuntimeObservationAdapter(env.builder, dt_s=period, image_key="camera")
        runtime = EdgeRuntime(
            self.model,
            _EpisodeStart(planner),
            adapter,
            server_url=f"ws://127.0.0.1:{link.port}",
            client_config=self._client_config(),
            config=self._runtime_config(),
            emulator=self.emulator,
        )
        ep = LoopEpisode("runtime", name or type(planner).__name__, env.closed_loop.task, int(seed), False, None)
        wall_start = time.perf_counter()
        try:
            trace.position(link, 0.0)  # the connection (and its first probe) at the segment's start
            runtime.start()
            ep.connected = runtime.client is not None and runtime.client.connected
            wall0 = time.perf_counter()
            i, t, waiting = 0, 0.0, 0
            while i < n:
                robot.advance_to(i)
                if robot.succeeded:
                    break
                frame = self.frame(robot)
                late = 0.0
                if self.config.realtime:
                    now = time.perf_counter()
                    if now < wall0 + t:
                        time.sleep(wall0 + t - now)
                    else:
                        late = now - (wall0 + t)
                trace.position(link, t)
                rec = runtime.step(frame, late_s=late, frames_waiting=waiting)
                completion = t + rec.latency_ms / 1e3
                arrival = -1
                if rec.new_chunk:
                    arrival = robot.infer(i, completion).arrival_step
                up = int(rec.timing.bytes_up) if rec.timing is not None else 0
                ep.steps.append(
                    LoopStep(
                        i,
                        t,
                        rec.mode,
                        bool(rec.skip_requested),
                        int(rec.cut_used),
                        float(rec.latency_ms),
                        arrival,
                        up,
                        rec.fallback_reason,
                    )
                )
                i, t, waiting, dropped = next_observation(i, completion, period, n, cap)
                ep.dropped += dropped
            if not robot.succeeded:
                robot.advance_to(n)
        finally:
            runtime.close()
            link.stop()
            ep.link_bytes_up = int(link.bytes_up)
            ep.wall_s = time.perf_counter() - wall_start
        ep.success = bool(robot.succeeded)
        ep.time_to_success_s = robot.time_to_success_s
        return ep


def next_observation(
    i: int, completion_s: float, period_s: float, n: int, capacity: int
) -> tuple[int, float, int, int]:
    """The env's queue rule (``EdgeCloudSplitEnv.step``): after observation ``i`` finished at ``completion_s``, the
    next one to handle, when it is handled, how many frames then wait behind it, and how many were dropped."""
    j = i + 1
    t_next = max(completion_s, j * period_s)
    newest = min(int(t_next / period_s + 1e-9), n - 1)
    waiting = newest - j + 1
    dropped = 0
    if waiting > capacity:
        dropped = waiting - capacity
        j += dropped
        waiting = capacity
    return j, max(t_next, j * period_s), max(waiting - 1, 0), dropped


# ------------------------------------------------------------------------------------------------ the simulated twin
def run_sim_episode(env: Any, planner: Any, seed: int, *, name: str = "") -> LoopEpisode:
    """The same episode through the env's own latency model (``ClosedLoopSplitEnv.step``), for comparison."""
    e = env.unwrapped
    obs, _ = env.reset(seed=seed)
    ep = LoopEpisode("sim", name or type(planner).__name__, e.closed_loop.task, int(seed), False, None)
    t0 = time.perf_counter()
    first = True
    while True:
        a, _ = planner.predict(obs, None, np.array([first]), True)
        first = False
        obs, _, term, trunc, info = env.step(np.asarray(a).reshape(-1))
        if info["skip"]:
            mode = "skipped"
        elif info["fallback"]:
            mode = "fallback"
        else:
            mode = "split" if e.rows[info["cut"]].uses_network else "local"
        reason = "deadline" if info["deadline_miss"] else None
        ep.steps.append(
            LoopStep(
                int(info["obs_index"]),
                float(info["time_s"]),
                mode,
                bool(np.asarray(a).reshape(-1)[1]),
                int(info["cut"]),
                float(info["service_ms"]),
                int(info["arrival_step"]) if info["inferred"] else -1,
                int(info["up_bytes"]),
                reason,
            )
        )
        ep.dropped += int(info["dropped"])
        if term or trunc:
            break
    ep.success = bool(info["success"])
    ep.time_to_success_s = info["time_to_success_s"]
    ep.wall_s = time.perf_counter() - t0
    return ep
