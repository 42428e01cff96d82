"""``lightbox pacs sync --patient-id ID [--issuer I] [--json]``: find a patient's studies at the PACS.

Links the patient's identifier at the PACS (LIGHTBOX_DICOMWEB_URL, with LIGHTBOX_DICOMWEB_USERNAME and
_PASSWORD when set) to their Lightbox patient (created when new) and records their studies, series and
instances through QIDO-RS. No pixels move: images are fetched through WADO-RS when first looked at. Then
`lightbox link-code --patient-id ID` links the patient's chat.
"""

from __future__ import annotations

import argparse
import json

from bot.commands import CommandError
from bot.commands.db import close_database, open_database
from bot.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pacs`` sub-command."""
    parser = subparsers.add_parser(
        "pacs", help="find a patient's studies at the PACS (DICOMweb)",
        description="Work with the PACS at LIGHTBOX_DICOMWEB_URL.",
    )
    actions = parser.add_subparsers(dest="pacs_action", metavar="ACTION", required=True)
    sync = actions.add_parser("sync", help="record a patient's studies from the PACS (no pixels are copied)")
    sync.add_argument("--patient-id", required=True, metavar="ID", help="the Patient ID as the PACS knows it")
    sync.add_argument("--issuer", default="", help="Issuer of Patient ID at the PACS, if it uses one")
    sync.add_argument("--json", action="store_true", help="print JSON")
    sync.set_defaults(handler=run_sync)


def run_sync(args: argparse.Namespace, settings: Settings) -> int:
    from store.dicomweb import DicomWebError, DicomWebSource, friendly_message, sync_patient
    from store.linking import find_or_create_patient_by_identifier

    if not settings.dicomweb_url:
        raise CommandError("set LIGHTBOX_DICOMWEB_URL to the PACS's DICOMweb address first", exit_status=2)
    sessions = open_database(settings)
    try:
        with sessions() as session, session.begin():
            patient = find_or_create_patient_by_identifier(session, args.patient_id, args.issuer)
            patient_row = patient.id
        auth = (settings.dicomweb_username, settings.dicomweb_password) if settings.dicomweb_username else None
        try:
            found = sync_patient(sessions, DicomWebSource(settings.dicomweb_url, auth), patient_row,
                                 args.patient_id, args.issuer)
        except DicomWebError as exc:
            raise CommandError(f"the PACS did not answer as expected: {friendly_message(exc)}") from None
    finally:
        close_database(sessions)
    result = {
        "studies_found": found.studies_found,
        "studies_added": found.studies_added,
        "studies_updated": found.studies_updated,
        "series_added": found.series_added,
        "instances_added": found.instances_added,
        "skipped": len(found.skipped),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"Found {found.studies_found} studies at the PACS ({found.studies_added} new, "
              f"{found.instances_added} images recorded; pictures are fetched when first looked at).")
        if found.skipped:
            print(f"Skipped {len(found.skipped)} that could not be recorded.")
    return 0
