"""Explaining words ("what does hyperintense mean?", /explain FLAIR) and the image being looked at."""

from __future__ import annotations

import functools

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from glossary.lookup import Glossary, default_glossary
from handlers.callbacks import encode_action
from handlers.chat import asker_of, in_thread, reply, service

MAX_RELATED_BUTTONS = 4


@functools.cache
def glossary() -> Glossary:
    """The glossary, loaded once per process."""
    return default_glossary()


def _term_buttons(ids: list[tuple[str, str]]) -> InlineKeyboardMarkup | None:
    buttons = [
        InlineKeyboardButton(label[:40], callback_data=encode_action("term", concept_id))
        for concept_id, label in ids
        if len(concept_id) <= 48
    ]
    if not buttons:
        return None
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])


async def explain_term(update: Update, context: ContextTypes.DEFAULT_TYPE, term: str) -> None:
    """Explain one word or phrase from the glossary, with buttons for related words."""
    asker = await asker_of(update, context)
    lang = asker.language if asker.language in {"en", "de", "es", "ru"} else "en"
    result = await in_thread(glossary().lookup, term or "")
    if result.best is None:
        suggestions = [(c.id, c.term) for c in result.suggestions]
        await reply(
            update,
            "explain_unknown",
            query=term.strip()[:80],
            suggestions=bool(suggestions),
            reply_markup=_term_buttons(suggestions),
        )
        return
    await send_explanation(update, result.best.id, lang)


async def send_explanation(update: Update, concept_id: str, lang: str = "en") -> bool:
    """Send the explanation of glossary concept ``concept_id``; ``False`` if there is none."""
    g = glossary()
    concept = g.by_id.get(concept_id)
    if concept is None:
        return False
    explained = g.explain(concept, lang)
    related = [(rid, label) for rid, label in zip(explained.related_ids, explained.related, strict=False)]
    await reply(
        update,
        "explain",
        term=explained.term,
        explanation=explained.explanation,
        on_your_images=explained.on_your_images,
        ask=list(explained.ask_your_doctor),
        reply_markup=_term_buttons(related[:MAX_RELATED_BUTTONS]),
    )
    return True


async def explain_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/explain TERM."""
    await explain_term(update, context, " ".join(context.args or []))


async def describe_series_reply(update: Update, context: ContextTypes.DEFAULT_TYPE, series_ref: str) -> bool:
    """Describe the series in plain words from its attributes, with buttons for the words in it."""
    from handlers.describing import describe_for_patient

    asker = await asker_of(update, context)
    if asker.patient_id is None:
        return False
    services = service(context)
    described = await in_thread(describe_for_patient, services, asker.patient_id, series_ref)
    if described is None:
        return False
    text, terms = described
    await reply(update, "describe", description=text, reply_markup=_term_buttons(terms[:MAX_RELATED_BUTTONS]))
    return True
