"""A live MetaWorld robot for the closed loop: exact simulator copies, off-screen frames, seeded scene events.

Optional: needs ``pip install metaworld`` (the ``sim`` extra). Off-screen rendering uses EGL (``MUJOCO_GL`` is set
to ``egl`` unless already set, before MuJoCo is imported).

Facts this module relies on (measured, ``/work/shared/reference/metaworld.md``):

- MetaWorld's own ``get_env_state``/``set_env_state`` do not restore a simulation exactly. ``mujoco.mj_getState`` /
  ``mj_setState`` with ``mjSTATE_INTEGRATION`` followed by ``mj_forward`` do (0.0 divergence); the env's
  ``curr_path_length``, previous-observation field and last observation are saved beside them (:class:`SimState`).
- The env refuses to step past ``max_path_length``, counting the steps of every copy too: it is raised here and the
  episode horizon is kept by the caller.
- Holding still must keep the last gripper command (an all-zero action half-opens the gripper).
- Frames cost ~100 ms with shadows on, ~15-25 ms off at 64-96 px: shadows are off by default.

One control step is ``sim_steps_per_control`` MetaWorld steps of 12.5 ms with the same action (8 = 10 Hz control,
as ``EnvConfig.period_ms = 100``). Episode ``seed`` s uses task ``s mod 50`` of ``metaworld.MT1(task, seed=task_seed)``
(MetaWorld's seeded object and goal positions), so every planner sees the same scene for the same seed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# The closed-loop task set: reach, push, pick-place, drawer, button, and a contact-rich peg insertion. Each
# scripted expert succeeds on seeds 0-4 at 10 Hz control (one action held for 8 MetaWorld steps).
CLOSED_LOOP_TASKS: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "drawer-open-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
)
# Scene events that make sense per task: "object" (the free object at qpos[9:12] is displaced), "goal" (the goal
# the expert reads from its observation, and that success is measured against, moves). Other tasks: visual noise only.
TASK_EVENTS: dict[str, tuple[str, ...]] = {
    "reach-v3": ("goal",),
    "push-v3": ("object", "goal"),
    "pick-place-v3": ("object", "goal"),
    "peg-insert-side-v3": ("object",),
    "drawer-open-v3": (),
    "button-press-topdown-v3": (),
}
SIM_STEP_S = 0.0125  # one MetaWorld step (frame_skip 5 x 2.5 ms); checked against env.dt at construction
GRIPPER_OPEN = -1.0


def _import_metaworld() -> tuple[Any, Any, Any]:
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import metaworld
        import mujoco
        from metaworld.policies import ENV_POLICY_MAP
    except ImportError as e:
        raise ImportError("the MetaWorld robot needs `pip install metaworld` (the vla-ecc[sim] extra)") from e
    # MetaWorld's scripted experts warn on every action that their gains exceed the action range (the env clips
    # it): noise about MetaWorld's own code, not about ours
    warnings.filterwarnings(
        "ignore", message=r"Constant\(s\) may be too high", category=UserWarning, module=r"metaworld\."
    )
    return metaworld, mujoco, ENV_POLICY_MAP


def check_task(task: str) -> None:
    """ValueError naming the valid tasks when ``task`` has no MetaWorld scripted expert."""
    _, _, policies = _import_metaworld()
    if task not in policies:
        raise ValueError(f"no scripted expert for task {task!r}; e.g. {', '.join(CLOSED_LOOP_TASKS)}")


def expert_policy(task: str) -> Any:
    """The task's scripted expert (``metaworld.policies``): stateless, ``get_action(state_observation)``."""
    check_task(task)
    return _import_metaworld()[2][task]()


def offscreen_viewer(env: Any, shadows: bool = False) -> Any:
    """The env's off-screen viewer (created on first use), with shadows and reflections off unless ``shadows``
    (a frame then costs ~5x less)."""
    _, mujoco, _ = _import_metaworld()
    viewer = env.unwrapped.mujoco_renderer._get_viewer("rgb_array")
    if not shadows:
        env.unwrapped.model.light_castshadow[:] = 0
        viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    return viewer


def render_frame(env: Any) -> np.ndarray:
    """The camera frame, upright (MetaWorld's fixed cameras render upside down: rotated 180 degrees here).
    The env's GL context is made current first: several envs (each with its own context) may live in a process."""
    env.unwrapped.mujoco_renderer._get_viewer("rgb_array").make_context_current()
    return np.ascontiguousarray(env.unwrapped.render()[::-1, ::-1])


def joint_state(data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 7 arm joints' positions, velocities and effective torques (the arm is moved by a mocap weld, so the
    torques are ``data.qfrc_constraint[:7]``)."""
    return data.qpos[:7].copy(), data.qvel[:7].copy(), data.qfrc_constraint[:7].copy()


def make_metaworld_env(task: str, seed: int, image_hw: tuple[int, int], camera: str) -> Any:
    """``gymnasium.make("Meta-World/MT1", ...)`` rendering ``image_hw`` frames from ``camera``."""
    import gymnasium as gym

    _import_metaworld()
    check_task(task)
    h, w = image_hw
    return gym.make(
        "Meta-World/MT1",
        env_name=task,
        seed=seed,
        render_mode="rgb_array",
        camera_name=camera,
        width=w,
        height=h,
        disable_env_checker=True,
    )


@dataclass(frozen=True, eq=False)
class SimState:
    """An exact copy of the simulation (``mjSTATE_INTEGRATION``) plus the env fields its step reads and writes."""

    physics: np.ndarray
    path_length: int
    prev_obs: np.ndarray
    obs: np.ndarray
    last_stable_obs: Any
    target_pos: np.ndarray


class MetaWorldSim:
    """One MetaWorld task as a robot: reset by seed, step one control period, copy and restore exactly, render.

    ``expert_rollout`` is the perfect VLA's engine: from a saved state it executes ``committed`` control actions
    and then lets the task's scripted expert choose ``n`` more (each held for one control step), and returns
    those ``n`` actions; the live simulation is restored afterwards.

    ``memo`` (default on): control steps, frames and expert rollouts are remembered, keyed by the exact state
    (scene, ``mjSTATE_INTEGRATION`` bytes, path length, frame-stacked observation, goal) and the action(s): planners
    that drive the same scene through the same states (every planner before its first chunk arrives, edge-only on
    every trace family, the expert for every model) pay for each transition once. A remembered step restores the
    stored state and reports the joint state the real step left, so results are the same bit for bit (tested).
    """

    def __init__(
        self,
        task: str,
        *,
        image_hw: tuple[int, int] = (64, 64),
        camera: str = "corner",
        sim_steps_per_control: int = 8,
        shadows: bool = False,
        task_seed: int = 0,
        memo: bool = True,
    ) -> None:
        metaworld, mujoco, _ = _import_metaworld()
        check_task(task)
        if int(sim_steps_per_control) != sim_steps_per_control or sim_steps_per_control < 1:
            raise ValueError(f"sim_steps_per_control must be an integer >= 1, got {sim_steps_per_control!r}")
        if min(image_hw) < 16:
            raise ValueError(f"image_hw must be at least 16x16, got {image_hw}")
        self.task = task
        self.sim_steps_per_control = int(sim_steps_per_control)
        self._mujoco = mujoco
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        h, w = image_hw
        # the env class itself, not gym.make's wrapper stack (which builds the MT1 task list a second time and
        # samples a random task at every reset): the task is set per episode from the seed
        self._env = ALL_V3_ENVIRONMENTS[task](render_mode="rgb_array", camera_name=camera, width=w, height=h)
        self._u = self._env.unwrapped
        if abs(float(self._u.dt) - SIM_STEP_S) > 1e-12:
            raise RuntimeError(f"MetaWorld step is {self._u.dt} s, this module assumes {SIM_STEP_S} s")
        self._u.max_path_length = 1 << 40  # the caller keeps the horizon (copies' steps count here too)
        self._tasks = list(metaworld.MT1(task, seed=task_seed).train_tasks)
        self._policy = expert_policy(task)
        offscreen_viewer(self._env, shadows)
        self._spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self._buf = np.empty(mujoco.mj_stateSize(self._u.model, self._spec))
        self.obs: np.ndarray = np.zeros(39)
        self.sim_steps = 0
        self.success_sim_step: int | None = None
        self.events = TASK_EVENTS.get(task, ())
        self.memo = bool(memo)
        self._scene = -1
        self._joints: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # a remembered step's joint state
        self._memo_steps: dict[bytes, tuple[SimState, int | None, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self._memo_frames: dict[bytes, np.ndarray] = {}
        self._memo_rollouts: dict[bytes, np.ndarray] = {}
        self.memo_hits = {"step": 0, "frame": 0, "rollout": 0}

    @property
    def control_dt_s(self) -> float:
        return SIM_STEP_S * self.sim_steps_per_control

    @property
    def data(self) -> Any:
        return self._u.data

    def close(self) -> None:
        """Release the renderer's GL context. The viewers are freed here rather than by ``env.close()``: gymnasium's
        ``OffScreenViewer.close`` also calls ``glfw.terminate()``, after which every simulator built later in the
        process rendered all-black frames (measured: a second task's frames summed to 0)."""
        self.clear_memo()
        renderer = self._u.mujoco_renderer
        for viewer in renderer._viewers.values():
            viewer.free()
        renderer._viewers = {}
        renderer.viewer = None
        self._env.close()

    def clear_memo(self) -> None:
        """Forget the remembered steps, frames and rollouts (memory)."""
        self._memo_steps.clear()
        self._memo_frames.clear()
        self._memo_rollouts.clear()

    def _key(self, state: SimState, *extra: np.ndarray | int) -> bytes:
        """A digest of everything a step, a frame or a rollout depends on: the scene (MetaWorld moves bodies in
        the model per scene), the exact simulation state and the env fields beside it, and ``extra``."""
        h = hashlib.blake2b(digest_size=20)
        h.update(np.array([self._scene, state.path_length], dtype=np.int64).tobytes())
        for a in (state.physics, state.prev_obs, state.obs, state.target_pos):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        for x in extra:
            h.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
        return h.digest()

    def reset(self, seed: int) -> np.ndarray:
        """Start the scene of episode ``seed`` (task ``seed mod 50``); returns the expert's state observation."""
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        u = self._u
        u.set_task(self._tasks[int(seed) % len(self._tasks)])
        obs, _ = u.reset()
        self.obs = np.asarray(obs, dtype=np.float64)
        self._scene = int(seed) % len(self._tasks)
        self._joints = None
        self.sim_steps = 0
        self.success_sim_step = None
        return self.obs

    # ---- exact copies
    def snapshot(self) -> SimState:
        u = self._u
        self._mujoco.mj_getState(u.model, u.data, self._buf, self._spec)
        last = u._last_stable_obs
        return SimState(
            self._buf.copy(),
            int(u.curr_path_length),
            np.array(u._prev_obs),
            self.obs.copy(),
            None if last is None else np.array(last),
            np.array(u._target_pos),
        )

    def restore(self, state: SimState) -> None:
        u = self._u
        self._joints = None
        self._mujoco.mj_setState(u.model, u.data, state.physics, self._spec)
        self._mujoco.mj_forward(u.model, u.data)
        # mj_forward rewrites the solver's warm start (last digits): set the state once more, bit for bit
        self._mujoco.mj_setState(u.model, u.data, state.physics, self._spec)
        u.curr_path_length = state.path_length
        u._prev_obs = state.prev_obs.copy()
        u._last_stable_obs = None if state.last_stable_obs is None else state.last_stable_obs.copy()
        u._target_pos = state.target_pos.copy()
        self.obs = state.obs.copy()

    # ---- acting
    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state, clipped into the action box."""
        return np.clip(np.asarray(self._policy.get_action(self.obs), dtype=np.float64), -1.0, 1.0)

    def _step_raw(self, action: np.ndarray) -> None:
        """One control step in a copy, bit for bit what ``env.step`` does to the simulation and the observation,
        without what only the live robot needs: the reward and success (``evaluate_state``: a third of a step's
        cost) and the observations of the intermediate MetaWorld steps (only the last two feed the frame-stacked
        observation the expert reads). ``mj_forward`` stays after every step: it rewrites the solver's warm start."""
        u, mujoco = self._u, self._mujoco
        n = self.sim_steps_per_control
        ctrl = [action[-1], -action[-1]]
        for i in range(n):
            u.set_xyz_action(action[:3])
            u.do_simulation(ctrl, n_frames=u.frame_skip)
            u.curr_path_length += 1
            for site in u._target_site_config:
                u._set_pos_site(*site)
            mujoco.mj_forward(u.model, u.data)
            if i == n - 2:
                u._prev_obs = u._get_curr_obs_combined_no_goal()
        space = u.sawyer_observation_space  # read now: set_task rebuilds it (goal bounds)
        obs = np.clip(u._get_obs(), a_max=space.high, a_min=space.low, dtype=np.float64)
        u._last_stable_obs = obs
        self.obs = np.asarray(obs, dtype=np.float64)

    def step_control(self, action: np.ndarray) -> bool:
        """Execute one control step (``action`` held for ``sim_steps_per_control`` MetaWorld steps); records the
        first MetaWorld step at which the task reports success. Returns whether the task has succeeded so far."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if a.shape != (4,):
            raise ValueError(f"a MetaWorld action has 4 values (dx, dy, dz, gripper), got shape {a.shape}")
        key = self._key(self.snapshot(), a) if self.memo else b""
        hit = self._memo_steps.get(key) if self.memo else None
        if hit is not None:
            after, first, joints = hit
            self.restore(after)
            self._joints = joints  # what the real step left (restoring recomputes the constraint forces)
            self.memo_hits["step"] += 1
        else:
            # a real step: the joint state is the simulation's again (a remembered step's ``_joints`` left set here
            # was reported for every later step until the next restore: the planners read a frozen arm)
            self._joints = None
            first = None
            for k in range(1, self.sim_steps_per_control + 1):
                obs, _, _, _, info = self._u.step(a)
                if first is None and info.get("success", 0.0):
                    first = k
            self.obs = np.asarray(obs, dtype=np.float64)
            if self.memo:
                self._memo_steps[key] = (self.snapshot(), first, joint_state(self._u.data))
        if self.success_sim_step is None and first is not None:
            self.success_sim_step = self.sim_steps + first
        self.sim_steps += self.sim_steps_per_control
        return self.success_sim_step is not None

    @property
    def time_to_success_s(self) -> float | None:
        """Simulated time from the episode start to the first successful MetaWorld step, None before success."""
        return None if self.success_sim_step is None else self.success_sim_step * SIM_STEP_S

    def expert_rollout(self, start: SimState, committed: np.ndarray | list, n: int) -> np.ndarray:
        """From ``start``, execute the ``committed`` control actions, then return the expert's next ``n`` actions
        (rolled forward in the copy). The live simulation (and its success record) is left exactly as it was."""
        live = self.snapshot()
        key = b""
        if self.memo:
            key = self._key(start, np.asarray(committed, dtype=np.float64).reshape(-1), n)
            hit = self._memo_rollouts.get(key)
            if hit is not None:
                self.restore(live)  # what a rollout leaves behind: the live state, restored
                self.memo_hits["rollout"] += 1
                return hit.copy()
        steps, success = self.sim_steps, self.success_sim_step
        out = np.empty((n, 4))
        try:
            self.restore(start)
            for a in committed:
                self._step_raw(np.clip(np.asarray(a, dtype=np.float64), -1.0, 1.0))
            for i in range(n):
                out[i] = self.expert_action()
                if i + 1 < n:
                    self._step_raw(out[i])
        finally:
            self.restore(live)
            self.sim_steps, self.success_sim_step = steps, success
        if self.memo:
            self._memo_rollouts[key] = out.copy()
        return out

    # ---- sensing
    def render(self) -> np.ndarray:
        """The camera frame of the current state (remembered per state with ``memo``)."""
        if not self.memo:
            return render_frame(self._env)
        key = self._key(self.snapshot())
        frame = self._memo_frames.get(key)
        if frame is None:
            frame = self._memo_frames[key] = render_frame(self._env)
        else:
            self.memo_hits["frame"] += 1
        return frame.copy()

    def joints(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._joints is not None:
            return tuple(x.copy() for x in self._joints)  # type: ignore[return-value]
        return joint_state(self._u.data)

    # ---- scene events
    def object_pos(self) -> np.ndarray:
        return self._u.data.qpos[9:12].copy()

    def goal_pos(self) -> np.ndarray:
        return np.array(self._u._target_pos)

    def _refresh_obs(self) -> None:
        obs = self._u._get_obs()
        space = self._u.sawyer_observation_space  # read now: set_task rebuilds it (the goal's bounds)
        self.obs = np.clip(obs, space.low, space.high).astype(np.float64)

    def displace_object(self, offset_xy: np.ndarray) -> np.ndarray:
        """Move the task's free object by ``offset_xy`` metres on the table (at rest); returns its new position."""
        if "object" not in self.events:
            raise ValueError(f"task {self.task} has no free object to displace (events: {self.events})")
        pos = self.object_pos()
        pos[:2] += np.asarray(offset_xy, dtype=np.float64)[:2]
        self._joints = None
        self._u._set_obj_xyz(pos)
        self._refresh_obs()
        return pos

    def move_goal(self, offset_xy: np.ndarray) -> np.ndarray:
        """Move the goal by ``offset_xy`` metres, kept inside the task's goal region (the expert sees it in its
        observation; success is measured against it); returns the new goal."""
        if "goal" not in self.events:
            raise ValueError(f"task {self.task} has no movable goal (events: {self.events})")
        goal = self.goal_pos()
        goal[:2] += np.asarray(offset_xy, dtype=np.float64)[:2]
        space = self._u.goal_space
        goal = np.clip(goal, space.low, space.high)
        self._joints = None
        self._u._target_pos = goal
        self._refresh_obs()
        return goal
