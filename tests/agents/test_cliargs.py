"""Config dataclasses become argparse flags with their field comments as help."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from agents.cliargs import add_dataclass_flags, field_comments


@dataclass(frozen=True)
class _Cfg:
    steps: int = 10  # how many steps
    rate_mbps: float = 2.5  # link rate
    fast: bool = False  # go fast
    layers: tuple[int, ...] = (64, 64)  # hidden layers
    name: str = "x"


def test_flags_types_defaults_and_help() -> None:
    assert field_comments(_Cfg) == {"steps": "how many steps", "rate_mbps": "link rate", "fast": "go fast",
                                    "layers": "hidden layers"}
    p = add_dataclass_flags(argparse.ArgumentParser(), _Cfg, {"layers": int})
    d = vars(p.parse_args([]))
    assert d == {"steps": 10, "rate_mbps": 2.5, "fast": False, "layers": (64, 64), "name": "x"}
    d = vars(p.parse_args(["--steps", "3", "--rate-mbps", "0.5", "--fast", "--layers", "8", "16", "--name", "y"]))
    assert d == {"steps": 3, "rate_mbps": 0.5, "fast": True, "layers": [8, 16], "name": "y"}
    assert "link rate (default: 2.5)" in p.format_help()
    with pytest.raises(SystemExit):
        p.parse_args(["--steps", "many"])


def test_ecc_train_names_an_unknown_family_to_leave_out(tmp_path, capsys) -> None:
    from agents.train_cli import config_from_args, main

    assert config_from_args(["--exclude-families", "5G", "wifi"]).exclude_families == ("5G", "wifi")
    assert main(["--exclude-families", "nope", "--run-dir", str(tmp_path), "--total-timesteps", "64"]) == 2
    err = capsys.readouterr().err
    assert "ecc train: exclude_families: 'nope' matches no trace family; families: embedded/" in err
    assert list(tmp_path.iterdir()) == []  # refused before a run folder was made
