"""The ``lightbox`` command line.

Each sub-command lives in its own module under :mod:`bot.commands` and exposes
``register(subparsers)``; this module discovers them, so a capability that is
not built has no sub-command at all. A command returns its exit status; any
:class:`bot.commands.CommandError` becomes one friendly line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from bot import commands
from bot.commands import CommandError
from bot.logs import configure_logging
from bot.settings import Settings, SettingsError


def build_parser() -> argparse.ArgumentParser:
    """The parser with every available sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="lightbox",
        description="Lightbox: patients' medical images in Telegram. Settings come from LIGHTBOX_* variables.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"bot.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightbox`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"lightbox: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        return int(args.handler(args, settings) or 0)
    except CommandError as exc:
        print(f"lightbox: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("lightbox: stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
