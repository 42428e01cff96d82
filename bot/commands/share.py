"""``lightbox share create|list|revoke``: share links from the command line.

``create --patient-id ID --study UID [--hours H] [--code] [--max-views N] [--recipient LABEL]
[--download original|deidentified|none] [--series UID ...] [--priors] [--annotate] [--json]`` makes a
link and prints its address (the token exists only in that output); ``--annotate`` makes the patient's
own link, through which they draw arrows, circles and text in the viewer (give it only to the patient).
``list --patient-id ID`` shows the patient's links with their state and views; ``revoke ID`` turns one
off at once. ``ID`` of a link is its opaque public id.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from bot.commands import CommandError
from bot.commands.db import close_database, open_database
from bot.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``share`` sub-command with ``create``, ``list`` and ``revoke``."""
    parser = subparsers.add_parser(
        "share",
        help="create, list or revoke links that let a specialist see a study",
        description="Time-limited, revocable links to a patient's study for the web viewer.",
    )
    actions = parser.add_subparsers(dest="share_action", metavar="ACTION", required=True)

    create = actions.add_parser("create", help="make a link to one study")
    create.add_argument("--patient-id", required=True, metavar="ID", help="the patient's DICOM Patient ID")
    create.add_argument("--issuer", default=None, help="Issuer of Patient ID, when one ID is used by several")
    create.add_argument("--study", required=True, metavar="UID", help="Study Instance UID (or the study's id)")
    create.add_argument("--series", nargs="+", metavar="UID", default=[],
                        help="share only these series (Series Instance UIDs); default: the whole study")
    create.add_argument("--priors", action="store_true",
                        help="also share the patient's earlier studies of the same body part")
    create.add_argument("--hours", type=float, default=None, metavar="H",
                        help="how long the link works: 1 to 720 hours (default 72)")
    create.add_argument("--code", action="store_true", help="protect the link with a six-digit access code")
    create.add_argument("--max-views", type=int, default=None, metavar="N", help="stop after N openings")
    create.add_argument("--recipient", default="", metavar="LABEL", help='who it is for, e.g. "Dr. Lee"')
    create.add_argument("--download", choices=("original", "deidentified", "none"), default="none",
                        help="what the specialist may download (default none)")
    create.add_argument("--annotate", action="store_true",
                        help="the patient's own link: lets them draw arrows, circles and text (give it only to them)")
    create.add_argument("--json", action="store_true", help="print id, url and expires_at as JSON")
    create.set_defaults(handler=run_create)

    listing = actions.add_parser("list", help="show a patient's links")
    listing.add_argument("--patient-id", required=True, metavar="ID", help="the patient's DICOM Patient ID")
    listing.add_argument("--issuer", default=None, help="Issuer of Patient ID, when one ID is used by several")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=run_list)

    revoke = actions.add_parser("revoke", help="turn a link off now")
    revoke.add_argument("id", metavar="ID", help="the link's id (from 'share list' or 'share create')")
    revoke.set_defaults(handler=run_revoke)


def _patient(session: Any, patient_id: str, issuer: str | None) -> Any:
    from store.linking import LinkingError, find_patient_by_identifier

    try:
        patient = find_patient_by_identifier(session, patient_id.strip(), issuer)
    except LinkingError as exc:
        raise CommandError(exc.message) from None
    if patient is None:
        raise CommandError("no patient with that Patient ID in this Lightbox")
    return patient


def _state(link: Any, now: datetime) -> str:
    from share.links import link_state

    return link_state(link, now, opening=True).value


def run_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create the link and print it."""
    from sqlalchemy.exc import SQLAlchemyError

    from share.links import ShareError, create_share
    from store.db import transaction
    from store.queries import get_series_for_patient, get_study_for_patient

    sessions = open_database(settings)
    try:
        with transaction(sessions) as session:
            patient = _patient(session, args.patient_id, args.issuer)
            study = get_study_for_patient(session, patient.id, args.study)
            if study is None:
                raise CommandError("that patient has no study with that UID")
            series = []
            for ref in args.series:
                one = get_series_for_patient(session, patient.id, ref)
                if one is None or one.study_id != study.id:
                    raise CommandError("a chosen series is not part of that study")
                series.append(one)
            try:
                created = create_share(
                    session, patient=patient, study=study, hours=args.hours, series=series,
                    include_priors=args.priors, recipient_label=args.recipient, download=args.download,
                    access_code=bool(args.code), max_views=args.max_views, can_annotate=args.annotate,
                    actor_kind="operator",
                )
            except ShareError as exc:
                raise CommandError(str(exc)) from None
            link = created.link
    except SQLAlchemyError as exc:
        raise CommandError(f"the database failed ({type(exc).__name__})") from None
    finally:
        close_database(sessions)
    url = created.url(settings.public_url)
    out: dict[str, Any] = {"id": link.public_id, "url": url, "expires_at": link.expires_at.isoformat()}
    if created.access_code:
        out["access_code"] = created.access_code
    if args.json:
        print(json.dumps(out))
    else:
        print(f"Link {link.public_id} (works until {link.expires_at:%Y-%m-%d %H:%M} UTC):")
        print(url)
        if created.access_code:
            print(f"Access code (send it separately): {created.access_code}")
    return 0


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print the patient's links, newest first."""
    from share.links import list_shares
    from store.models import Study, utcnow

    sessions = open_database(settings)
    now = utcnow()
    try:
        with sessions() as session:
            patient = _patient(session, args.patient_id, args.issuer)
            rows: list[dict[str, Any]] = []
            for link in list_shares(session, patient.id, now=now):
                study = session.get(Study, link.study_id)
                rows.append({
                    "id": link.public_id,
                    "study": study.study_uid if study else "",
                    "recipient": link.recipient_label,
                    "state": _state(link, now),
                    "views": link.view_count,
                    "max_views": link.max_views,
                    "download": link.download,
                    "access_code": bool(link.access_code_hash),
                    "created_at": link.created_at.isoformat(),
                    "expires_at": link.expires_at.isoformat(),
                    "first_opened_at": link.first_opened_at.isoformat() if link.first_opened_at else None,
                })
    finally:
        close_database(sessions)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No share links for this patient.")
    for row in rows:
        views = f"{row['views']}" + (f"/{row['max_views']}" if row["max_views"] else "")
        who = f" for {row['recipient']}" if row["recipient"] else ""
        print(f"{row['id']}  {row['state']:<8} views {views:<6} until {row['expires_at'][:16]}{who}")
    return 0


def run_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke one link."""
    from share.links import ShareError, revoke_share
    from store.db import transaction

    sessions = open_database(settings)
    try:
        with transaction(sessions) as session:
            try:
                link = revoke_share(session, args.id.strip(), actor_kind="operator")
            except ShareError as exc:
                raise CommandError(str(exc)) from None
            public_id = link.public_id
    finally:
        close_database(sessions)
    print(f"Link {public_id} is revoked; it stops working on its next request.")
    return 0
