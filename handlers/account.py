"""The patient's account: /start (linking), /help, /privacy, /activity, /forget, /language."""

from __future__ import annotations

import logging
import secrets

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import ContextTypes

from handlers import texts
from handlers.callbacks import encode_action
from handlers.chat import answer_query, asker_of, in_thread, linked_asker, reply, service
from handlers.services import Services
from store.audit import recent_activity
from store.erasure import ErasureReport, forget_patient
from store.linking import ExpiredLinkCode, LinkingError, UsedLinkCode, redeem_link_code
from store.models import ChatLink, Study
from store.queries import count_studies

log = logging.getLogger("lightbox.account")
FORGET_NONCE_KEY = "forget_nonce"
LANGUAGES = {"en": "English", "de": "Deutsch", "es": "Español", "ru": "Русский"}
# Access log actions the patient's /activity puts in words (labels activity.<action>).
ACTIVITY_ACTIONS = frozenset(
    {
        "view",
        "render",
        "import",
        "share_create",
        "share_open",
        "share_view",
        "download",
        "share_revoke",
        "share_code_failed",
        "share_locked",
        "delete",
        "export",
        "link",
        "unlink",
        "sync",
        "annotate",
    }
)


def _link(services: Services, code: str, user_id: int, chat_id: int) -> tuple[str, int]:
    with services.sessions() as session, session.begin():
        try:
            link = redeem_link_code(session, code, user_id, chat_id, now=services.now())
        except ExpiredLinkCode:
            return "expired", 0
        except UsedLinkCode:
            return "used", 0
        except LinkingError:
            return "unknown", 0
        from store.audit import record_access

        record_access(session, link.patient_id, "chat", f"chat:{link.id}", "link")
        return "ok", count_studies(session, link.patient_id)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start [code]: link this chat with a one-time code, or say hello."""
    code = (context.args or [""])[0] if context.args else ""
    user, chat = update.effective_user, update.effective_chat
    if not code or user is None or chat is None:
        await asker_of(update, context)  # the chat's language
        await reply(update, "welcome")
        return
    outcome, studies = await in_thread(_link, service(context), code, user.id, chat.id)
    if outcome == "ok":
        await asker_of(update, context)  # the new link's language, and its app language remembered
        await reply(update, "linked", study_count=studies)
    else:
        await reply(update, "link_failed", reason=outcome)


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await asker_of(update, context)  # the chat's language
    await reply(update, "help")


async def privacy(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/privacy: what is kept and who sees it, with the switch for protected previews."""
    asker = await asker_of(update, context)
    keyboard = None
    if asker.chat_link_id is not None:
        label, value = (
            (texts.label("button.unprotect"), "off") if asker.protect_content else (texts.label("button.protect"), "on")
        )
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=encode_action("protect", value))]])
    await reply(update, "privacy", protect=asker.protect_content, reply_markup=keyboard)


async def set_protection(update: Update, context: ContextTypes.DEFAULT_TYPE, value: str) -> bool:
    """The /privacy switch: previews protected from forwarding and saving ("on") or not ("off")."""
    if value not in {"on", "off"}:
        return False
    asker = await asker_of(update, context)
    if asker.chat_link_id is None:
        return False
    services = service(context)

    def save() -> None:
        with services.sessions() as session, session.begin():
            link = session.get(ChatLink, asker.chat_link_id)
            if link is not None:
                link.protect_content = value == "on"

    await in_thread(save)
    await answer_query(update, context)
    await reply(update, "protection_set", protect=value == "on")
    return True


def _activity(services: Services, patient_id: int) -> list[dict[str, str]]:
    from store.models import ShareLink

    with services.sessions() as session:
        rows = []
        for event in recent_activity(session, patient_id, limit=15):
            study = session.get(Study, event.study_id) if event.study_id else None
            link = session.get(ShareLink, event.share_link_id) if event.share_link_id else None
            what = texts.label("activity.your_images")
            if study is not None:
                kind = texts.mid_sentence(texts.modality_word(study.modalities))
                what = texts.label("activity.study", what=texts.what_when(kind, study.study_date))
            recipient = ""
            if link is not None and link.recipient_label:
                recipient = texts.label("activity.recipient", label=link.recipient_label)
            if event.action in ACTIVITY_ACTIONS:
                text = texts.label(f"activity.{event.action}", what=what, recipient=recipient)
            else:
                text = texts.label("activity.other")
            rows.append({"when": texts.nice_time(event.at), "text": text})
        return rows


async def activity(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/activity: who looked at the patient's images, newest first."""
    asker = await linked_asker(update, context)
    if asker is None:
        return
    rows = await in_thread(_activity, service(context), asker.patient_id)
    await reply(update, "activity", events=rows)


async def forget(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/forget: ask for confirmation with a one-time button."""
    asker = await linked_asker(update, context)
    if asker is None:
        return
    services = service(context)
    patient_id = asker.linked_patient_id

    def count() -> int:
        with services.sessions() as session:
            return count_studies(session, patient_id)

    studies = await in_thread(count)
    nonce = secrets.token_hex(8)
    if context.chat_data is not None:
        context.chat_data[FORGET_NONCE_KEY] = nonce
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    texts.label("button.forget_yes"), callback_data=encode_action("forget_yes", nonce)
                ),
                InlineKeyboardButton(texts.label("button.forget_no"), callback_data=encode_action("forget_no", nonce)),
            ]
        ]
    )
    await reply(update, "forget_confirm", studies=studies, reply_markup=keyboard)


async def forget_answer(update: Update, context: ContextTypes.DEFAULT_TYPE, confirmed: bool, nonce: str) -> bool:
    """The /forget buttons. ``False`` for a stale or forged one."""
    expected = context.chat_data.get(FORGET_NONCE_KEY) if context.chat_data is not None else None
    if not isinstance(expected, str) or not secrets.compare_digest(expected, nonce):
        return False
    assert context.chat_data is not None
    context.chat_data.pop(FORGET_NONCE_KEY, None)
    query = update.callback_query
    assert query is not None
    await answer_query(update, context)
    await query.edit_message_reply_markup(None)
    if not confirmed:
        await reply(update, "forget_done", deleted=False, studies=0, files=0, links=0)
        return True
    asker = await linked_asker(update, context)
    if asker is None:
        return True
    services = service(context)
    cache = services.preview_cache()
    report: ErasureReport = await in_thread(
        forget_patient, services.sessions, services.files, asker.patient_id, cache=cache
    )
    context.chat_data.clear()
    log.info("patient erased on request (chat link %s)", asker.chat_link_id)
    await reply(
        update, "forget_done", deleted=True, studies=report.studies, files=report.files, links=report.share_links
    )
    return True


async def language(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/language: choose the language for explanations."""
    keyboard = InlineKeyboardMarkup(
        [[InlineKeyboardButton(name, callback_data=encode_action("lang", code)) for code, name in LANGUAGES.items()]]
    )
    await reply(update, "language", changed=False, name="", note="", reply_markup=keyboard)


async def set_language(update: Update, context: ContextTypes.DEFAULT_TYPE, code: str) -> bool:
    if code not in LANGUAGES:
        return False
    asker = await asker_of(update, context)
    services = service(context)
    query = update.callback_query
    assert query is not None
    if asker.chat_link_id is None:
        await answer_query(update, context)
        await reply(update, "not_linked")
        return True

    def save() -> None:
        with services.sessions() as session, session.begin():
            link = session.get(ChatLink, asker.chat_link_id)
            if link is not None:
                link.language = code

    # Saved before the tap is answered: the patient's next message may be handled at the same time.
    await in_thread(save)
    await answer_query(update, context)
    texts.current_language.set(code)
    text = texts.render("language", changed=True, name=LANGUAGES[code], note=texts.label("language.note"))
    await query.edit_message_text(text, parse_mode=ParseMode.HTML)
    return True
