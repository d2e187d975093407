"""Where the recorded traces live: ``ECC_SHARED_TRACES``, else ``<repo>/../shared/traces`` (read-only data)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "ECC_SHARED_TRACES"
_REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_traces_dir() -> Path | None:
    """The recorded-traces folder, or None when it does not exist (e.g. a fresh machine without ../shared).

    ``ECC_SHARED_TRACES`` overrides the default ``<repo>/../shared/traces``; it is returned only if it is a directory.
    """
    env = os.environ.get(ENV_VAR)
    path = Path(env).expanduser() if env else _REPO_ROOT.parent / "shared" / "traces"
    return path if path.is_dir() else None
