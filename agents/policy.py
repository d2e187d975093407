"""PPOPlanner: a trained MaskablePPO policy behind the Planner protocol, with a numpy forward pass.

Deterministic decisions are an argmax over the masked logits of each action component; this module evaluates the
policy MLP with numpy (weights copied once from the SB3 model), which takes tens of microseconds instead of the
fraction of a millisecond SB3's ``predict`` spends on tensor conversion. Masks are derived from the observation the
same way the env derives them (cuts that fit the edge's memory; skip only with actions left), so the planner needs
no env. ``use_torch=True`` (or a stochastic decision) goes through SB3's own ``predict``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.planner import ObsView


def _activation(module: Any) -> Any:
    name = type(module).__name__
    if name == "Tanh":
        return np.tanh
    if name == "ReLU":
        return lambda x: np.maximum(x, 0.0)
    raise TypeError(f"unsupported activation {name} in the policy network")


def _extract_mlp(seq: Any) -> list[tuple[np.ndarray, np.ndarray, Any]]:
    layers: list[tuple[np.ndarray, np.ndarray, Any]] = []
    mods = list(seq)
    i = 0
    while i < len(mods):
        m = mods[i]
        if type(m).__name__ != "Linear":
            raise TypeError(f"unexpected module {type(m).__name__} in the policy network")
        act = _activation(mods[i + 1]) if i + 1 < len(mods) else None
        layers.append(
            (
                m.weight.detach().cpu().numpy().astype(np.float64).T,
                m.bias.detach().cpu().numpy().astype(np.float64),
                act,
            )
        )
        i += 2 if act is not None else 1
    return layers


class PPOPlanner:
    """A MaskablePPO (or PPO) model with SB3's ``predict`` signature and a fast deterministic path."""

    skips = True

    def __init__(self, model: Any, cut_fits: np.ndarray, view: ObsView, *, use_torch: bool = False) -> None:
        self.model = model
        self.cut_fits = np.asarray(cut_fits, dtype=bool)
        self.view = view
        self.use_torch = use_torch
        nvec = np.asarray(model.action_space.nvec)
        if nvec.tolist() != [len(self.cut_fits), 2]:
            raise ValueError(f"policy action space {nvec.tolist()} does not match {len(self.cut_fits)} cuts x skip")
        self.num_cuts = int(nvec[0])
        pol = model.policy
        if type(pol.features_extractor).__name__ != "FlattenExtractor" or not getattr(
            pol, "share_features_extractor", True
        ):
            self.use_torch = True
            self._layers: list = []
        else:
            self._layers = _extract_mlp(pol.mlp_extractor.policy_net) + _extract_mlp([pol.action_net])
        self._actions_left_idx = view.index["actions_left"]

    def masks(self, obs: np.ndarray) -> np.ndarray:
        """Masks in sb3-contrib's MultiDiscrete format (cuts, then skip = 0 / 1)."""
        return np.concatenate([self.cut_fits, [True, obs[self._actions_left_idx] > 0]])

    def logits(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float64)
        for w, b, act in self._layers:
            x = x @ w + b
            if act is not None:
                x = act(x)
        return x

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        obs = np.asarray(observation, dtype=np.float32)
        batched = obs.ndim == 2
        rows = obs if batched else obs[None]
        masks = np.stack([self.masks(r) for r in rows])
        if self.use_torch or not deterministic:
            a, _ = self.model.predict(rows, deterministic=deterministic, action_masks=masks)
            a = np.asarray(a, dtype=np.int64)
        else:
            n = self.num_cuts
            out = []
            for r, m in zip(rows, masks):
                lg = self.logits(r)
                cut_l = np.where(m[:n], lg[:n], -np.inf)
                skip_l = np.where(m[n:], lg[n:], -np.inf)
                out.append((int(np.argmax(cut_l)), int(np.argmax(skip_l))))
            a = np.array(out, dtype=np.int64)
        return (a if batched else a[0]), state
