"""CLI flag parsing (§8.2): Go ``flag`` rules and messages."""
# ruff: noqa: E501 (table rows read best on one line each)

from __future__ import annotations

import pytest

from pypilot.cli import VERSION_TEXT, Options, UsageError, parse_args, usage


@pytest.mark.parametrize("argv", [["-config", "/x"], ["--config", "/x"], ["-config=/x"], ["--config=/x"]])
def test_value_forms(argv: list[str]) -> None:
    assert parse_args(argv).config == "/x"


def test_bools_and_precedence() -> None:
    o = parse_args(["-ping", "-reload", "-version=false", "--template=true"])
    assert (o.ping, o.reload, o.version, o.template) == (True, True, False, True)
    assert o.command == "template"
    assert parse_args([]).command == "run"
    assert parse_args(["-validate", "-config", "x"]).command == "validate"


def test_repeatable_pairs_last_wins() -> None:
    o = parse_args(["-putenv", "A=1", "-putenv=B=x=y", "--putenv", "A=2", "-putmetric", "m=3"])
    assert o.putenv == [("A", "2"), ("B", "x=y")]
    assert o.putmetric == [("m", "3")]
    assert o.command == "putenv"
    assert o.failure_prefix == "-putenv: failed to run subcommand: "
    assert parse_args(["-putmetric", "m=1"]).failure_prefix == "-putmetric: failed to run subcommand: "
    assert parse_args(["-ping"]).failure_prefix == "-ping: failed: "


def test_maintenance_value() -> None:
    o = parse_args(["-maintenance", "enable"])
    assert (o.maintenance, o.command) == ("enable", "maintenance")


def test_positional_stops_parsing() -> None:
    o = parse_args(["-config", "c", "status", "-bogus"])
    assert o.args == ["status", "-bogus"]
    assert parse_args(["--", "-x"]).args == ["-x"]
    assert parse_args(["job", "web", "signal", "HUP"]).args == ["job", "web", "signal", "HUP"]


@pytest.mark.parametrize(("argv", "msg"), [
    (["-x"], "flag provided but not defined: -x"),
    (["--nope=1"], "flag provided but not defined: -nope"),
    (["-config"], "flag needs an argument: -config"),
    (["-putenv", "A"], "invalid value \"A\" for flag -putenv: flag value 'A' was not in the format 'key=val'"),
    (["-ping=maybe"], 'invalid boolean value "maybe" for -ping: strconv.ParseBool: parsing "maybe": invalid syntax'),
    (["---x"], "bad flag syntax: ---x"),
    (["-=x"], "bad flag syntax: -=x"),
])
def test_usage_errors(argv: list[str], msg: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_args(argv)
    assert e.value.message == msg
    assert e.value.text == msg + "\n" + usage()


@pytest.mark.parametrize("flag", ["-h", "-help", "--help"])
def test_help(flag: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_args([flag])
    assert e.value.message == "" and e.value.text == usage()


def test_usage_listing() -> None:
    text = usage("containerpilot")
    assert text.startswith("Usage of containerpilot:\n  -config string\n    \tFile path to JSON5")
    assert "  -putenv value\n    \tUpdate environ" in text
    assert "\n  -ping\n    \tCheck that" in text


def test_version_text() -> None:
    assert VERSION_TEXT.startswith("Version: ")
    assert "\nGitHash: " in VERSION_TEXT and VERSION_TEXT.endswith("\n")


def test_options_defaults() -> None:
    assert parse_args([]) == Options()
