"""Readers: each format on small files written here and on the real datasets in ../shared/traces; every bad input
gives a TraceFormatError naming file (and line)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from traces import TraceFormatError, detect_format, load_trace
from traces.readers import read_csv, read_csv_header, read_json, read_mahimahi, read_text


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- small files --------------------------------------------------------------------------------------------------


def test_text_reader_tabs_spaces_crlf_int_and_float_times(tmp_path):
    a = write(tmp_path / "a", "0 10\n1 20\n2 30\n")
    b = write(tmp_path / "b", "1.0\t10.0\r\n2.0\t20.0\r\n3.0\t30.0")  # Lumos 5G style: starts at 1, no final newline
    for p in (a, b):
        assert detect_format(p) == "text"
        tr = load_trace(p)
        np.testing.assert_array_equal(tr.times_s, [0.0, 1.0, 2.0])
        np.testing.assert_array_equal(tr.down_mbps, [10.0, 20.0, 30.0])
        np.testing.assert_array_equal(tr.up_mbps, tr.down_mbps)
        assert tr.symmetric and tr.duration_s == 3.0
    assert any("shifted" in n for n in load_trace(b).notes)


def test_text_reader_merges_repeated_timestamps_by_averaging_and_says_so(tmp_path):
    p = write(tmp_path / "dup", "0 10\n1 20\n1 40\n2 30\n")
    tr = read_text(p)
    np.testing.assert_array_equal(tr.times_s, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(tr.down_mbps, [10.0, 30.0, 30.0])
    assert any("merged 1 repeated timestamp" in n and "line 3" in n for n in tr.notes)


def test_three_column_text_with_header_is_asymmetric(tmp_path):
    p = write(tmp_path / "t3", "# time_s up_mbps down_mbps\n0 1 10\n1 2 20\n")
    tr = load_trace(p)
    assert not tr.symmetric
    np.testing.assert_array_equal(tr.up_mbps, [1.0, 2.0])
    np.testing.assert_array_equal(tr.down_mbps, [10.0, 20.0])


def test_csv_without_header_is_bytes_per_second(tmp_path):
    p = write(tmp_path / "w.csv", "1,1250000\n2,2500000\n3,0\n")
    assert detect_format(p) == "csv"
    tr = read_csv(p)
    np.testing.assert_allclose(tr.down_mbps, [10.0, 20.0, 0.0])
    np.testing.assert_array_equal(tr.times_s, [0.0, 1.0, 2.0])


@pytest.mark.parametrize(
    "header, rows, up, down, times",
    [
        ("time_s,mbps", ["0,10", "1,20"], [10, 20], [10, 20], [0, 1]),
        ("timestamp_ms,kbps", ["0,10000", "500,20000"], [10, 20], [10, 20], [0, 0.5]),
        ("timeInSeconds,BytesPerSecond", ["1,1250000", "2,2500000"], [10, 20], [10, 20], [0, 1]),
        ("time_s,up_kbps,down_Mbps", ["0,1000,10", "1,2000,20"], [1, 2], [10, 20], [0, 1]),
        ("t_s,dl_gbps,ul_mbps", ["0,1,5", "2,2,6"], [5, 6], [1000, 2000], [0, 2]),
        ("time_s,KBps", ["0,1250", "1,2500"], [10, 20], [10, 20], [0, 1]),
    ],
)
def test_csv_with_header_reads_units_from_column_names(tmp_path, header, rows, up, down, times):
    p = write(tmp_path / "h.csv", "\n".join([header, *rows]) + "\n")
    assert detect_format(p) == "csv_header"
    tr = read_csv_header(p)
    np.testing.assert_allclose(tr.up_mbps, up)
    np.testing.assert_allclose(tr.down_mbps, down)
    np.testing.assert_allclose(tr.times_s, times)


def test_csv_header_rtt_and_one_way_delay_columns(tmp_path):
    a = read_csv_header(write(tmp_path / "a.csv", "time_s,mbps,rtt_ms\n0,10,40\n1,10,60\n"))
    np.testing.assert_array_equal(a.rtt_ms, [40.0, 60.0])
    b = read_csv_header(write(tmp_path / "b.csv", "time_s,mbps,delay_ms,comment_id\n0,10,20,7\n1,10,30,8\n"))
    np.testing.assert_array_equal(b.rtt_ms, [40.0, 60.0])
    assert any("comment_id" in n for n in b.notes)


def test_csv_header_without_units_is_refused(tmp_path):
    with pytest.raises(TraceFormatError, match="time column 'time' has no unit") as e:
        load_trace(write(tmp_path / "x.csv", "time,mbps\n0,1\n"))
    assert e.value.line == 1
    with pytest.raises(TraceFormatError, match="no throughput column with a unit"):
        load_trace(write(tmp_path / "y.csv", "time_s,bandwidth\n0,1\n"))


def test_json_reader(tmp_path):
    p = write(tmp_path / "t.json", json.dumps({"timestamps": [0, 1, 2], "bandwidth": [5, 6, 7], "delay": [10, 10, 15]}))
    tr = read_json(p)
    np.testing.assert_array_equal(tr.down_mbps, [5, 6, 7])
    np.testing.assert_array_equal(tr.rtt_ms, [20, 20, 30])  # one-way delay doubled
    q = write(tmp_path / "u", json.dumps({"timestamps_ms": [0, 500], "up_kbps": [1000, 2000], "down_mbps": [3, 4]}))
    assert detect_format(q) == "json"
    tr = load_trace(q)
    np.testing.assert_allclose(tr.times_s, [0, 0.5])
    np.testing.assert_allclose(tr.up_mbps, [1, 2])
    assert not tr.symmetric


def test_mahimahi_binning_and_pairing(tmp_path):
    # down: 1000 opportunities in (0, 1] s, then 500 in (1, 2] -> 12 and 6 Mbit/s; up: 250 per second -> 3 Mbit/s
    down = np.concatenate([np.repeat(np.arange(1, 1001), 1), np.repeat(np.arange(1002, 2001, 2), 1)])
    up = np.repeat(np.arange(4, 2001, 4), 1)
    write(tmp_path / "L.down", "\n".join(map(str, down)) + "\n")
    write(tmp_path / "L.up", "\n".join(map(str, up)) + "\n")
    tr = load_trace(tmp_path / "L.up")
    assert not tr.symmetric and tr.name == "L"
    np.testing.assert_allclose(tr.down_mbps, [12.0, 6.0])
    np.testing.assert_allclose(tr.up_mbps, [3.0, 3.0])
    assert tr.duration_s == 2.0
    lone = read_mahimahi(tmp_path / "L.down", partner=False)
    assert lone.symmetric and np.array_equal(lone.up_mbps, lone.down_mbps)
    half = read_mahimahi(tmp_path / "L.down", partner=False, bin_s=0.5)
    np.testing.assert_allclose(half.down_mbps, [12.0, 12.0, 6.0, 6.0])
    # total bytes per loop are preserved whatever the bin width
    for t in (lone, half):
        assert t.bytes_deliverable(0, t.duration_s, "down") == pytest.approx(len(down) * 1500)


# -- bad input ----------------------------------------------------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(TraceFormatError, match="no such file") as e:
        load_trace(tmp_path / "nope.txt")
    assert e.value.path == tmp_path / "nope.txt"


@pytest.mark.parametrize("content", ["", "\n\n  \n", "# only a comment\n"])
def test_empty_file(tmp_path, content):
    with pytest.raises(TraceFormatError, match="empty file") as e:
        load_trace(write(tmp_path / "empty.txt", content))
    assert str(tmp_path / "empty.txt") in str(e.value)


@pytest.mark.parametrize(
    "name, content, line",
    [
        ("t.txt", "0 1\n1 2\n2 abc\n3 4\n", 3),
        ("t.csv", "1,100\n2,x100\n", 2),
        ("m.down", "10\n20\nthirty\n", 3),
        ("h.csv", "time_s,mbps\n0,1\n\n1,oops\n", 4),
    ],
)
def test_non_numeric_line_names_file_and_line(tmp_path, name, content, line):
    p = write(tmp_path / name, content)
    with pytest.raises(TraceFormatError) as e:
        load_trace(p)
    assert e.value.line == line
    assert f"{p}:{line}:" in str(e.value)


@pytest.mark.parametrize(
    "name, content, line",
    [("t.txt", "0 1\n5 2\n3 4\n", 3), ("m.down", "10\n20\n15\n30\n", 3), ("c.csv", "1,5\n2,5\n1,5\n", 3)],
)
def test_timestamps_going_backwards(tmp_path, name, content, line):
    with pytest.raises(TraceFormatError, match="backwards") as e:
        load_trace(write(tmp_path / name, content))
    assert e.value.line == line


@pytest.mark.parametrize("name, content, line", [("t.txt", "0 1\n1 -2\n", 2), ("c.csv", "1,5\n2,-5\n", 2)])
def test_negative_rates(tmp_path, name, content, line):
    with pytest.raises(TraceFormatError, match="negative value") as e:
        load_trace(write(tmp_path / name, content))
    assert e.value.line == line


@pytest.mark.parametrize(
    "content",
    ["hello world foo bar\n", "0 1 2 3\n", "0.5\n", "\x00\x01\x02binary"],
)
def test_unknown_format(tmp_path, content):
    with pytest.raises(TraceFormatError, match="unknown format"):
        load_trace(write(tmp_path / "weird", content))


def test_wrong_column_count_midway_names_the_line(tmp_path):
    with pytest.raises(TraceFormatError, match="expected 2 columns, got 3") as e:
        load_trace(write(tmp_path / "t", "0 1\n1 2 3\n"))
    assert e.value.line == 2


def test_format_error_is_a_value_error():
    assert issubclass(TraceFormatError, ValueError)


# -- real datasets ------------------------------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize(
    "rel, fmt, lo, hi",
    [
        ("fcc_broadband_2016/train_pensieve/trace_10322_http---edition.cnn.com", "text", 0.1, 10),
        ("fcc_broadband_2016/test_genet/test_fcc_trace_14731_http---www.facebook.com_1020_0", "text", 0.1, 10),
        ("hsdpa_norway_3g/test_pensieve/norway_bus_1", "text", 0.1, 10),
        ("lumos5g_mmwave/4G/4g_trace_driving_50015_dr", "text", 5, 150),
        ("lumos5g_mmwave/5G/5g_trace_100_walking", "text", 30, 2000),
        ("oboe/oboe_trace_0.txt", "text", 0.3, 10),
        ("wifi_cellular_sbu_mptraces/11_1_wifi.csv", "csv", 1, 100),
        ("wifi_cellular_sbu_mptraces/11_1_cellular.csv", "csv", 0.5, 100),
    ],
)
def test_real_text_and_csv_files(shared_traces, rel, fmt, lo, hi):
    path = shared_traces / rel
    assert detect_format(path) == fmt
    tr = load_trace(path)
    n_lines = sum(1 for line in path.read_text().splitlines() if line.strip())
    assert len(tr) <= n_lines and len(tr) >= n_lines - 3  # only repeated timestamps may be merged
    assert tr.times_s[0] == 0.0 and tr.symmetric
    assert lo <= tr.stats().mean_down_mbps <= hi


@pytest.mark.shared
def test_real_sbu_csv_converts_bytes_per_second(shared_traces):
    path = shared_traces / "wifi_cellular_sbu_mptraces/11_1_wifi.csv"
    first = path.read_text().splitlines()[0].split(",")
    tr = load_trace(path)
    assert tr.down_mbps[0] == pytest.approx(float(first[1]) * 8 / 1e6)


@pytest.mark.shared
def test_real_lumos_file_with_repeated_second_loads(shared_traces):
    tr = load_trace(shared_traces / "lumos5g_mmwave/4G/4g_trace_walking_60030_a")
    assert any("merged 2 repeated" in n for n in tr.notes)
    assert (np.diff(tr.times_s) > 0).all()


@pytest.mark.shared
def test_real_mahimahi_pair_and_lone_down(shared_traces):
    d = shared_traces / "mahimahi_cellular_us"
    pair = load_trace(d / "Verizon-LTE-short.down")
    assert not pair.symmetric and pair.name == "Verizon-LTE-short"
    assert pair.duration_s == pytest.approx(140.0)
    for direction, fname in (("up", "Verizon-LTE-short.up"), ("down", "Verizon-LTE-short.down")):
        n_ops = sum(1 for line in (d / fname).read_text().splitlines() if line.strip())
        # every delivery opportunity is one 1500-byte packet: bytes per loop are preserved exactly
        assert pair.bytes_deliverable(0.0, pair.duration_s, direction) == pytest.approx(n_ops * 1500)
    lone = load_trace(d / "TMobile-LTE-driving.down")  # its .up is not in the dataset
    assert lone.symmetric and any("serves both" in n for n in lone.notes)
    att = load_trace(d / "ATT-LTE-driving.up")  # 1012 s up, 786 s down: the shorter is looped
    assert att.duration_s == pytest.approx(1012.472)
    assert any("down is shorter" in n for n in att.notes)
