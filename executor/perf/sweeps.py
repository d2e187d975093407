"""Parameter sweeps of ``ecc perf``: each returns flat rows (one per combination, infeasible ones marked) that
:func:`write_table` saves as CSV and JSON and ``executor.perf.plots`` draws.

Sweeps: devices, networks, denoising steps, action chunk size, context length (past timesteps), model scale
(pi0 -> pi0-XXL), autoregressive vs flow-matching action generation.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from executor import catalog
from executor.perf.configs import SCALED_FAMILY, VLAConfig, get_config
from executor.perf.modes import Payloads, PerfInputError, check_parameters, evaluate

log = logging.getLogger(__name__)

Row = dict[str, Any]
DEFAULT_DEVICES: tuple[str, ...] = ("Jetson AGX Thor", "RTX 4090", "B100")  # VLA-Perf's three tiers
STEPS: tuple[int, ...] = (1, 2, 5, 10, 20, 50)
CHUNKS: tuple[int, ...] = (1, 5, 10, 25, 50, 100, 250)
TIMESTEPS: tuple[int, ...] = (1, 10, 100, 1000, 10000)
AR_CHUNKS: tuple[int, ...] = (1, 5, 10, 50, 100)
LOCAL_NETWORKS: tuple[str, ...] = tuple(n.name for n in catalog.NETWORKS if not n.name.startswith("WAN"))
CLOUD_PAIRS: tuple[tuple[str, str], ...] = (("Ethernet 10G", "WAN hop, fast cloud"), ("4G LTE", "WAN hop, slow cloud"))


def _tag(row: Row, **keys: Any) -> Row:
    return {**keys, **row}


def sweep_devices(cfg: VLAConfig, devices: Iterable[str] | None = None) -> list[Row]:
    """On-device breakdown of ``cfg`` on every catalogue device."""
    names = list(devices) if devices is not None else [h.name for h in catalog.HARDWARE]
    return [_tag(evaluate(cfg, "on-device", device=d).row(), sweep="devices", x=d) for d in names]


def sweep_networks(
    cfg: VLAConfig,
    *,
    device: str = "Jetson AGX Thor",
    server: str = "B100",
    networks: Iterable[str] = LOCAL_NETWORKS,
    payloads: Payloads = Payloads(),
) -> list[Row]:
    """On-device baseline, then per network: edge-server (sync and async) and device-server split; then cloud pairs."""
    rows = [_tag(evaluate(cfg, "on-device", device=device).row(), sweep="networks", x="on-device")]
    for net in networks:
        for ex in ("sync", "async"):
            rows.append(
                _tag(
                    evaluate(cfg, "edge-server", execution=ex, server=server, network=net, payloads=payloads).row(),
                    sweep="networks",
                    x=net,
                )
            )
        if cfg.action_head == "flow":
            rows.append(
                _tag(
                    evaluate(cfg, "split", device=device, server=server, network=net, payloads=payloads).row(),
                    sweep="networks",
                    x=net,
                )
            )
    for local, wan in CLOUD_PAIRS:
        for ex in ("sync", "async"):
            rows.append(
                _tag(
                    evaluate(
                        cfg, "cloud", execution=ex, server=server, network=local, wan=wan, payloads=payloads
                    ).row(),
                    sweep="networks",
                    x=f"{local} + {wan}",
                )
            )
    return rows


def _vary(
    cfg: VLAConfig, sweep: str, field: str, values: Sequence[int], devices: Iterable[str], **fixed: Any
) -> list[Row]:
    for v in values:
        check_parameters(**{field: v})
    rows = []
    for d in devices:
        for v in values:
            c = cfg.with_(**{field: v}, **fixed)
            rows.append(_tag(evaluate(c, "on-device", device=d).row(), sweep=sweep, x=v))
    return rows


def sweep_steps(cfg: VLAConfig, steps: Sequence[int] = STEPS, devices: Iterable[str] = DEFAULT_DEVICES) -> list[Row]:
    """On-device latency against the number of denoising steps."""
    return _vary(cfg, "steps", "denoising_steps", steps, devices)


def sweep_chunk(cfg: VLAConfig, chunks: Sequence[int] = CHUNKS, devices: Iterable[str] = DEFAULT_DEVICES) -> list[Row]:
    """On-device latency against the action chunk size."""
    return _vary(cfg, "chunk", "chunk", chunks, devices)


def sweep_context(
    cfg: VLAConfig, timesteps: Sequence[int] = TIMESTEPS, devices: Iterable[str] = DEFAULT_DEVICES
) -> list[Row]:
    """On-device latency and memory against the number of past timesteps in the VLM context."""
    return _vary(cfg, "context", "timesteps", timesteps, devices)


def sweep_scale(models: Sequence[str] = SCALED_FAMILY, devices: Iterable[str] = DEFAULT_DEVICES) -> list[Row]:
    """On-device latency of pi0 and its scaled-up variants (pi0-L/XL/XXL)."""
    cfgs = [get_config(m) for m in models]
    rows = []
    for d in devices:
        for c in cfgs:
            row = evaluate(c, "on-device", device=d).row()
            row["params_b"] = round(sum(c.params.values()) / 1e9, 3)
            rows.append(_tag(row, sweep="scale", x=c.name))
    return rows


def sweep_action_head(
    cfg: VLAConfig, chunks: Sequence[int] = AR_CHUNKS, devices: Iterable[str] = DEFAULT_DEVICES
) -> list[Row]:
    """Flow-matching expert versus autoregressive decoding by the VLM, against the chunk size."""
    rows = []
    for head in ("flow", "autoregressive", "ar-parallel"):
        rows += _vary(cfg, "action_head", "chunk", chunks, devices, action_head=head)
    return rows


SWEEPS: dict[str, Callable[..., list[Row]]] = {
    "devices": sweep_devices,
    "networks": sweep_networks,
    "steps": sweep_steps,
    "chunk": sweep_chunk,
    "context": sweep_context,
    "scale": sweep_scale,
    "action-head": sweep_action_head,
}


def run_sweep(name: str, cfg: VLAConfig | None = None, **kw: Any) -> list[Row]:
    """Run a named sweep on ``cfg`` (default pi0; the scale sweep takes model names instead)."""
    if name not in SWEEPS:
        raise PerfInputError(f"unknown sweep {name!r}; valid sweeps: {', '.join(SWEEPS)}")
    if name == "scale":
        return sweep_scale(**kw)
    return SWEEPS[name](cfg or get_config("pi0"), **kw)


def write_table(rows: Sequence[Row], stem: str | Path) -> tuple[Path, Path]:
    """Write rows as ``stem.csv`` and ``stem.json`` (columns: union of the rows' keys, first-seen order)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    csv_path, json_path = stem.with_suffix(".csv"), stem.with_suffix(".json")
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    json_path.write_text(json.dumps(list(rows), indent=1))
    return csv_path, json_path


__all__ = [
    "AR_CHUNKS",
    "CHUNKS",
    "CLOUD_PAIRS",
    "DEFAULT_DEVICES",
    "LOCAL_NETWORKS",
    "STEPS",
    "SWEEPS",
    "TIMESTEPS",
    "run_sweep",
    "sweep_action_head",
    "sweep_chunk",
    "sweep_context",
    "sweep_devices",
    "sweep_networks",
    "sweep_scale",
    "sweep_steps",
    "write_table",
]
