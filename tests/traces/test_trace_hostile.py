"""Hostile or corrupt local files: each gives its named error with file and line, never a traceback or a silent
load; a folder with one bad file still loads the rest; training whose --traces loads nothing fails."""

from __future__ import annotations

import json
import re

import pytest

from traces.readers import TraceFormatError, load_trace
from traces.traceset import TraceSet

BAD_FILES = {
    "huge_int.json": (
        json.dumps({"time_s": [0, 1], "bandwidth_mbps": [1, 10**400]}),
        r"huge_int.json:2: key 'bandwidth_mbps': element \[1\] is an integer too large",
    ),
    "huge_digits.json": (
        '{"time_s": [0, 1], "bandwidth_mbps": [1, ' + "9" * 5000 + "]}",
        r"huge_digits.json: invalid JSON: ValueError: Exceeds the limit",
    ),
    "nested.json": ("[" * 100_000 + "]" * 100_000, r"nested.json: invalid JSON: RecursionError"),
    "long_time.json": (
        json.dumps({"time_s": [0, 1e300], "bandwidth_mbps": [1, 2]}),
        r"long_time.json:2: timestamp 1e\+300 s is beyond a year",
    ),
    "fast.json": (
        json.dumps({"time_s": [0, 1], "bandwidth_mbps": [1, 1e308]}),
        r"fast.json:2: rate 1e\+308 Mbit/s is above 100000 Mbit/s",
    ),
    "fast.log": ("0 1\n1 200000\n", r"fast.log:2: rate 200000 Mbit/s is above"),
    "two_days.log": ("0 1\n172800 2\n", r"two_days.log:2: the trace spans 172800 s, more than a day"),
    "far.mahimahi": ("1\n2\n1" + "0" * 23 + "\n", r"far.mahimahi:3: timestamp 1000+ ms is beyond a year"),
    "day.mahimahi": ("1\n90000000\n", r"day.mahimahi: the trace spans 90000 s, more than a day"),
    "rtt.csv": ("time_s,bandwidth_mbps,rtt_ms\n0,1,10\n1,2,1e9\n", r"rtt.csv:3: RTT 1e\+09 ms is above"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_trace_file_gives_named_error_with_line(tmp_path, name):
    text, pattern = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TraceFormatError, match=pattern):
        load_trace(path)


def test_folder_with_bad_files_loads_the_good_one(tmp_path):
    for name, (text, _) in BAD_FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "good.log").write_text("0 1\n1 2\n2 3\n")
    ts = TraceSet.load([tmp_path])
    assert [t.name.rsplit("/", 1)[-1] for t in ts] == ["good.log"] and len(ts.errors) == len(BAD_FILES)


def test_training_on_traces_that_load_nothing_fails(tmp_path):
    from agents.training import TrainConfig, load_trace_sources

    bad = tmp_path / "garbage.log"
    bad.write_text("this is not a trace\n")
    with pytest.raises(ValueError, match=r"garbage.log loaded no trace \(1 file\(s\) failed; first: .*garbage.log"):
        load_trace_sources(TrainConfig(traces=(str(bad),)))
    from agents.train_cli import main

    assert main(["--traces", str(bad), "--quick"]) == 2


def test_profile_with_absurd_block_time_is_a_profile_error(tmp_path):
    from executor.profile import ProfileError
    from executor.roofline import roofline_profile_for

    prof = roofline_profile_for("smolvla", "tiny", "orin")
    d = prof.to_dict()
    d["block_ms"] = [1e308] * len(d["block_ms"])
    (tmp_path / "p.json").write_text(json.dumps(d))
    from executor.profile import Profile

    with pytest.raises(ProfileError, match="at most 3.6e\\+06 ms"):
        Profile.load(tmp_path / "p.json")


def test_cutmap_cli_with_absurd_profile_exits_2_naming_the_file(tmp_path, capsys):
    from executor.cutmap_cli import main
    from executor.roofline import roofline_profile_for

    d = roofline_profile_for("smolvla", "tiny", "orin").to_dict()
    d["block_ms"] = [1e308] * len(d["block_ms"])
    (tmp_path / "edge.json").write_text(json.dumps(d))
    cloud = tmp_path / "cloud.json"
    cloud.write_text(json.dumps(roofline_profile_for("smolvla", "tiny", "a100").to_dict()))
    argv = [
        "--model",
        "smolvla",
        "--preset",
        "tiny",
        "--edge-profile",
        str(tmp_path / "edge.json"),
        "--cloud-profile",
        str(cloud),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecc cutmap: ") and "edge.json: block_ms must be finite" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["huge_int.json", "far.mahimahi"])
def test_edge_cli_with_a_bad_trace_exits_2_naming_the_file(tmp_path, capsys, name):
    """``ecc edge --policy ... --trace BAD`` reports the trace's error (file:line) and exits 2 before connecting."""
    from agents.edge_cli import main

    text, pattern = BAD_FILES[name]
    (tmp_path / name).write_text(text)
    argv = [
        "--model",
        "openvla",
        "--preset",
        "tiny",
        "--policy",
        str(tmp_path / "policy.zip"),
        "--hardware",
        "orin+a100",
        "--trace",
        str(tmp_path / name),
        "--steps",
        "2",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecc edge: ") and "Traceback" not in err
    assert re.search(pattern, err), err
