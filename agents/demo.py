"""`ecc demo`: the README's main job. For now: the embedded default trace set and its statistics."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] = ()) -> int:
    from traces.cli import main as traces_main

    return traces_main(["stats", "--embedded", *argv])
