"""`ecc traces` CLI: stats table and JSON, convert round trips, plot, error exits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from traces import load_trace
from traces.cli import main
from traces.embedded import embedded_default_set


def test_stats_embedded_prints_a_row_per_trace_and_a_summary(capsys):
    assert main(["stats", "--embedded"]) == 0
    out = capsys.readouterr().out
    for t in embedded_default_set():
        assert t.name in out
    assert "set embedded: 12 traces" in out
    assert "failed to load: 0" in out


def test_stats_json_numbers_match_the_library(capsys, tmp_path):
    (tmp_path / "a").write_text("0 10\n1 30\n")
    (tmp_path / "bad").write_text("0 10\n1 zz\n")
    assert main(["stats", str(tmp_path), "--json"]) == 1  # a bad file: non-zero, but the good one is reported
    out = json.loads(capsys.readouterr().out)
    (row,) = out["traces"]
    assert row["mean_down_mbps"] == pytest.approx(20.0) and row["duration_s"] == 2.0
    assert out["summary"]["n_traces"] == 1
    (err,) = out["errors"]
    assert err["path"].endswith("bad") and "line 2" in err["reason"]


def test_stats_missing_path_exits_nonzero_and_names_it(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    assert main(["stats", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["stats", "--bogus"], [], ["convert", "a", "b"], ["stats"], ["explode"]])
def test_argument_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() != ""


def test_convert_mahimahi_text_mahimahi_keeps_per_second_rates(tmp_path):
    # a pair with varying per-ms opportunities over 20 s, including an outage second
    rng = np.random.default_rng(0)
    for d, scale in (("up", 1), ("down", 4)):
        counts = rng.poisson(scale, 20_000)
        counts[5000:6000] = 0
        counts[-1] = max(counts[-1], 1)
        ts = np.repeat(np.arange(1, 20_001), counts)
        (tmp_path / f"src.{d}").write_text("\n".join(map(str, ts)) + "\n")
    assert main(["convert", str(tmp_path / "src.down"), str(tmp_path / "mid.txt"), "--to", "text"]) == 0
    assert main(["convert", str(tmp_path / "mid.txt"), str(tmp_path / "back"), "--to", "mahimahi"]) == 0
    a = load_trace(tmp_path / "src.down")
    b = load_trace(tmp_path / "back.down")
    assert a.duration_s == b.duration_s == 20.0
    for d in ("up", "down"):
        ra, rb = a.rates_mbps(d), b.rates_mbps(d)
        np.testing.assert_allclose(rb, ra, rtol=0.01, atol=1e-12)


@pytest.mark.shared
def test_convert_real_mahimahi_pair_round_trip(shared_traces, tmp_path):
    src = shared_traces / "mahimahi_cellular_us" / "Verizon-LTE-short.up"
    assert main(["convert", str(src), str(tmp_path / "v.txt"), "--to", "text"]) == 0
    assert main(["convert", str(tmp_path / "v.txt"), str(tmp_path / "v"), "--to", "mahimahi"]) == 0
    a, b = load_trace(src), load_trace(tmp_path / "v.up")
    for d in ("up", "down"):
        np.testing.assert_allclose(b.rates_mbps(d), a.rates_mbps(d), rtol=0.01)
    # the rewritten files carry the same number of opportunities as the originals
    for d in ("up", "down"):
        n_src = sum(1 for _ in (src.with_suffix(f".{d}")).open())
        n_new = sum(1 for _ in (tmp_path / f"v.{d}").open())
        assert n_new == n_src


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_convert_to_csv_and_json_is_lossless(tmp_path, fmt):
    tr = embedded_default_set()[3]
    from traces.writers import write_csv

    src = write_csv(tr, tmp_path / "src.csv")
    assert main(["convert", str(src), str(tmp_path / f"out.{fmt}"), "--to", fmt]) == 0
    back = load_trace(tmp_path / f"out.{fmt}")
    assert back.content_hash() == tr.content_hash()


def test_convert_missing_source(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "none"), str(tmp_path / "x"), "--to", "text"]) == 1
    assert "none" in capsys.readouterr().err


def test_plot_writes_a_png_with_the_traces(tmp_path):
    from PIL import Image

    out = tmp_path / "p.png"
    assert main(["plot", "--embedded", "-o", str(out), "--max-traces", "3"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.size == (1000, 660)  # 10 in x (2.2 in per trace x 3) at 100 dpi
        colours = len(im.convert("RGB").getcolors(maxcolors=1 << 24) or [])
    assert colours > 10  # lines and text were drawn, not a blank canvas


def test_plot_missing_path(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "none"), "-o", str(tmp_path / "p.png")]) == 1
    assert not (tmp_path / "p.png").exists()
