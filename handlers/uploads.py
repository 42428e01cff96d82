"""Uploads: a .dcm file or a .zip of a CD sent to the chat becomes the patient's images.

The file is fetched (Telegram lets bots download at most 20 MB), imported with a progress message
that is edited as it goes, then summarised. Files are filed under an issuer scoped to the uploader,
so an upload can never add images to somebody else's record. One person in the upload: it becomes
(or joins) the uploader's record. Several: the uploader is asked which one they are; the others are
removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import FileSizeLimit, ParseMode
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from handlers import texts
from handlers.callbacks import encode_action
from handlers.chat import Asker, answer_query, asker_of, in_thread, reply, service
from handlers.services import SERVICES_KEY, Services
from store.erasure import discard_unfiled, forget_patient
from store.importer import ImportProblem, ImportReport, import_path
from store.models import Study
from store.ownership import is_linked_to_a_chat, link_chat, merge_patient, patient_by_public_id

log = logging.getLogger("lightbox.uploads")
PENDING_KEY = "pending_upload"
PROGRESS_EVERY_S = 1.5


def upload_issuer(telegram_user_id: int) -> str:
    """The issuer under which this uploader's files are filed (opaque, stable per user)."""
    return "upload:" + hashlib.sha256(f"lightbox-upload:{telegram_user_id}".encode()).hexdigest()[:24]


class ProgressMessage:
    """Edits one chat message with import progress, at most every :data:`PROGRESS_EVERY_S` seconds."""

    def __init__(self, message: Message, loop: asyncio.AbstractEventLoop) -> None:
        self.message = message
        self.loop = loop
        self.last = 0.0
        self.pending: asyncio.Future[Any] | None = None
        self.closed = False

    def __call__(self, done: int, total: int) -> None:  # called from the import thread
        if self.closed:
            return
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and done < total:
            return
        if self.pending is not None and not self.pending.done():
            return
        self.last = now
        text = texts.render("upload_progress", done=done, total=total)
        self.pending = asyncio.run_coroutine_threadsafe(self._edit(text), self.loop)  # type: ignore[assignment]

    async def _edit(self, text: str) -> None:
        try:
            await self.message.edit_text(text, parse_mode=ParseMode.HTML)
        except TelegramError:
            pass  # progress is a courtesy; the summary follows anyway

    async def settle(self) -> None:
        """No more progress; wait for an edit still on its way (Telegram may be retrying it), so that it
        can never land after, and overwrite, the summary."""
        self.closed = True
        if self.pending is not None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(self.pending)


def _safe_name(name: str | None) -> str:
    suffix = Path(name or "").suffix.lower()
    return "upload" + (suffix if suffix in {".zip", ".dcm", ".dicom", ".dic", ""} else ".bin")


def short_name(dicom_name: str) -> str:
    """``Doe^Archibald`` -> ``Archibald D.``: enough for the uploader to recognise, no more."""
    parts = [p.strip() for p in dicom_name.split("=")[0].split("^")]
    family, given = [*parts, "", ""][:2]
    if given and family:
        return f"{given.split()[0].title()} {family[:1].upper()}."
    return (given or family).title() or texts.label("upload.unnamed")


def _people(services: Services, report: ImportReport) -> list[dict[str, Any]]:
    return _people_by_id(services, [found.public_id for found in report.patients])


def _people_by_id(services: Services, public_ids: list[str]) -> list[dict[str, Any]]:
    with services.sessions() as session:
        out = []
        for public_id in public_ids:
            patient = patient_by_public_id(session, public_id)
            if patient is None:
                continue
            label = short_name(patient.name)
            year = patient.birth_date[:4] if patient.birth_date else ""
            label += texts.label("upload.born", year=year) if year else ""
            studies = int(
                session.scalar(select(func.count()).select_from(Study).where(Study.patient_id == patient.id)) or 0
            )
            out.append({"public_id": patient.public_id, "label": label, "studies": studies})
        return out


def _adopt(services: Services, asker: Asker, keep_public_id: str, drop_public_ids: list[str]) -> tuple[int, int, bool]:
    """Make ``keep`` the uploader's record (merge into their linked one), erase the dropped ones."""
    kept = 0
    refused = False
    with services.sessions() as session, session.begin():
        patient = patient_by_public_id(session, keep_public_id)
        if patient is not None:
            if is_linked_to_a_chat(session, patient.id) and patient.id != asker.patient_id:
                refused = True
            elif asker.patient_id is not None:
                kept = merge_patient(session, patient.id, asker.patient_id)
            else:
                link_chat(session, asker.telegram_user_id, asker.chat_id, patient.id)
                kept = len(patient.studies)
        drop_ids = []
        for public_id in drop_public_ids:
            other = patient_by_public_id(session, public_id)
            if other is not None and not is_linked_to_a_chat(session, other.id):
                drop_ids.append(other.id)
    for patient_id in drop_ids:
        forget_patient(services.sessions, services.files, patient_id)
    return kept, len(drop_ids), refused


async def receive_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A document arrived: import it."""
    message = update.effective_message
    if message is None or message.document is None:
        return
    document = message.document
    if document.file_size and document.file_size > FileSizeLimit.FILESIZE_DOWNLOAD:
        limit_mb = FileSizeLimit.FILESIZE_DOWNLOAD // 1_000_000
        await reply(update, "upload_failed", reason=texts.label("upload.too_large", limit=limit_mb))
        return
    asker = await asker_of(update, context)
    services = service(context)
    status = await message.reply_text(texts.render("upload_progress", done=0, total=0), parse_mode=ParseMode.HTML)
    folder = services.work_dir / "uploads" / secrets.token_hex(8)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _safe_name(document.file_name)
    if services.background_jobs:
        try:
            telegram_file = await document.get_file()
            await telegram_file.download_to_drive(custom_path=target)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        await in_thread(enqueue_upload, services, asker, target, status.message_id)
        return
    progress = ProgressMessage(status, asyncio.get_running_loop())
    try:
        telegram_file = await document.get_file()
        await telegram_file.download_to_drive(custom_path=target)
        report = await in_thread(
            import_path,
            services.sessions,
            services.files,
            target,
            progress=progress,
            issuer_scope=upload_issuer(asker.telegram_user_id),
            actor=("chat", asker.actor_ref),
        )
        # Files kept aside as conflicts have no row: nobody could see or erase them, so they go.
        await in_thread(discard_unfiled, services.sessions, services.files, [c.storage_key for c in report.conflicts])
    except ImportProblem as exc:
        await progress.settle()
        await status.edit_text(texts.render("upload_failed", reason=problem_words(exc)), parse_mode=ParseMode.HTML)
        return
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    await progress.settle()
    await finish_import(update, context, asker, status, report)


async def finish_import(
    update: Update, context: ContextTypes.DEFAULT_TYPE, asker: Asker, status: Message, report: ImportReport
) -> None:
    """Summarise, and settle whose images these are."""
    services = service(context)
    people = await in_thread(_people, services, report)
    if len(people) > 1:
        nonce = secrets.token_hex(6)
        if context.chat_data is not None:
            context.chat_data[PENDING_KEY] = {"nonce": nonce, "patients": [p["public_id"] for p in people]}
        await status.edit_text(
            texts.render("upload_which", count=len(people), people=people),
            parse_mode=ParseMode.HTML,
            reply_markup=_claim_keyboard(people, nonce),
        )
        return
    refused = False
    if people:
        _, _, refused = await in_thread(_adopt, services, asker, people[0]["public_id"], [])
    if refused:
        await status.edit_text(texts.render("upload_claim_refused"), parse_mode=ParseMode.HTML)
        return
    await status.edit_text(summary_text(report), parse_mode=ParseMode.HTML)


def _claim_keyboard(people: list[dict[str, Any]], nonce: str) -> InlineKeyboardMarkup:
    """One "I am ..." button per person on the upload, and "None of these"."""
    buttons = [
        [
            InlineKeyboardButton(
                texts.label("button.i_am", label=p["label"])[:60],
                callback_data=encode_action("claim", p["public_id"], nonce),
            )
        ]
        for p in people
    ]
    buttons.append(
        [InlineKeyboardButton(texts.label("button.none_of_these"), callback_data=encode_action("claim_none", nonce))]
    )
    return InlineKeyboardMarkup(buttons)


def summary_text(report: ImportReport, patient_public_id: str | None = None) -> str:
    studies = [
        {
            "when": texts.nice_date(s.date),
            "what": texts.sentence_start(texts.what_of("\\".join(s.modalities), s.body_part)),
            "description": s.description,
        }
        for s in report.studies
        if patient_public_id is None or s.patient_public_id == patient_public_id
    ]
    reasons = sorted({s.reason for s in report.skipped})
    return texts.render(
        "upload_summary",
        added=report.instances_added,
        present=report.instances_present,
        studies=studies[:15],
        skipped=len(report.skipped),
        skip_reason=skip_words(reasons[0]) if len(reasons) == 1 else "",
        conflicts=len(report.conflicts),
    )


# store.importer's reasons for skipping a file -> labels upload.skip.<key> (matched on how they begin).
SKIP_REASONS = (
    ("a DICOMDIR", "dicomdir"),
    ("empty file", "empty"),
    ("not a DICOM file", "not_dicom"),
    ("damaged DICOM file", "damaged"),
    ("could not be read", "unreadable"),
    ("damaged file in the archive", "damaged_in_archive"),
    ("an archive inside the upload", "archive"),
)


def skip_words(reason: str) -> str:
    """Why files were skipped, in the update's language ('' where there are no words for it)."""
    for start, key in SKIP_REASONS:
        if reason.startswith(start):
            return texts.in_language(reason, f"upload.skip.{key}")
    return reason if texts.language() == "en" else ""


def problem_words(exc: ImportProblem) -> str:
    """Why an upload could not be imported: the importer's own (English) message, else the label for its
    kind of problem."""
    for kind in type(exc).__mro__:
        key = f"upload.problem.{kind.__name__}"
        if key in texts.labels():
            return texts.in_language(str(exc), key)
    return texts.in_language(str(exc), "upload.problem.ImportProblem")


async def claim(update: Update, context: ContextTypes.DEFAULT_TYPE, patient_public_id: str | None, nonce: str) -> bool:
    """The "I am ..." / "None of these" buttons after a multi-person upload. ``False`` if stale or forged."""
    pending = context.chat_data.get(PENDING_KEY) if context.chat_data is not None else None
    if not isinstance(pending, dict) or not secrets.compare_digest(str(pending.get("nonce", "")), nonce):
        return False
    candidates = [str(p) for p in pending.get("patients", [])]
    if patient_public_id is not None and patient_public_id not in candidates:
        return False
    assert context.chat_data is not None
    context.chat_data.pop(PENDING_KEY, None)
    query = update.callback_query
    assert query is not None
    await answer_query(update, context)
    asker = await asker_of(update, context)
    services = service(context)
    drop = [p for p in candidates if p != patient_public_id]
    if patient_public_id is None:

        def drop_all() -> int:
            with services.sessions() as session:
                ids = [
                    p.id
                    for p in (patient_by_public_id(session, x) for x in drop)
                    if p is not None and not is_linked_to_a_chat(session, p.id)
                ]
            for pid in ids:
                forget_patient(services.sessions, services.files, pid)
            return len(ids)

        removed = await in_thread(drop_all)
        await query.edit_message_text(
            texts.render("upload_claimed", kept=0, removed=removed), parse_mode=ParseMode.HTML
        )
        return True
    kept, removed, refused = await in_thread(_adopt, services, asker, patient_public_id, drop)
    if refused:
        await query.edit_message_text(texts.render("upload_claim_refused"), parse_mode=ParseMode.HTML)
        return True
    await query.edit_message_text(texts.render("upload_claimed", kept=kept, removed=removed), parse_mode=ParseMode.HTML)
    return True


# ---------------------------------------------------------------- uploads as jobs (lightbox run)

UPLOAD_JOB = "chat_import"


def enqueue_upload(services: Services, asker: Asker, path: Path, status_message_id: int) -> int:
    """Record the downloaded upload as a job any worker can run (and take over if this one dies)."""
    from store import jobs

    payload = {
        "path": str(path),
        "issuer_scope": upload_issuer(asker.telegram_user_id),
        "actor_ref": asker.actor_ref,
        "telegram_user_id": asker.telegram_user_id,
        "language": asker.language,  # the summary is written in the job, in the chat's language
    }
    return jobs.enqueue(
        services.sessions, UPLOAD_JOB, payload, chat_id=asker.chat_id, progress_message_id=status_message_id
    )


def run_upload_job(ctx: Any) -> dict[str, Any]:
    """The job: import the uploaded file (idempotent, so a worker taking over simply runs it again).

    ``ctx`` is the job runner's context (job, services, report). Returns what the summary needs, as JSON.
    """
    payload = ctx.job.payload
    with texts.speaking(str(payload.get("language", "en"))):
        return _run_upload_job(ctx, payload)


def _run_upload_job(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    path = Path(payload["path"])

    def progress(done: int, total: int) -> None:
        ctx.report(done, total, {})

    try:
        report = import_path(
            ctx.services.sessions,
            ctx.services.files,
            path,
            progress=progress,
            issuer_scope=payload["issuer_scope"],
            actor=("chat", payload["actor_ref"]),
        )
        # As in the direct path: conflicts kept aside have no row, so nobody could see or erase them.
        discard_unfiled(ctx.services.sessions, ctx.services.files, [c.storage_key for c in report.conflicts])
    except ImportProblem as exc:
        return {"problem": problem_words(exc)}
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)
    return {
        "files": report.total_files,
        "patients": [p.public_id for p in report.patients],
        "summary": summary_text(report),
    }


async def finish_upload_job(application: Any, job: Any, result: dict[str, Any], message_id: int | None) -> None:
    """After the job: the summary, or the "which one are you" question, in the job's status message (in the
    chat's language: the job runner is not an update's task, so it is set here for this call only)."""
    services = application.bot_data[SERVICES_KEY]
    if job.chat_id is None or message_id is None:
        return
    user_id = int(job.payload["telegram_user_id"])

    def asker_now() -> Asker:
        from handlers.chat import asker_sync

        with services.sessions() as session:
            return asker_sync(session, user_id, int(job.chat_id), str(job.payload.get("language", "en")))

    asker = await in_thread(asker_now)
    with texts.speaking(asker.language):
        await _finish_upload_job(application, job, result, message_id, asker)


async def _finish_upload_job(application: Any, job: Any, result: dict[str, Any], message_id: int, asker: Asker) -> None:
    services = application.bot_data[SERVICES_KEY]
    bot = application.bot
    if "problem" in result:
        await bot.edit_message_text(
            texts.render("upload_failed", reason=result["problem"]),
            chat_id=job.chat_id,
            message_id=message_id,
            parse_mode=ParseMode.HTML,
        )
        return
    patients = [str(p) for p in result.get("patients", [])]
    if len(patients) > 1:
        people = await in_thread(_people_by_id, services, patients)
        nonce = secrets.token_hex(6)
        chat_data = application.chat_data[int(job.chat_id)]
        chat_data[PENDING_KEY] = {"nonce": nonce, "patients": [p["public_id"] for p in people]}
        if application.persistence is not None:
            await application.persistence.update_chat_data(int(job.chat_id), chat_data)
        await bot.edit_message_text(
            texts.render("upload_which", count=len(people), people=people),
            chat_id=job.chat_id,
            message_id=message_id,
            parse_mode=ParseMode.HTML,
            reply_markup=_claim_keyboard(people, nonce),
        )
        return
    refused = False
    if patients:
        _, _, refused = await in_thread(_adopt, services, asker, patients[0], [])
    text = texts.render("upload_claim_refused") if refused else str(result.get("summary", ""))
    await bot.edit_message_text(text, chat_id=job.chat_id, message_id=message_id, parse_mode=ParseMode.HTML)
