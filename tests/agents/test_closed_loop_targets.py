"""The closing-note tables: reports merged by (model, trace family) and the deployable PPO's targets checked per
task on hand-made episodes whose numbers are known."""

from __future__ import annotations

import pytest

from agents.closed_loop_eval import EXPERT, ClosedLoopReport, EpisodeOutcome, summarize
from agents.closed_loop_targets import (
    Targets,
    cell_table,
    family_label,
    merge_reports,
    noise_table,
    target_checks,
    target_table,
)


def ep(planner: str, seed: int, success: bool, tts: float | None, task: str = "reach-v3", events: str = "on"):
    return EpisodeOutcome(
        planner=planner,
        task=task,
        vla="-" if planner == EXPERT else "aware",
        events=events,
        seed=seed,
        success=success,
        time_to_success_s=tts if success else None,
        inferences=3,
        decisions=5,
        inference_latency_ms=[90.0] * 3,
        deadline_misses=0,
        up_bytes=0.0,
    )


def report(model: str, traces: str, episodes: list[EpisodeOutcome]) -> ClosedLoopReport:
    return ClosedLoopReport(summarize(episodes), episodes, {"config": {"model": model, "traces": traces}})


def test_family_label_keeps_the_parent_of_an_ambiguous_folder():
    assert family_label("/x/traces/lumos5g_mmwave/4G") == "lumos5g_mmwave/4G"
    assert family_label("/x/traces/wifi_cellular_sbu_mptraces/") == "wifi_cellular_sbu_mptraces"


def test_reports_merge_by_model_and_family_and_refuse_an_episode_twice():
    a = report("pi0", "/t/lumos5g_mmwave/4G", [ep(EXPERT, 0, True, 0.5), ep("edge", 0, True, 0.6)])
    b = report("pi0", "/t/lumos5g_mmwave/4G", [ep("ppo", 0, True, 0.6)])
    c = report("openvla", "/t/lumos5g_mmwave/4G", [ep("ppo", 0, False, None)])
    cells = merge_reports([a, b, c])
    assert [(x.model, x.family, len(x.episodes)) for x in cells] == [
        ("pi0", "lumos5g_mmwave/4G", 3),
        ("openvla", "lumos5g_mmwave/4G", 1),
    ]
    table = cell_table(cells, "reach-v3", "on")
    assert "| ppo | 1.00 / 0.60 (1) | 0.00 / - (1) |" in table
    assert table.splitlines()[2].startswith(f"| {EXPERT} |")  # the ceiling first
    with pytest.raises(ValueError, match="more than one report"):
        merge_reports([a, a])


def test_a_later_report_overlays_a_re_run_planner():
    grid = report("pi0", "/t/wifi", [ep(EXPERT, 0, True, 0.5), ep("ppo", 0, False, None), ep("ppo", 1, True, 0.7)])
    rerun = report("pi0", "/t/wifi", [ep("ppo", 0, True, 0.6)])
    (cell,) = merge_reports([grid, rerun], later_wins=True)
    by_key = {(o.planner, o.seed): o for o in cell.episodes}
    assert len(cell.episodes) == 3
    assert by_key[("ppo", 0)].success and by_key[("ppo", 0)].time_to_success_s == 0.6  # the re-run's episode
    assert by_key[(EXPERT, 0)].success and by_key[("ppo", 1)].time_to_success_s == 0.7  # kept


def test_target_check_numbers_and_verdicts():
    eps = [ep(EXPERT, s, True, 1.0) for s in range(4)]
    eps += [ep("edge", s, True, 2.4) for s in range(4)]
    eps += [ep("heuristic", s, s < 3, 1.1) for s in range(4)]  # 0.75
    eps += [ep("ppo", s, s < 3, 1.1) for s in range(4)]  # 0.75: 25 points under the expert
    (k,) = target_checks(merge_reports([report("pi0", "/t/wifi", eps)]))
    assert (k.ppo_success, k.expert_success, k.best_other, k.best_other_success) == (0.75, 1.0, "edge", 1.0)
    assert not k.success_ok and k.tts_expert_ok and k.tts_edge_ok  # 1.1x expert, 0.46x edge-only
    assert k.ratio_expert == pytest.approx(1.1) and k.ratio_edge == pytest.approx(1.1 / 2.4)
    eps = [e for e in eps if e.planner != "ppo"] + [ep("ppo", s, True, 1.2) for s in range(4)]
    (k,) = target_checks(merge_reports([report("pi0", "/t/wifi", eps)]))
    assert k.success_ok and not k.tts_expert_ok and k.tts_edge_ok  # 1.2x > 1.15x
    (k,) = target_checks(merge_reports([report("pi0", "/t/wifi", eps)]), targets=Targets(tts_vs_expert=1.25))
    assert k.tts_expert_ok
    assert (
        "| pi0 | wifi | reach-v3 | 4 | 1.00 | 1.00 | edge 1.00 | met | 1.20 | 1.20x | 0.50x | **missed** | met |"
        in target_table([target_checks(merge_reports([report("pi0", "/t/wifi", eps)]))[0]])
    )


def test_noise_table_compares_success_under_noise_with_events_off():
    eps = [ep("ppo", s, True, 1.0, events="off") for s in range(4)]
    eps += [ep("ppo", s, s < 3, 1.0, events="noise") for s in range(4)]
    eps += [ep("vision", s, True, 1.0, events=e) for s in range(4) for e in ("off", "noise")]
    table = noise_table(merge_reports([report("pi0", "/t/wifi", eps)]))
    assert "| pi0 | wifi | reach-v3 | ppo | 1.00 | 0.75 | 3.0 | 3.0 | **missed** |" in table
    assert "| pi0 | wifi | reach-v3 | vision | 1.00 | 1.00 | 3.0 | 3.0 | met |" in table


def test_the_hindsight_reference_is_no_other_planner_and_says_whether_a_miss_is_reachable():
    eps = [ep(EXPERT, s, True, 1.0) for s in range(4)]
    eps += [ep("edge", s, True, 2.4) for s in range(4)]
    eps += [ep("roboecc", s, s < 3, 1.1) for s in range(4)]  # 0.75
    eps += [ep("ppo", s, s < 2, 1.3) for s in range(4)]  # 0.50, 1.3x the expert
    eps += [ep("hindsight", s, s < 3, 1.1) for s in range(4)]  # 0.75: under the expert too, but 1.1x
    (k,) = target_checks(merge_reports([report("pi0", "/t/wifi", eps)]))
    assert (k.best_other, k.best_other_success) == ("edge", 1.0)  # the reference is not an "other planner"
    assert (k.ref_success, k.ref_tts_s, k.ref_success_ok, k.ref_tts_expert_ok) == (0.75, 1.1, False, True)
    assert k.ref_tts_edge_ok  # 1.1 <= 0.5 x 2.4
    row = target_table([k]).splitlines()[2]
    assert row == (
        "| pi0 | wifi | reach-v3 | 4 | 0.50 | 1.00 | edge 1.00 | 0.75 / 1.10 | **missed**; hindsight too | 1.30 | "
        "1.30x | 0.54x | **missed**; hindsight meets it | **missed**; hindsight meets it |"
    )
    # a cell without the reference keeps the plain table
    (k,) = target_checks(merge_reports([report("pi0", "/t/wifi", [e for e in eps if e.planner != "hindsight"])]))
    assert k.ref_success_ok is None and "hindsight" not in target_table([k])
