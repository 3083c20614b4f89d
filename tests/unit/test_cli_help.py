"""The CLI speaks to users in its help, and only parses and prints: task operations go through dbexport.api."""

from __future__ import annotations

import argparse
import ast
import inspect
from pathlib import Path

import pytest

from dbexport import cli

COMMANDS = ["start-export-task", "describe-export-tasks", "cancel-export-task", "demo"]
# The runtimes' internals: the CLI reaches them through dbexport.api's ExportApi only.
INTERNALS = ("dbexport.tasks", "dbexport.runner", "dbexport.local", "dbexport.steps", "dbexport.cloud")


def _commands() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _docstrings() -> list[str]:
    """Every docstring in cli.py: written for developers, never shown to users."""
    tree = ast.parse(inspect.getsource(cli))
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef))]
    return [doc for node in nodes if (doc := ast.get_docstring(node))]


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [o for action in parser._actions for o in action.option_strings if o.startswith("--")]


def test_the_top_level_help_says_what_dbexport_does_and_hides_the_runner(capsys):
    text = _help(capsys)
    assert "Parquet" in text and "README" in text and "~/.local/state/dbexport" in text
    for command in COMMANDS:
        assert command in text
    assert "run-task" not in text
    for option in _options(cli.build_parser()):
        assert option in text
    for doc in _docstrings():
        assert doc not in text


def test_the_commands_are_the_ones_listed():
    assert sorted(_commands()) == sorted([*COMMANDS, "run-task"])


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_describes_every_option(capsys, command):
    text = _help(capsys, command)
    parser = _commands()[command]
    assert parser.description and parser.description.split("\n")[0] in text
    for action in parser._actions:
        if action.option_strings and action.option_strings[0] != "-h":
            assert action.option_strings[0] in text
            assert action.help and len(action.help) > 20, f"{command} {action.option_strings[0]} needs a help text"
    for doc in _docstrings():
        assert doc not in text


def test_the_cli_reaches_tasks_only_through_the_api():
    """No store, lifecycle rule, runner or state directory in cli.py: imports are checked, lazy ones too."""
    tree = ast.parse(Path(cli.__file__).read_text())
    imported = [alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names]
    imported += [
        f"{n.module}.{alias.name}" if n.module == "dbexport" else n.module
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module
        for alias in n.names
    ]
    assert "dbexport.api" in imported
    for name in imported:
        assert not any(name == m or name.startswith(f"{m}.") for m in INTERNALS), f"cli.py imports {name}"
