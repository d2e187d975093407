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


def test_packages_import_only_downwards() -> None:
    """traces <- executor <- ecc_env <- agents: no module imports a package above its own, not even lazily."""
    import ast

    order = ["traces", "executor", "ecc_env", "agents"]
    root = REPO_ROOT
    bad = []
    for level, package in enumerate(order):
        above = set(order[level + 1 :])
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                bad += [
                    f"{path.relative_to(root)}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in above
                ]
    assert bad == []
