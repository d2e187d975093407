"""`ecc closedloop`: task success and time-to-success of every planner in the MetaWorld closed loop.

    ecc closedloop --planners heuristic,rapid,vision,edge,cloud --tasks pick-place-v3,push-v3 --episodes 3 \\
        --traces ../shared/traces/wifi_cellular_sbu_mptraces --out runs/closed_loop

The zero-latency expert (an inference on every control step, no latency) is always included as the ceiling.
The work is in ``agents.closed_loop_eval``; this module parses and prints.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from agents.cliargs import parse_config
from agents.closed_loop_eval import ClosedLoopEvalConfig, run_closed_loop_eval, table_rows


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(
        ClosedLoopEvalConfig, sys.argv[1:] if argv is None else argv, prog="ecc closedloop", description=__doc__
    )
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from rich.console import Console
    from rich.table import Table

    from agents.artifact import PolicyLoadError

    console = Console(width=200)
    try:
        with console.status("closed loop ...") as status:
            done = [0]

            def tick(o):
                done[0] += 1
                status.update(f"closed loop: {done[0]} episodes ({o.planner} {o.task} {o.vla} events {o.events})")

            report = run_closed_loop_eval(cfg, on_episode=tick)
    except (PolicyLoadError, ValueError, FileNotFoundError, ImportError) as e:
        print(f"ecc closedloop: {e}", file=sys.stderr)
        return 2
    head, body = table_rows(report.rows)
    table = Table(
        title=f"closed loop: {report.meta['profiles']}, {report.meta['traces']}, "
        f"seeds {report.meta['seeds']} ({report.meta['wall_s']:.0f} s)"
    )
    for h in head:
        table.add_column(h)
    for row in body:
        table.add_row(*row)
    console.print(table)
    if cfg.out:
        console.print(
            f"wrote {Path(cfg.out) / 'closed_loop.json'}, closed_loop.csv" + (" and plots" if cfg.plots else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
