"""The ``lightbox`` command: help lists real sub-commands; failures are one friendly line."""

from __future__ import annotations

import subprocess
import sys

from bot.cli import build_parser


def test_help_runs_as_a_console_script() -> None:
    result = subprocess.run([sys.executable, "-m", "bot.cli", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "usage: lightbox" in result.stdout


def test_every_listed_sub_command_has_a_handler() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, sub_parser in sub.choices.items():  # type: ignore[union-attr]
        defaults = sub_parser._defaults
        nested = [a for a in sub_parser._actions if getattr(a, "choices", None) and a.dest != "help"]
        assert "handler" in defaults or nested, f"{name} has no handler"
