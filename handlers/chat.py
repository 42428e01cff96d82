"""Small helpers every handler uses: the asking patient, replying in HTML, logging opaque ids."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import ContextTypes

from handlers import texts
from handlers.services import Services, services_of
from store.linking import chat_link_for_user

log = logging.getLogger("lightbox.chat")
T = TypeVar("T")


@dataclass(frozen=True)
class Asker:
    """The person behind an update, as the store knows them (opaque ids only)."""

    telegram_user_id: int
    chat_id: int
    patient_id: int | None
    patient_public_id: str
    chat_link_id: int | None
    protect_content: bool
    language: str

    @property
    def linked_patient_id(self) -> int:
        """The patient row id of an asker already known to be linked (see :func:`linked_asker`)."""
        if self.patient_id is None:
            raise LookupError("this chat is not linked to a patient")
        return self.patient_id

    @property
    def actor_ref(self) -> str:
        """How the access log names this chat (never the Telegram id itself)."""
        return f"chat:{self.chat_link_id}" if self.chat_link_id else "chat"


def asker_sync(session: Session, telegram_user_id: int, chat_id: int, telegram_language: str = "en") -> Asker:
    """Who is asking. The language is the one chosen with /language, else the Telegram app's language
    when Lightbox speaks it, else English."""
    spoken = (telegram_language or "en")[:2].lower()
    fallback = spoken if spoken in texts.LANGUAGES else "en"
    link = chat_link_for_user(session, telegram_user_id)
    if link is None:
        return Asker(telegram_user_id, chat_id, None, "", None, True, fallback)
    from store.models import Patient

    patient = session.get(Patient, link.patient_id)
    return Asker(
        telegram_user_id,
        chat_id,
        link.patient_id,
        patient.public_id if patient else "",
        link.id,
        link.protect_content,
        link.language if link.language in texts.LANGUAGES else fallback,
    )


def remember_app_language(session: Session, asker: Asker, telegram_language: str) -> None:
    """Keep the chat's Telegram app language (when Lightbox speaks it), so messages that answer no update
    (a share link opened, a job done) speak it too. Written only when it changed."""
    app = (telegram_language or "")[:2].lower()
    if asker.chat_link_id is None or app not in texts.LANGUAGES:
        return
    from store.models import ChatLink

    link = session.get(ChatLink, asker.chat_link_id)
    if link is not None and link.app_language != app:
        link.app_language = app
        session.commit()


async def in_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking work (database, rendering) off the event loop."""
    return await asyncio.to_thread(func, *args, **kwargs)


async def asker_of(update: Update, context: ContextTypes.DEFAULT_TYPE) -> Asker:
    """Who is asking: their Telegram ids and the patient their chat is linked to, if any."""
    services = services_of(context)
    user = update.effective_user
    chat = update.effective_chat
    user_id = user.id if user else 0
    chat_id = chat.id if chat else user_id
    spoken = (user.language_code if user else None) or "en"

    def load() -> Asker:
        with services.sessions() as session:
            asker = asker_sync(session, user_id, chat_id, spoken)
            remember_app_language(session, asker, spoken)
            return asker

    asker = await in_thread(load)
    texts.current_language.set(asker.language)
    return asker


def speak_as_user(update: Update) -> None:
    """Until the asker is known, reply in the Telegram app's language when Lightbox speaks it."""
    if texts.current_language.get():
        return
    user = update.effective_user
    spoken = ((user.language_code if user else None) or "en")[:2].lower()
    texts.current_language.set(spoken if spoken in texts.LANGUAGES else "en")


async def linked_asker(update: Update, context: ContextTypes.DEFAULT_TYPE) -> Asker | None:
    """The asker when their chat is linked to a patient; otherwise says so in the chat and gives ``None``."""
    asker = await asker_of(update, context)
    if asker.patient_id is None:
        await reply(update, "not_linked")
        return None
    return asker


async def reply(update: Update, name: str, /, *, reply_markup: Any = None, **values: Any) -> None:
    """Answer the update's chat with template ``name``, in the asker's language."""
    speak_as_user(update)
    message = update.effective_message
    text = texts.render(name, **values)
    if message is not None:
        await message.reply_text(
            text, parse_mode=ParseMode.HTML, reply_markup=reply_markup, disable_web_page_preview=True
        )
    elif update.effective_chat is not None:
        await update.effective_chat.send_message(
            text, parse_mode=ParseMode.HTML, reply_markup=reply_markup, disable_web_page_preview=True
        )


def error_reference() -> str:
    """A short random reference a patient can quote; it is logged with the error, nothing else."""
    return secrets.token_hex(4)


def service(context: ContextTypes.DEFAULT_TYPE) -> Services:
    return services_of(context)


async def answer_query(
    update: Update, context: ContextTypes.DEFAULT_TYPE, text: str | None = None, *, show_alert: bool = False
) -> None:
    """Answer the update's callback query once (Telegram refuses a second answer to one query)."""
    query = update.callback_query
    if query is None or getattr(context, "lightbox_answered", False):
        return
    context.lightbox_answered = True  # type: ignore[attr-defined]
    await query.answer(text, show_alert=show_alert)


async def edit_picture(update: Update, photo: bytes, caption: str, keyboard: Any) -> None:
    """Replace the tapped message's picture, caption and buttons (one message, never a flood).

    Telegram answers "message is not modified" when nothing changed (a double tap): that is not an error.
    """
    from telegram import InputMediaPhoto
    from telegram.error import BadRequest

    query = update.callback_query
    assert query is not None
    try:
        await query.edit_message_media(
            InputMediaPhoto(photo, caption=caption, parse_mode=ParseMode.HTML), reply_markup=keyboard
        )
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise


def render_reason(exc: Exception) -> str:
    """Why a picture cannot be shown, in the update's language: imaging's own English words (already
    patient-fit), else the label for the error's stable ``reason``."""
    reason = str(getattr(exc, "reason", ""))
    if reason == "frame-out-of-range":
        frame, frames = int(getattr(exc, "frame", 0)), int(getattr(exc, "frames", 0))
        return texts.in_language(str(exc), "render.frame-out-of-range", number=frame + 1, frames=frames)
    key = f"render.{reason}"
    return texts.in_language(str(exc), key if key in texts.labels() else "render.render-failed")


def cannot_show(exc: Exception) -> str:
    """The short alert for a picture that cannot be rendered."""
    return texts.clip(texts.label("picture.cannot_show", reason=render_reason(exc)), 200)


def numbered_buttons(rows: list[dict[str, Any]], label_key: str, action: str) -> InlineKeyboardMarkup | None:
    """One button per row ("Stop link 1", "Delete note 2"), each acting on that row's ``public_id``; None
    for no rows (Telegram refuses an empty keyboard)."""
    from handlers.callbacks import encode_action

    buttons = [
        [InlineKeyboardButton(texts.label(label_key, number=i + 1),
                              callback_data=encode_action(action, row["public_id"]))]
        for i, row in enumerate(rows)
    ]
    return InlineKeyboardMarkup(buttons) if buttons else None
