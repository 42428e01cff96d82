"""/export: the patient's own data, to keep: their original DICOM files as ZIP and their access log.

The images go as documents (original bytes, untouched); a ZIP over Telegram's upload limit for bots
is split into numbered parts, each a whole ZIP on its own. The access log is a CSV. Both are sent
with content protection off on purpose: this is the copy the patient asked to keep.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from telegram import InputFile, Update
from telegram.ext import ContextTypes

from handlers import texts
from handlers.chat import asker_of, in_thread, reply, service
from handlers.services import Services
from store.audit import record_access
from store.filestore import FileStoreError
from store.models import AccessEvent, Instance, Series, Study

log = logging.getLogger("lightbox.export")

# Telegram lets a bot upload documents of up to 50 MB; keep room for the ZIP's own headers.
MAX_DOCUMENT_BYTES = 50 * 1000 * 1000
_ZIP_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class ExportFile:
    """One stored file to export: its key in the file store, its name in the ZIP and its size."""

    key: str
    arcname: str
    size: int


@dataclass
class Export:
    """What /export sends: ZIP parts (bytes each), the access log CSV, and what could not be included."""

    parts: list[bytes]
    access_log: bytes
    images: int
    missing: int


def _files_of(services: Services, patient_id: int) -> tuple[list[ExportFile], int]:
    rows = []
    missing = 0
    with services.sessions() as session:
        query = (
            session.query(Instance, Series, Study)
            .join(Series, Series.id == Instance.series_id)
            .join(Study, Study.id == Series.study_id)
            .where(Study.patient_id == patient_id)
            .order_by(
                Study.study_date, Study.id, Series.series_number, Series.id, Instance.instance_number, Instance.id
            )
        )
        for instance, series, study in query:
            if not instance.storage_key or not services.files.exists(instance.storage_key):
                missing += 1
                continue
            when = study.study_date.isoformat() if study.study_date else "undated"
            folder = f"{when}_{(study.modalities or 'study').replace('/', '-')}_{study.public_id[:8]}"
            number = instance.instance_number or 0
            name = f"{folder}/series-{series.public_id[:8]}/{number:05d}-{instance.public_id[:8]}.dcm"
            rows.append(ExportFile(instance.storage_key, name, instance.size_bytes))
    return rows, missing


def zip_parts(files: list[ExportFile], read: Callable[[str], bytes], limit: int | None = None) -> list[bytes]:
    """The files as ZIPs (stored, not deflated: DICOM pixel data rarely shrinks), each under ``limit``.

    ``read`` is ``FileStore.read``. A single file larger than the limit gets a part of its own (and
    Telegram will refuse it: the caller says so).
    """
    limit = MAX_DOCUMENT_BYTES if limit is None else limit
    parts: list[bytes] = []
    buffer = io.BytesIO()
    archive = zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED)
    in_part = 0
    for item in files:
        data: bytes = read(item.key)
        if in_part and buffer.tell() + len(data) + _ZIP_OVERHEAD > limit:
            archive.close()
            parts.append(buffer.getvalue())
            buffer = io.BytesIO()
            archive = zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED)
            in_part = 0
        archive.writestr(item.arcname, data)
        in_part += 1
    archive.close()
    if in_part:
        parts.append(buffer.getvalue())
    return parts


def access_log_csv(services: Services, patient_id: int) -> bytes:
    """Every access event of the patient, oldest first, as CSV (UTF-8 with a BOM for spreadsheets)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["when (UTC)", "who", "what", "study", "detail"])
    with services.sessions() as session:
        events = (
            session.query(AccessEvent)
            .where(AccessEvent.patient_id == patient_id)
            .order_by(AccessEvent.at, AccessEvent.id)
        )
        for event in events:
            study = session.get(Study, event.study_id) if event.study_id else None
            writer.writerow(
                [
                    event.at.strftime("%Y-%m-%d %H:%M:%S"),
                    event.actor_kind,
                    event.action,
                    (study.study_date.isoformat() if study and study.study_date else "")
                    + (f" {study.modalities}" if study else ""),
                    event.detail,
                ]
            )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def build_export(services: Services, patient_id: int, chat_link_id: int | None, limit: int | None = None) -> Export:
    """Gather the patient's files and access log, and record the export in that log."""
    files, missing = _files_of(services, patient_id)
    parts = zip_parts(files, services.files.read, limit)
    with services.sessions() as session, session.begin():
        record_access(
            session,
            patient_id,
            "chat",
            f"chat:{chat_link_id}",
            "export",
            detail=f"{len(files)} files in {len(parts)} parts",
        )
    return Export(parts, access_log_csv(services, patient_id), len(files), missing)


async def export_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/export: send the patient's images (original DICOM, ZIP) and access log (CSV)."""
    asker = await asker_of(update, context)
    message = update.effective_message
    if asker.patient_id is None or message is None:
        await reply(update, "not_linked")
        return
    services = service(context)
    await message.reply_text(texts.label("export.getting_ready"))
    try:
        export = await in_thread(build_export, services, asker.patient_id, asker.chat_link_id)
    except FileStoreError:
        log.warning("export failed reading the store (chat link %s)", asker.chat_link_id)
        await message.reply_text(texts.label("export.read_failed"))
        return
    total = len(export.parts)
    for number, part in enumerate(export.parts, start=1):
        name = "lightbox-images.zip" if total == 1 else f"lightbox-images-part{number}of{total}.zip"
        caption = (
            texts.label("export.caption_one")
            if total == 1
            else texts.label("export.caption_part", number=number, total=total)
        )
        await message.reply_document(InputFile(part, filename=name), caption=caption, protect_content=False)
    await message.reply_document(
        InputFile(export.access_log, filename="lightbox-access-log.csv"),
        caption=texts.label("export.log_caption"),
        protect_content=False,
    )
    images = texts.counted(export.images, "image_file")
    if total:
        summary = texts.label("export.done_zip", images=images, zips=texts.counted(total, "zip_file"))
    else:
        summary = texts.label("export.done_no_zip", images=images)
    if export.missing:
        summary += texts.label("export.missing", pictures=texts.counted(export.missing, "picture"))
    await message.reply_text(summary)
