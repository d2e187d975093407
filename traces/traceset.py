"""TraceSet: a named collection of traces loaded from folders, with a seeded train/val/test split that respects
dataset folders named train*/test*, rescaling, episode segments and set statistics."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import math
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from traces.readers import TraceFormatError, load_trace
from traces.trace import BandwidthTrace, TraceStats, summarize

log = logging.getLogger(__name__)

#: File names that are documentation, never traces; matched case-insensitively and listed in ``TraceSet.skipped``.
DOC_PATTERNS = ("readme*", "source.md", "*.md", "license*", "copying*", "manifest.*", "*.png", "*.pdf", ".*")

Side = Literal["train", "val", "test"]


def _is_doc(name: str) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatch(low, p) for p in DOC_PATTERNS)


def folder_side(name: str) -> Side | None:
    """The split side fixed by the folders in a trace name (the file name itself does not count): any ``test*``
    folder -> test (test wins, so test data never reaches training), else any ``val*`` -> val, else any ``train*``
    -> train; None when no folder says."""
    parts = [p.lower() for p in PurePosixPath(name).parts[:-1]]
    for prefix, side in (("test", "test"), ("val", "val"), ("train", "train")):
        if any(p.startswith(prefix) for p in parts):
            return side  # type: ignore[return-value]
    return None


def _spread(counts: dict[Side, int]) -> list[Side]:
    """Labels with the given counts, each label's occurrences evenly spaced over the sequence."""
    keyed = [((k + 0.5) / c, i, label) for i, (label, c) in enumerate(counts.items()) for k in range(c)]
    return [label for _, _, label in sorted(keyed)]


def _group(name: str) -> str:
    """Stratification key: the folder part of the name."""
    return str(PurePosixPath(name).parent)


@dataclass(frozen=True)
class TraceSetStats:
    """Per-set summary: the pooled, time-weighted statistics of all samples plus counts."""

    n_traces: int
    n_errors: int
    pooled: TraceStats

    def as_dict(self) -> dict[str, float]:
        return {"n_traces": self.n_traces, "n_errors": self.n_errors, **self.pooled.as_dict()}


class TraceSet:
    """An ordered, immutable collection of BandwidthTraces, plus the files that failed to load (``errors``) and the
    documentation files skipped (``skipped``)."""

    def __init__(
        self,
        traces: Iterable[BandwidthTrace],
        name: str = "traces",
        *,
        errors: Sequence[tuple[Path, str]] = (),
        skipped: Sequence[Path] = (),
    ) -> None:
        self.traces: tuple[BandwidthTrace, ...] = tuple(traces)
        for t in self.traces:
            if not isinstance(t, BandwidthTrace):
                raise TypeError(f"TraceSet holds BandwidthTrace objects, got {type(t).__name__}")
        self.name = name
        self.errors: list[tuple[Path, str]] = list(errors)
        self.skipped: tuple[Path, ...] = tuple(skipped)

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_traces(cls, traces: Iterable[BandwidthTrace], name: str = "traces") -> TraceSet:
        """A set from traces already in memory."""
        return cls(traces, name)

    @classmethod
    def load(
        cls,
        path_or_paths: str | Path | Sequence[str | Path],
        pattern: str = "*",
        recursive: bool = True,
        strict: bool = False,
        *,
        bin_s: float = 1.0,
        name: str | None = None,
    ) -> TraceSet:
        """Load trace files from files and/or directories.

        Directories are searched for file names matching ``pattern`` (recursively by default); documentation files
        (``DOC_PATTERNS``) are skipped and listed in ``.skipped``. A Mahimahi ``X.up``/``X.down`` pair becomes one
        trace. Each trace is named ``<folder name>/<path relative to it>`` so dataset folders (train*/test*) stay
        visible to ``split``. A file that fails is logged and listed in ``.errors`` with the reason; with
        ``strict=True`` the first failure raises. A path that does not exist, or a directory in which nothing
        matches, raises TraceFormatError.
        """
        paths = [Path(path_or_paths)] if isinstance(path_or_paths, (str, Path)) else [Path(p) for p in path_or_paths]
        if not paths:
            raise ValueError("no paths given")
        jobs: list[tuple[Path, str]] = []  # (file, trace name)
        skipped: list[Path] = []
        for root in paths:
            if not root.exists():
                raise TraceFormatError(root, "no such file or directory")
            if root.is_file():  # keep its folder in the name: a file from test_*/ must stay visible to split()
                jobs.append((root, f"{root.resolve().parent.name}/{root.name}"))
                continue
            it = root.rglob(pattern) if recursive else root.glob(pattern)
            found = sorted(p for p in it if p.is_file())
            matched = 0
            for f in found:
                rel = f.relative_to(root)
                if any(_is_doc(part) for part in rel.parts):
                    skipped.append(f)
                    continue
                matched += 1
                jobs.append((f, f"{root.resolve().name}/{rel.as_posix()}"))
            if matched == 0:
                raise TraceFormatError(
                    root, f"no trace files matching {pattern!r}" + (" (recursive)" if recursive else "")
                )
        # Mahimahi pairs: X.up + X.down in one folder -> one job on X.down (the reader finds the partner)
        by_path = {f.resolve(): n for f, n in jobs}
        final: list[tuple[Path, str]] = []
        for f, n in jobs:
            suf = f.suffix.lower()
            if suf == ".up" and f.with_suffix(".down").resolve() in by_path:
                continue  # loaded with its .down partner
            if suf in (".up", ".down"):
                n = n[: -len(f.suffix)]
            final.append((f, n))
        traces: list[BandwidthTrace] = []
        errors: list[tuple[Path, str]] = []
        seen: set[str] = set()
        for f, n in final:
            if n in seen:
                continue
            seen.add(n)
            try:
                traces.append(load_trace(f, bin_s=bin_s, name=n))
            except (TraceFormatError, ValueError, OverflowError) as e:  # one bad file never aborts the folder
                if strict:
                    raise
                reason = e.reason if isinstance(e, TraceFormatError) else str(e)
                if isinstance(e, TraceFormatError) and e.line is not None:
                    reason = f"line {e.line}: {reason}"
                if isinstance(e, TraceFormatError) and e.path.resolve() != f.resolve():
                    reason = f"{e.path.name}: {reason}"  # the Mahimahi partner file failed
                log.warning("skipping trace file %s: %s", f, reason)
                errors.append((f, reason))
        label = name if name is not None else "+".join(p.name or str(p) for p in paths)
        log.info("loaded %d traces from %s (%d failed, %d skipped)", len(traces), label, len(errors), len(skipped))
        return cls(traces, label, errors=errors, skipped=skipped)

    # -- container -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.traces)

    def __iter__(self) -> Iterator[BandwidthTrace]:
        return iter(self.traces)

    def __getitem__(self, i: int) -> BandwidthTrace:
        return self.traces[i]

    def __repr__(self) -> str:
        return f"TraceSet(name={self.name!r}, traces={len(self)}, errors={len(self.errors)})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.traces)

    def _derived(self, traces: Iterable[BandwidthTrace], name: str) -> TraceSet:
        return TraceSet(traces, name, errors=self.errors, skipped=self.skipped)

    # -- split -----------------------------------------------------------------------------------------------
    def split(self, seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> TraceSplit:
        """Deterministic train/val/test split.

        Traces under a ``test*`` folder (at any depth, including the loaded root) always go to test, ``val*`` to
        val; traces under a ``train*`` folder go to train or val (never test). The remaining traces form one pool
        split by ``fractions`` (counts rounded half up, train takes the rest), stratified by folder: the pool is
        ordered folder by folder, each folder's traces sorted by name and content then permuted by ``seed``, and the
        sides are laid over that order evenly spaced (with a seeded rotation), so every dataset folder is spread
        over the sides in proportion. The result depends on names, contents and the seed, not on load order.
        """
        if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions) or sum(fractions) <= 0:
            raise ValueError(f"fractions must be three non-negative numbers with a positive sum, got {fractions}")
        total = float(sum(fractions))
        f_train, f_val, f_test = (f / total for f in fractions)
        out: dict[Side, list[BandwidthTrace]] = {"train": [], "val": [], "test": []}
        pools: dict[str, list[BandwidthTrace]] = {"free": [], "train": []}
        groups: dict[tuple[str, Side | None], list[BandwidthTrace]] = {}
        for t in self.traces:
            groups.setdefault((_group(t.name), folder_side(t.name)), []).append(t)
        for (folder, side), members in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            if side in ("test", "val"):
                out[side].extend(members)  # type: ignore[index]
                continue
            members = sorted(members, key=lambda t: (t.name, t.content_hash()))
            rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(folder.encode())]))
            pools["train" if side == "train" else "free"].extend(members[i] for i in rng.permutation(len(members)))
        f_val_of_train = f_val / (f_train + f_val) if f_train + f_val > 0 else 0.0
        for pool_name, pool, fr in (
            ("free", pools["free"], (f_val, f_test)),
            ("train", pools["train"], (f_val_of_train, 0.0)),
        ):
            n = len(pool)
            if n == 0:
                continue
            n_val = min(int(math.floor(n * fr[0] + 0.5)), n)
            n_test = min(int(math.floor(n * fr[1] + 0.5)), n - n_val)
            labels = _spread({"val": n_val, "test": n_test, "train": n - n_val - n_test})
            rng = np.random.default_rng(
                np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(pool_name.encode())])
            )
            shift = int(rng.integers(n))
            for i, t in enumerate(pool):
                out[labels[(i + shift) % n]].append(t)
        return TraceSplit(
            train=TraceSet(out["train"], f"{self.name}:train"),
            val=TraceSet(out["val"], f"{self.name}:val"),
            test=TraceSet(out["test"], f"{self.name}:test"),
            seed=int(seed),
        )

    # -- transforms ------------------------------------------------------------------------------------------
    def rescaled(
        self,
        factor: float | None = None,
        *,
        target_mean_mbps: float | None = None,
        direction: Literal["up", "down", "both"] = "both",
        per_trace: bool = False,
    ) -> TraceSet:
        """A set with every trace multiplied by ``factor``, or scaled so the pooled time-weighted mean of each scaled
        direction is ``target_mean_mbps`` (one factor per direction for the whole set, keeping the spread between
        traces). ``per_trace=True`` maps every trace's own mean to the target instead."""
        if (factor is None) == (target_mean_mbps is None):
            raise ValueError("give exactly one of factor or target_mean_mbps")
        if factor is not None or per_trace:
            return self._derived(
                (t.rescaled(factor, target_mean_mbps=target_mean_mbps, direction=direction) for t in self.traces),
                f"{self.name}*rescaled",
            )
        if not self.traces:
            raise ValueError("cannot map an empty TraceSet to a target mean")
        dirs = ("up", "down") if direction == "both" else (direction,)
        if direction not in ("up", "down", "both"):
            raise ValueError(f"direction must be 'up', 'down' or 'both', got {direction!r}")
        traces = list(self.traces)
        for d in dirs:
            s = self.stats().pooled
            mean = s.mean_up_mbps if d == "up" else s.mean_down_mbps
            if mean <= 0:
                raise ValueError(f"TraceSet {self.name!r}: pooled {d} mean is 0; cannot map it to {target_mean_mbps}")
            f = float(target_mean_mbps) / mean  # type: ignore[arg-type]
            traces = [t.rescaled(f, direction=d) for t in traces]  # type: ignore[arg-type]
        return self._derived(traces, f"{self.name}*rescaled")

    def filter(self, predicate: Callable[[BandwidthTrace], bool]) -> TraceSet:
        """The traces for which ``predicate(trace)`` is true."""
        return self._derived((t for t in self.traces if predicate(t)), self.name)

    # -- sampling --------------------------------------------------------------------------------------------
    def sample_segment(self, rng: np.random.Generator, duration_s: float) -> BandwidthTrace:
        """A ``duration_s`` slice of a uniformly chosen trace from a uniform start point (wrapping at its end)."""
        if not self.traces:
            raise ValueError(f"TraceSet {self.name!r} is empty; cannot sample a segment")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        t = self.traces[int(rng.integers(len(self.traces)))]
        start = float(rng.uniform(0.0, t.duration_s))
        return t.segment(start, duration_s)

    def segments(self, duration_s: float, rng: np.random.Generator, n: int) -> list[BandwidthTrace]:
        """``n`` independent ``sample_segment`` draws."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return [self.sample_segment(rng, duration_s) for _ in range(n)]

    # -- summaries -------------------------------------------------------------------------------------------
    def stats(self) -> TraceSetStats:
        """Pooled time-weighted statistics over all samples of all traces."""
        if not self.traces:
            nan = float("nan")
            return TraceSetStats(0, len(self.errors), TraceStats(0.0, 0, nan, nan, nan, nan, nan, nan, nan, nan))
        dur = np.concatenate([t.intervals_s for t in self.traces])
        up = np.concatenate([t.up_mbps for t in self.traces])
        down = np.concatenate([t.down_mbps for t in self.traces])
        rtt = np.concatenate([t.rtt_array_ms() for t in self.traces])
        return TraceSetStats(len(self.traces), len(self.errors), summarize(dur, up, down, rtt, len(up)))

    def fingerprint(self) -> str:
        """sha256 over the sorted content hashes of the traces (independent of order and names)."""
        h = hashlib.sha256()
        for c in sorted(t.content_hash() for t in self.traces):
            h.update(c.encode())
        return h.hexdigest()


@dataclass(frozen=True)
class TraceSplit:
    """The three sides of a split and the seed that made it."""

    train: TraceSet
    val: TraceSet
    test: TraceSet
    seed: int

    def __iter__(self) -> Iterator[TraceSet]:
        return iter((self.train, self.val, self.test))
