"""Warm start for PPO: behaviour cloning of the fallback heuristic before reinforcement learning.

Why: before its first network step a planner knows nothing about the link (no uplink sample), so a freshly
initialised PPO policy that tries the cloud blindly pays a missed deadline on every slow link, learns to stay on
the edge within a few updates and never visits the states where offloading pays (fast 5G, WiFi, Ethernet). The
heuristic planner already probes the link and offloads when it is fast. Starting PPO from a clone of it (actor:
the heuristic's actions; critic: the heuristic's discounted returns) keeps those states in PPO's rollouts, and PPO
then improves on the heuristic instead of rediscovering it.

``collect_demonstrations`` rolls a planner out in an env (seeded episodes); ``behaviour_clone`` fits an SB3
(Maskable)PPO policy to them in place: negative log-likelihood of the planner's actions under the action masks, plus
the value loss towards the demonstrations' discounted returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Demonstrations:
    """Transitions of a planner: observations, its actions, the env's action masks and discounted returns-to-go."""

    obs: np.ndarray  # (n, obs_size) float32
    actions: np.ndarray  # (n, 2) int64: (cut, skip)
    masks: np.ndarray  # (n, num_cuts + 2) bool
    returns: np.ndarray  # (n,) float32, discounted with the PPO gamma within each episode
    episodes: int

    def __len__(self) -> int:
        return int(self.obs.shape[0])


def collect_demonstrations(planner: Any, env: Any, steps: int, *, gamma: float, seed: int) -> Demonstrations:
    """Run ``planner`` in ``env`` for at least ``steps`` transitions (whole episodes, seeds ``seed``, ``seed+1``, ...).

    Actions the mask forbids (the env would correct them) are replaced by the env's executed ones, so every
    recorded action is one PPO may take in that state."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    base = env.unwrapped
    obs_l: list[np.ndarray] = []
    act_l: list[np.ndarray] = []
    mask_l: list[np.ndarray] = []
    ret_l: list[np.ndarray] = []
    n = episodes = 0
    while n < steps:
        obs, _ = env.reset(seed=seed + episodes)
        rewards: list[float] = []
        first = True
        done = False
        while not done:
            mask = np.asarray(base.action_masks(), dtype=bool)
            action, _ = planner.predict(obs, None, np.array([first]), True)
            first = False
            obs_l.append(np.asarray(obs, dtype=np.float32))
            mask_l.append(mask)
            next_obs, reward, terminated, truncated, info = env.step(action)
            act_l.append(np.array([info["cut"], int(info["skip"])], dtype=np.int64))
            rewards.append(float(reward))
            obs = next_obs
            done = terminated or truncated
        ret = np.empty(len(rewards), dtype=np.float32)
        acc = 0.0
        for i in range(len(rewards) - 1, -1, -1):
            acc = rewards[i] + gamma * acc
            ret[i] = acc
        ret_l.append(ret)
        n += len(rewards)
        episodes += 1
    demos = Demonstrations(np.stack(obs_l), np.stack(act_l), np.stack(mask_l), np.concatenate(ret_l), episodes)
    log.info(
        "collected %d demonstration steps in %d episodes (mean return-to-go %.2f)",
        len(demos),
        episodes,
        float(demos.returns.mean()),
    )
    return demos


def behaviour_clone(
    model: Any,
    demos: Demonstrations,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    vf_coef: float = 0.5,
) -> dict[str, float]:
    """Fit ``model.policy`` (a MaskablePPO policy) to ``demos`` in place; returns the final losses and the
    accuracy of the deterministic policy on the demonstrations (the fraction of steps where it picks the
    planner's cut and skip)."""
    import torch
    import torch.nn.functional as F

    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    policy = model.policy
    device = policy.device
    obs = torch.as_tensor(demos.obs, device=device)
    actions = torch.as_tensor(demos.actions, device=device)
    masks = demos.masks
    returns = torch.as_tensor(demos.returns, device=device)
    opt = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    rng = np.random.default_rng(seed)
    n = len(demos)
    policy.set_training_mode(True)
    nll = vf = 0.0
    for _ in range(epochs):
        order = rng.permutation(n)
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            values, log_prob, _ = policy.evaluate_actions(obs[idx], actions[idx], action_masks=masks[idx])
            loss_pi = -log_prob.mean()
            loss_v = F.mse_loss(values.flatten(), returns[idx])
            loss = loss_pi + vf_coef * loss_v
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            opt.step()
            nll, vf = float(loss_pi.detach()), float(loss_v.detach())
    policy.set_training_mode(False)
    with torch.no_grad():
        dist = policy.get_distribution(obs, action_masks=masks)
        chosen = dist.get_actions(deterministic=True)
    accuracy = float((chosen == actions).all(dim=1).float().mean())
    log.info(
        "behaviour cloning: %d epochs over %d steps, nll %.3f, value mse %.2f, accuracy %.3f",
        epochs,
        n,
        nll,
        vf,
        accuracy,
    )
    return {"nll": nll, "value_mse": vf, "accuracy": accuracy}
