"""agents.plots: each PNG is written and readable (matplotlib.image.imread), and `ecc eval --out` writes the
report files and plots whose numbers match the printed report."""

from __future__ import annotations

import csv
import json

import pytest

matplotlib = pytest.importorskip("matplotlib")
import matplotlib.image as mpimg  # noqa: E402

from agents import plots  # noqa: E402
from agents.eval_cli import main  # noqa: E402
from agents.heuristics import CloudOnly, EdgeOnly, HeuristicPlanner  # noqa: E402
from agents.planner import PlannerContext  # noqa: E402
from agents.report import StepRecorder, family_means, run_planners  # noqa: E402


def _png_shape(path):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert img[..., :3].std() > 0.01  # not a blank canvas
    return img.shape


@pytest.fixture(scope="module")
def runs(toy):
    env = StepRecorder(toy.make_env(toy.three_block_profiles(), toy.alternating_set(n=3), episode_s=4.0))
    ctx = PlannerContext.from_env(env)
    out = run_planners(
        {"edge": EdgeOnly(ctx), "cloud": CloudOnly(ctx), "heuristic": HeuristicPlanner(ctx)}, env, [0, 1, 2]
    )
    env.close()
    return out


def test_eval_plots_are_readable_pngs(runs, tmp_path):
    paths = plots.eval_plots(runs, tmp_path, title="toy", edge_only_cut=3)
    assert [p.name for p in paths] == ["latency_cdf.png", "timeline.png", "family_latency.png"]
    shapes = [_png_shape(p) for p in paths]
    # the timeline has one panel per planner below the bandwidth panel: fewer planners, a shorter figure
    one = _png_shape(plots.episode_timeline(runs[:1], tmp_path / "one.png", episode=1))
    assert shapes[1][0] > one[0] * 1.5
    with pytest.raises(ValueError, match="episode 9"):
        plots.episode_timeline(runs, tmp_path / "x.png", episode=9)
    with pytest.raises(ValueError):
        plots.family_bars({}, tmp_path / "y.png")
    assert set(family_means(runs)) == {"alt"}


def test_timeline_keeps_ppo_heuristic_oracle_edge_and_cloud_when_there_are_too_many_planners():
    from types import SimpleNamespace

    names = ["ppo", "heuristic", "roboecc", "rapid", "vision", "static", "edge", "cloud", "oracle"]
    picked = [r.name for r in plots.timeline_selection([SimpleNamespace(name=n) for n in names])]
    assert picked == ["ppo", "heuristic", "roboecc", "rapid", "edge", "cloud", "oracle"]  # 7 panels, given order
    few = [SimpleNamespace(name=n) for n in ("edge", "cloud")]
    assert plots.timeline_selection(few) == few


def test_family_bars_use_a_log_axis_with_several_labelled_ticks(tmp_path, monkeypatch):
    saved = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.setdefault("fig", fig) and path)
    # a 389 ms edge-only bar beside 12-20 ms planners: on a linear axis the small bars would be flat
    plots.family_bars(
        {"4g": {"ppo": 12.0, "heuristic": 14.0, "edge": 389.0}, "5g": {"ppo": 15.0, "heuristic": 20.0, "edge": 389.0}},
        tmp_path / "f.png",
    )
    ax = saved["fig"].axes[0]
    assert ax.get_yscale() == "log"
    lo, hi = ax.get_ylim()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text() and lo <= t.get_position()[1] <= hi]
    assert len(labels) >= 3 and "100" in labels, labels


def test_learning_curve_plot(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with (run / "learning_curve.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timesteps", "wall_s", "val_mean_return", "val_mean_latency_ms", "heuristic_val_return"])
        for i, (ret, lat) in enumerate([(-90, 120), (-70, 95), (-60, 80)]):
            w.writerow([2048 * (i + 1), 3.0 * i, ret, lat, -65])
    rows = plots.read_learning_curve(run)
    assert [r["val_mean_return"] for r in rows] == [-90, -70, -60]
    _png_shape(plots.learning_curve(run, tmp_path / "lc.png"))
    with pytest.raises(FileNotFoundError, match="no learning curve"):
        plots.learning_curve(tmp_path, tmp_path / "none.png")


def test_ecc_eval_writes_report_and_plots(tmp_path, capsys):
    out = tmp_path / "ev"
    rc = main(
        [
            "--planners",
            "edge,cloud,heuristic",
            "--model",
            "openvla",
            "--preset",
            "tiny",
            "--episodes",
            "2",
            "--episode-s",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "report.json").read_text())
    assert [r["planner"] for r in doc["rows"]] == ["edge", "cloud", "heuristic"]
    assert doc["meta"]["seeds"] == [0, 1] and doc["meta"]["config"]["backend"] == "profile"
    edge = doc["rows"][0]
    assert edge["speedup_vs_edge"] == pytest.approx(1.0) and edge["skip_rate"] == 0.0
    assert f"{edge['mean_latency_ms']:.1f}" in printed
    with (out / "steps.csv").open(newline="") as f:
        steps = list(csv.DictReader(f))
    assert len(steps) == sum(r["steps"] for r in doc["rows"])
    for name in ("latency_cdf.png", "timeline.png", "family_latency.png"):
        _png_shape(out / name)
