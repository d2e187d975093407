"""The readable training recipe: `python train.py [ARGS]` == `ecc train [ARGS]` (both call agents.training.train).

The recipe, step by step (see agents/training.py):
1. Profiles: roofline Profiles of the model on the edge and cloud devices (executor.roofline).
2. Traces: the embedded default set, plus any directories given with --traces; split train/val/test by seed
   (test is never touched here).
3. Envs: n_envs EdgeCloudSplitEnv copies on the training split; every episode's trace segment rescaled by a
   log-uniform factor, random start points, random observation streams.
4. MaskablePPO (sb3-contrib) with the env's action masks; every eval_every_steps the policy runs on fixed
   validation seeds and the best one is kept.
5. The run folder: config.json, learning_curve.csv, policy.zip + policy.json (the artifact load_policy reads).

Examples:
    python train.py --quick                      # seconds: a smoke run
    python train.py --model openvla --edge thor  # the default budget (<= 10 min on 2 cores)
    python train.py --traces ../shared/traces/lumos5g_mmwave ../shared/traces/mahimahi_cellular_us
"""

from __future__ import annotations

import logging
import sys

from agents.train_cli import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
