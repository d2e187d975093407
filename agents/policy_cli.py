"""`ecc policy`: policy artifact maintenance.

    ecc policy migrate --trust-pickle runs/X/policy.zip   # format 1 (pickled SB3 zip) -> safetensors + JSON
    ecc policy show runs/X                                # format version, model, network of an artifact

``migrate`` loads the old zip with pickle, which runs whatever its author put there: it asks for ``--trust-pickle``
so that nobody does that by accident. The new artifact is written beside the old one (``policy.safetensors``,
``policy.json`` rewritten); the zip is left in place (delete it once the new one works).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Union

import tyro

from agents.cliargs import parse_config


def _artifact(arg: Path) -> Path:
    return arg / "policy.zip" if arg.is_dir() else arg


@dataclass(frozen=True)
class MigrateArgs:
    """Rewrite a format-1 (pickled) artifact as safetensors + JSON."""

    path: tyro.conf.Positional[Path]  # policy.zip (or its run folder)
    trust_pickle: bool = False  # required: loading the old zip runs its pickles


@dataclass(frozen=True)
class ShowArgs:
    """Print an artifact's format version, model and network."""

    path: tyro.conf.Positional[Path]  # any file of the artifact (or its run folder)


PolicyArgs = Union[  # noqa: UP007 (tyro reads the subcommands from a typing.Union; a `|` of Annotated needs 3.10 too)
    Annotated[MigrateArgs, tyro.conf.subcommand("migrate")],
    Annotated[ShowArgs, tyro.conf.subcommand("show")],
]


def parse_args(argv: Sequence[str]) -> MigrateArgs | ShowArgs:
    """The command line of ``ecc policy``: ``migrate`` or ``show``."""
    return parse_config(PolicyArgs, argv, prog="ecc policy", description=__doc__)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from agents.artifact import PolicyLoadError, migrate_policy, read_metadata

    path = _artifact(args.path)
    try:
        if isinstance(args, MigrateArgs):
            if not args.trust_pickle:
                print(
                    "ecc policy migrate: loading a pickled policy runs code from it; pass --trust-pickle if you "
                    "trust its author",
                    file=sys.stderr,
                )
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
