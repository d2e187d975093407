"""Hand-written planners: EdgeOnly, CloudOnly, StaticBestCut (Neurosurgeon), RoboECCPlanner (co-aware split with
network-aware adjustment), RapidSkip (RAPID-style redundancy skip) and HeuristicPlanner (RoboECC cut + RAPID skip,
the fallback of the learned policy).

All of them read only the observation vector (decoded by ``agents.planner.ObsView``) and the static
``PlannerContext``; they keep a little per-episode state (bandwidth history, cooldowns) that is cleared when
``predict`` is called with a true ``episode_start``.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
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


class LSTMPredictor(BandwidthPredictor):
    """RoboECC's predictor: a 1-layer LSTM (hidden 32) over the last 20 samples in log space, trained on the
    training traces (:func:`train_lstm_predictor`)."""

    name = "lstm"

    def __init__(self, model: Any, window: int = 20, scale_mbps: float = 10_000.0) -> None:
        super().__init__(window)
        self.model = model
        self._log_scale = math.log1p(scale_mbps)

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
    """A predictor by name: ``last``, ``moving_average``, ``harmonic`` (or an instance, returned as is)."""
    if isinstance(kind, BandwidthPredictor):
        return kind
    kinds = {"last": BandwidthPredictor, "moving_average": MovingAverage, "harmonic": HarmonicMean}
    if kind not in kinds:
        raise ValueError(f"unknown predictor {kind!r}; valid: {sorted(kinds)} or an LSTMPredictor instance")
    return kinds[kind](window)


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
    """

    hysteresis_frac: float = 0.1
    hysteresis_ms: float = 5.0
    change_threshold: float = 0.15
    stale_tau_s: float = 5.0
    window: int = 5

    def __post_init__(self) -> None:
        for name in ("hysteresis_frac", "hysteresis_ms", "change_threshold"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"RoboECCConfig.{name} must be finite and >= 0, got {getattr(self, name)!r}")
        if not self.stale_tau_s > 0:
            raise ValueError(f"stale_tau_s must be > 0, got {self.stale_tau_s!r}")


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
        self.reset()

    def reset(self) -> None:
        self.predictor.reset()
        self.tracker.reset()
        self.cut: int | None = None
        self.chosen_at_mbps: float | None = None
        self.last_costs_ms: np.ndarray | None = None
        self.miss_age_s: float | None = None

    def observe(self, fields: dict[str, float], observation: Any) -> None:
        """Feed the new uplink samples of this observation to the predictor. A deadline miss of a network cut
        yields no measurement; it is fed as a sample of half the rate that would have met the deadline."""
        mbps, ages = self.view.uplink(observation)
        fresh = self.tracker.new_samples(mbps, ages, self.ctx.period_ms * 1e-3)
        for m in fresh:
            self.predictor.update(m)
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
        up, down, rtt = self.bandwidth_estimate(f)
        return action(self.choose_cut(up, down, rtt, f["server_queue"]), False)


@dataclass(frozen=True)
class RapidConfig:
    """RAPID-style skip rule.

    Importance score s = (1 - visual_weight) * (w * accel_anomaly + (1 - w) * torque_change)
    + visual_weight * max(changed_fraction, 2 * structural), with w = speed / (speed + speed_ref_rad_s): the
    acceleration term dominates at high joint speed, the torque term at low-speed contact. The visual term uses only
    the noise-robust features (changed-pixel fraction after blur, low-res structural distance), never raw pixel MAD.

    Decision: no actions left -> infer; s >= high_threshold (critical) -> pre-empt the chunk and infer, unless a
    pre-emption happened within ``cooldown_steps``; s >= low_threshold -> infer if at least ``cooldown_steps`` steps
    ran since the last inference; the chunk older than ``max_action_age_s`` -> infer; otherwise skip.
    """

    low_threshold: float = 0.3
    high_threshold: float = 0.7
    cooldown_steps: int = 2
    speed_ref_rad_s: float = 1.0
    visual_weight: float = 0.3
    max_action_age_s: float = 0.6

    def __post_init__(self) -> None:
        if not 0 <= self.low_threshold <= self.high_threshold:
            raise ValueError(
                f"need 0 <= low_threshold <= high_threshold, got {self.low_threshold!r}, {self.high_threshold!r}"
            )
        if int(self.cooldown_steps) != self.cooldown_steps or self.cooldown_steps < 0:
            raise ValueError(f"cooldown_steps must be an integer >= 0, got {self.cooldown_steps!r}")
        if not (self.speed_ref_rad_s > 0 and 0 <= self.visual_weight <= 1 and self.max_action_age_s > 0):
            raise ValueError(f"invalid RapidConfig {self}")


class RapidSkip(_Base):
    """RAPID-style redundancy skip on top of a cut planner (default: StaticBestCut)."""

    skips = True

    def __init__(self, ctx: PlannerContext, config: RapidConfig = RapidConfig(), cut_planner: Any = None) -> None:
        super().__init__(ctx)
        self.config = config
        self.cut_planner = cut_planner if cut_planner is not None else StaticBestCut(ctx)
        self.reset()

    def reset(self) -> None:
        self.steps_since_preempt = 10**9
        self.last_event = ""
        if hasattr(self.cut_planner, "reset"):
            self.cut_planner.reset()

    def importance(self, f: dict[str, float]) -> float:
        """The fused action-importance score in [0, 1]."""
        c = self.config
        w = f["joint_speed"] / (f["joint_speed"] + c.speed_ref_rad_s)
        kin = w * f["accel_anomaly"] + (1 - w) * f["torque_change"]
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

    def _decide(self, observation: Any) -> np.ndarray:
        f = self.view.decode(observation)
        skip = self.should_skip(f)
        if isinstance(self.cut_planner, RoboECCPlanner):
            cp = self.cut_planner
            cp.observe(f, observation)
            cut = cp.cut if (skip and cp.cut is not None) else cp.choose_cut(*cp.bandwidth_estimate(f),
                                                                            f["server_queue"])
        else:
            cut = int(self.cut_planner.predict(observation)[0][0])
        return action(cut, skip)


class HeuristicPlanner(RapidSkip):
    """RoboECC cut + RAPID skip: the learned policy's fallback."""

    def __init__(
        self,
        ctx: PlannerContext,
        predictor: str | BandwidthPredictor = "harmonic",
        roboecc: RoboECCConfig = RoboECCConfig(),
        rapid: RapidConfig = RapidConfig(),
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
