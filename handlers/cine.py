"""The card's "Play" button: the series as a short animation (GIF), bounded in frames and size.

An ultrasound clip or a stack of slices plays as it would on a workstation's cine loop. The animation
uses the card's window, is logged like any view, and is sent with protect_content like previews.

With a job runner beside the bot (``lightbox run``, ``Services.background_jobs``) the animation is a
``chat_cine`` database job instead, so a 500-slice series never holds up the chat's updates: the job
(any worker) checks again that the series is the chat's patient's, gathers the pictures (from the PACS
when that is the store) with its progress shown in one chat message, and the worker that made the GIF
sends it when done.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from handlers import texts
from handlers.callbacks import View
from handlers.cards import study_what
from handlers.chat import Asker, answer_query, asker_of, in_thread, service
from handlers.previews import Slice, series_slices, window_choice
from handlers.services import SERVICES_KEY, Services
from imaging.compose import CINE_MAX_FRAMES, cine_gif
from imaging.errors import RenderError
from imaging.series import evenly_spaced
from store.audit import record_access
from store.dicomweb import DicomWebError
from store.models import Series
from store.pacs_store import local_path
from store.queries import get_series_for_patient

log = logging.getLogger("lightbox.cine")

CINE_JOB = "chat_cine"


def _caption(series: Series, count: int) -> str:
    return texts.label("cine.caption", what=study_what(series.study), count=count)


def _cine(services: Services, asker: Asker, view: View) -> tuple[bytes, str] | None:
    assert asker.patient_id is not None
    with services.sessions() as session, session.begin():
        series = get_series_for_patient(session, asker.patient_id, view.series)
        if series is None:
            return None
        slices = series_slices(session, asker.patient_id, series)
        if len(slices) < 2:
            return None
        # Only the frames the GIF uses, each from wherever it is (file store, or fetched from the PACS).
        picked = [slices[i] for i in evenly_spaced(len(slices), CINE_MAX_FRAMES)]
        try:
            sources = [(local_path(services.files, s.instance), s.frame) for s in picked]
        except DicomWebError:
            return None
        data = cine_gif(sources, window=window_choice(view.window))
        record_access(
            session,
            asker.patient_id,
            "chat",
            asker.actor_ref,
            "view",
            study_id=series.study_id,
            series_id=series.id,
            detail="cine",
        )
        return data, _caption(series, len(slices))


def _owns(services: Services, asker: Asker, view: View) -> bool:
    assert asker.patient_id is not None
    with services.sessions() as session:
        return get_series_for_patient(session, asker.patient_id, view.series) is not None


async def play(update: Update, context: ContextTypes.DEFAULT_TYPE, view: View) -> bool:
    """Send the series as an animation (or start the job that will); ``False`` when the series is not this
    patient's."""
    asker = await asker_of(update, context)
    if asker.patient_id is None:
        return False
    services = service(context)
    if services.background_jobs:
        if not await in_thread(_owns, services, asker, view):
            return False
        await answer_query(update, context, texts.label("cine.making_short"))
        message = update.effective_message
        assert message is not None
        status = await message.reply_text(texts.label("cine.making"))
        await in_thread(enqueue_cine, services, asker, view, status.message_id)
        return True
    await answer_query(update, context, texts.label("cine.making_short"))
    try:
        made = await in_thread(_cine, services, asker, view)
    except RenderError:
        made = None
    if made is None:
        return False
    data, caption = made
    message = update.effective_message
    assert message is not None
    await message.reply_animation(
        animation=data, caption=caption, filename="series.gif", protect_content=asker.protect_content
    )
    return True


# ---------------------------------------------------------------- a cine as a job (lightbox run)


def enqueue_cine(services: Services, asker: Asker, view: View, status_message_id: int) -> int:
    """Record the cine as a job any worker can run, with its progress message already known (so the job
    runner edits that one instead of posting its own)."""
    from store.models_state import Job

    payload = {
        "series": view.series,
        "window": view.window,
        "telegram_user_id": asker.telegram_user_id,
        "chat_id": asker.chat_id,
        "language": asker.language,  # the job's caption and notes speak the chat's language
    }
    with services.sessions() as session, session.begin():
        job = Job(
            kind=CINE_JOB, payload=json.dumps(payload), chat_id=asker.chat_id, progress_message_id=status_message_id
        )
        session.add(job)
        session.flush()
        return job.id


def _gather(ctx: Any, asker: Asker, payload: dict[str, Any]) -> tuple[list[Slice], int, int, int, str] | None:
    """The series' frames the GIF will use, if the series is (still) the chat's patient's."""
    assert asker.patient_id is not None
    with ctx.services.sessions() as session:
        series = get_series_for_patient(session, asker.patient_id, str(payload["series"]))
        if series is None:
            return None
        slices = series_slices(session, asker.patient_id, series)
        if len(slices) < 2:
            return None
        picked = [slices[i] for i in evenly_spaced(len(slices), CINE_MAX_FRAMES)]
        return picked, len(slices), series.study_id, series.id, _caption(series, len(slices))


def run_cine_job(ctx: Any) -> dict[str, Any]:
    """The job: check the series is the chat's patient's, gather its frames (reporting progress), make
    the GIF into this worker's work folder, log the view. ``ctx`` is the job runner's context.

    Returns JSON for :func:`finish_cine_job`: the GIF's path and caption, or a ``problem``. A worker
    taking the job over simply runs it again."""
    payload = ctx.job.payload
    with texts.speaking(str(payload.get("language", "en"))):
        return _run_cine_job(ctx, payload)


def _run_cine_job(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    from handlers.chat import asker_sync

    services = ctx.services
    with services.sessions() as session:
        asker = asker_sync(session, int(payload["telegram_user_id"]), int(payload["chat_id"]))
    if asker.patient_id is None:
        return {"problem": "not_yours"}
    gathered = _gather(ctx, asker, payload)
    if gathered is None:
        return {"problem": "not_yours"}
    picked, count, study_id, series_id, caption = gathered
    total = len(picked) + 1  # every frame gathered, then the GIF itself
    ctx.report(0, total, {})
    sources = []
    try:
        for done, one in enumerate(picked, start=1):
            sources.append((local_path(services.files, one.instance), one.frame))
            ctx.report(done, total, {})
        data = cine_gif(sources, window=window_choice(str(payload.get("window", "d"))))
    except (RenderError, DicomWebError) as exc:
        log.warning("cine job could not render", extra={"job": ctx.job.id, "error": type(exc).__name__})
        return {"problem": "render"}
    folder = Path(services.work_dir) / "cine"
    folder.mkdir(parents=True, exist_ok=True)
    gif = folder / f"{ctx.job.id}-{secrets.token_hex(6)}.gif"
    gif.write_bytes(data)
    ctx.report(total, total, {})
    with services.sessions() as session, session.begin():
        record_access(
            session,
            asker.patient_id,
            "chat",
            asker.actor_ref,
            "view",
            study_id=study_id,
            series_id=series_id,
            detail="cine",
        )
    return {"gif": str(gif), "caption": caption, "pictures": count}


async def finish_cine_job(application: Any, job: Any, result: dict[str, Any], message_id: int | None) -> None:
    """After the job: the animation (protected per the chat's setting now), and the progress message says
    it is done; or says plainly why there is none. In the chat's language: the job runner is not an
    update's task, so it is set here for this call only."""
    with texts.speaking(str(job.payload.get("language", "en"))):
        await _finish_cine_job(application, job, result, message_id)


async def _finish_cine_job(application: Any, job: Any, result: dict[str, Any], message_id: int | None) -> None:
    services: Services = application.bot_data[SERVICES_KEY]
    bot = application.bot
    if job.chat_id is None:
        return
    chat_id = int(job.chat_id)

    async def say(text: str) -> None:
        if message_id is None:
            await bot.send_message(chat_id, text)
            return
        try:
            await bot.edit_message_text(text, chat_id=chat_id, message_id=message_id)
        except TelegramError:
            pass  # the note is a courtesy; the animation (or its absence) is what matters

    if "gif" not in result:
        await say(texts.label("cine.not_yours" if result.get("problem") == "not_yours" else "cine.failed"))
        return
    gif = Path(str(result["gif"]))
    try:
        data = await in_thread(gif.read_bytes)
    except OSError:
        await say(texts.label("cine.failed"))
        return
    finally:
        gif.unlink(missing_ok=True)  # the GIF never lingers in the work folder, whatever happens next
    from handlers.chat import asker_sync

    def asker_now() -> Asker:
        with services.sessions() as session:
            return asker_sync(session, int(job.payload["telegram_user_id"]), chat_id)

    asker = await in_thread(asker_now)
    if asker.patient_id is None:  # the chat was unlinked meanwhile: nothing goes out
        await say(texts.label("cine.not_yours"))
        return
    await bot.send_animation(
        chat_id,
        animation=data,
        caption=str(result.get("caption", "")),
        filename="series.gif",
        protect_content=asker.protect_content,
    )
    await say(texts.label("cine.done"))
