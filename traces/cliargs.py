"""A frozen config dataclass as a command line, by tyro (as CleanRL parses its arguments).

Each field becomes ``--field-name`` with its default; the comment after the field (or a docstring under it) is its
help. Booleans get ``--x/--no-x``, tuples take several values. A value the config's ``__post_init__`` rejects is a
usage error like a malformed one: tyro prints the message and exits with status 2.

It lives in ``traces``, the lowest package, so that every verb's CLI module (``traces``, ``executor``, ``agents``) can
use it without importing a package above its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def parse_config(cls: type[T], argv: Sequence[str], *, prog: str, description: str | None = None) -> T:
    """``cls`` built from ``argv`` (``--help`` prints every field with its help and default, then exits 0)."""
    import tyro

    return tyro.cli(cls, args=list(argv), prog=prog, description=description)
