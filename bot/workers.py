"""Several identical workers on one database: per-chat ordered webhook updates, and jobs any worker runs.

:class:`ChatOrderedInbox` (webhook mode). Any worker may receive any update from the load balancer. The
webhook route hands it to :meth:`ChatOrderedInbox.accept`, which records it in ``inbound_update`` keyed by
``update_id`` (a repeat from Telegram, or the same update sent to two workers, is dropped there) and then
drains that chat: the worker that holds the chat's lease (``chat_lease``, a row with holder and expiry,
taken with a conditional UPDATE or an INSERT, so it works the same on PostgreSQL and SQLite) processes the
chat's pending updates one at a time in ``update_id`` order, writes the conversation state through the
persistence right after each, and marks each done. A worker that could not take the lease leaves its
update to the holder, which looks again after releasing it (so nothing is stranded between the two); a
sweeper picks up anything left by a worker that died (its lease expires after ``lease_seconds``).
Guarantee: in order per chat, once each while workers live; an update whose worker died mid-way is
processed again by the next one (at least once) after the lease expires.

:class:`JobRunner`. Polls ``job`` (see :mod:`store.jobs`) for claimable work, runs it in a thread with a
heartbeat, and shows progress in the chat in one message that any later owner keeps editing. The import
job (:func:`run_import_job`) imports a folder file by file with a checkpoint after each batch, so a worker
that takes it over carries on from there; files already imported are recognised by the importer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application

from bot import health
from store import jobs
from store.models import utcnow
from store.models_state import ChatLease, InboundUpdate

log = logging.getLogger("lightbox.workers")

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


def new_worker_id() -> str:
    """An opaque id for this process: host, pid and a random suffix (never reused after a restart)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(3)}"


def chat_of(update: Update) -> int:
    """The chat an update belongs to (0 for updates without one, ordered among themselves)."""
    chat = update.effective_chat
    if chat is not None:
        return chat.id
    user = update.effective_user
    return user.id if user is not None else 0


# ---------------------------------------------------------------- the inbox


class ChatOrderedInbox:
    """Webhook updates recorded once in the database and processed in order per chat by one worker at a time."""

    def __init__(self, application: AnyApplication, sessions: sessionmaker[Session], *, worker: str,
                 lease_seconds: float = 30.0, sweep_interval: float = 1.0,
                 keep_done: timedelta = timedelta(days=1)) -> None:
        self.application = application
        self.sessions = sessions
        self.worker = worker
        self.lease = timedelta(seconds=lease_seconds)
        self.sweep_interval = sweep_interval
        self.keep_done = keep_done
        self._draining: set[int] = set()
        self._again: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    # ---- database steps (each its own short transaction, run in a thread)
    def _record(self, update_id: int, chat_id: int, payload: str) -> bool:
        try:
            with self.sessions() as session, session.begin():
                session.add(InboundUpdate(update_id=update_id, chat_id=chat_id, payload=payload))
            return True
        except IntegrityError:
            return False

    def _acquire(self, chat_id: int) -> bool:
        now = utcnow()
        expires = now + self.lease
        with self.sessions() as session, session.begin():
            taken = session.execute(
                update(ChatLease)
                .where(ChatLease.chat_id == chat_id, (ChatLease.expires_at < now) | (ChatLease.holder == self.worker))
                .values(holder=self.worker, expires_at=expires).execution_options(synchronize_session=False))
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return True
        try:
            with self.sessions() as session, session.begin():
                session.add(ChatLease(chat_id=chat_id, holder=self.worker, expires_at=expires))
            return True
        except IntegrityError:
            return False

    def _release(self, chat_id: int) -> None:
        with self.sessions() as session, session.begin():
            session.execute(delete(ChatLease).where(ChatLease.chat_id == chat_id, ChatLease.holder == self.worker))

    def _next_pending(self, chat_id: int) -> tuple[int, str] | None:
        with self.sessions() as session:
            row = session.execute(
                select(InboundUpdate.update_id, InboundUpdate.payload)
                .where(InboundUpdate.chat_id == chat_id, InboundUpdate.done_at.is_(None))
                .order_by(InboundUpdate.update_id).limit(1)).first()
        return (int(row[0]), str(row[1])) if row is not None else None

    def _mark_done(self, update_id: int) -> None:
        # The payload (message text) is dropped once handled; the id stays a while to refuse repeats.
        with self.sessions() as session, session.begin():
            session.execute(update(InboundUpdate).where(InboundUpdate.update_id == update_id)
                            .values(done_at=utcnow(), worker=self.worker, payload="")
                            .execution_options(synchronize_session=False))

    def _stranded_chats(self, older_than: float) -> list[int]:
        cutoff = utcnow() - timedelta(seconds=older_than)
        with self.sessions() as session:
            return list(session.scalars(
                select(InboundUpdate.chat_id).where(InboundUpdate.done_at.is_(None),
                                                    InboundUpdate.received_at < cutoff).distinct().limit(1000)))

    def _prune(self) -> None:
        with self.sessions() as session, session.begin():
            session.execute(delete(InboundUpdate).where(InboundUpdate.done_at < utcnow() - self.keep_done))

    # ---- the flow
    async def accept(self, update: Update, data: dict[str, Any]) -> bool:
        """Record an update from the webhook and start draining its chat; ``False`` for a repeat."""
        chat_id = chat_of(update)
        fresh = await asyncio.to_thread(self._record, update.update_id, chat_id,
                                        json.dumps(data, separators=(",", ":")))
        if not fresh:
            health.UPDATES_DUPLICATE.inc()
            return False
        self.kick(chat_id)
        return True

    def kick(self, chat_id: int) -> None:
        """Make sure this worker drains ``chat_id`` (once; a running drain looks again at the end)."""
        if chat_id in self._draining:
            self._again.add(chat_id)
            return
        self._draining.add(chat_id)
        task = asyncio.create_task(self._drain(chat_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, chat_id: int) -> None:
        try:
            while True:
                self._again.discard(chat_id)
                if await asyncio.to_thread(self._acquire, chat_id):
                    try:
                        await self._process_pending(chat_id)
                    finally:
                        await asyncio.to_thread(self._release, chat_id)
                    # An update recorded by another worker while we held the lease is ours to do now.
                    if await asyncio.to_thread(self._next_pending, chat_id) is not None:
                        continue
                if chat_id not in self._again:
                    return
        except Exception:
            log.exception("draining a chat's updates failed", extra={"chat": chat_id})
        finally:
            self._draining.discard(chat_id)

    async def _renew(self, chat_id: int, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            if not await asyncio.to_thread(self._acquire, chat_id):
                # Too slow: the lease expired and another worker has the chat now. Finish this update, stop.
                lost.set()
                return

    async def _process_pending(self, chat_id: int) -> None:
        lost = asyncio.Event()
        renewer = asyncio.create_task(self._renew(chat_id, lost))
        try:
            while not lost.is_set() and (pending := await asyncio.to_thread(self._next_pending, chat_id)) is not None:
                update_id, payload = pending
                try:
                    update_obj = Update.de_json(json.loads(payload), self.application.bot)
                    # In a task of its own, so what one update sets in its context (the chat's language,
                    # handlers.texts.current_language) never carries over to the next.
                    await asyncio.create_task(self.application.process_update(update_obj))
                except Exception:
                    # Handlers report their own errors; this is a bug or a broken payload. Never retry it
                    # forever: it is marked done like any other so the chat's next update can go.
                    log.exception("an update could not be processed", extra={"update": update_id})
                await self.application.update_persistence()
                await asyncio.to_thread(self._mark_done, update_id)
                health.UPDATES_HANDLED.inc()
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _sweep(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                for chat_id in await asyncio.to_thread(self._stranded_chats, 2 * self.sweep_interval):
                    self.kick(chat_id)
                rounds += 1
                if rounds % 600 == 0:
                    await asyncio.to_thread(self._prune)
            except Exception:
                log.exception("sweeping the webhook inbox failed")

    async def start(self) -> None:
        """Start the sweeper (updates left by a worker that died, or by a race)."""
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        """Stop sweeping and let running drains finish (their leases are released)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


# ---------------------------------------------------------------- jobs


@dataclass
class JobContext:
    """What a job runner (in a thread) gets: the job, the shared services and a progress reporter."""

    job: jobs.ClaimedJob
    sessions: sessionmaker[Session]
    services: Any
    report: Callable[[int, int, dict[str, Any]], None]


JobFunction = Callable[[JobContext], dict[str, Any]]


def run_import_job(ctx: JobContext) -> dict[str, Any]:
    """Import every file under ``payload['folder']`` in name order, a checkpoint every ``batch`` files.

    Resumes after ``checkpoint['next']``; a file imported just before a crash is imported again and the
    importer recognises it (same SOP Instance UID), so nothing is doubled.
    """
    from store.importer import ImportProblem, import_path

    payload = ctx.job.payload
    folder = Path(payload["folder"])
    batch = max(1, int(payload.get("batch", 50)))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    start = int(ctx.job.checkpoint.get("next", 0))
    imported = int(ctx.job.checkpoint.get("imported", 0))
    skipped = int(ctx.job.checkpoint.get("skipped", 0))
    ctx.report(start, len(files), {"next": start, "imported": imported, "skipped": skipped})
    for index in range(start, len(files)):
        try:
            report = import_path(ctx.sessions, ctx.services.files, files[index],
                                 patient_hint=payload.get("patient_hint"), actor=("system", f"job:{ctx.job.id}"))
            imported += report.instances_added
            skipped += len(report.skipped)
        except ImportProblem:
            skipped += 1
        done = index + 1
        if done % batch == 0 or done == len(files):
            ctx.report(done, len(files), {"next": done, "imported": imported, "skipped": skipped})
    return {"files": len(files), "imported": imported, "skipped": skipped}


def run_pacs_sync_job(ctx: JobContext) -> dict[str, Any]:
    """Record a patient's studies from the PACS (``LIGHTBOX_STORE=dicomweb``): payload ``patient_id`` (the
    Lightbox patient row), ``pacs_patient_id`` and optional ``issuer``. No pixels move; they are fetched
    when first looked at (:mod:`store.pacs_store`)."""
    from store.dicomweb import sync_patient
    from store.pacs_store import PacsFileStore

    files = ctx.services.files
    if not isinstance(files, PacsFileStore):
        raise RuntimeError("pacs_sync needs LIGHTBOX_STORE=dicomweb")
    payload = ctx.job.payload
    ctx.report(0, 1, {})
    found = sync_patient(ctx.sessions, files.source, int(payload["patient_id"]), str(payload["pacs_patient_id"]),
                         str(payload.get("issuer", "")))
    ctx.report(1, 1, {})
    return {"files": found.instances_added, "studies": found.studies_found, "added": found.studies_added}


def _chat_upload(ctx: JobContext) -> dict[str, Any]:
    from handlers.uploads import run_upload_job

    return run_upload_job(ctx)


def _chat_cine(ctx: JobContext) -> dict[str, Any]:
    from handlers.cine import run_cine_job

    return run_cine_job(ctx)


JOB_FUNCTIONS: dict[str, JobFunction] = {
    "import": run_import_job,
    "pacs_sync": run_pacs_sync_job,
    "chat_import": _chat_upload,  # a patient's upload from the chat (handlers.uploads)
    "chat_cine": _chat_cine,  # a series as an animation for the chat (handlers.cine)
}
# What to say in the chat when a job of a kind is done (default: DONE_TEXT).
Finisher = Callable[[AnyApplication, jobs.ClaimedJob, dict[str, Any], int | None], Any]


def _finish_chat_upload(application: AnyApplication, job: jobs.ClaimedJob, result: dict[str, Any],
                        message_id: int | None) -> Any:
    from handlers.uploads import finish_upload_job

    return finish_upload_job(application, job, result, message_id)


def _finish_chat_cine(application: AnyApplication, job: jobs.ClaimedJob, result: dict[str, Any],
                      message_id: int | None) -> Any:
    from handlers.cine import finish_cine_job

    return finish_cine_job(application, job, result, message_id)


JOB_FINISHERS: dict[str, Finisher] = {"chat_import": _finish_chat_upload, "chat_cine": _finish_chat_cine}

STARTED_TEXT = "Adding your images now. I'll keep this message up to date."
PROGRESS_TEXT = "Adding your images: {done} of {total} files so far."
DONE_TEXT = "All done: I went through {total} files. Send /studies to see your scans."
FAILED_TEXT = "Sorry, I could not finish adding your images. Please try sending them again."
# Kinds whose progress and failure are not about adding images say their own words.
PROGRESS_TEXTS = {"chat_cine": "Making the animation: {done} of {total} pictures ready."}
FAILED_TEXTS = {"chat_cine": "Sorry, I could not make the animation. Please try again later."}
# A patient's job speaks the chat's language (its payload says which), from handlers' labels.
CHAT_PROGRESS_LABELS = {"chat_import": "job.progress", "chat_cine": "cine.progress"}
CHAT_FAILED_LABELS = {"chat_import": "job.failed", "chat_cine": "cine.failed"}


def progress_text(job: jobs.ClaimedJob, done: int, total: int) -> str:
    """How far the job is, in its chat's language for a patient's job."""
    key = CHAT_PROGRESS_LABELS.get(job.kind)
    if key is None:
        return PROGRESS_TEXTS.get(job.kind, PROGRESS_TEXT).format(done=done, total=total)
    from handlers import texts

    with texts.speaking(str(job.payload.get("language", "en"))):
        return texts.label(key, done=done, total=total)


def failed_text(job: jobs.ClaimedJob) -> str:
    """That the job failed, in its chat's language for a patient's job."""
    key = CHAT_FAILED_LABELS.get(job.kind)
    if key is None:
        return FAILED_TEXTS.get(job.kind, FAILED_TEXT)
    from handlers import texts

    with texts.speaking(str(job.payload.get("language", "en"))):
        return texts.label(key)


class JobRunner:
    """Claims and runs jobs on this worker, one at a time, with a heartbeat while each runs."""

    def __init__(self, application: AnyApplication, services: Any, *, worker: str,
                 lease_seconds: float = 30.0, poll_interval: float = 1.0,
                 functions: dict[str, JobFunction] | None = None, progress_every: float = 2.0) -> None:
        self.application = application
        self.services = services
        self.sessions: sessionmaker[Session] = services.sessions
        self.worker = worker
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_interval = poll_interval
        self.functions = functions if functions is not None else dict(JOB_FUNCTIONS)
        self.progress_every = progress_every
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                claimed = await asyncio.to_thread(jobs.claim, self.sessions, self.worker,
                                                  kinds=tuple(self.functions), lease=self.lease)
                if claimed is None:
                    await asyncio.sleep(self.poll_interval)
                    continue
                await self.run(claimed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job loop error")
                await asyncio.sleep(self.poll_interval)

    async def _say(self, job: jobs.ClaimedJob, text: str, message_id: int | None) -> int | None:
        if job.chat_id is None:
            return message_id
        bot = self.application.bot
        try:
            if message_id is None:
                sent = await bot.send_message(job.chat_id, text)
                await asyncio.to_thread(jobs.set_progress_message, self.sessions, job.id, sent.message_id)
                return int(sent.message_id)
            await bot.edit_message_text(text, chat_id=job.chat_id, message_id=message_id)
        except TelegramError as exc:
            log.warning("job progress not shown", extra={"job": job.id, "error": type(exc).__name__})
        return message_id

    async def run(self, job: jobs.ClaimedJob) -> None:
        """Run one claimed job to the end (or until another worker takes it over)."""
        loop = asyncio.get_running_loop()
        function = self.functions[job.kind]
        message_id = job.progress_message_id
        last_shown = [0.0]
        shown: list[concurrent.futures.Future[int | None]] = []

        def report(done: int, total: int, checkpoint: dict[str, Any]) -> None:
            jobs.save_progress(self.sessions, job.id, self.worker, done=done, total=total, checkpoint=checkpoint)
            now = time.monotonic()
            if now - last_shown[0] >= self.progress_every and done < total:
                last_shown[0] = now
                shown.append(asyncio.run_coroutine_threadsafe(
                    self._say(job, progress_text(job, done, total), message_id), loop))

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.lease.total_seconds() / 3)
                await asyncio.to_thread(jobs.heartbeat, self.sessions, job.id, self.worker)

        log.info("job started", extra={"job": job.id, "kind": job.kind, "attempt": job.attempts})
        if message_id is None:
            message_id = await self._say(job, STARTED_TEXT, None)
        beater = asyncio.create_task(beat())
        try:
            result = await asyncio.to_thread(function, JobContext(job, self.sessions, self.services, report))
        except jobs.JobLost:
            log.warning("job taken over by another worker", extra={"job": job.id})
            return
        except Exception as exc:
            log.exception("job failed", extra={"job": job.id})
            await asyncio.to_thread(jobs.finish, self.sessions, job.id, self.worker, error=type(exc).__name__)
            health.IMPORTS.labels("failed").inc()
            await self._say(job, failed_text(job), message_id)
            return
        finally:
            beater.cancel()
            with contextlib.suppress(asyncio.CancelledError, jobs.JobLost):
                await beater
        for future in shown:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(future)
        if await asyncio.to_thread(jobs.finish, self.sessions, job.id, self.worker, result=result):
            if job.kind in {"import", "chat_import"}:
                health.IMPORTS.labels("done").inc()
            finisher = JOB_FINISHERS.get(job.kind)
            if finisher is not None and self.application is not None:
                try:
                    await finisher(self.application, job, result, message_id)
                except TelegramError as exc:
                    log.warning("job summary not shown", extra={"job": job.id, "error": type(exc).__name__})
            else:
                await self._say(job, DONE_TEXT.format(total=result.get("files", 0)), message_id)
            log.info("job finished", extra={"job": job.id})
