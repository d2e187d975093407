"""The `ecc` command. Each verb lives in the package that owns it and is imported only when used.

This module sits at the top of the dependency order (traces <- executor <- ecc_env <- agents <- CLI);
nothing in the packages imports it.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

# verb -> (module with a `main(argv) -> int`, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "traces": ("traces.cli", "inspect, convert and plot bandwidth traces"),
    "profile": ("executor.profile_cli", "measure a model's per-block latency and bytes per cut (or predict them)"),
    "cutmap": ("executor.cutmap_cli", "bandwidth intervals where each cut is optimal for a device pair, and the plot"),
    "serve": ("executor.serve_cli", "run the cloud half of a split model as a websocket server"),
    "edge": ("agents.edge_cli", "run the edge runtime against an `ecc serve` server, optionally over a shaped link"),
    "demo": ("agents.demo", "the README's main job"),
    "eval": ("agents.eval_cli", "evaluate planners on the same episodes: table (JSON, CSV) and plots"),
    "train": ("agents.train_cli", "train a PPO split/skip policy on recorded bandwidth traces"),
    "policy": ("agents.policy_cli", "policy artifacts: migrate a pickled (format-1) policy to safetensors, show one"),
    "closedloop": ("agents.closed_loop_cli", "task success and time-to-success of every planner in the MetaWorld closed loop"),
    "perf": ("executor.perf_cli", "what-if latency, frequency and memory of a VLA across hardware, networks, modes"),
}


def _usage() -> str:
    width = max(len(v) for v in VERBS)
    lines = ["usage: ecc VERB [ARGS...]", "", "verbs:"]
    lines += [f"  {verb:<{width}}  {help_}" for verb, (_, help_) in VERBS.items()]
    lines += ["", "`ecc VERB --help` describes a verb."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a verb; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    verb = args[0]
    if verb not in VERBS:
        print(f"ecc: unknown verb {verb!r}; valid verbs: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(VERBS[verb][0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
