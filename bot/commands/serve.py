"""``lightbox serve [--host H] [--port P]``: the specialist's web viewer on its own (no bot).

The viewer reads the same database and DICOM folder as the bot. Viewing-session cookies are signed with
a secret every worker must share: derived from ``LIGHTBOX_ENCRYPTION_KEY`` when set, else kept in
``<data dir>/share-secret`` (created on first run, readable by the owner only). Access logs are off
because request lines carry share tokens.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from bot.commands import CommandError
from bot.settings import Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` sub-command."""
    parser = subparsers.add_parser(
        "serve",
        help="run the web viewer for share links (without the bot)",
        description="Serve the share-link viewer. Put it behind HTTPS and set LIGHTBOX_PUBLIC_URL to its address.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.set_defaults(handler=run)


def viewer_secret(settings: Settings) -> bytes:
    """The key that signs viewing sessions: the same for every worker on this data folder."""
    if settings.encryption_key:
        return hmac.new(settings.encryption_key.encode(), b"lightbox share sessions", hashlib.sha256).digest()
    path = Path(settings.data_dir) / "share-secret"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker made it first
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    return key


def build_viewer(settings: Settings) -> Starlette:
    """The viewer app on the configured database and file store (used by ``serve``, ``run`` and ``demo``)."""
    from bot.app import open_files
    from bot.commands.db import open_database
    from share.web import create_app

    sessions = open_database(settings)
    try:
        files = open_files(settings, sessions)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return create_app(sessions, files, public_url=settings.public_url, secret_key=viewer_secret(settings))


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until interrupted."""
    import uvicorn

    if not 0 < args.port < 65536:
        raise CommandError("the port must be between 1 and 65535")
    app = build_viewer(settings)
    print(f"Share viewer on http://{args.host}:{args.port} (links use {settings.public_url})")
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False,
                    server_header=False)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})") from None
    return 0
