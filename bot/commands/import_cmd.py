"""``lightbox import PATH [--patient-id ID] [--json]``: DICOM from a file, folder, ZIP or DICOMDIR into the store.

Brings the database schema up to date first, so a fresh data folder works. Prints a summary (or
JSON): counts, the studies found, skipped files with reasons and conflicts. Patient names never
appear in the output or the logs; patients are shown by their opaque ids.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.commands import CommandError
from bot.settings import Settings

if TYPE_CHECKING:
    from store.importer import ImportReport


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import`` sub-command."""
    parser = subparsers.add_parser(
        "import",
        help="import DICOM files (a file, folder, ZIP or DICOMDIR) into the store",
        description=(
            "Import DICOM from a file, a folder tree, a ZIP archive (as from a CD) or a DICOMDIR. "
            "Running it again is safe: what is already stored is recognised and not copied twice."
        ),
    )
    parser.add_argument("path", metavar="PATH", help="file, folder, ZIP archive or DICOMDIR")
    parser.add_argument(
        "--patient-id",
        metavar="ID",
        help="DICOM Patient ID to file images without one under; patients found are flagged if they match it",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--max-unpacked-mb",
        type=int,
        default=0,
        metavar="MB",
        help="largest total size a ZIP may unpack to (default: LIGHTBOX_MAX_UPLOAD_BYTES)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Import ``args.path`` and print the report; exit status 0, or 1 when nothing could be imported."""
    from sqlalchemy.exc import SQLAlchemyError

    from store.db import make_engine, session_factory, upgrade
    from store.filestore import FileStore
    from store.importer import ImportLimits, ImportProblem, StorageFull, import_path

    path = Path(args.path).expanduser()
    if not path.exists():
        raise CommandError(f"nothing to import at {args.path}")
    url = settings.effective_database_url
    max_bytes = args.max_unpacked_mb * 1024 * 1024 if args.max_unpacked_mb > 0 else settings.max_upload_bytes
    try:
        upgrade(url)
        engine = make_engine(url)
    except SQLAlchemyError as exc:
        raise CommandError(f"cannot open the database ({type(exc).__name__}); check LIGHTBOX_DATABASE_URL") from None
    show_progress = sys.stderr.isatty() and not args.json

    def progress(done: int, total: int) -> None:
        if show_progress and (done == total or done % 50 == 0):
            print(f"\rimported {done} of {total} files", end="" if done < total else "\n", file=sys.stderr)

    files = FileStore(settings.dicom_dir)
    files.remove_stale_temporaries()  # what an import killed over an hour ago left half-written
    try:
        report = import_path(
            session_factory(engine),
            files,
            path,
            patient_hint=args.patient_id,
            progress=progress,
            limits=ImportLimits(max_total_bytes=max_bytes),
            actor=("operator", "cli"),
        )
    except StorageFull as exc:
        _print(exc.report, args.json)
        raise CommandError(str(exc)) from None
    except ImportProblem as exc:
        raise CommandError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise CommandError(f"the database failed during the import ({type(exc).__name__})") from None
    finally:
        engine.dispose()
    _print(report, args.json)
    return 0 if report.instances_found or not report.total_files else 1


def _print(report: ImportReport, as_json: bool) -> None:
    from store.importer import iter_report_lines

    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for line in iter_report_lines(report):
            print(line)
