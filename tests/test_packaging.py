"""Our import packages must come from this repository, not from same-named PyPI distributions."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["ecc_env", "agents", "executor", "traces", "train"])
def test_package_imported_from_this_repository(name: str) -> None:
    module = importlib.import_module(name)
    origin = Path(module.__file__).resolve()
    assert REPO_ROOT in origin.parents, f"{name} imported from {origin}, not from {REPO_ROOT}"


def test_ecc_console_script_lists_verbs_and_rejects_unknown() -> None:
    exe = Path(sys.executable).parent / "ecc"
    assert exe.exists(), f"console script not installed next to {sys.executable}"
    ok = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "traces" in ok.stdout
    bad = subprocess.run([str(exe), "frobnicate"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown verb 'frobnicate'" in bad.stderr and "traces" in bad.stderr
