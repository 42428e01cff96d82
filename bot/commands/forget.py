"""``lightbox forget --patient-id ID [--yes]``: erase one patient completely (operators).

Deletes every row, stored file, cached picture, annotation and share link of the patient through
:func:`store.erasure.forget_patient` and prints what it deleted (counts only). Without ``--yes`` it
only says what would be deleted, so a typo in a Patient ID never erases anyone by accident.
"""

from __future__ import annotations

import argparse

from bot.commands import CommandError
from bot.commands.db import close_database, open_database
from bot.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``forget`` sub-command."""
    parser = subparsers.add_parser(
        "forget",
        help="delete everything Lightbox holds about one patient",
        description="Delete every study, file, cached picture, note and share link of one patient.",
    )
    parser.add_argument("--patient-id", required=True, metavar="ID", help="the patient's DICOM Patient ID")
    parser.add_argument("--issuer", default=None, help="Issuer of Patient ID, when one ID is used by several issuers")
    parser.add_argument("--yes", action="store_true", help="really delete (without it, only say what would go)")
    parser.set_defaults(handler=run)


def _plural(count: int, word: str, many: str = "") -> str:
    return f"{count} {word}" if count == 1 else f"{count} {many or word + 's'}"


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Erase the patient (with ``--yes``) and print the counts; exit 1 when the patient is unknown."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from bot.app import open_files
    from store.erasure import forget_patient
    from store.filestore import FileStoreError
    from store.linking import LinkingError, find_patient_by_identifier
    from store.models import Instance, Series, ShareLink, Study
    from store.render_cache import RenderCache

    patient_ref = args.patient_id.strip()
    if not patient_ref:
        raise CommandError("--patient-id is empty")
    sessions = open_database(settings)
    try:
        with sessions() as session:
            try:
                patient = find_patient_by_identifier(session, patient_ref, args.issuer)
            except LinkingError as exc:
                raise CommandError(exc.message) from None
            if patient is None:
                raise CommandError("no patient with that Patient ID in this Lightbox")
            row_id = patient.id
            if not args.yes:
                studies = session.scalar(select(func.count()).select_from(Study).where(Study.patient_id == row_id))
                instances = session.scalar(
                    select(func.count()).select_from(Instance).join(Series, Series.id == Instance.series_id)
                    .join(Study, Study.id == Series.study_id).where(Study.patient_id == row_id))
                links = session.scalar(
                    select(func.count()).select_from(ShareLink).where(ShareLink.patient_id == row_id))
                print(f"would delete {_plural(int(studies or 0), 'study', 'studies')}, "
                      f"{_plural(int(instances or 0), 'image')}, {_plural(int(links or 0), 'share link')}; "
                      "run again with --yes to delete")
                return 0
        cache = RenderCache(settings.cache_dir) if settings.cache_dir else None
        try:
            files = open_files(settings, sessions)  # with a PACS, its cached copies are erased too
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        report = forget_patient(sessions, files, row_id, cache=cache)
    except SQLAlchemyError as exc:
        raise CommandError(f"the database failed ({type(exc).__name__})") from None
    except FileStoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        close_database(sessions)
    if not report.found:
        raise CommandError("no patient with that Patient ID in this Lightbox")
    print(f"deleted {_plural(report.studies, 'study', 'studies')}, {_plural(report.instances, 'image')}, "
          f"{_plural(report.files, 'file')}, {_plural(report.share_links, 'share link')}, "
          f"{_plural(report.annotations, 'note')}, "
          f"{_plural(report.access_events, 'access log entry', 'access log entries')}")
    return 0
