"""OpenVLA's autoregressive head vs OpenVLA-OFT's parallel decoding of K actions, roofline on Orin (edge) + A100.

For ``openvla/full`` (7 action tokens decoded one by one: a prefill + 6 decode passes, 6 round trips at a cut inside
the LLM) and ``openvla/full-oft<K>`` (one pass over prefix + K x 7 tokens, no round trips): edge-only and cloud-only
latency, the fastest cut and the fastest middle split on catalogue links, the latency per executed action, and the
payload of a cut inside the LLM. Profiles: ``executor.wire_config.roofline_pair`` under the default wire (JPEG-90
frames, fp16 activations), bf16 compute, efficiency 1; links: ``executor.catalog`` with the roofline's protocol
overhead, priced by ``executor.costs.cut_table`` (the env's pricing).

    .venv/bin/python benchmarks/bench_openvla_oft.py [--chunks 8 25] [--networks wifi6 5g 4g]
"""

from __future__ import annotations

import argparse
import logging

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, nargs="+", default=[8], help="OFT action chunks K to compare with K = 1")
    p.add_argument("--networks", nargs="+", default=["wifi6", "5g", "4g"], help="catalogue links")
    p.add_argument("--edge", default="orin")
    p.add_argument("--cloud", default="a100")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from rich.console import Console
    from rich.table import Table

    from executor import roofline
    from executor.catalog import network
    from executor.costs import cut_table
    from executor.wire_config import roofline_pair

    console = Console()
    presets = ["full"] + [f"full-oft{k}" for k in args.chunks]
    lat = Table(title=f"openvla on {args.edge} + {args.cloud}: ms per inference (in brackets: per executed action)")
    cols = ("preset", "K", "edge-only", "link", "fastest cut", "fastest middle split", "after llm.layer15")
    for col in cols:
        lat.add_column(col, justify="left" if col in ("preset", "link") else "right")
    wire = Table(title="payload of the cut after llm.layer15 (fp16 activations, with message headers)")
    for col in ("preset", "up bytes", "round trips", "per round trip up / down", "bytes per inference"):
        wire.add_column(col, justify="right" if col != "preset" else "left")
    f = 1.0 + roofline.PROTOCOL_OVERHEAD
    for preset in presets:
        edge, cloud = roofline_pair("openvla", preset, args.edge, args.cloud, check_memory=False)
        t = cut_table(edge, cloud)
        k = 1 if preset == "full" else int(preset.rsplit("oft", 1)[1])
        n = edge.num_blocks
        llm_cut = edge.block_names.index("llm.layer15") + 1
        middle = [i for i in range(1, n) if t.uses_network[i]]
        for j, name in enumerate(args.networks):
            link = network(name)
            ms = t.latency_ms(link.up_mbps / f, link.down_mbps / f, link.one_way_ms)
            best = int(np.argmin(ms))
            split = middle[int(np.argmin(ms[middle]))]
            lat.add_row(
                preset if j == 0 else "",
                str(k) if j == 0 else "",
                f"{t.edge_ms[n]:.1f} [{t.edge_ms[n] / k:.1f}]" if j == 0 else "",
                link.name,
                f"{ms[best]:.1f} [{ms[best] / k:.1f}] {t.names[best]}",
                f"{ms[split]:.1f} {t.names[split]}",
                f"{ms[llm_cut]:.1f}",
            )
        c = edge.cuts[llm_cut]
        total = c.up_bytes + c.down_bytes + c.round_trips * (c.round_trip_up_bytes + c.round_trip_down_bytes)
        wire.add_row(
            preset,
            f"{c.up_bytes:,}",
            str(c.round_trips),
            f"{c.round_trip_up_bytes:,} / {c.round_trip_down_bytes:,}",
            f"{total:,}",
        )
    console.print(lat)
    console.print(wire)


if __name__ == "__main__":
    main()
