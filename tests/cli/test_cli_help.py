"""The command line as a tool ops live with: --version, --help with examples, completion."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sharebatch.cli import app

SCRIPT = Path(sys.executable).parent / "sharebatch"


def commands() -> list[str]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return sorted(group.list_commands(typer.Context(group)))


def test_version_is_the_installed_one() -> None:
    """--version prints the installed distribution's version."""
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"sharebatch {version('sharebatch')}\n"


def test_top_level_help_has_examples() -> None:
    """sharebatch --help lists the commands and shows how to start."""
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "Example: sharebatch doctor manifests/q3.yml" in result.stdout
    for name in commands():
        assert f" {name} " in result.stdout


@pytest.mark.parametrize("name", commands())
def test_every_command_help_has_an_example(name: str) -> None:
    """Each command's --help shows at least one example invocation of that command."""
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    examples = [line for line in result.stdout.splitlines() if "Example" in line]
    assert examples, f"sharebatch {name} --help has no example"
    assert any(f"sharebatch {name}" in line for line in examples)


def test_completion_script_is_offered() -> None:
    """--show-completion prints the script for the current shell (bash here), to install."""
    result = subprocess.run(
        [SCRIPT, "--show-completion"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SHELL": "/bin/bash"},
    )
    assert "_SHAREBATCH_COMPLETE=complete_bash" in result.stdout
    assert "complete -o default -F _sharebatch_completion sharebatch" in result.stdout
    check = subprocess.run(["bash", "-n"], input=result.stdout, text=True, check=False)
    assert check.returncode == 0  # the script parses as bash


def complete(words: str) -> list[str]:
    """Ask the installed script for completions, as bash's completion function does."""
    env = {
        **os.environ,
        "_SHAREBATCH_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    result = subprocess.run([SCRIPT], env=env, capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_completion_completes_commands_and_options() -> None:
    """Completion knows the commands and each command's options."""
    assert complete("sharebatch do") == ["doctor"]
    assert complete("sharebatch run --metr") == ["--metrics-file"]
    assert "--json" in complete("sharebatch doctor --")


def test_importing_the_command_line_imports_no_command() -> None:
    """`import sharebatch.cli` loads none of the commands' modules: together they import the
    whole library (~2 s of a short command's start); a command's module loads when it runs."""
    code = (
        "import sys, sharebatch.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('sharebatch.cli.')))\n"
        "sharebatch.cli.app(['validate', '--help'], standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m.startswith('sharebatch.cli.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "['sharebatch.cli.app']"
    assert "sharebatch.cli.commands" in lines[-1] and "sharebatch.cli.usage" not in lines[-1]
