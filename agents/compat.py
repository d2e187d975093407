"""Load-time compatibility of a policy with the deployment it is about to run in: chunk length and period.

A policy's metadata records the env's ``chunk_size`` and ``period_ms`` (``env`` of ``policy.json``, written by
``agents.training``); the deployment's come from ``executor.control.ControlSpec``. A different chunk length changes
the skip budget and the scale of the ``actions_left`` field; a different period changes every time-based field
(action age, joint-speed history, queueing). Either makes the policy's decisions meaningless, so
:func:`control_mismatch` names the difference and ``agents.artifact.load_policy`` refuses the policy with it.
Metadata without these fields (older artifacts) is not checked.
"""

from __future__ import annotations

import math
from typing import Any


def control_mismatch(metadata: dict[str, Any], *, chunk_size: int | None, period_ms: float | None) -> str | None:
    """Why a policy trained under ``metadata['env']`` cannot run with this chunk length and period, or None."""
    env = metadata.get("env") if isinstance(metadata, dict) else None
    if not isinstance(env, dict):
        return None
    problems = []
    trained_chunk = env.get("chunk_size")
    if chunk_size is not None and trained_chunk is not None and int(trained_chunk) != int(chunk_size):
        problems.append(
            f"chunk length mismatch: the policy was trained with chunks of {trained_chunk} actions, "
            f"this deployment executes {chunk_size} (pass --chunk-size {trained_chunk} or retrain with "
            f"--chunk-size {chunk_size})"
        )
    trained_period = env.get("period_ms")
    if (
        period_ms is not None
        and trained_period is not None
        and not math.isclose(float(trained_period), float(period_ms), rel_tol=1e-9, abs_tol=1e-9)
    ):
        problems.append(
            f"control period mismatch: the policy was trained at {float(trained_period):g} ms per step, "
            f"this deployment runs at {float(period_ms):g} ms (pass --period-ms {float(trained_period):g}"
            " or retrain)"
        )
    return "; ".join(problems) or None
