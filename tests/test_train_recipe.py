"""train.py, the readable recipe: its --help lists every TrainConfig field, and a tiny run trains exactly the policy
that agents.training.train trains from the same config (one set of steps, two callers)."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--total-timesteps",
    "256",
    "--n-envs",
    "1",
    "--n-steps",
    "64",
    "--batch-size",
    "64",
    "--n-epochs",
    "1",
    "--eval-every-steps",
    "128",
    "--eval-episodes",
    "1",
    "--episode-s",
    "2",
    "--no-candidate-cuts",
]


def test_help_lists_every_setting() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    for f in dataclasses.fields(TrainConfig):
        assert re.search(f"--{f.name.replace('_', '-')}[ ,]", out.stdout), f.name
    assert "--quick, --no-quick" in out.stdout


@pytest.mark.slow  # two tiny trainings, ~10 s each on a busy 2-core machine
def test_tiny_run_equals_the_library_run(tmp_path: Path, capsys) -> None:
    recipe = importlib.import_module("train")
    assert recipe.main([*TINY, "--run-dir", str(tmp_path), "--run-name", "recipe"]) == 0
    assert "best validation return" in capsys.readouterr().out
    from agents.training import train

    cfg = TrainConfig(
        total_timesteps=256,
        n_envs=1,
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        eval_every_steps=128,
        eval_episodes=1,
        episode_s=2.0,
        candidate_cuts=False,
        run_dir=str(tmp_path),
        run_name="lib",
    )
    lib = train(cfg)
    a, b = tmp_path / "recipe", tmp_path / "lib"
    assert (
        {p.name for p in a.iterdir()}
        == {p.name for p in lib.run_dir.iterdir()}
        >= {"config.json", "learning_curve.csv", "policy.json", "policy.safetensors"}
    )
    curve = [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader((a / "learning_curve.csv").open())]
    assert curve == [
        {k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader((b / "learning_curve.csv").open())
    ]
    assert len(curve) == 3  # at 128, 256 steps and the final model
    meta_a, meta_b = (json.loads((d / "policy.json").read_text()) for d in (a, b))
    for key in ("best_val_return", "obs_range", "cut_fits", "env", "traces"):
        assert meta_a[key] == meta_b[key], key
    from safetensors.numpy import load_file

    wa, wb = load_file(str(a / "policy.safetensors")), load_file(str(b / "policy.safetensors"))
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
