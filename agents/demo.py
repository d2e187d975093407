"""`ecc demo` (what `make demo` runs): the whole system on one machine with the embedded traces only.

1. profiles: the demo model (default the tiny OpenVLA, real transformers blocks with random weights) is measured on
   this CPU and time-scaled into an emulated Orin + A100 pair (``agents.emulated_pair``), so the same Profile pair
   drives the simulator and the real executor;
2. train: MaskablePPO on the training split of the embedded trace set (``agents.training.train``, short budget);
3. evaluate (profile backend): the policy against the heuristics, the baselines and the Oracle on the held-out test
   split of the embedded set, same seeds for every planner;
4. real: a cloud server (local thread, emulated A100) and the edge half (emulated Orin) talk over a trace-shaped
   loopback link (``executor.link.ShapedLink``); the trained policy, guarded by the heuristic, picks the cut and
   the skip at every step for a few hundred steps (the env's ``executor`` backend), beside the heuristic and
   edge-only on the same held-out episode;
5. plots: learning curve, latency CDFs, episode timelines, per-family bars, into the run folder.

Both tables are printed and written (JSON, CSV); each phase's wall time is printed. Default run folder:
``runs/demo-<timestamp>`` under the current directory (``--out`` to choose).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo (field comments are the CLI help)."""

    out: str = ""  # run folder (empty: runs/demo-<timestamp> in the current directory)
    family: str = "openvla"  # model family run for real: openvla | pi0
    preset: str = "tiny"  # model preset run for real (tiny or small)
    timesteps: int = 60_000  # PPO training budget (environment steps)
    train_episode_s: float = 20.0  # training episode length (trace seconds)
    episodes: int = 8  # evaluation episodes per planner (profile backend)
    episode_s: float = 30.0  # evaluation episode length (trace seconds)
    real_steps: int = 300  # control steps per planner on the real executor
    real_planners: str = "heuristic,edge"  # planners run on the real executor beside PPO
    oracle: bool = True  # include the hindsight Oracle in the profile-backend table
    seed: int = 0  # seed of training and of the evaluation episodes
    headroom: float = 2.5  # emulated cloud block time / this CPU's measured time (>= 1; more: fewer overruns)
    closed_loop_episodes: int = 2  # MetaWorld closed-loop episodes per planner, task and event setting (0: skip)
    wire: str = "default"  # frames and activations on the wire (IMAGE,DTYPE, default or exact): priced and sent

    def __post_init__(self) -> None:
        if self.family not in ("openvla", "pi0"):
            raise ValueError(f"family must be openvla or pi0, got {self.family!r}")
        if self.timesteps < 256 or self.episodes < 1 or self.real_steps < 10:
            raise ValueError(f"need timesteps >= 256, episodes >= 1, real_steps >= 10: {self}")


def _phase(console: Any, name: str, times: dict[str, float]):  # type: ignore[no-untyped-def]
    class _Timer:
        def __enter__(self) -> None:
            console.rule(f"[bold]{name}")
            self.t0 = time.perf_counter()

        def __exit__(self, *exc: object) -> None:
            times[name] = time.perf_counter() - self.t0
            if exc[0] is None:
                console.print(f"[dim]{name}: {times[name]:.1f} s[/dim]")

    return _Timer()


def run_demo(cfg: DemoConfig, console: Any) -> dict[str, Any]:
    """Run every phase; returns the summary written to ``<out>/summary.json``."""
    import torch

    torch.set_num_threads(1)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agents.emulated_pair import describe, emulated_pair
    from agents.eval_cli import print_report
    from agents.evaluation import EvalConfig, run_eval
    from agents.plots import learning_curve
    from agents.training import TrainConfig, quick, train
    from traces.embedded import embedded_default_set

    out = Path(cfg.out or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}").expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t_all = time.perf_counter()
    traces = embedded_default_set()

    def progress() -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )

    with _phase(console, "1. profiles (measure, emulate Orin + A100)", times):
        edge, cloud = emulated_pair(
            cfg.family, cfg.preset, "orin", "a100", seed=cfg.seed, headroom=cfg.headroom, wire=cfg.wire
        )
        edge.save(out / "profile_edge.json")
        cloud.save(out / "profile_cloud.json")
        console.print(
            f"{edge.model_id}/{edge.preset}: {edge.num_blocks} blocks, {edge.num_cuts} cuts; edge-only "
            f"{edge.total_ms:.1f} ms on {edge.device}, cloud compute {cloud.total_ms:.1f} ms on {cloud.device}"
        )
        console.print(f"[dim]{edge.notes['emulated']}[/dim]")

    with _phase(console, f"2. train PPO ({cfg.timesteps} steps, embedded train split)", times):
        tcfg = quick(
            TrainConfig(
                model=cfg.family, preset=cfg.preset, seed=cfg.seed, run_dir=str(out), run_name="ppo", wire=cfg.wire
            )
        )
        tcfg = replace(
            tcfg,
            total_timesteps=cfg.timesteps,
            episode_s=cfg.train_episode_s,
            eval_every_steps=max(cfg.timesteps // 8, 512),
            eval_episodes=4,
        )
        res = train(tcfg, trace_set=traces, profiles=(edge, cloud))
        console.print(
            f"policy {res.policy_path} after {res.timesteps} steps: best validation return "
            f"{res.best_val_return:.2f} (heuristic {res.heuristic_val_return:.2f})"
        )
    policy = res.policy_path

    common = dict(
        model=cfg.family,
        preset=cfg.preset,
        hardware="orin+a100",
        traces="embedded",
        split="test",
        seed=1000 + cfg.seed,
        wire=cfg.wire,
    )
    with _phase(console, "3. evaluate on held-out embedded traces (profile backend)", times):
        names = f"ppo:{policy},heuristic,roboecc,rapid,vision,static,edge,cloud" + (",oracle" if cfg.oracle else "")
        ecfg = EvalConfig(
            planners=names, episodes=cfg.episodes, episode_s=cfg.episode_s, out=str(out / "eval_profile"), **common
        )
        with progress() as p:
            sim, sim_runs = run_eval(ecfg, progress=p, trace_set=traces, profiles=(edge, cloud))
        print_report(
            sim,
            console,
            f"profile backend: {cfg.family}/{cfg.preset} on emulated orin+a100, "
            f"{cfg.episodes} held-out episodes x {cfg.episode_s:g} s",
        )

    with _phase(console, f"4. real split executor ({cfg.real_steps} steps per planner, shaped loopback link)", times):
        rcfg = EvalConfig(
            planners=f"ppo:{policy},{cfg.real_planners}",
            backend="executor",
            episodes=1,
            episode_s=cfg.real_steps * 0.1,
            out=str(out / "eval_executor"),
            **common,
        )
        with progress() as p:
            real, real_runs = run_eval(rcfg, progress=p, trace_set=traces, profiles=(edge, cloud))
        print_report(
            real,
            console,
            f"executor backend: real inference, emulated orin+a100, cloud server over a "
            f"trace-shaped loopback link, 1 held-out episode x {cfg.real_steps} periods",
            explain=False,
        )
        console.print(_describe_backend(real.meta.get("backend", {})), highlight=False)

    cl = None
    if cfg.closed_loop_episodes > 0:
        with _phase(console, "4b. closed loop (MetaWorld robot, perfect VLA, same policy)", times):
            from agents.demo_closed_loop import DemoClosedLoopConfig, print_demo_closed_loop, run_demo_closed_loop

            cl = run_demo_closed_loop(
                policy,
                (edge, cloud),
                traces,
                DemoClosedLoopConfig(episodes=cfg.closed_loop_episodes),
                out=out / "closed_loop",
                seed=cfg.seed,
            )
            print_demo_closed_loop(cl, console)

    with _phase(console, "5. plots", times):
        learning_curve(res.run_dir, out / "learning_curve.png")

    times["total"] = time.perf_counter() - t_all
    summary = {
        "out": str(out),
        "policy": str(policy),
        "phase_wall_s": times,
        "profiles": {"edge": describe(edge), "cloud": describe(cloud)},
        "train": {
            "timesteps": res.timesteps,
            "best_val_return": res.best_val_return,
            "heuristic_val_return": res.heuristic_val_return,
            "wall_s": res.wall_s,
        },
        "profile_backend": sim.rows,
        "executor_backend": real.rows,
        "closed_loop": cl.rows if cl is not None else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    console.rule("[bold]wall time per phase")
    for k, v in times.items():
        console.print(f"  {k:<70} {v:7.1f} s")
    console.rule("[bold]files")
    console.print(f"everything is in {out}:", highlight=False)
    for line in _file_guide(out):
        console.print(f"  {line}", highlight=False)
    return summary


def _describe_backend(desc: dict[str, Any]) -> str:
    """One readable line for the executor backend's description (model, server, emulated devices, overruns)."""
    parts = [f"executor backend: model {desc.get('model', '?')}, server {desc.get('server', '?')}"]
    for e in desc.get("emulation") or []:
        parts.append(
            f"{e.get('device')} emulated at {e.get('target_total_ms', float('nan')):.1f} ms per inference "
            f"({e.get('calls', 0)} calls, {e.get('overruns', 0)} over the target)"
        )
    return "; ".join(parts)


def _file_guide(out: Path) -> list[str]:
    """What the demo wrote, one line per file or group, relative to ``out``."""
    guide = [
        ("summary.json", "every number printed above"),
        ("profile_edge.json, profile_cloud.json", "the emulated Orin and A100 Profiles"),
        ("ppo/", "the training run: policy.safetensors + policy.json, config, learning curve data"),
        ("learning_curve.png", "PPO's validation return during training"),
        ("eval_profile/", "simulated evaluation: report.json, report.csv, steps.csv and plots"),
        ("eval_executor/", "real-executor run: report.json, report.csv, steps.csv and plots"),
    ]
    lines = [f"{name:<40} {what}" for name, what in guide]
    for sub in ("eval_profile", "eval_executor"):
        pngs = sorted(p.name for p in (out / sub).glob("*.png"))
        if pngs:
            lines.append(f"{sub + '/*.png':<40} {', '.join(pngs)}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    from agents.cliargs import parse_config

    cfg = parse_config(DemoConfig, sys.argv[1:] if argv is None else argv, prog="ecc demo", description=__doc__)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from agents.eval_cli import wide_console

    logging.getLogger().setLevel(logging.WARNING)  # the dispatcher's INFO logs would drown the tables
    run_demo(cfg, wide_console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
