"""``lightbox link-code --patient-id ID``: a one-time code that links a Telegram user to a patient.

Prints the code and, when LIGHTBOX_BOT_USERNAME is set, the ``https://t.me/<bot>?start=<code>`` link
the patient opens. The code works once and expires (24 hours unless ``--hours`` says otherwise); only
its hash is stored, so it cannot be shown again. The issue is recorded in the patient's access log.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from bot.commands import CommandError
from bot.commands.db import close_database, open_database
from bot.settings import Settings

MAX_HOURS = 24 * 30


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``link-code`` sub-command."""
    parser = subparsers.add_parser(
        "link-code",
        help="make a one-time code that links a Telegram user to a patient",
        description="Make a one-time code (and t.me deep link) that links whoever opens it to this patient.",
    )
    parser.add_argument("--patient-id", required=True, metavar="ID", help="the patient's DICOM Patient ID")
    parser.add_argument("--issuer", default=None, help="Issuer of Patient ID, when one ID is used by several issuers")
    parser.add_argument("--hours", type=int, default=24, help="how long the code works (default 24, at most 720)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Issue the code, print it (and the deep link); exit 1 when the patient is unknown."""
    from sqlalchemy.exc import SQLAlchemyError

    from store.audit import record_access
    from store.linking import LinkingError, create_link_code, deep_link, find_patient_by_identifier

    if not 1 <= args.hours <= MAX_HOURS:
        raise CommandError(f"--hours must be between 1 and {MAX_HOURS}")
    sessions = open_database(settings)
    try:
        with sessions() as session, session.begin():
            try:
                patient = find_patient_by_identifier(session, args.patient_id.strip(), args.issuer)
            except LinkingError as exc:
                raise CommandError(exc.message) from None
            if patient is None:
                raise CommandError("no patient with that Patient ID in this Lightbox")
            code = create_link_code(session, patient.id, ttl=timedelta(hours=args.hours))
            record_access(session, patient.id, "operator", "cli", "link", detail="link code issued")
    except SQLAlchemyError as exc:
        raise CommandError(f"the database failed ({type(exc).__name__})") from None
    finally:
        close_database(sessions)
    print(code)
    if settings.bot_username:
        print(deep_link(settings.bot_username, code))
    return 0
