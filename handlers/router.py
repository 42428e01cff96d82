"""From an update to the right handler: free text through understanding, buttons through the codec.

This is the one place that maps intents and callback kinds to handlers, and the one place that turns
an unexpected error into a friendly reply (with a reference) and a log line with opaque ids only.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from telegram import Update
from telegram.constants import MessageLimit
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from handlers import account, export, sharing, texts, uploads, viewing, words
from handlers.callbacks import BadCallback, decode_action, decode_view
from handlers.chat import answer_query, asker_of, error_reference, reply
from handlers.understanding import Understanding, understand
from handlers.viewing import StudyRequest

log = logging.getLogger("lightbox.router")

# Longer messages are cut before understanding: nobody asks for a scan in a novel.
MAX_UNDERSTOOD_CHARS = 1000
# Problems understanding found in a share request, answered with labels problem.<name>.
PROBLEM_REPLIES = frozenset(
    {
        "duration_not_positive",
        "duration_too_short",
        "duration_too_long",
        "recipient_public",
        "date_in_future",
        "date_before_imaging",
    }
)
# "show my history" / "my timeline" (and in German, Spanish, Russian) opens the timeline.
TIMELINE_WORDS = re.compile(
    r"\b(timeline|my history|history of my (scans|images|studies)|verlauf|zeitleiste|historial|línea de tiempo"
    r"|cronolog[ií]a)\b|истори[яюи]\s+(мо|сним|исслед)",
    re.IGNORECASE,
)
# The command menu; each description is label command.<name>, set per language by bot.app.
COMMAND_NAMES = (
    "start",
    "help",
    "studies",
    "last",
    "explain",
    "compare",
    "share",
    "shares",
    "activity",
    "privacy",
    "forget",
    "export",
    "language",
    "notes",
    "draw",
    "timeline",
)


def commands(lang: str = "en") -> list[tuple[str, str]]:
    """The command menu in ``lang``: (command, description) pairs."""
    with texts.speaking(lang):
        return [(name, texts.label(f"command.{name}")) for name in COMMAND_NAMES]


COMMANDS = commands()


def which_text(which: Any) -> str | None:
    """The store's form of a ``which`` slot: latest/earliest/previous, or YYYY, YYYY-MM, YYYY-MM-DD."""
    if isinstance(which, str):
        return which
    if isinstance(which, dict):
        if "date" in which:
            return str(which["date"])
        if "year" in which:
            return str(which["year"])
    return None


def study_request(slots: dict[str, Any]) -> StudyRequest:
    which = slots.get("which")
    if isinstance(which, list):
        which = which[-1] if which else None
    return StudyRequest(slots.get("modality"), slots.get("body_part"), which_text(which))


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Any text that is not a command: understand it, then act."""
    message = update.effective_message
    if message is None or not message.text:
        return
    if message.reply_to_message is not None and message.reply_to_message.photo:
        from handlers import notes

        if await notes.note_on_reply(update, context):
            return
    if TIMELINE_WORDS.search(message.text[:200]):
        await timeline_command(update, context)
        return
    understood = understand(message.text[:MAX_UNDERSTOOD_CHARS], viewing.today_of(context))
    await act(update, context, understood)


async def act(update: Update, context: ContextTypes.DEFAULT_TYPE, understood: Understanding) -> None:
    """Do what the message asked (or say why not)."""
    intent, slots, reason, language = understood.intent, dict(understood.slots), understood.reason, understood.language
    for problem in understood.problems:
        if problem in PROBLEM_REPLIES:
            await asker_of(update, context)  # the chat's language, for the label
            await reply(update, "share_failed", reason=texts.label(f"problem.{problem}"))
            return
    if intent == "show_study":
        await viewing.show_study(update, context, study_request(slots))
    elif intent == "list_studies":
        await viewing.list_studies_reply(
            update, context, modality=slots.get("modality"), body_part=slots.get("body_part")
        )
    elif intent == "explain_term":
        await words.explain_term(update, context, str(slots.get("term", "")), language)
    elif intent == "describe_current":
        view = viewing.current_view(context)
        if view is None or not await words.describe_series_reply(update, context, view.series):
            await reply(update, "no_current")
    elif intent == "compare":
        from handlers import comparing

        await comparing.compare(update, context, slots)
    elif intent == "share":
        hours = slots.get("duration_hours")
        await sharing.share_study(
            update,
            context,
            request=study_request(slots),
            hours=float(hours) if hours is not None else None,
            recipient=str(slots.get("recipient", "")),
            with_code=understood.wants_code,
        )
    elif intent == "list_shares":
        await sharing.shares_command(update, context)
    elif intent == "revoke_share":
        await sharing.revoke_intent(update, context, slots)
    elif intent == "activity":
        await account.activity(update, context)
    elif intent == "privacy":
        await account.privacy(update, context)
    elif intent == "forget_me":
        await account.forget(update, context)
    elif intent == "help":
        await account.help_command(update, context)
    elif reason in {"other_person", "diagnosis", "dosing"}:
        await reply(update, "refuse", reason=reason)
    else:
        await reply(update, "unknown")


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A button tap. Anything forged, replayed or stale gets "this button has expired"."""
    query = update.callback_query
    if query is None:
        return
    data = query.data or ""
    handled = False
    try:
        if data.startswith("v|"):
            handled = await viewing.navigate(update, context, decode_view(data))
        elif data.startswith("m|"):
            from handlers import marking

            handled = await marking.on_mark(update, context, data)
        elif data.startswith("c|"):
            from handlers import comparing

            handled = await comparing.step(update, context, data)
        elif data.startswith("a|"):
            handled = await on_action(update, context, data)
    except (BadCallback, LookupError):
        handled = False
    if handled:
        await answer_query(update, context)
    else:
        if not texts.current_language.get():
            await asker_of(update, context)  # the chat's language, for the alert
        await answer_query(update, context, texts.plain_text("button_expired"))


async def on_action(update: Update, context: ContextTypes.DEFAULT_TYPE, data: str) -> bool:
    action = decode_action(data)
    query = update.callback_query
    assert query is not None
    kind, ref = action.kind, action.ref
    if kind == "open":
        return await viewing.open_study(update, context, ref)
    if kind == "series":
        return await viewing.choose_series(update, context, ref)
    if kind == "explain_image":
        return await words.describe_series_reply(update, context, ref)
    if kind == "share":
        await sharing.share_study(update, context, study_ref=ref)
        return True
    if kind == "compare":
        from handlers import comparing

        return await comparing.compare_study(update, context, ref)
    if kind == "revoke":
        return await sharing.revoke(update, context, ref)
    if kind in {"forget_yes", "forget_no"}:
        return await account.forget_answer(update, context, kind == "forget_yes", ref)
    if kind == "claim":
        return await uploads.claim(update, context, ref, action.extra)
    if kind == "claim_none":
        return await uploads.claim(update, context, None, ref)
    if kind == "term":
        asker_lang = (await account.asker_of(update, context)).language
        return await words.send_explanation(update, ref, asker_lang)
    if kind == "cine":
        from handlers import cine
        from handlers.callbacks import WINDOW_CODES, View

        window = action.extra if action.extra in WINDOW_CODES else "d"
        return await cine.play(update, context, View(ref, window=window))
    if kind == "del_note":
        from handlers import marking

        return await marking.delete_note(update, context, ref)
    if kind == "protect":
        return await account.set_protection(update, context, ref)
    if kind == "lang":
        return await account.set_language(update, context, ref)
    if kind == "studies":
        await viewing.list_studies_reply(update, context, page=int(ref), edit=True)
        return True
    return False


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the error with an opaque reference only (never the update: it holds patient data)."""
    ref = error_reference()
    update_id = update.update_id if isinstance(update, Update) else None
    log.error("error %s handling update %s: %s", ref, update_id, type(context.error).__name__, exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat is not None:
        try:
            await reply(update, "error", ref=ref)
        except Exception:
            log.warning("could not tell the chat about error %s", ref)


async def compare_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    from handlers import comparing

    await comparing.compare(update, context, {})


async def notes_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    from handlers import marking

    await marking.notes_command(update, context)


async def timeline_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    from handlers import timeline

    await timeline.timeline(update, context)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Add every Lightbox handler to ``application`` (the one place handlers are wired)."""
    application.add_handler(CommandHandler("start", account.start))
    application.add_handler(CommandHandler("help", account.help_command))
    application.add_handler(CommandHandler("studies", viewing.studies_command))
    application.add_handler(CommandHandler("last", viewing.last_command))
    application.add_handler(CommandHandler("explain", words.explain_command))
    application.add_handler(CommandHandler("compare", compare_command))
    application.add_handler(CommandHandler("share", sharing.share_command))
    application.add_handler(CommandHandler("shares", sharing.shares_command))
    application.add_handler(CommandHandler("activity", account.activity))
    application.add_handler(CommandHandler("privacy", account.privacy))
    application.add_handler(CommandHandler("forget", account.forget))
    application.add_handler(CommandHandler("export", export.export_command))
    application.add_handler(CommandHandler("language", account.language))
    application.add_handler(CommandHandler("notes", notes_command))
    application.add_handler(CommandHandler("draw", sharing.draw_command))
    application.add_handler(CommandHandler("timeline", timeline_command))
    application.add_handler(MessageHandler(filters.Document.ALL, uploads.receive_document))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, on_text))
    application.add_handler(CallbackQueryHandler(on_callback))
    application.add_error_handler(on_error)


assert MessageLimit.MAX_TEXT_LENGTH >= MAX_UNDERSTOOD_CHARS
