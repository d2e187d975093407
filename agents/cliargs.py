"""One way to turn a frozen config dataclass into argparse flags (CleanRL style): each field becomes
``--field-name`` with its default, and the comment after the field in the class source becomes its help."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from typing import Any


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from lines ``name: type = default  # comment`` of the class source."""
    out: dict[str, str] = {}
    for line in inspect.getsource(cls).splitlines():
        line = line.strip()
        if ":" in line and "#" in line and not line.startswith(("#", '"')):
            out[line.split(":", 1)[0].strip()] = line.split("#", 1)[1].strip()
    return out


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type,
                        tuple_types: dict[str, type] | None = None) -> argparse.ArgumentParser:
    """Add one flag per field of ``cls``: booleans as ``--x/--no-x``, tuples as lists (element type from
    ``tuple_types``, default str), the rest typed by their default."""
    helps = field_comments(cls)
    for f in dataclasses.fields(cls):
        default: Any = f.default
        flag = "--" + f.name.replace("_", "-")
        h = f"{helps.get(f.name, '')} (default: {default!r})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=h)
        elif isinstance(default, tuple):
            parser.add_argument(flag, nargs="*", type=(tuple_types or {}).get(f.name, str), default=default, help=h)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=h)
    return parser
