"""Hand-written planners: EdgeOnly, CloudOnly, StaticBestCut (Neurosurgeon), RoboECCPlanner (co-aware split with
network-aware adjustment), RapidSkip (RAPID's dispatch: redundant steps on the edge, critical steps to the cloud)
and HeuristicPlanner (RoboECC cut + RAPID-style skip, the fallback of the learned policy).

All of them read only the observation vector (decoded by ``agents.planner.ObsView``) and the static
``PlannerContext``; they keep a little per-episode state (bandwidth history, cooldowns) that is cleared when
``predict`` is called with a true ``episode_start``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.planner import ObsView, PlannerContext, action
from traces.units import rate_mbps

log = logging.getLogger(__name__)


def _is_start(episode_start: Any) -> bool:
    if episode_start is None:
        return False
    return bool(np.any(episode_start))


class _Base:
    """Shared plumbing: the context, an ObsView, episode resets."""

    skips = False

    def __init__(self, ctx: PlannerContext) -> None:
        if not isinstance(ctx, PlannerContext):
            raise TypeError(f"ctx must be a PlannerContext, got {type(ctx).__name__}")
        self.ctx = ctx
        self.view = ObsView(ctx.obs_config)

    def reset(self) -> None:
        """Forget per-episode state."""

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        if _is_start(episode_start):
            self.reset()
        return self._decide(observation), state

    def _decide(self, observation: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class EdgeOnly(_Base):
    """Always run every block on the edge; never skip."""

    def _decide(self, observation: Any) -> np.ndarray:
        return action(self.ctx.edge_only_index, False)


class CloudOnly(_Base):
    """Always upload the raw observation (cut 0, or the nearest cut that fits the edge); never skip."""

    def _decide(self, observation: Any) -> np.ndarray:
        return action(self.ctx.nearest_allowed(0), False)


def expected_cut_costs_ms(
    ctx: PlannerContext, up_mbps: float, down_mbps: float, rtt_ms: float, server_queue: float = 0.0
) -> np.ndarray:
    """Expected latency of every cut at constant bandwidth (``CutTable.latency_ms``), with the deadline rule: a
    network cut slower than the deadline costs the deadline plus edge-only; masked cuts cost +inf."""
    costs = ctx.table.latency_ms(max(up_mbps, 0.0), max(down_mbps, 0.0), max(rtt_ms, 0.0) / 2.0).copy()
    net = ctx.table.uses_network
    costs[net] += server_queue * float(ctx.table.cloud_ms[0])
    miss = net & (costs > ctx.deadline_ms)
    costs[miss] = ctx.deadline_ms + ctx.edge_only_ms
    costs[~ctx.cut_fits] = np.inf
    return costs


@dataclass(frozen=True)
class RoboECCPaperChain:
    """A block chain priced as RoboECC's code prices it (``roboecc/segmentation.py``), for reproducing its figures.

    Cut k puts the first k blocks on the cloud and the rest on the edge (cloud prefix / edge suffix); its latency
    is cloud time of the prefix + edge time of the suffix + (fixed link latency + the activation after block k-1 /
    bandwidth) for an internal cut only. The two endpoints (all edge, all cloud) move nothing: the raw input upload,
    the action download and the return latency are not charged. ``max_cloud_load_bytes`` (the cloud-load budget,
    parameter bytes on the cloud) excludes cuts above it. The package's env charges all of these (complete
    accounting); this is the paper's setting only.
    """

    edge_ms: np.ndarray  # per block
    cloud_ms: np.ndarray
    param_bytes: np.ndarray
    out_bytes: np.ndarray  # activation after each block (what an internal cut after it sends)

    @classmethod
    def from_profiles(cls, edge: Any, cloud: Any) -> RoboECCPaperChain:
        """From two Profiles of one chain; a block's output bytes are its edge-then-cloud cut's upload."""
        if tuple(edge.block_names) != tuple(cloud.block_names):
            raise ValueError("edge and cloud profiles describe different block chains")
        n = len(edge.block_ms)
        out = np.zeros(n)
        for c in edge.cuts:
            if getattr(c, "placement", "edge_then_cloud") == "edge_then_cloud" and 1 <= c.k <= n:
                out[c.k - 1] = c.up_bytes
        params = np.asarray(edge.block_param_bytes or (0,) * n, dtype=np.float64)
        return cls(np.asarray(edge.block_ms, float), np.asarray(cloud.block_ms, float), params, out)

    @property
    def edge_only_ms(self) -> float:
        return float(self.edge_ms.sum())

    def costs_ms(self, up_mbps: float, one_way_ms: float, max_cloud_load_bytes: float | None = None) -> np.ndarray:
        """Latency of cut k = 0 (all edge) .. n (all cloud); +inf above the cloud-load budget."""
        if not up_mbps > 0 or one_way_ms < 0:
            raise ValueError(f"need up_mbps > 0 and one_way_ms >= 0, got {up_mbps!r}, {one_way_ms!r}")
        n = len(self.edge_ms)
        cloud_prefix = np.concatenate([[0.0], np.cumsum(self.cloud_ms)])
        edge_suffix = np.concatenate([np.cumsum(self.edge_ms[::-1])[::-1], [0.0]])
        transfer = np.zeros(n + 1)
        transfer[1:n] = one_way_ms + self.out_bytes[: n - 1] * 8.0 / (up_mbps * 1e6) * 1e3
        costs = cloud_prefix + edge_suffix + transfer
        if max_cloud_load_bytes is not None:
            load = np.concatenate([[0.0], np.cumsum(self.param_bytes)])
            costs = np.where(load <= max_cloud_load_bytes + 1e-6, costs, np.inf)
        return costs

    def best(self, up_mbps: float, one_way_ms: float, max_cloud_load_bytes: float | None = None) -> tuple[int, float]:
        """(cut, latency ms) of RoboECC's search: the fastest feasible cut, ties to the smaller cloud load."""
        c = self.costs_ms(up_mbps, one_way_ms, max_cloud_load_bytes)
        k = int(np.argmin(c))
        return k, float(c[k])


class StaticBestCut(_Base):
    """Neurosurgeon: the one cut with the lowest expected latency at the prior (training traces' mean) bandwidth."""

    def __init__(self, ctx: PlannerContext) -> None:
        super().__init__(ctx)
        p = ctx.prior
        self.costs_ms = expected_cut_costs_ms(ctx, p.up_mbps, p.down_mbps, p.rtt_ms)
        self.cut = int(np.argmin(self.costs_ms))

    def _decide(self, observation: Any) -> np.ndarray:
        return action(self.cut, False)


# ---------------------------------------------------------------------------------------------------------------
# Bandwidth predictors: update(sample) with each new uplink measurement, predict() the next one.


class BandwidthPredictor:
    """Predicts the next uplink sample (Mbit/s) from the samples seen so far in the episode."""

    name = "last"

    def __init__(self, window: int = 5) -> None:
        if int(window) != window or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        self.window = int(window)
        self.samples: deque[float] = deque(maxlen=self.window)

    def reset(self) -> None:
        self.samples.clear()

    def update(self, mbps: float) -> None:
        if not math.isfinite(mbps) or mbps < 0:
            raise ValueError(f"bandwidth sample must be finite and >= 0, got {mbps!r}")
        self.samples.append(float(mbps))

    def predict(self) -> float | None:
        return self.samples[-1] if self.samples else None


class MovingAverage(BandwidthPredictor):
    """Arithmetic mean of the last ``window`` samples."""

    name = "moving_average"

    def predict(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


class HarmonicMean(BandwidthPredictor):
    """Harmonic mean of the last ``window`` samples (robust to spikes, as in MPC/FESTIVE-style predictors)."""

    name = "harmonic"

    def predict(self) -> float | None:
        if not self.samples:
            return None
        s = np.asarray(self.samples)
        if np.any(s <= 0):
            return 0.0
        return float(len(s) / np.sum(1.0 / s))


LSTM_FORMAT_VERSION = 1
#: The stored LSTM predictor (trained on the embedded set's training split by ``benchmarks/bench_roboecc_table.py
#: --train-lstm``); ``make_predictor("lstm")`` loads it.
DEFAULT_LSTM_PATH = Path(__file__).resolve().parent / "data" / "roboecc_lstm.npz"


class PredictorFileError(ValueError):
    """A stored predictor file that cannot be used (missing, wrong format, wrong shapes)."""


class LSTMPredictor(BandwidthPredictor):
    """RoboECC's predictor: a 1-layer LSTM (hidden 32) over the last 20 samples in log space, trained on the
    training traces (:func:`train_lstm_predictor`); stored as npz (:meth:`save` / :meth:`load`, no pickle)."""

    name = "lstm"

    def __init__(self, model: Any, window: int = 20, scale_mbps: float = 10_000.0) -> None:
        super().__init__(window)
        self.model = model
        self.scale_mbps = float(scale_mbps)
        self._log_scale = math.log1p(scale_mbps)

    def save(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write the weights and settings as an npz of plain arrays (``allow_pickle=False`` readable)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"w.{k}": v.detach().cpu().numpy().astype(np.float32) for k, v in self.model.state_dict().items()}
        hidden = int(self.model.lstm.hidden_size)
        info = json.dumps(
            {
                "format_version": LSTM_FORMAT_VERSION,
                "window": self.window,
                "hidden": hidden,
                "scale_mbps": self.scale_mbps,
                **(meta or {}),
            }
        )
        np.savez(path, info=np.array(info), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LSTMPredictor:
        """Read a file written by :meth:`save`; PredictorFileError names what is wrong."""
        import torch

        path = Path(path)
        if not path.is_file():
            raise PredictorFileError(f"LSTM predictor file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                info = json.loads(str(z["info"]))
                arrays = {k[2:]: np.array(z[k]) for k in z.files if k.startswith("w.")}
        except (ValueError, KeyError, OSError, json.JSONDecodeError) as e:
            raise PredictorFileError(f"{path}: not an LSTM predictor file ({e})") from e
        if info.get("format_version") != LSTM_FORMAT_VERSION:
            raise PredictorFileError(
                f"{path}: format_version {info.get('format_version')!r}, expected {LSTM_FORMAT_VERSION}"
            )
        net = _lstm_module(int(info["hidden"]))
        state = net.state_dict()
        if set(arrays) != set(state) or any(tuple(arrays[k].shape) != tuple(state[k].shape) for k in state):
            raise PredictorFileError(
                f"{path}: weights {sorted(arrays)} do not match an LSTM of hidden {info['hidden']}"
            )
        net.load_state_dict({k: torch.from_numpy(arrays[k]) for k in state})
        net.eval()
        return cls(net, window=int(info["window"]), scale_mbps=float(info["scale_mbps"]))

    def predict(self) -> float | None:
        if not self.samples:
            return None
        if len(self.samples) < 2:
            return self.samples[-1]
        import torch

        x = torch.tensor([math.log1p(s) / self._log_scale for s in self.samples], dtype=torch.float32)
        with torch.no_grad():
            y = float(self.model(x.view(1, -1, 1)))
        return max(math.expm1(y * self._log_scale), 0.0)


def _lstm_module(hidden: int = 32):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(1, hidden, num_layers=1, batch_first=True)
            self.head = nn.Linear(hidden, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)
            return x[:, -1, 0] + self.head(out[:, -1]).squeeze(-1)  # predict the change of the last sample

    return _Net()


def train_lstm_predictor(
    trace_set: Any,
    *,
    seed: int = 0,
    window: int = 20,
    hidden: int = 32,
    sample_interval_s: float = 0.1,
    sequences: int = 2048,
    epochs: int = 30,
    scale_mbps: float = 10_000.0,
) -> LSTMPredictor:
    """Fit the LSTM predictor on uplink rate sequences sampled every ``sample_interval_s`` from random points of the
    training traces (log scale, next-sample MSE). A few seconds on one CPU core."""
    import torch

    if len(trace_set) == 0:
        raise ValueError("cannot train the LSTM predictor on an empty trace set")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    log_scale = math.log1p(scale_mbps)
    xs = np.empty((sequences, window + 1))
    offsets = np.arange(window + 1) * sample_interval_s
    for i in range(sequences):
        tr = trace_set[int(rng.integers(len(trace_set)))]
        t0 = rng.uniform(0.0, tr.duration_s)
        rates = tr.bandwidth_at((t0 + offsets) % tr.duration_s, "up")
        xs[i] = np.log1p(np.maximum(rates, 0.0)) / log_scale
    x = torch.tensor(xs[:, :window, None], dtype=torch.float32)
    y = torch.tensor(xs[:, window], dtype=torch.float32)
    net = _lstm_module(hidden)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    batch = 256
    for _ in range(epochs):
        perm = torch.randperm(sequences)
        for b in range(0, sequences, batch):
            idx = perm[b : b + batch]
            opt.zero_grad()
            loss = torch.mean((net(x[idx]) - y[idx]) ** 2)
            loss.backward()
            opt.step()
    net.eval()
    log.info("LSTM bandwidth predictor trained on %d sequences, final MSE %.2e", sequences, float(loss.detach()))
    return LSTMPredictor(net, window=window, scale_mbps=scale_mbps)


def make_predictor(kind: str | BandwidthPredictor, window: int = 5) -> BandwidthPredictor:
    """A predictor by name: ``last``, ``moving_average``, ``harmonic``, ``lstm`` (the stored
    ``DEFAULT_LSTM_PATH``), ``lstm:PATH`` (an npz from :meth:`LSTMPredictor.save`), or an instance (returned as is)."""
    if isinstance(kind, BandwidthPredictor):
        return kind
    if kind == "lstm" or str(kind).startswith("lstm:"):
        path = DEFAULT_LSTM_PATH if kind == "lstm" else Path(str(kind)[5:])
        return LSTMPredictor.load(path)
    kinds = {"last": BandwidthPredictor, "moving_average": MovingAverage, "harmonic": HarmonicMean}
    if kind not in kinds:
        raise ValueError(
            f"unknown predictor {kind!r}; valid: {sorted(kinds)}, 'lstm', 'lstm:PATH' or an LSTMPredictor instance"
        )
    return kinds[kind](window)


def one_step_errors(
    predictor: BandwidthPredictor, trace_set: Any, *, sample_interval_s: float = 0.1, horizon_s: float = 30.0
) -> dict[str, float]:
    """One-step-ahead prediction error of ``predictor`` on the uplink of every trace, sampled every
    ``sample_interval_s`` over the first ``horizon_s``: mean absolute error (Mbit/s), mean absolute percentage
    error (samples > 0.1 Mbit/s) and RMSE of log(1 + rate); also the median predict() time (ms)."""
    import time

    abs_err, pct, log_err, t_pred = [], [], [], []
    for tr in trace_set:
        n = int(min(horizon_s, tr.duration_s) / sample_interval_s)
        rates = np.maximum(tr.bandwidth_at(np.arange(n) * sample_interval_s, "up"), 0.0)
        predictor.reset()
        for i in range(n - 1):
            predictor.update(float(rates[i]))
            t0 = time.perf_counter()
            y = predictor.predict()
            t_pred.append(time.perf_counter() - t0)
            if y is None:
                continue
            truth = float(rates[i + 1])
            abs_err.append(abs(y - truth))
            if truth > 0.1:
                pct.append(abs(y - truth) / truth)
            log_err.append((math.log1p(y) - math.log1p(truth)) ** 2)
    if not abs_err:
        raise ValueError("no predictions: the trace set is empty or too short")
    return {
        "mae_mbps": float(np.mean(abs_err)),
        "mape": float(np.mean(pct)) if pct else math.nan,
        "log_rmse": float(np.sqrt(np.mean(log_err))),
        "predict_ms": 1e3 * float(np.median(t_pred)),
        "samples": float(len(abs_err)),
    }


class _UplinkTracker:
    """Finds the uplink samples in an observation that are newer than the ones already seen."""

    def __init__(self) -> None:
        self.newest_age_s: float | None = None

    def reset(self) -> None:
        self.newest_age_s = None

    def new_samples(self, mbps: Sequence[float], ages: Sequence[float], elapsed_s: float) -> list[float]:
        """Samples (oldest first) whose age is below the previously newest sample's age advanced by at most
        ``elapsed_s`` (a control period at least passed between two calls)."""
        if not mbps:
            return []
        if self.newest_age_s is None:
            fresh = list(mbps)
        else:
            fresh = [m for m, a in zip(mbps, ages) if a < self.newest_age_s - 1e-6]
        self.newest_age_s = float(ages[0])
        return fresh[::-1]

    def advance(self, dt_s: float) -> None:
        if self.newest_age_s is not None:
            self.newest_age_s += dt_s


ROBOECC_ADJUSTMENTS: tuple[str, ...] = ("reoptimise", "two_threshold")


@dataclass(frozen=True)
class RoboECCConfig:
    """Network-aware adjustment of RoboECCPlanner.

    hysteresis_frac / hysteresis_ms: move to a new cut only when its expected latency beats the current cut's by
        more than this fraction and this many ms (holds the cut for small bandwidth changes).
    change_threshold: relative change of the predicted bandwidth against the one the current cut was chosen at
        below which the cut is kept without re-evaluation (RoboECC's delta thresholds).
    stale_tau_s: a measurement's weight decays as exp(-age / stale_tau_s) towards the prior, so a planner that stays
        on the edge re-probes the link after a while.
    window: samples the moving-average / harmonic predictors use.
    adjustment: "reoptimise" (the package's rule above: a full argmin with hysteresis) or "two_threshold" (RoboECC's
        code, ``roboecc/network.py``): the first cut is the argmin at the prior; the allowed pool is every cut that
        is optimal somewhere in [prior / pool_span, prior x pool_span] (those layers stay loaded on both sides); then
        with delta = predicted - newest measured uplink (Mbit/s), delta > high_delta_mbps moves to the pool cut with
        the largest upload, delta < low_delta_mbps to the one with the smallest, otherwise the cut is kept.
    """

    hysteresis_frac: float = 0.1
    hysteresis_ms: float = 5.0
    change_threshold: float = 0.15
    stale_tau_s: float = 5.0
    window: int = 5
    adjustment: str = "reoptimise"
    low_delta_mbps: float = -5.0
    high_delta_mbps: float = 5.0
    pool_span: float = 8.0

    def __post_init__(self) -> None:
        for name in ("hysteresis_frac", "hysteresis_ms", "change_threshold"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"RoboECCConfig.{name} must be finite and >= 0, got {getattr(self, name)!r}")
        if not self.stale_tau_s > 0:
            raise ValueError(f"stale_tau_s must be > 0, got {self.stale_tau_s!r}")
        if self.adjustment not in ROBOECC_ADJUSTMENTS:
            raise ValueError(f"RoboECCConfig.adjustment must be one of {ROBOECC_ADJUSTMENTS}, got {self.adjustment!r}")
        if not (self.low_delta_mbps <= 0 <= self.high_delta_mbps and self.pool_span >= 1):
            raise ValueError(
                f"need low_delta_mbps <= 0 <= high_delta_mbps and pool_span >= 1, got "
                f"{self.low_delta_mbps!r}, {self.high_delta_mbps!r}, {self.pool_span!r}"
            )


class RoboECCPlanner(_Base):
    """RoboECC-style split: argmin over all cuts of edge + transfer + cloud time (raw upload and action download
    charged, via ``CutTable.latency_ms``) at the predicted bandwidth, with thresholds and hysteresis deciding when
    to move the cut. It never skips; the cut only changes at an inference (one decision per action generation)."""

    def __init__(
        self,
        ctx: PlannerContext,
        predictor: str | BandwidthPredictor = "harmonic",
        config: RoboECCConfig = RoboECCConfig(),
    ) -> None:
        super().__init__(ctx)
        self.config = config
        self.predictor = make_predictor(predictor, config.window)
        self.tracker = _UplinkTracker()
        self.pool = self.allowed_pool()
        self.reset()

    def reset(self) -> None:
        self.predictor.reset()
        self.tracker.reset()
        self.cut: int | None = None
        self.chosen_at_mbps: float | None = None
        self.last_costs_ms: np.ndarray | None = None
        self.miss_age_s: float | None = None
        self.newest_mbps: float | None = None
        self.last_delta_mbps: float = math.nan

    def allowed_pool(self) -> tuple[int, ...]:
        """Cuts optimal for some uplink in [prior / pool_span, prior x pool_span] (16 log-spaced rates)."""
        p = self.ctx.prior
        span = self.config.pool_span
        rates = np.geomspace(max(p.up_mbps, 1e-3) / span, max(p.up_mbps, 1e-3) * span, 16)
        cuts = {
            int(np.argmin(expected_cut_costs_ms(self.ctx, r, p.down_mbps * r / max(p.up_mbps, 1e-3), p.rtt_ms)))
            for r in rates
        }
        return tuple(sorted(cuts))

    def two_threshold_cut(self, predicted_mbps: float | None) -> int:
        """RoboECC's adjustment (see RoboECCConfig.adjustment); returns (and remembers) the cut."""
        if self.cut is None:
            p = self.ctx.prior
            self.cut = int(np.argmin(expected_cut_costs_ms(self.ctx, p.up_mbps, p.down_mbps, p.rtt_ms)))
            if self.cut not in self.pool:
                self.pool = tuple(sorted({*self.pool, self.cut}))
            return self.cut
        if predicted_mbps is None or self.newest_mbps is None:
            return self.cut
        c = self.config
        delta = predicted_mbps - self.newest_mbps
        self.last_delta_mbps = delta
        up = self.ctx.table.up_bytes
        if delta > c.high_delta_mbps:
            self.cut = min(self.pool, key=lambda k: (-up[k], abs(k - self.cut), k))
        elif delta < c.low_delta_mbps:
            self.cut = min(self.pool, key=lambda k: (up[k], abs(k - self.cut), k))
        return self.cut

    def observe(self, fields: dict[str, float], observation: Any) -> None:
        """Feed the new uplink samples of this observation to the predictor. A deadline miss of a network cut
        yields no measurement; it is fed as a sample of half the rate that would have met the deadline."""
        mbps, ages = self.view.uplink(observation)
        fresh = self.tracker.new_samples(mbps, ages, self.ctx.period_ms * 1e-3)
        for m in fresh:
            self.predictor.update(m)
        if fresh:
            self.newest_mbps = fresh[-1]
        if self.miss_age_s is not None:
            self.miss_age_s += self.ctx.period_ms * 1e-3
        prev = int(fields["prev_cut"])
        if fields["prev_deadline_miss"] > 0.5 and 0 <= prev < self.ctx.num_cuts and self.ctx.table.uses_network[prev]:
            self.predictor.update(rate_mbps(0.5 * self.ctx.table.up_bytes[prev], self.ctx.deadline_ms * 1e-3))
            self.miss_age_s = 0.0
        elif fresh:
            self.miss_age_s = None

    def bandwidth_estimate(self, fields: dict[str, float]) -> tuple[float, float, float]:
        """(up Mbit/s, down Mbit/s, RTT ms) blended with the prior by the newest sample's age."""
        prior = self.ctx.prior
        pred = self.predictor.predict()
        age = fields["uplink_age_s"]
        if self.miss_age_s is not None:
            age = self.miss_age_s if not math.isfinite(age) else min(age, self.miss_age_s)
        if pred is None or not math.isfinite(age):
            up = prior.up_mbps
        else:
            w = math.exp(-age / self.config.stale_tau_s)
            up = math.exp(w * math.log(max(pred, 1e-3)) + (1 - w) * math.log(max(prior.up_mbps, 1e-3)))
        down = fields["downlink_mbps"] if math.isfinite(fields["downlink_mbps"]) else prior.down_mbps
        rtt = fields["rtt_ms"] if math.isfinite(fields["rtt_ms"]) else prior.rtt_ms
        return up, down, rtt

    def choose_cut(self, up: float, down: float, rtt: float, server_queue: float = 0.0) -> int:
        """Apply the threshold/hysteresis rule at this bandwidth estimate; returns (and remembers) the cut."""
        costs = expected_cut_costs_ms(self.ctx, up, down, rtt, server_queue)
        self.last_costs_ms = costs
        best = int(np.argmin(costs))
        cfg = self.config
        if self.cut is None:
            self.cut, self.chosen_at_mbps = best, up
            return best
        ref = self.chosen_at_mbps or up
        if ref > 0 and abs(up - ref) / ref < cfg.change_threshold and math.isfinite(costs[self.cut]):
            return self.cut  # bandwidth barely moved: keep the cut
        cur = costs[self.cut]
        if not math.isfinite(cur) or costs[best] < cur * (1 - cfg.hysteresis_frac) - cfg.hysteresis_ms:
            self.cut = best
        self.chosen_at_mbps = up
        return self.cut

    def _decide(self, observation: Any) -> np.ndarray:
        f = self.view.decode(observation)
        self.observe(f, observation)
        if self.config.adjustment == "two_threshold":
            return action(self.two_threshold_cut(self.predictor.predict()), False)
        up, down, rtt = self.bandwidth_estimate(f)
        return action(self.choose_cut(up, down, rtt, f["server_queue"]), False)


RAPID_DISPATCHES: tuple[str, ...] = ("paper", "skip")


@dataclass(frozen=True)
class RapidConfig:
    """RAPID's dispatcher.

    Importance score s = (1 - visual_weight) * (w * accel_anomaly + (1 - w) * torque_change)
    + visual_weight * max(changed_fraction, 2 * structural), with w = speed / (speed + speed_ref_rad_s): the
    acceleration term dominates at high joint speed, the torque term at low-speed contact. RAPID is kinematics-only
    (``visual_weight=0``, the default); a positive weight adds the noise-robust visual features (changed-pixel
    fraction after blur, low-res structural distance), never raw pixel MAD.

    When to infer (:meth:`RapidSkip.should_skip`): no actions left -> infer; s >= high_threshold (critical) ->
    pre-empt the chunk and infer, unless a pre-emption happened within ``cooldown_steps``; s >= low_threshold ->
    infer if at least ``cooldown_steps`` steps ran since the last inference; the chunk older than
    ``max_action_age_s`` -> infer; otherwise the step is redundant.

    Where (``dispatch``): ``"paper"`` (RAPID's dispatch) keeps redundant steps on the edge (the current chunk goes
    on; a chunk that ran out or went stale is refilled by edge-only inference) and sends critical and important
    steps (s >= low_threshold) to the cloud (the cut planner's cut when it uses the network, else the network cut
    with the lowest expected latency at the prior bandwidth); ``"skip"`` (the package's earlier rule, used by
    ``HeuristicPlanner``) skips redundant steps and runs every inference at the cut planner's cut.
    """

    low_threshold: float = 0.3
    high_threshold: float = 0.7
    cooldown_steps: int = 2
    speed_ref_rad_s: float = 1.0
    visual_weight: float = 0.0
    max_action_age_s: float = 0.6
    dispatch: str = "paper"

    def __post_init__(self) -> None:
        if not 0 <= self.low_threshold <= self.high_threshold:
            raise ValueError(
                f"need 0 <= low_threshold <= high_threshold, got {self.low_threshold!r}, {self.high_threshold!r}"
            )
        if int(self.cooldown_steps) != self.cooldown_steps or self.cooldown_steps < 0:
            raise ValueError(f"cooldown_steps must be an integer >= 0, got {self.cooldown_steps!r}")
        if not (self.speed_ref_rad_s > 0 and 0 <= self.visual_weight <= 1 and self.max_action_age_s > 0):
            raise ValueError(f"invalid RapidConfig {self}")
        if self.dispatch not in RAPID_DISPATCHES:
            raise ValueError(f"RapidConfig.dispatch must be one of {RAPID_DISPATCHES}, got {self.dispatch!r}")


def best_network_cut(ctx: PlannerContext, costs_ms: np.ndarray | None = None) -> int:
    """The cut that uses the network with the lowest expected latency (``costs_ms``, default: at the prior
    bandwidth); the edge-only cut when no network cut fits the edge."""
    if costs_ms is None:
        p = ctx.prior
        costs_ms = expected_cut_costs_ms(ctx, p.up_mbps, p.down_mbps, p.rtt_ms)
    net = np.asarray(ctx.table.uses_network) & np.asarray(ctx.cut_fits)
    if not net.any():
        return ctx.edge_only_index
    masked = np.where(net, costs_ms, np.inf)
    if not np.isfinite(masked).any():  # every network cut misses the deadline: the cheapest upload
        masked = np.where(net, np.asarray(ctx.table.up_bytes, dtype=float), np.inf)
    return int(np.argmin(masked))


class RapidSkip(_Base):
    """RAPID (see :class:`RapidConfig`): kinematic importance decides whether a step is redundant (edge) or
    critical (cloud, pre-empting the chunk); the cloud cut comes from a cut planner (default: StaticBestCut)."""

    skips = True

    def __init__(self, ctx: PlannerContext, config: RapidConfig = RapidConfig(), cut_planner: Any = None) -> None:
        super().__init__(ctx)
        self.config = config
        self.cut_planner = cut_planner if cut_planner is not None else StaticBestCut(ctx)
        self._prior_network_cut = best_network_cut(ctx)
        self.reset()

    def reset(self) -> None:
        self.steps_since_preempt = 10**9
        self.last_event = ""
        self.last_target = ""
        self.cut = self.ctx.edge_only_index
        if hasattr(self.cut_planner, "reset"):
            self.cut_planner.reset()

    def importance(self, f: dict[str, float]) -> float:
        """The fused action-importance score in [0, 1]."""
        c = self.config
        w = f["joint_speed"] / (f["joint_speed"] + c.speed_ref_rad_s)
        kin = w * f["accel_anomaly"] + (1 - w) * f["torque_change"]
        if c.visual_weight == 0:
            return kin
        vis = min(max(f["visual_changed"], 2.0 * f["visual_structural"]), 1.0)
        return (1 - c.visual_weight) * kin + c.visual_weight * vis

    def should_skip(self, f: dict[str, float]) -> bool:
        """Apply the dual-threshold / cooldown / pre-emption rule; records ``last_event``."""
        c = self.config
        self.steps_since_preempt += 1
        left = f["actions_left"]
        since_infer = self.ctx.chunk_size - 1 - left
        s = self.importance(f)
        if left <= 0:
            self.last_event = "chunk_empty"
            return False
        if s >= c.high_threshold and self.steps_since_preempt > c.cooldown_steps:
            self.steps_since_preempt = 0
            self.last_event = "preempt"
            return False
        if s >= c.low_threshold and since_infer >= c.cooldown_steps:
            self.last_event = "important"
            return False
        if f["action_age_s"] >= c.max_action_age_s:
            self.last_event = "stale"
            return False
        self.last_event = "redundant"
        return True

    def _planner_cut(self, f: dict[str, float], observation: Any, skip: bool) -> int:
        if isinstance(self.cut_planner, RoboECCPlanner):
            cp = self.cut_planner
            cp.observe(f, observation)
            if skip and cp.cut is not None:
                return cp.cut
            return cp.choose_cut(*cp.bandwidth_estimate(f), f["server_queue"])
        return int(self.cut_planner.predict(observation)[0][0])

    def cloud_cut(self, f: dict[str, float], observation: Any) -> int:
        """Where a critical step runs: the cut planner's cut when it uses the network, else its best network cut."""
        cut = self._planner_cut(f, observation, skip=False)
        if self.ctx.table.uses_network[cut]:
            return cut
        costs = getattr(self.cut_planner, "last_costs_ms", None)
        return best_network_cut(self.ctx, costs) if costs is not None else self._prior_network_cut

    def _decide(self, observation: Any) -> np.ndarray:
        f = self.view.decode(observation)
        skip = self.should_skip(f)
        if self.config.dispatch == "skip":
            return action(self._planner_cut(f, observation, skip), skip)
        if skip:
            self.last_target = "edge"
            if isinstance(self.cut_planner, RoboECCPlanner):  # keep its bandwidth history current
                self.cut_planner.observe(f, observation)
            return action(self.cut, True)
        if self.importance(f) >= self.config.low_threshold:
            self.cut, self.last_target = self.cloud_cut(f, observation), "cloud"
        else:
            if isinstance(self.cut_planner, RoboECCPlanner):
                self.cut_planner.observe(f, observation)
            self.cut, self.last_target = self.ctx.edge_only_index, "edge"
        return action(self.cut, False)


#: HeuristicPlanner's skip rule: RAPID's thresholds with the package's skip dispatch and a visual term.
HEURISTIC_RAPID = RapidConfig(visual_weight=0.3, dispatch="skip")


class HeuristicPlanner(RapidSkip):
    """RoboECC cut + RAPID-style skip (redundant steps skipped, inferences at the RoboECC cut): the learned
    policy's fallback."""

    def __init__(
        self,
        ctx: PlannerContext,
        predictor: str | BandwidthPredictor = "harmonic",
        roboecc: RoboECCConfig = RoboECCConfig(),
        rapid: RapidConfig = HEURISTIC_RAPID,
    ) -> None:
        super().__init__(ctx, rapid, RoboECCPlanner(ctx, predictor, roboecc))


class NoSkip:
    """Wraps a planner and forces skip = 0 (for "without skip" comparisons)."""

    def __init__(self, planner: Any) -> None:
        self.planner = planner

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        a, s = self.planner.predict(observation, state, episode_start, deterministic)
        a = np.array(a, dtype=np.int64).copy()
        a[..., 1] = 0
        return a, s
