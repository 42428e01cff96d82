"""``lightbox understand "TEXT" [--today YYYY-MM-DD] [--details]``: what a patient's message asks for.

Prints one line of JSON, ``{"intent": "...", "slots": {...}}`` (slots that were not said are absent), the
shape of ../shared/devset/utterances.jsonl. ``--details`` adds ``reason`` (why an ``unknown`` is refused),
``problems`` (what makes a request impossible as asked, e.g. ``duration_not_positive``) and ``language``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json

from bot.commands import CommandError
from bot.settings import Settings
from handlers.understanding import understand


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``understand`` sub-command."""
    parser = subparsers.add_parser(
        "understand",
        help="show the intent and slots Lightbox reads from a message",
        description='Read a patient\'s message as the bot would, e.g. lightbox understand "show my last MRI".',
    )
    parser.add_argument("text", nargs="+", metavar="TEXT", help="the message (quote it)")
    parser.add_argument("--today", metavar="YYYY-MM-DD", help="date relative expressions are resolved against")
    parser.add_argument(
        "--details", action="store_true", help="also print reason, problems and language next to intent and slots"
    )
    parser.set_defaults(handler=run)


def parse_today(raw: str | None) -> dt.date:
    """``--today`` as a date (today when absent); a friendly error for anything else."""
    if raw is None:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(raw.strip())
    except ValueError:
        raise CommandError(f"--today must be a date like 2026-11-28, not {raw!r}.", 2) from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the understanding of the message as JSON."""
    del settings
    today = parse_today(args.today)
    text = " ".join(args.text)
    result = understand(text, today)
    print(json.dumps(result.as_json(details=bool(args.details)), ensure_ascii=False))
    return 0
