"""``lightbox demo [--host H] [--port P] [--data-dir DIR]``: try Lightbox offline, no token, no network.

Seeds a made-up patient from real images (once per data folder), runs the bot against the local Bot API
sandbox and serves a web chat page (and the share viewer) on 127.0.0.1; see :mod:`bot.demo`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bot.commands import CommandError
from bot.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="try the bot offline: a demo patient and a web chat page on 127.0.0.1",
        description="Seed a demo patient from real images, run the bot against a local Telegram sandbox and "
        "serve a web chat page where you talk to it. Needs no token and no network. Stop with Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address of the chat page (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port of the chat page (default 8080; 0 = any)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the demo's own data folder (default ./lightbox-demo; never the real database)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the demo until Ctrl-C or SIGTERM."""
    import asyncio

    from bot.demo import DemoReady, DemoSeedError, demo_settings, run_demo
    from bot.demo_data import DemoDataMissing
    from bot.server import run_until_signal

    if not 0 <= args.port < 65536:
        raise CommandError("the port must be between 0 and 65535")
    if settings.log_level != "DEBUG":
        # Alembic narrates every migration step at INFO; the operator's console wants none of it.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = demo_settings(settings, args.data_dir)

    def ready(info: DemoReady) -> None:
        what = "seeded" if info.seed.created else "found"
        print(f"Demo patient {what}: {info.seed.studies} studies in {settings.data_dir}.")
        print(f"Lightbox demo is running. Open {info.url} in your browser and say \"show my last MRI\".")
        print("Press Ctrl-C to stop.", flush=True)

    async def main(stop: asyncio.Event) -> None:
        await run_demo(settings, host=args.host, port=args.port, stop=stop, on_ready=ready)

    print("Starting the Lightbox demo (the first start builds the demo patient; it takes a few seconds) ...",
          flush=True)
    try:
        run_until_signal(main)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})") from None
    except (DemoSeedError, DemoDataMissing) as exc:
        raise CommandError(f"cannot build the demo patient: {exc}") from None
    print("Demo stopped.", file=sys.stderr)
    return 0
