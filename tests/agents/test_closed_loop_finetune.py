"""Closed-loop fine-tuning (agents.closed_loop_finetune): the success term on hand-made steps, the training env's
observation and reward against the plain closed-loop env on the real simulator, and a fine-tuned run that saves,
loads (and is refused) through agents.artifact and runs in the closed-loop evaluation like any policy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.closed_loop_finetune import FinetuneSettings, SuccessReward


def test_success_term_on_hand_made_steps():
    r = SuccessReward(success_bonus=20.0, time_cost_per_s=1.0)
    assert r.term(succeeded=False, period_s=0.1) == pytest.approx(-0.1)  # each control step costs its time
    assert r.term(succeeded=True, period_s=0.1) == pytest.approx(19.9)  # the bonus at the step that succeeds
    assert SuccessReward(0.0, 0.0).term(succeeded=True, period_s=0.1) == 0.0  # off: the env's reward alone
    for bad in (dict(success_bonus=-1.0), dict(time_cost_per_s=float("nan"))):
        with pytest.raises(ValueError, match="SuccessReward"):
            SuccessReward(**bad)
    from agents.training import TrainConfig

    with pytest.raises(ValueError, match="success_bonus"):
        TrainConfig(success_bonus=-2.0)
    with pytest.raises(ValueError, match="closed_loop_events"):
        TrainConfig(closed_loop_events=("storm",))


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="event setting"):
        FinetuneSettings(events=("storm",))
    with pytest.raises(ValueError, match="scene"):
        FinetuneSettings(scenes=(50,))
    with pytest.raises(ValueError, match="episode_s"):
        FinetuneSettings(episode_s=0.0)


def test_training_env_observes_like_the_closed_loop_env_and_adds_the_term(toy):
    pytest.importorskip("metaworld")
    from agents.closed_loop_finetune import closed_loop_env_config, make_training_env
    from agents.training import TrainConfig
    from ecc_env.closed_loop import ClosedLoopConfig, ClosedLoopSplitEnv, EventConfig

    edge, cloud = toy.two_cut_profiles()
    traces = toy.alternating_set()
    env_cfg = closed_loop_env_config(TrainConfig(), edge, cloud, 3.0)
    settings = FinetuneSettings(events=("on",), episode_s=3.0, reward=SuccessReward(20.0, 1.0))
    wrapped = make_training_env(edge, cloud, traces, env_cfg, settings, ["reach-v3"])
    try:
        obs, info = wrapped.reset(seed=7)
        seed = info["episode_seed"]
        assert seed % 50 in settings.scenes and info["task"] == "reach-v3" and info["events"] == "on"
        edge_only = np.array([wrapped.active.edge_only_index, 0])
        seen, rewards, terms = [obs], [], []
        while True:  # infer on the edge every step: reach succeeds within the horizon
            np.testing.assert_array_equal(wrapped.action_masks(), wrapped.active.action_masks())
            obs, reward, term, trunc, info = wrapped.step(edge_only)
            seen.append(obs)
            rewards.append((reward, info["env_reward"]))
            terms.append(info["success_term"])
            if term or trunc:
                break
        assert term and info["success"]
        assert terms[-1] == pytest.approx(20.0 - 0.1) and all(t == pytest.approx(-0.1) for t in terms[:-1])
        for (total, env_reward), term_i in zip(rewards, terms):
            assert total == pytest.approx(env_reward + term_i)

        # the plain closed-loop env on the same simulator, scene, trace segment and events: the same observations
        cl = ClosedLoopConfig("reach-v3", events=EventConfig.on())
        plain = ClosedLoopSplitEnv(edge, cloud, traces, closed_loop=cl, config=env_cfg, sim=wrapped.sims[0])
        obs, _ = plain.reset(seed=seed)
        np.testing.assert_array_equal(obs, seen[0])
        for i, (_, env_reward) in enumerate(rewards):
            obs, reward, term, trunc, _ = plain.step(edge_only)
            np.testing.assert_array_equal(obs, seen[i + 1])
            assert reward == env_reward
        assert term
    finally:
        wrapped.close()


@pytest.mark.slow
def test_a_finetuned_run_saves_loads_and_runs_like_any_policy(tmp_path, toy):
    pytest.importorskip("metaworld")
    from dataclasses import replace

    from agents.artifact import (
        PolicyExpectation,
        PolicyLoadError,
        legacy_profile_id,
        load_model,
        load_policy,
        profile_id,
    )
    from agents.closed_loop_eval import EXPERT, ClosedLoopEvalConfig, run_closed_loop_eval
    from agents.closed_loop_finetune import closed_loop_env_config, finetune_closed_loop
    from agents.training import train
    from ecc_env.closed_loop import ClosedLoopConfig, ClosedLoopSplitEnv

    profiles, traces = toy.three_block_profiles(), toy.alternating_set()
    base_cfg = toy.tiny_train_config(tmp_path, "base")
    base = train(base_cfg, trace_set=traces, profiles=profiles)
    # a base trained before Profiles carried calibrated overheads names them by their legacy id: still accepted
    meta_file = base.policy_path.with_suffix(".json")
    meta = json.loads(meta_file.read_text())
    assert meta["profiles"]["edge"] == profile_id(profiles[0])
    meta["profiles"] = {"edge": legacy_profile_id(profiles[0]), "cloud": legacy_profile_id(profiles[1])}
    assert meta["profiles"]["edge"] != profile_id(profiles[0])
    meta_file.write_text(json.dumps(meta))
    n_cuts = len(profiles[0].cuts)
    assert legacy_profile_id(replace(profiles[0], block_ms_scale=(1.2,) * n_cuts)) is None  # a later field: none

    settings = FinetuneSettings(tasks=("reach-v3",), events=("off",), episode_s=1.5)
    cfg = replace(
        base_cfg, closed_loop_finetune=str(base.run_dir), total_timesteps=64, n_steps=32, batch_size=32, run_name="ft"
    )
    ft = finetune_closed_loop(cfg, settings=settings, trace_set=traces, profiles=profiles)
    assert ft.timesteps >= 64 and ft.policy_path.is_file() and len(ft.curve) >= 2
    assert (ft.run_dir / "finetune_curve.csv").read_text().startswith("timesteps,wall_s,episodes,success_rate")
    # validation off (the default): the last model, and the same files as before validation existed
    assert ft.best_step is None and ft.last_policy_path is None and ft.validation == []
    files = {"config.json", "finetune_curve.csv", "policy.json", "policy.safetensors"}
    assert {f.name for f in ft.run_dir.iterdir()} == files

    env_cfg = closed_loop_env_config(base_cfg, *profiles, 1.5)
    env = ClosedLoopSplitEnv(*profiles, traces, closed_loop=ClosedLoopConfig("reach-v3"), config=env_cfg)
    try:
        expect = PolicyExpectation.for_env(env)
        loaded = load_policy(ft.policy_path, expect)
        info = loaded.metadata["closed_loop_finetune"]
        assert info["base_run"] == str(base.run_dir) and info["tasks"] == ["reach-v3"] and info["timesteps"] == 64
        assert info["reward"] == {"success_bonus": 20.0, "time_cost_per_s": 1.0}
        assert info["scenes"] == list(range(30, 50)) and "validation" not in info
        assert loaded.metadata["profiles"]["edge"] == profile_id(profiles[0])  # the current ids
        before = load_model(base.policy_path).policy.state_dict()
        after = load_model(ft.policy_path).policy.state_dict()
        assert set(before) == set(after) and any(not before[k].equal(after[k]) for k in before)
        # refusal rules as for any policy: another action space, corrupt weights
        with pytest.raises(PolicyLoadError, match="action space"):
            load_policy(ft.policy_path, replace(expect, num_cuts=7))
        with pytest.raises(PolicyLoadError, match="cloud profile mismatch"):
            load_policy(ft.policy_path, replace(expect, cloud_profile_id="x", legacy_profile_ids=(None, None)))
    finally:
        env.close()
    data = bytearray(ft.policy_path.read_bytes())
    data[-1] ^= 0xFF
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "policy.safetensors").write_bytes(bytes(data))
    (corrupt / "policy.json").write_text(ft.policy_path.with_suffix(".json").read_text())
    with pytest.raises(PolicyLoadError, match="sha256"):
        load_policy(corrupt / "policy.safetensors")

    # a base whose Profiles are not the ones given is refused before any training
    with pytest.raises(PolicyLoadError, match="Profiles"):
        finetune_closed_loop(cfg, settings=settings, trace_set=traces, profiles=toy.two_cut_profiles())
    with pytest.raises(PolicyLoadError, match="not found"):
        finetune_closed_loop(replace(cfg, closed_loop_finetune=str(tmp_path / "none")), trace_set=traces)

    # it deploys like the base: the closed-loop evaluation loads it as ppo:RUN
    ev = ClosedLoopEvalConfig(
        planners=f"ppo:{ft.run_dir}", tasks="reach-v3", episodes=1, events="off", vlas="aware", episode_s=1.5
    )
    report = run_closed_loop_eval(replace(ev, budget_ms=float("inf")), trace_set=traces, profiles=profiles)
    (ppo,) = [o for o in report.episodes if o.planner != EXPERT]
    assert ppo.planner.startswith("ppo") and ppo.inferences >= 1


def test_both_training_commands_refuse_a_missing_base_run(tmp_path, capsys):
    import importlib

    from agents.train_cli import main as ecc_train

    missing = str(tmp_path / "no-such-run")
    assert ecc_train(["--closed-loop-finetune", missing, "--total-timesteps", "8"]) == 2
    assert "not found" in capsys.readouterr().err
    recipe = importlib.import_module("train")
    assert recipe.main(["--closed-loop-finetune", missing, "--total-timesteps", "8"]) == 2
    assert "not found" in capsys.readouterr().err


def test_base_profile_ids_one_rule_for_both_sides_where_the_runtime_takes_each_side_alone(toy):
    """One comparison (agents.artifact.profile_id_mismatch) serves both checks: fine-tuning refuses a base whose
    sides follow different id rules, ``load_policy`` accepts each side under either rule; a wrong id is refused by
    both with the side and both ids named."""
    from pathlib import Path

    from agents.artifact import PolicyExpectation, PolicyLoadError, _check, legacy_profile_id, profile_id
    from agents.closed_loop_finetune import check_base_profiles

    edge, cloud = toy.three_block_profiles()
    cur = {"edge": profile_id(edge), "cloud": profile_id(cloud)}
    old = {"edge": legacy_profile_id(edge), "cloud": legacy_profile_id(cloud)}
    assert None not in old.values() and not set(old.values()) & set(cur.values())
    expect = PolicyExpectation(
        edge_profile_id=cur["edge"], cloud_profile_id=cur["cloud"], legacy_profile_ids=(old["edge"], old["cloud"])
    )
    where = Path("base/policy.json")
    for ids in (cur, old):  # current and legacy pairs: accepted by both; the fine-tuned run is saved under `cur`
        assert check_base_profiles({"profiles": ids}, where, edge, cloud) == cur
        _check({"profiles": ids}, expect, where)
    mixed = {"edge": cur["edge"], "cloud": old["cloud"]}
    _check({"profiles": mixed}, expect, where)  # the runtime: each side alone
    with pytest.raises(PolicyLoadError, match=r"cloud profile mismatch.*legacy id.*one id rule") as e:
        check_base_profiles({"profiles": mixed}, where, edge, cloud)  # fine-tuning: one rule for both sides
    assert old["cloud"] in str(e.value) and cur["cloud"] in str(e.value) and "base/policy.json" in str(e.value)
    for side in ("edge", "cloud"):
        wrong = {**cur, side: "toy/tiny@elsewhere:roofline:0"}
        for check in (
            lambda m: check_base_profiles(m, where, edge, cloud),
            lambda m: _check(m, expect, where),
        ):
            with pytest.raises(PolicyLoadError, match=f"{side} profile mismatch") as e:
                check({"profiles": wrong})
            assert "toy/tiny@elsewhere:roofline:0" in str(e.value) and cur[side] in str(e.value)
    with pytest.raises(PolicyLoadError, match="edge profile mismatch: policy was trained on None"):
        check_base_profiles({"profiles": ["not", "a", "dict"]}, where, edge, cloud)


def test_paired_comparison_counts_discordant_pairs():
    from agents.closed_loop_eval import EpisodeOutcome
    from agents.closed_loop_finetune import paired_comparison, sign_test_p

    def ep(planner, seed, ok, tts=1.0, n=4):
        return EpisodeOutcome(planner, "pick-place-v3", "aware", "on", seed, ok, tts if ok else None, n, 20, [], 0, 0.0)

    before = [ep("a", s, s < 3) for s in range(10)]  # 3 of 10
    after = [ep("b", s, s != 0, 2.0, 6) for s in range(10)]  # 9 of 10: gains seeds 3-9, loses seed 0
    r = paired_comparison(before + after + [ep("b", 99, True)], "a", "b")  # seed 99 has no pair
    assert r["pairs"] == 10 and r["before_successes"] == 3 and r["after_successes"] == 9
    assert r["gained"] == 7 and r["lost"] == 1
    assert r["p_value"] == pytest.approx(2 * 9 / 256)  # P(at most 1 of 8 discordant pairs) both ways
    assert r["before_median_tts_s"] == 1.0 and r["after_median_tts_s"] == 2.0 and r["after_inferences"] == 6.0
    assert sign_test_p(0, 0) == 1.0 and sign_test_p(5, 5) == 1.0
    with pytest.raises(ValueError, match="no episodes"):
        paired_comparison(before, "a", "c")


def test_softened_logits_keep_every_decision_and_explore_again(toy):
    import torch
    from sb3_contrib import MaskablePPO

    from agents.closed_loop_finetune import soften_action_logits
    from agents.training import TrainConfig

    env = toy.make_env(toy.three_block_profiles(), toy.alternating_set())
    model = MaskablePPO("MlpPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu")
    with torch.no_grad():
        model.policy.action_net.weight.mul_(40.0)  # a policy that has become certain of its choices
    obs = torch.as_tensor(np.stack([env.observation_space.sample() for _ in range(32)]))

    def logits():
        with torch.no_grad():
            latent = model.policy.mlp_extractor.forward_actor(model.policy.extract_features(obs))
            return model.policy.action_net(latent)

    before = logits()
    soften_action_logits(model.policy, 4.0)
    after = logits()
    torch.testing.assert_close(after, before / 4.0)
    sizes = list(env.action_space.nvec)
    for b, a in zip(before.split(sizes, dim=1), after.split(sizes, dim=1)):
        assert torch.equal(b.argmax(1), a.argmax(1))  # the same deterministic decisions
        assert a.softmax(1).max(1).values.mean() < b.softmax(1).max(1).values.mean()  # less certain
    with pytest.raises(ValueError, match="temperature"):
        soften_action_logits(model.policy, 0.0)
    with pytest.raises(ValueError, match="finetune_temperature"):
        TrainConfig(finetune_temperature=float("inf"))


def test_validation_settings_resolve_scenes_and_refuse_bad_values(capsys):
    from agents.closed_loop_finetune import validation_key, validation_plan
    from agents.train_cli import config_from_args
    from agents.training import TrainConfig

    off = FinetuneSettings()
    assert off.scenes == tuple(range(30, 50)) and off.validation_scenes == ()  # the old recipe's training scenes
    on = FinetuneSettings(validate_every_steps=512)
    assert on.scenes == tuple(range(30, 45)) and on.validation_scenes == tuple(range(45, 50))
    assert FinetuneSettings(validate_every_steps=1, scenes=(30, 31), validation_scenes=(40,)).scenes == (30, 31)
    for bad, field in (
        (dict(validate_every_steps=-1), "validate_every_steps"),
        (dict(validation_episodes=0), "validation_episodes"),
        (dict(validate_every_steps=8, validation_scenes=(29, 45)), r"validation_scenes.*evaluation's scenes 0-29"),
        (dict(validate_every_steps=8, validation_scenes=(50,)), r"validation_scenes.*0-49"),
        (dict(validate_every_steps=8, scenes=(40, 45), validation_scenes=(45, 46)), r"overlap.*\[45\]"),
    ):
        with pytest.raises(ValueError, match=field):
            FinetuneSettings(**bad)
        if "scenes" not in bad:  # TrainConfig checks its validation fields the same way (training scenes: not one)
            with pytest.raises(ValueError, match=field):
                TrainConfig(**bad)
    cfg = config_from_args(["--validate-every-steps", "512", "--validation-episodes", "4", "--validation-scenes", "46"])
    assert (cfg.validate_every_steps, cfg.validation_episodes, cfg.validation_scenes) == (512, 4, (46,))
    for argv, field in (
        (["--validate-every-steps", "-1"], "validate_every_steps"),
        (["--validation-scenes", "3"], "0-29"),
    ):
        with pytest.raises(SystemExit) as e:  # the command line: exit 2, the field named
            config_from_args(argv)
        assert e.value.code == 2 and field in capsys.readouterr().err.replace("\n", " ")

    # fixed episodes, drawn once: every (task, events) env and validation scene in turn, seeds in those scenes
    plan = validation_plan(FinetuneSettings(validate_every_steps=8, validation_episodes=6), 4, seed=3)
    assert plan == validation_plan(FinetuneSettings(validate_every_steps=8, validation_episodes=6), 4, seed=3)
    assert [j for j, _ in plan] == [0, 1, 2, 3, 0, 1] and [s % 50 for _, s in plan] == [45, 46, 47, 48, 49, 45]
    assert len({s for _, s in plan}) == 6
    # best first: success, then lower median time-to-success (none last), then earlier
    rows = [
        dict(timesteps=0, success_rate=0.5, median_tts_s=1.0),
        dict(timesteps=8, success_rate=0.75, median_tts_s=2.0),
        dict(timesteps=16, success_rate=0.75, median_tts_s=1.5),
        dict(timesteps=24, success_rate=0.75, median_tts_s=1.5),
        dict(timesteps=32, success_rate=0.0, median_tts_s=float("nan")),
    ]
    assert [r["timesteps"] for r in sorted(rows, key=validation_key)] == [16, 24, 8, 0, 32]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, toy):
    """A tiny base run (PPO on the toy Profiles and traces) to fine-tune."""
    from agents.training import train

    profiles, traces = toy.three_block_profiles(), toy.alternating_set()
    cfg = toy.tiny_train_config(
        tmp_path_factory.mktemp("runs"), "base", total_timesteps=128, n_steps=64, eval_every_steps=128
    )
    return cfg, train(cfg, trace_set=traces, profiles=profiles), profiles, traces


@pytest.mark.slow
def test_validation_keeps_the_best_checkpoint_and_the_last(base_run, monkeypatch):
    pytest.importorskip("metaworld")
    import csv
    from dataclasses import replace

    import agents.closed_loop_eval as cle
    from agents.artifact import load_model, load_policy
    from agents.closed_loop_finetune import finetune_closed_loop, state_sha256, validation_key

    real_run_episode, calls = cle.run_episode, []

    def run_episode(env, planner, seed, **kw):  # the real episode; success fixed so step 32's validation is best
        o = real_run_episode(env, planner, seed, **kw)
        calls.append(seed)
        o.success, o.time_to_success_s = (len(calls) - 1) // 2 == 1 or len(calls) == 1, 0.5
        return o

    monkeypatch.setattr(cle, "run_episode", run_episode)

    base_cfg, base, profiles, traces = base_run
    settings = FinetuneSettings(
        tasks=("reach-v3",), events=("off",), episode_s=1.0, validate_every_steps=32, validation_episodes=2
    )
    cfg = replace(
        base_cfg,
        closed_loop_finetune=str(base.run_dir),
        total_timesteps=64,
        n_steps=32,
        batch_size=32,
        learning_rate=0.05,  # big steps: the checkpoints differ
        run_name="ft-val",
    )
    ft = finetune_closed_loop(cfg, settings=settings, trace_set=traces, profiles=profiles)
    with (ft.run_dir / "finetune_validation.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["timesteps"]) for r in rows] == [0, 32, 64]  # the base, after each update of 32 steps
    assert all(int(r["episodes"]) == 2 for r in rows) and len({r["weights_sha256"] for r in rows}) == 3
    assert [r["weights_sha256"] for r in rows] == [r["weights_sha256"] for r in ft.validation]
    best = min(ft.validation, key=validation_key)
    assert [r["success_rate"] for r in ft.validation] == [0.5, 1.0, 0.0] and calls[:2] == calls[2:4] == calls[4:]
    assert ft.best_step == best["timesteps"] == 32  # neither the base nor the last

    saved = load_model(ft.policy_path).policy.state_dict()
    last = load_model(ft.last_policy_path).policy.state_dict()
    assert state_sha256(saved) == best["weights_sha256"]  # the saved policy is the best validation's checkpoint
    assert state_sha256(last) == ft.validation[-1]["weights_sha256"]  # and the last one is kept
    assert ft.last_policy_path == ft.run_dir / "last" / "policy.safetensors"
    for path, row, selected in ((ft.policy_path, best, True), (ft.last_policy_path, ft.validation[-1], False)):
        info = load_policy(path).metadata["closed_loop_finetune"]["validation"]
        assert info["selected"] is selected and info["timesteps"] == row["timesteps"]
        assert info["success_rate"] == row["success_rate"] and info["every_steps"] == 32
        assert info["scenes"] == [45, 46, 47, 48, 49] and [s % 50 for s in info["seeds"]] == [45, 46]
    meta = load_policy(ft.policy_path).metadata["closed_loop_finetune"]
    assert meta["scenes"] == list(range(30, 45))  # training scenes leave the validation scenes out
