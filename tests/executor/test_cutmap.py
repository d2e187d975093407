"""The cut map: exact envelope intervals agree with a brute-force evaluation of `CutTable.latency_ms` on a fine
bandwidth grid; middle ranges; bad input; the `ecc cutmap` verb."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.cutmap import cut_map, lower_envelope, plot_cut_map, roofline_cut_map, roofline_profiles

GRID = np.geomspace(0.5, 10_000.0, 4001)


def _brute_force(cm, grid=GRID):
    lat = np.stack([cm.latency_ms(float(b)) for b in grid])
    return lat.argmin(axis=1), lat.min(axis=1), lat


def _check_against_grid(cm):
    best_idx, best_lat, lat = _brute_force(cm)
    assert cm.intervals[0].lo_mbps == cm.bw_min_mbps and cm.intervals[-1].hi_mbps == cm.bw_max_mbps
    for a, b in zip(cm.intervals, cm.intervals[1:]):
        assert a.hi_mbps == pytest.approx(b.lo_mbps, rel=1e-12) and a.cut_index != b.cut_index
    for j, bw in enumerate(GRID):
        iv = cm.interval_at(float(bw))
        # the interval's cut is optimal at every grid point (ties allowed: equal latency within rounding)
        assert lat[j, iv.cut_index] == pytest.approx(best_lat[j], rel=1e-9, abs=1e-9), (bw, iv)
        strictly_inside = iv.lo_mbps * (1 + 1e-6) < bw < iv.hi_mbps * (1 - 1e-6)
        if strictly_inside:
            second = np.partition(lat[j], 1)[1]
            if second > best_lat[j] * (1 + 1e-9):  # unique optimum: the brute force picks the same cut
                assert best_idx[j] == iv.cut_index
    # every cut the grid finds optimal (uniquely) appears in the intervals
    found = {iv.cut_index for iv in cm.intervals}
    for j in range(len(GRID)):
        if np.sum(lat[j] <= best_lat[j] * (1 + 1e-9)) == 1:
            assert best_idx[j] in found


@pytest.mark.parametrize(
    "family, edge, wire, image, rtt",
    [
        ("pi0", "orin", "float32", "raw", 20.0),
        ("pi0", "thor", "int8", "jpeg:90", 5.0),
        ("openvla", "orin", "float16", "raw", 20.0),
        ("smolvla", "orin", "int8", "raw", 1.0),
        ("smolvla", "thor", "float16", "raw", 1.0),
        ("smolvla", "orin", "float32", "jpeg:90", 0.0),
    ],
)
def test_intervals_agree_with_brute_force(family, edge, wire, image, rtt):
    cm = roofline_cut_map(family, "full", edge, "a100", wire_dtype=wire, image_encoding=image, rtt_ms=rtt)
    _check_against_grid(cm)
    # endpoints' latencies are the interval cut's latency there
    for iv in cm.intervals:
        assert cm.latency_ms(iv.lo_mbps)[iv.cut_index] == pytest.approx(iv.latency_at_lo_ms, rel=1e-9)
        assert cm.latency_ms(iv.hi_mbps)[iv.cut_index] == pytest.approx(iv.latency_at_hi_ms, rel=1e-9)


def test_fixed_downlink_map_agrees_with_brute_force():
    cm = roofline_cut_map("pi0", "full", "orin", "a100", wire_dtype="float16", rtt_ms=10.0, down_mbps=50.0)
    assert cm.down_mbps == 50.0
    _check_against_grid(cm)


def test_middle_ranges_match_the_grid():
    cm = roofline_cut_map("smolvla", "full", "orin", "a100", wire_dtype="int8", image_encoding="raw", rtt_ms=1.0)
    mids = cm.middle_ranges()
    assert len(mids) >= 1  # raw 3x512px frames vs 64 int8 tokens per camera: the connector cut wins somewhere
    _idx, best, lat = _brute_force(cm)
    i_cloud, i_edge = cm.cut_index("cloud_only"), cm.cut_index("edge_only")
    gain = np.minimum(lat[:, i_cloud], lat[:, i_edge]) - best
    inside = np.zeros(len(GRID), dtype=bool)
    for m in mids:
        inside |= (GRID > m.lo_mbps * (1 + 1e-6)) & (GRID < m.hi_mbps * (1 - 1e-6))
        sel = (GRID >= m.lo_mbps) & (GRID <= m.hi_mbps)
        assert gain[sel].max() <= m.max_gain_ms * (1 + 1e-9)  # the analytic maximum bounds the grid's
        assert gain[sel].max() == pytest.approx(m.max_gain_ms, rel=1e-3)
    assert np.all(gain[inside] > 0)
    closed = np.zeros(len(GRID), dtype=bool)
    for m in mids:
        closed |= (GRID >= m.lo_mbps * (1 - 1e-6)) & (GRID <= m.hi_mbps * (1 + 1e-6))
    assert np.all(gain[~closed] <= 1e-9)  # elsewhere edge-only or cloud-only is optimal


def test_higher_rtt_never_widens_the_split_range():
    e, c = roofline_profiles("smolvla", "full", "orin", "a100", wire_dtype="int8")
    widths = []
    for rtt in (0.5, 2.0, 5.0, 20.0):
        mids = cut_map(e, c, rtt_ms=rtt).middle_ranges()
        widths.append(sum(np.log(m.hi_mbps / m.lo_mbps) for m in mids))
    assert widths == sorted(widths, reverse=True) and widths[0] > 0


def test_compressed_activations_shrink_the_split_slopes():
    fp32 = roofline_cut_map("smolvla", "full", "orin", "a100", wire_dtype="float32")
    int8 = roofline_cut_map("smolvla", "full", "orin", "a100", wire_dtype="int8")
    i = fp32.table.names.index("after:connector")
    assert int8.slope_ms_mbps[i] < fp32.slope_ms_mbps[i] / 3
    assert int8.slope_ms_mbps[0] == fp32.slope_ms_mbps[0]  # cloud-only uploads the frames, never compressed
    # same compute; int8 adds only its cast time (executor.wire_config.codec_ms, microseconds at memory bandwidth)
    assert 0 < int8.intercept_ms[i] - fp32.intercept_ms[i] < 0.05


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1000), st.floats(0, 1000)), min_size=1, max_size=12))
def test_lower_envelope_is_the_pointwise_minimum(lines):
    a = np.array([line[0] for line in lines])
    s = np.array([line[1] for line in lines])
    segs = lower_envelope(a, s, 0.0, 10.0)
    assert segs[0][1] == 0.0 and segs[-1][2] == 10.0
    slopes = [s[i] for i, _, _ in segs]
    assert all(x > y for x, y in zip(slopes, slopes[1:]))  # switches only to flatter lines
    for x in np.linspace(0, 10, 201):
        seg = next(g for g in segs if g[1] <= x <= g[2])
        v = a + s * x
        assert v[seg[0]] <= v.min() + 1e-9 * max(1.0, v.min())


def test_bad_inputs():
    e, c = roofline_profiles("pi0", "full", "orin", "a100")
    cm = cut_map(e, c)
    for bad in (0, 0.0, -5.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="bandwidth"):
            cm.latency_ms(bad)
        with pytest.raises(ValueError, match="bw_min_mbps"):
            cut_map(e, c, bw_min_mbps=bad)
    with pytest.raises(TypeError):
        cm.latency_ms("100")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="below"):
        cut_map(e, c, bw_min_mbps=100.0, bw_max_mbps=10.0)
    with pytest.raises(ValueError, match="rtt_ms"):
        cut_map(e, c, rtt_ms=-1.0)
    with pytest.raises(ValueError, match="down_mbps"):
        cut_map(e, c, down_mbps=0.0)
    with pytest.raises(ValueError, match="outside"):
        cm.interval_at(1e6)
    with pytest.raises(ValueError, match="unknown hardware"):
        roofline_cut_map("pi0", "full", "orin", "tpu-v9")
    with pytest.raises(ValueError, match="unknown model family"):
        roofline_cut_map("gpt5", "full", "orin", "a100")
    with pytest.raises(ValueError, match="encoding"):
        roofline_cut_map("pi0", "full", "orin", "a100", image_encoding="webp")
    other, _ = roofline_profiles("smolvla", "full", "orin", "a100")
    with pytest.raises(ValueError, match="different block chains"):
        cut_map(other, c)
    with pytest.raises(ValueError, match="x_lo"):
        lower_envelope([1.0], [1.0], 2.0, 1.0)


def test_plot_has_a_line_per_cut(tmp_path):
    import matplotlib.pyplot as plt

    cm = roofline_cut_map("smolvla", "full", "orin", "a100", wire_dtype="int8", rtt_ms=1.0)
    path = tmp_path / "map.png"
    fig = plot_cut_map(cm, path, points=50)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and path.stat().st_size > 10_000
    # one line per cut + the legend stub for "other cuts" + the envelope + the best split + a line per breakpoint
    assert len(ax.get_lines()) == cm.table.num_cuts + 3 + sum(iv.lo_mbps > cm.bw_min_mbps for iv in cm.intervals)
    env = next(line for line in ax.get_lines() if line.get_label() == "optimal (envelope)")
    x, y = env.get_data()
    assert np.allclose(y, [cm.best(float(b))[1] for b in x])
    plt.close(fig)


def test_cli_prints_intervals_and_writes_plot_and_json(tmp_path, capsys):
    from agents.cli import VERBS
    from executor.cutmap_cli import main

    assert VERBS["cutmap"][0] == "executor.cutmap_cli"
    png, js = tmp_path / "m.png", tmp_path / "m.json"
    rc = main(
        [
            "--model",
            "smolvla",
            "--preset",
            "full",
            "--edge",
            "orin",
            "--cloud",
            "a100",
            "--wire-dtype",
            "int8",
            "--image",
            "raw",
            "--rtt-ms",
            "1",
            "--rtt-ms",
            "20",
            "-o",
            str(png),
            "--json",
            str(js),
        ]
    )
    assert rc == 0 and png.stat().st_size > 10_000
    maps = json.loads(js.read_text())
    assert [m["rtt_ms"] for m in maps] == [1.0, 20.0]
    direct = roofline_cut_map("smolvla", "full", "orin", "a100", wire_dtype="int8", rtt_ms=1.0)
    assert [iv["cut_index"] for iv in maps[0]["intervals"]] == [iv.cut_index for iv in direct.intervals]
    out = capsys.readouterr().out
    assert "after:connector" in out and "split optimal" in out


def test_cli_from_measured_profiles(tmp_path, capsys):
    from executor.cutmap_cli import main
    from executor.models import build_model
    from executor.profiler import ProfilerConfig, profile_model

    m = build_model("smolvla", "tiny")
    prof = profile_model(m, ProfilerConfig(warmup_runs=0, measured_runs=1))
    prof.save(tmp_path / "edge.json")
    prof.save(tmp_path / "cloud.json")
    js = tmp_path / "m.json"
    rc = main(
        [
            "--model",
            "smolvla",
            "--preset",
            "tiny",
            "--edge-profile",
            str(tmp_path / "edge.json"),
            "--cloud-profile",
            str(tmp_path / "cloud.json"),
            "--image",
            "jpeg:80",
            "--json",
            str(js),
        ]
    )
    assert rc == 0
    (only,) = json.loads(js.read_text())
    assert only["image_encoding"] == "jpeg:80"
    # the same device on both ends: edge-only has no network cost and the same compute -> optimal everywhere
    assert [iv["kind"] for iv in only["intervals"]] == ["edge_only"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "pi0", "--edge", "tpu"], "unknown hardware"),
        (["--model", "pi0", "--wire-dtype", "fp64"], "wire-dtype"),
        (["--model", "pi0", "--bw-min", "0"], "bw_min_mbps"),
        (["--model", "pi0", "--rtt-ms", "-3"], "rtt_ms"),
        (["--model", "pi0", "--image", "jpeg:200"], "quality"),
        (["--model", "nope"], "unknown model family"),
        (["--model", "pi0", "--edge-profile", "x.json"], "both"),
    ],
)
def test_cli_bad_input_exits_2(argv, message, capsys):
    from executor.cutmap_cli import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err
