"""The closed loop's timing rule on hand-made cases (no simulator needed): arrival step, entry index, holding with
the last gripper command, skips continuing the chunk."""

from __future__ import annotations

import numpy as np
import pytest

from ecc_env.closed_loop import ChunkTimeline, EventConfig, arrival_step, sim_steps_per_control


def chunk(n: int, base: float, grip: float = 1.0) -> np.ndarray:
    """n actions whose x is base + index (so the executed index can be read back) and a constant gripper."""
    a = np.zeros((n, 4))
    a[:, 0] = base + np.arange(n)
    a[:, 3] = grip
    return a


def test_arrival_is_the_first_step_boundary_at_or_after_completion():
    assert arrival_step(0.0, 0.1) == 0  # zero latency: the chunk drives the observation's own step
    assert arrival_step(0.1, 0.1) == 1  # exactly on a boundary (float rounding of 0.1 included)
    assert arrival_step(0.30000000000000004, 0.1) == 3
    assert arrival_step(0.1001, 0.1) == 2
    assert arrival_step(0.25, 0.1) == 3


def test_late_chunk_enters_at_the_action_meant_for_now():
    tl = ChunkTimeline("aligned")
    tl.deliver(chunk(8, 0.0), start_step=0, obs_step=0, arrival_step=0)
    # computed on the observation of step 2, ready 250 ms later: arrives at step 5, its first 3 actions are stale
    tl.deliver(chunk(8, 100.0), start_step=2, obs_step=2, arrival_step=arrival_step(0.2 + 0.25, 0.1))
    xs = [tl.commit().action[0] for _ in range(8)]
    assert xs == [0, 1, 2, 3, 4, 103, 104, 105]
    assert tl.executed[5].index == 3 and tl.executed[5].delivery.obs_step == 2


def test_index0_option_enters_a_late_chunk_at_its_first_action():
    tl = ChunkTimeline("index0")
    tl.deliver(chunk(8, 0.0), start_step=0, obs_step=0, arrival_step=0)
    tl.deliver(chunk(8, 100.0), start_step=2, obs_step=2, arrival_step=5)
    assert [tl.commit().action[0] for _ in range(8)] == [0, 1, 2, 3, 4, 100, 101, 102]


def test_exhausted_chunk_holds_still_with_the_last_gripper_command():
    tl = ChunkTimeline("aligned")
    first = tl.commit()  # before any chunk: hold, gripper open
    assert first.holding and first.action.tolist() == [0.0, 0.0, 0.0, -1.0]
    a = chunk(3, 10.0, grip=0.0)
    a[-1, 3] = 0.8  # the chunk closes the gripper on its last action
    tl.deliver(a, start_step=1, obs_step=0, arrival_step=1)
    acts = [tl.commit() for _ in range(5)]
    assert [x.action[0] for x in acts] == [10, 11, 12, 0, 0]
    assert [x.holding for x in acts] == [False, False, False, True, True]
    np.testing.assert_array_equal(acts[3].action, [0.0, 0.0, 0.0, 0.8])  # not an all-zero (half-open) gripper
    np.testing.assert_array_equal(acts[4].action, [0.0, 0.0, 0.0, 0.8])


def test_chunk_entirely_stale_on_arrival_holds_with_the_previous_gripper():
    tl = ChunkTimeline("aligned")
    tl.deliver(chunk(2, 0.0, grip=0.5), start_step=0, obs_step=0, arrival_step=0)
    tl.deliver(chunk(4, 50.0, grip=-0.5), start_step=2, obs_step=2, arrival_step=7)  # 5 steps late, 4 actions
    acts = [tl.commit() for _ in range(8)]
    assert [x.action[0] for x in acts] == [0, 1, 0, 0, 0, 0, 0, 0]
    assert all(x.action[3] == 0.5 for x in acts)  # the stale chunk's gripper is never executed


def test_skipped_steps_continue_the_chunk_and_preview_matches_commit():
    tl = ChunkTimeline("aligned")
    tl.deliver(chunk(8, 0.0), start_step=0, obs_step=0, arrival_step=0)
    # steps 0..5 are skips: nothing is delivered, the chunk goes on
    ahead = tl.preview(0, 10)
    done = [tl.commit() for _ in range(10)]
    assert [x.action[0] for x in done] == [0, 1, 2, 3, 4, 5, 6, 7, 0, 0]
    for p, d in zip(ahead, done):
        np.testing.assert_array_equal(p.action, d.action)
    assert all(p is d for p, d in zip(tl.preview(3, 5), done[3:5]))  # executed steps come back as they were


def test_deliveries_that_break_causality_are_refused():
    tl = ChunkTimeline("aligned")
    for _ in range(3):
        tl.commit()
    with pytest.raises(ValueError, match="already executed"):
        tl.deliver(chunk(4, 0.0), start_step=0, obs_step=0, arrival_step=2)
    with pytest.raises(ValueError, match="obs_step"):
        tl.deliver(chunk(4, 0.0), start_step=3, obs_step=5, arrival_step=4)
    with pytest.raises(ValueError, match="actions"):
        tl.deliver(np.zeros((4, 3)), start_step=3, obs_step=3, arrival_step=3)
    with pytest.raises(ValueError, match="entry"):
        ChunkTimeline("late")


def test_control_period_must_be_whole_metaworld_steps_and_events_validate():
    assert sim_steps_per_control(100.0) == 8  # 10 Hz control, EnvConfig's default period
    assert sim_steps_per_control(25.0) == 2
    with pytest.raises(ValueError, match="whole number"):
        sim_steps_per_control(30.0)
    assert not EventConfig.off().enabled and EventConfig.on().enabled
    with pytest.raises(ValueError, match="displace_at_s"):
        EventConfig(displace_at_s=-1.0)
    with pytest.raises(ValueError, match="goal_m"):
        EventConfig(goal_m=(0.2, 0.1))


def test_event_settings_are_labelled_and_noise_alone_moves_nothing():
    noise = EventConfig.noise_only()
    assert noise.noise == EventConfig.on().noise and noise.displace_at_s is None and noise.goal_at_s is None
    assert [e.label for e in (EventConfig.off(), noise, EventConfig.on())] == ["off", "noise", "on"]
    assert EventConfig(goal_at_s=0.3).label == "on"
