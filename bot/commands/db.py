"""``lightbox db upgrade``: bring the database schema up to date (SQLite or PostgreSQL).

Also home of :func:`open_database`, which every store-backed command uses: it upgrades the schema
first (so a fresh data folder just works) and turns any database failure into one friendly line
that never shows the URL (it may hold a password).
"""

from __future__ import annotations

import argparse
import logging

from sqlalchemy.orm import Session, sessionmaker

from bot.commands import CommandError
from bot.settings import Settings


def open_database(settings: Settings) -> sessionmaker[Session]:
    """Sessions on the configured database, its schema brought up to date first."""
    from sqlalchemy.exc import SQLAlchemyError

    from store.db import make_engine, session_factory, upgrade

    url = settings.effective_database_url
    if settings.log_level != "DEBUG":
        # Alembic narrates every migration step at INFO; an operator's command output wants none of it.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        upgrade(url)
        engine = make_engine(url)
    except (SQLAlchemyError, OSError) as exc:
        raise CommandError(f"cannot open the database ({type(exc).__name__}); check LIGHTBOX_DATABASE_URL") from None
    return session_factory(engine)


def close_database(sessions: sessionmaker[Session]) -> None:
    """Release the connections behind ``sessions``."""
    bind = sessions.kw.get("bind")
    if bind is not None:
        bind.dispose()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``db`` sub-command and its ``upgrade`` action."""
    parser = subparsers.add_parser(
        "db",
        help="manage the database schema",
        description="Manage Lightbox's database (LIGHTBOX_DATABASE_URL, default an SQLite file in the data folder).",
    )
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION")
    upgrade = actions.add_parser(
        "upgrade",
        help="bring the schema up to the newest version",
        description="Apply every pending migration. Safe to run again: an up-to-date database is left as it is.",
    )
    upgrade.set_defaults(handler=run_upgrade)
    parser.set_defaults(handler=run_missing_action)


def run_missing_action(args: argparse.Namespace, settings: Settings) -> int:
    """``lightbox db`` on its own: say which actions exist."""
    raise CommandError("say what to do with the database: lightbox db upgrade", exit_status=2)


def run_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Upgrade the schema and print the revision the database is now at."""
    from sqlalchemy.exc import SQLAlchemyError

    from store.db import current_revision

    close_database(open_database(settings))
    try:
        revision = current_revision(settings.effective_database_url)
    except SQLAlchemyError as exc:
        raise CommandError(f"cannot read the database's revision ({type(exc).__name__})") from None
    print(f"database is up to date (revision {revision})")
    return 0
