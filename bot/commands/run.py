"""``lightbox run [--webhook URL] [--host H] [--port P]``: the bot against real Telegram, and the share viewer.

Needs ``LIGHTBOX_BOT_TOKEN``. Long polling by default; with ``--webhook URL`` Telegram calls that URL (which
must reach ``--host:--port`` through your HTTPS proxy) and each call must carry ``LIGHTBOX_WEBHOOK_SECRET``.
The share viewer is served on the same address either way; see :mod:`bot.server`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bot.commands import CommandError
from bot.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` sub-command."""
    parser = subparsers.add_parser(
        "run",
        help="run the bot on Telegram (needs LIGHTBOX_BOT_TOKEN) with the share viewer",
        description="Run the bot against Telegram with LIGHTBOX_BOT_TOKEN: long polling by default, or a "
        "webhook with --webhook (calls are checked against LIGHTBOX_WEBHOOK_SECRET). The share viewer is served "
        "on --host/--port. Stop with Ctrl-C.",
    )
    parser.add_argument("--webhook", metavar="URL", default=None,
                        help="public HTTPS URL Telegram should call (its path is served here)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run until Ctrl-C or SIGTERM."""
    import asyncio

    from telegram.error import InvalidToken, NetworkError, TelegramError

    from bot.server import BotReady, check_webhook_url, run_bot, run_until_signal

    if not settings.bot_token:
        raise CommandError("LIGHTBOX_BOT_TOKEN is not set; get a token from @BotFather and export it "
                           "(or try `lightbox demo`, which needs none)", exit_status=2)
    if not 0 < args.port < 65536:
        raise CommandError("the port must be between 1 and 65535")
    if args.webhook is not None:
        try:
            check_webhook_url(args.webhook)
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    if settings.log_level != "DEBUG":
        # Alembic narrates every migration step at INFO; the operator's console wants none of it.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    def ready(info: BotReady) -> None:
        mode = f"webhook at {info.webhook_path}" if info.webhook_path else "long polling"
        print(f"Lightbox bot running ({mode}); share viewer on {info.url}. Press Ctrl-C to stop.", flush=True)

    async def main(stop: asyncio.Event) -> None:
        await run_bot(settings, host=args.host, port=args.port, webhook_url=args.webhook, stop=stop, on_ready=ready)

    try:
        run_until_signal(main)
    except InvalidToken:
        raise CommandError("Telegram refused LIGHTBOX_BOT_TOKEN; check the token from @BotFather") from None
    except NetworkError as exc:
        raise CommandError(f"cannot reach Telegram ({type(exc).__name__}); check the network") from None
    except TelegramError as exc:
        raise CommandError(f"Telegram refused to start the bot: {exc}") from None
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})") from None
    print("Bot stopped.", file=sys.stderr)
    return 0
