"""TraceSet: directory loading with bad files, strict mode, seeded split respecting train*/test* folders,
rescaling, segments, fingerprint, and loading every recorded dataset in ../shared/traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from traces import TraceFormatError, TraceSet
from traces import synthetic
from traces.traceset import folder_side


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_dataset(root: Path) -> None:
    for i in range(6):
        write(root / "ds" / "train_x" / f"tr{i}", f"0 {i + 1}\n1 {i + 2}\n")
        write(root / "ds" / "test_x" / f"te{i}", f"0 {i + 10}\n1 {i + 11}\n")
    for i in range(20):
        write(root / "free" / f"f{i:02d}.txt", f"0 {i + 1}\n1 {i + 3}\n2 {i}\n")
    write(root / "free" / "README.md", "# not a trace\n")


def test_directory_with_some_bad_files_loads_the_good_and_reports_the_bad(tmp_path, caplog):
    write(tmp_path / "good1", "0 1\n1 2\n")
    write(tmp_path / "sub" / "good2.csv", "1,1000\n2,2000\n")
    write(tmp_path / "sub" / "bad_text", "0 1\n1 x\n")
    write(tmp_path / "empty", "")
    write(tmp_path / "back", "0 1\n2 1\n1 1\n")
    write(tmp_path / "SOURCE.md", "docs\n")
    ts = TraceSet.load(tmp_path)
    assert sorted(Path(t.source).name for t in ts) == ["good1", "good2.csv"]
    reasons = {p.name: r for p, r in ts.errors}
    assert set(reasons) == {"bad_text", "empty", "back"}
    assert reasons["bad_text"].startswith("line 2: non-numeric")
    assert "empty file" in reasons["empty"]
    assert "backwards" in reasons["back"]
    assert [p.name for p in ts.skipped] == ["SOURCE.md"]
    assert "skipping trace file" in caplog.text
    with pytest.raises(TraceFormatError):
        TraceSet.load(tmp_path, strict=True)


def test_pattern_recursion_and_missing_path(tmp_path):
    make_dataset(tmp_path)
    assert len(TraceSet.load(tmp_path / "free", pattern="*.txt")) == 20
    assert len(TraceSet.load(tmp_path, pattern="f0*.txt")) == 10
    with pytest.raises(TraceFormatError, match="no trace files matching"):
        TraceSet.load(tmp_path, recursive=False, pattern="*.txt")
    with pytest.raises(TraceFormatError, match="no such file"):
        TraceSet.load(tmp_path / "missing")


def test_mahimahi_pairs_in_a_directory_become_one_trace(tmp_path):
    write(tmp_path / "L.up", "\n".join(str(i) for i in range(1, 1001)) + "\n")
    write(tmp_path / "L.down", "\n".join(str(i) for i in range(1, 1001, 2)) + "\n")
    write(tmp_path / "M.down", "\n".join(str(i) for i in range(1, 1001)) + "\n")
    ts = TraceSet.load(tmp_path)
    by = {t.name.split("/")[-1]: t for t in ts}
    assert set(by) == {"L", "M"}
    assert by["L"].up_mbps[0] == pytest.approx(12.0) and by["L"].down_mbps[0] == pytest.approx(6.0)
    assert by["M"].symmetric


def test_split_is_deterministic_and_respects_train_test_folders(tmp_path):
    # pytest names tmp_path "test_...": a root folder named test* would (rightly) send everything to test
    root = tmp_path / "data"
    make_dataset(root)
    ts = TraceSet.load(root)
    assert len(ts) == 32
    a = ts.split(seed=7)
    b = TraceSet.from_traces(list(reversed(ts.traces)), "rev").split(seed=7)  # order of loading does not matter
    for x, y in zip(a, b):
        assert sorted(x.names) == sorted(y.names)
    assert all("/test_x/" in n for n in a.test.names if "/ds/" in n)
    assert not any("/test_x/" in n for n in a.train.names + a.val.names)
    assert sum("/test_x/" in n for n in a.test.names) == 6
    assert sum("/train_x/" in n for n in a.train.names + a.val.names) == 6
    free_counts = [sum("/free/" in n for n in s.names) for s in a]
    assert free_counts == [14, 3, 3]  # 20 free traces by (0.7, 0.15, 0.15)
    assert len(set(a.train.names) | set(a.val.names) | set(a.test.names)) == 32
    c = ts.split(seed=8)
    assert sorted(c.train.names) != sorted(a.train.names)
    with pytest.raises(ValueError, match="fractions"):
        ts.split(seed=1, fractions=(1.0, -0.5, 0.5))


def test_split_spreads_every_dataset_folder_over_the_sides():
    traces = [synthetic.constant(float(10 * g + i + 1), name=f"root/ds{g}/t{i}") for g in range(5) for i in range(4)]
    ts = TraceSet.from_traces(traces, "five")
    for seed in range(5):
        sp = ts.split(seed=seed)
        assert (len(sp.train), len(sp.val), len(sp.test)) == (14, 3, 3)
        # 3 test traces come from 3 different folders (evenly spaced over the folder-ordered pool)
        assert len({n.split("/")[1] for n in sp.test.names}) == 3
    assert len({tuple(sorted(ts.split(seed=s).test.names)) for s in range(5)}) > 1


def test_a_root_folder_named_test_sends_everything_to_test(tmp_path):
    make_dataset(tmp_path / "testing_set")
    split = TraceSet.load(tmp_path / "testing_set").split(seed=0)
    assert len(split.test) == 32 and len(split.train) == 0


def test_explicit_files_keep_their_folder_for_the_split(tmp_path):
    make_dataset(tmp_path / "data")
    files = sorted((tmp_path / "data" / "ds" / "test_x").iterdir())
    ts = TraceSet.load(files)
    assert all(n.startswith("test_x/") for n in ts.names)
    assert len(ts.split(seed=1).test) == len(files)


def test_failing_mahimahi_partner_is_named(tmp_path):
    write(tmp_path / "d" / "L.down", "1\n2\n3\n")
    write(tmp_path / "d" / "L.up", "1\n2\nx\n")
    ts = TraceSet.load(tmp_path / "d")
    ((path, reason),) = ts.errors
    assert len(ts) == 0 and reason.startswith("L.up: line 3: ")


def test_folder_side():
    assert folder_side("x/test_pensieve/f") == "test"
    assert folder_side("x/train_pensieve/f") == "train"
    assert folder_side("test_genet/train_sub/f") == "test"  # test wins: never train on it
    assert folder_side("x/oboe/test_file") is None  # a file name is not a folder


def test_rescale_set_to_target_mean_pooled_and_per_trace():
    ts = TraceSet.from_traces([synthetic.constant(10.0), synthetic.constant(30.0), synthetic.step([0.0, 40.0], 30.0)])
    pooled = ts.rescaled(target_mean_mbps=5.0)
    assert pooled.stats().pooled.mean_down_mbps == pytest.approx(5.0)
    assert pooled[1].stats().mean_down_mbps / pooled[0].stats().mean_down_mbps == pytest.approx(3.0)  # spread kept
    per = ts.rescaled(target_mean_mbps=5.0, per_trace=True)
    for t in per:
        assert t.stats().mean_up_mbps == pytest.approx(5.0)
    doubled = ts.rescaled(2.0)
    assert doubled.stats().pooled.mean_up_mbps == pytest.approx(2 * ts.stats().pooled.mean_up_mbps)


def test_segments_are_seeded_and_have_the_requested_duration():
    ts = TraceSet.from_traces(
        [synthetic.markov("wifi6", duration_s=30, rng=1), synthetic.markov("4g", duration_s=20, rng=2)]
    )
    a = ts.segments(25.0, np.random.default_rng(3), 5)
    b = ts.segments(25.0, np.random.default_rng(3), 5)
    assert [s.content_hash() for s in a] == [s.content_hash() for s in b]
    assert all(s.duration_s == pytest.approx(25.0) for s in a)
    assert len({s.content_hash() for s in a}) > 1
    with pytest.raises(ValueError, match="empty"):
        TraceSet.from_traces([]).sample_segment(np.random.default_rng(0), 1.0)


def test_fingerprint_depends_on_content_only():
    t1, t2 = synthetic.constant(1.0), synthetic.constant(2.0)
    assert TraceSet.from_traces([t1, t2]).fingerprint() == TraceSet.from_traces([t2, t1], "other").fingerprint()
    assert TraceSet.from_traces([t1, t2]).fingerprint() != TraceSet.from_traces([t1, t1]).fingerprint()


# -- every recorded dataset ---------------------------------------------------------------------------------------

DATASETS = (
    "fcc_broadband_2016",
    "hsdpa_norway_3g",
    "lumos5g_mmwave",
    "mahimahi_cellular_us",
    "oboe",
    "wifi_cellular_sbu_mptraces",
)


@pytest.mark.shared
def test_every_file_in_shared_traces_loads(shared_traces):
    ts = TraceSet.load(shared_traces)
    assert ts.errors == []
    for ds in DATASETS:
        n = sum(f"/{ds}/" in f"/{t.name}" for t in ts)
        assert n > 0, ds
    # every non-documentation file became (part of) a trace: Mahimahi pairs count as one
    files = [p for p in shared_traces.rglob("*") if p.is_file() and p not in set(ts.skipped)]
    pairs = sum(1 for p in files if p.suffix == ".up" and p.with_suffix(".down").exists())
    assert len(ts) == len(files) - pairs
    assert all(p.suffix == ".md" or p.name.startswith("README") for p in ts.skipped)
    split = ts.split(seed=0)
    assert not any("/test_" in n for n in split.train.names)
