"""`ecc policy`: policy artifact maintenance.

    ecc policy migrate --trust-pickle runs/X/policy.zip   # format 1 (pickled SB3 zip) -> safetensors + JSON
    ecc policy show runs/X                                # format version, model, network of an artifact

``migrate`` loads the old zip with pickle, which runs whatever its author put there: it asks for ``--trust-pickle``
so that nobody does that by accident. The new artifact is written beside the old one (``policy.safetensors``,
``policy.json`` rewritten); the zip is left in place (delete it once the new one works).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _artifact(arg: Path) -> Path:
    return arg / "policy.zip" if arg.is_dir() else arg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecc policy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="rewrite a format-1 (pickled) artifact as safetensors + JSON")
    m.add_argument("path", type=Path, help="policy.zip (or its run folder)")
    m.add_argument("--trust-pickle", action="store_true", help="required: loading the old zip runs its pickles")
    s = sub.add_parser("show", help="print an artifact's format version, model and network")
    s.add_argument("path", type=Path, help="any file of the artifact (or its run folder)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from agents.artifact import PolicyLoadError, migrate_policy, read_metadata

    path = _artifact(args.path)
    try:
        if args.command == "migrate":
            if not args.trust_pickle:
                print("ecc policy migrate: loading a pickled policy runs code from it; pass --trust-pickle if you "
                      "trust its author", file=sys.stderr)
                return 2
            out = migrate_policy(path)
            print(f"wrote {out} and {out.with_suffix('.json')}")
            return 0
        meta, _ = read_metadata(path)
        print(json.dumps({k: meta.get(k) for k in ("format_version", "algorithm", "model_id", "network")}, indent=2))
        return 0
    except PolicyLoadError as e:
        print(f"ecc policy: {e}", file=sys.stderr)
        return 2
