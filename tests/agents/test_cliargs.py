"""Config dataclasses become command lines (tyro): every field a flag with its help text and its default, once."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import shlex
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agents.cliargs import parse_config


@dataclass(frozen=True)
class _Cfg:
    steps: int = 10  # how many steps
    rate_mbps: float = 2.5  # link rate
    colour: str = "#ff0000"  # line colour, a '#' inside the default
    fast: bool = False  # go fast
    layers: tuple[int, ...] = (64, 64)  # hidden layers
    tasks: str = "reach-v3,push-v3,pick-place-v3"
    """MetaWorld tasks, a default over two lines"""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


def _help(capsys: pytest.CaptureFixture[str], call: Any) -> str:
    """What ``call()`` prints; it must exit with status 0 (argparse and tyro exit, ``ecc traces`` returns 0)."""
    try:
        assert call() == 0
    except SystemExit as e:
        assert e.code == 0
    return capsys.readouterr().out


def _entries(help_text: str) -> dict[str, str]:
    """``{--flag: 'flags and help on one line'}`` for every option of a help page (tyro's boxes stripped)."""
    entries: list[list[str]] = []  # [flags, flags and help]
    indent = 0
    first = help_text.rfind("\n", 0, help_text.index("-h, --help")) + 1
    for raw in help_text[first:].splitlines():  # the options, after the description
        line = raw.rstrip().removesuffix("│").rstrip()
        if line.lstrip().startswith("│"):
            line = line.lstrip()[1:]
        text = line.lstrip()
        if not text or text[0] in "╭╰─" or set(text) == {"-"}:
            continue
        lead = len(line) - len(text)
        if text.startswith("-") and (not entries or lead <= indent):  # a flag, not a help line starting with --x
            entries.append([text.split("  ")[0], text])
            indent = lead
        elif entries and lead > indent:  # a wrapped help line, not a group header
            entries[-1][1] += " " + text
    out: dict[str, str] = {}
    for flags, entry in entries:
        for flag in re.findall(r"(?<![\w-])--[a-z0-9-]+", flags):
            assert flag not in out, f"{flag} listed twice"
            out[flag] = " ".join(entry.split())
    return out


def _field_comments(cls: type) -> dict[str, str]:
    """``{field: its help}``: the comment ending its line, else the docstring under it (tokenized: a '#' in a string
    is no comment)."""
    out: dict[str, str] = {}
    name, comment, last = None, None, None  # last: the previous line's field when it had no comment
    first = True  # the next token starts a logical line
    tokens = tokenize.generate_tokens(io.StringIO(inspect.getsource(cls)).readline)
    for tok in tokens:
        if tok.type in (tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            continue
        if tok.type == tokenize.COMMENT:
            comment = tok.string.lstrip("#").strip()
        elif tok.type == tokenize.NEWLINE:
            if name and comment:
                out[name] = comment
            last = name if name and not comment else None
            name, comment, first = None, None, True
            continue
        elif first and tok.type == tokenize.STRING and tok.start[1] == 4 and last:
            out[last] = " ".join(ast.literal_eval(tok.string).split())
        elif tok.type == tokenize.NAME and name is None and first and tok.start[1] == 4:
            name = tok.string
        first = False
    return out


def _default_label(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(shlex.quote(str(v)) for v in value)
    return shlex.quote(str(value))


def test_flags_types_defaults_and_help(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_config(_Cfg, [], prog="t") == _Cfg()
    got = parse_config(
        _Cfg,
        [
            "--steps",
            "3",
            "--rate-mbps",
            "0.5",
            "--fast",
            "--layers",
            "8",
            "16",
            "--colour",
            "#00ff00",
            "--tasks",
            "a,b",
        ],
        prog="t",
    )
    assert got == _Cfg(steps=3, rate_mbps=0.5, colour="#00ff00", fast=True, layers=(8, 16), tasks="a,b")
    assert parse_config(_Cfg, ["--fast", "--no-fast"], prog="t").fast is False
    monkeypatch.setenv("COLUMNS", "400")
    entries = _entries(_help(capsys, lambda: parse_config(_Cfg, ["--help"], prog="t")))
    assert entries["--rate-mbps"] == "--rate-mbps FLOAT link rate (default: 2.5)"
    assert entries["--colour"] == "--colour STR line colour, a '#' inside the default (default: '#ff0000')"
    assert entries["--tasks"] == (
        "--tasks STR MetaWorld tasks, a default over two lines (default: reach-v3,push-v3,pick-place-v3)"
    )
    assert entries["--fast"] == entries["--no-fast"] == "--fast, --no-fast go fast (default: False)"
    assert entries["--layers"].endswith("hidden layers (default: 64 64)")


@pytest.mark.parametrize(
    "argv, message", [(["--steps", "many"], "many"), (["--steps", "-1"], "steps must be >= 0"), (["--nope"], "--nope")]
)
def test_bad_values_are_usage_errors_that_name_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        parse_config(_Cfg, argv, prog="t")
    assert e.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())


def _verb_configs() -> list[tuple[str, type]]:
    from agents.closed_loop_eval import ClosedLoopEvalConfig
    from agents.demo import DemoConfig
    from agents.evaluation import EvalConfig
    from agents.training import TrainConfig

    from agents.edge_cli import EdgePolicyArgs
    from executor.cutmap_cli import CutmapArgs
    from executor.edge_cli import EdgeArgs
    from executor.perf_cli import PerfArgs
    from executor.profile_cli import ProfileArgs
    from executor.serve_cli import ServeArgs

    return [
        ("train", TrainConfig),
        ("eval", EvalConfig),
        ("demo", DemoConfig),
        ("closedloop", ClosedLoopEvalConfig),
        ("serve", ServeArgs),
        ("profile", ProfileArgs),
        ("cutmap", CutmapArgs),
        ("perf", PerfArgs),
        ("edge", EdgeArgs),
        ("edge", EdgePolicyArgs),
    ]


def _expected_tail(cls: type, f: dataclasses.Field) -> str:
    """How a field's help entry ends: its default, or that it is required or repeatable (tyro's append action)."""
    import typing

    import tyro

    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        return "(required)"
    if tyro.conf.UseAppendAction in getattr(
        typing.get_type_hints(cls, include_extras=True)[f.name], "__metadata__", ()
    ):
        return "(repeatable)"
    return f"(default: {_default_label(f.default)})"


@pytest.mark.parametrize("verb, cls", _verb_configs())
def test_every_field_of_a_verb_has_its_help_and_its_default_once(
    verb: str, cls: type, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.cli import main

    monkeypatch.setenv("COLUMNS", "400")
    entries = _entries(_help(capsys, lambda: main([verb, "--help"])))
    comments = _field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name == "runtime":  # EdgePolicyArgs' nested EdgeArgs, whose flags are checked as a class of their own
            continue
        entry = entries["--" + f.name.replace("_", "-")]
        assert comments.get(f.name), f"{cls.__name__}.{f.name} has no help comment"
        assert " ".join(comments[f.name].split()) in entry, entry
        tail = _expected_tail(cls, f)
        assert entry.count("default:") == (tail.startswith("(default:")) and entry.endswith(tail), entry


def test_ecc_train_options_beside_the_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.train_cli import config_from_args, parse_args
    from agents.training import TrainConfig, quick

    monkeypatch.setenv("COLUMNS", "400")
    entries = _entries(_help(capsys, lambda: parse_args(["--help"])))
    assert entries["--engine"] == (
        "--engine {local,ray} local: envs in this process; ray: envs on Ray actors (vla-ecc[ray]) (default: local)"
    )
    assert entries["--ray-address"] == entries["--address"] and entries["--address"].endswith("(default: None)")
    assert config_from_args(["--quick", "--seed", "3"]) == quick(TrainConfig(seed=3))
    args = parse_args(["--engine", "ray", "--address", "auto", "--net-arch", "8", "8"])
    assert (args.engine, args.ray_address, args.config.net_arch) == ("ray", "auto", (8, 8))
    assert parse_args(["--ray-address", "local"]).ray_address == "local"


def test_every_verb_help_exits_0_and_perf_keeps_its_whole_description(capsys: pytest.CaptureFixture[str]) -> None:
    from agents.cli import VERBS, main

    for verb in VERBS:
        out = _help(capsys, lambda v=verb: main([v, "--help"]))
        assert f"ecc {verb}" in out
        if verb == "perf":
            assert "memory fit of a VLA on catalogue hardware, networks and deployment modes" in " ".join(out.split())
            assert out.count("ecc perf list") == 1


def test_ecc_train_names_an_unknown_family_to_leave_out(tmp_path, capsys) -> None:
    from agents.train_cli import config_from_args, main

    assert config_from_args(["--exclude-families", "5G", "wifi"]).exclude_families == ("5G", "wifi")
    assert main(["--exclude-families", "nope", "--run-dir", str(tmp_path), "--total-timesteps", "64"]) == 2
    err = capsys.readouterr().err
    assert "ecc train: exclude_families: 'nope' matches no trace family; families: embedded/" in err
    assert list(tmp_path.iterdir()) == []  # refused before a run folder was made


def test_ecc_policy_subcommands_take_the_path_as_a_positional(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.cli import main
    from agents.policy_cli import MigrateArgs, ShowArgs, parse_args

    assert parse_args(["migrate", "--trust-pickle", "runs/x"]) == MigrateArgs(Path("runs/x"), trust_pickle=True)
    assert parse_args(["show", "runs/x"]) == ShowArgs(Path("runs/x"))
    monkeypatch.setenv("COLUMNS", "400")
    out = _help(capsys, lambda: main(["policy", "migrate", "--help"]))
    assert "PATH policy.zip (or its run folder) (required)" in " ".join(out.split())
    assert _entries(out)["--trust-pickle"] == (
        "--trust-pickle, --no-trust-pickle required: loading the old zip runs its pickles (default: False)"
    )
    with pytest.raises(SystemExit) as e:
        parse_args(["show"])
    assert e.value.code == 2


@pytest.mark.parametrize("command, cls", [("stats", "StatsArgs"), ("convert", "ConvertArgs"), ("plot", "PlotArgs")])
def test_every_option_of_ecc_traces_has_its_help_and_its_default_once(
    command: str, cls: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import typing

    from agents.cli import main
    from traces import cli

    config = getattr(cli, cls)
    monkeypatch.setenv("COLUMNS", "400")
    out = _help(capsys, lambda: main(["traces", command, "--help"]))
    entries, flat, comments = _entries(out), " ".join(out.split()), _field_comments(config)
    for f in dataclasses.fields(config):
        assert comments.get(f.name), f"{cls}.{f.name} has no help comment"
        if f.name in ("paths", "src", "dst"):  # positionals: METAVAR help
            assert " ".join(comments[f.name].split()) in flat
            continue
        entry = entries["--from" if f.name == "src_format" else "--" + f.name.replace("_", "-")]
        assert " ".join(comments[f.name].split()) in entry, entry
        assert entry.count("default:") == (f.default is not dataclasses.MISSING), entry
    hints = typing.get_type_hints(cli.ConvertArgs, include_extras=True)
    from traces.readers import FORMATS
    from traces.writers import WRITERS

    assert typing.get_args(hints["to"]) == tuple(WRITERS)
    assert typing.get_args(typing.get_args(hints["src_format"])[0]) == ("auto", *FORMATS)
    args = cli.parse_args(["convert", "a", "b", "--to", "csv", "--from", "mahimahi"])
    assert args == cli.ConvertArgs(Path("a"), Path("b"), to="csv", src_format="mahimahi")
