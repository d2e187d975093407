"""Planners (heuristics, oracle, PPO), training, evaluation and the `ecc` command line."""
