"""``lightbox studies --patient-id ID [--modality M] [--body-part B] [--date D] [--latest] [--json]``.

Lists one patient's studies, newest first, found by their DICOM Patient ID. ``--modality`` takes DICOM
codes (MR, CT, US, MG, PT, NM...) and XR for any plain X-ray; ``--body-part`` takes plain words
("knee", "lumbar spine", "brain"). The JSON is a list of objects with ``study_uid``, ``date``
(YYYY-MM-DD or null), ``modalities``, ``body_part``, ``description``, ``series_count`` and
``instance_count`` (plus ``id``, the study's opaque public id, ``time`` and ``source``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bot.commands import CommandError
from bot.commands.db import close_database, open_database
from bot.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``studies`` sub-command."""
    parser = subparsers.add_parser(
        "studies",
        help="list a patient's studies, newest first",
        description="List one patient's studies, newest first. Filters combine.",
    )
    parser.add_argument("--patient-id", required=True, metavar="ID", help="the patient's DICOM Patient ID")
    parser.add_argument("--issuer", default=None, help="Issuer of Patient ID, when one ID is used by several issuers")
    parser.add_argument("--modality", metavar="M", help="DICOM modality (MR, CT, US, MG, PT, NM...) or XR for X-ray")
    parser.add_argument("--body-part", metavar="B", help='body part in plain words, e.g. "knee" or "lumbar spine"')
    parser.add_argument(
        "--date", metavar="D", help="only studies of this day, month or year: YYYY-MM-DD, YYYY-MM, YYYY"
    )
    parser.add_argument("--latest", action="store_true", help="only the newest matching study")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)


def study_summary(study: Any) -> dict[str, Any]:
    """The JSON form of one study (no patient details)."""
    return {
        "id": study.public_id,
        "study_uid": study.study_uid,
        "date": study.study_date.isoformat() if study.study_date else None,
        "time": study.study_time,
        "modalities": [m for m in study.modalities.split("\\") if m],
        "body_part": study.body_part,
        "description": study.description,
        "series_count": study.series_count,
        "instance_count": study.instance_count,
        "source": study.source,
    }


def _line(summary: dict[str, Any]) -> str:
    modalities = "/".join(summary["modalities"]) or "?"
    images = summary["instance_count"]
    parts = [
        summary["date"] or "no date   ",
        f"{modalities:<6}",
        f"{summary['body_part'] or '-':<14}",
        summary["description"] or "(no description)",
        f"({summary['series_count']} series, {images} image{'s' if images != 1 else ''})",
        summary["study_uid"],
    ]
    return "  ".join(parts)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the patient's matching studies; exit 1 when the patient is unknown."""
    from sqlalchemy.exc import SQLAlchemyError

    from store import queries
    from store.linking import LinkingError, find_patient_by_identifier

    sessions = open_database(settings)
    try:
        with sessions() as session:
            try:
                patient = find_patient_by_identifier(session, args.patient_id.strip(), args.issuer)
            except LinkingError as exc:
                raise CommandError(exc.message) from None
            if patient is None:
                raise CommandError("no patient with that Patient ID in this Lightbox")
            try:
                if args.latest:
                    found = queries.latest_study(
                        session, patient.id, modality=args.modality, body_part=args.body_part, on=args.date
                    )
                    studies = [found] if found is not None else []
                else:
                    studies = queries.find_studies(
                        session, patient.id, modality=args.modality, body_part=args.body_part, date=args.date
                    )
            except queries.QueryError as exc:
                raise CommandError(str(exc)) from None
            summaries = [study_summary(study) for study in studies]
    except SQLAlchemyError as exc:
        raise CommandError(f"the database failed ({type(exc).__name__})") from None
    finally:
        close_database(sessions)
    if args.json:
        print(json.dumps(summaries, indent=2))
    elif not summaries:
        print("no studies match")
    else:
        for summary in summaries:
            print(_line(summary))
    return 0
