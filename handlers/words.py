"""Explaining words ("what does hyperintense mean?", /explain FLAIR) and the image being looked at."""

from __future__ import annotations

import functools

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from glossary.lookup import Glossary, default_glossary
from handlers import texts
from handlers.callbacks import encode_action
from handlers.chat import asker_of, in_thread, reply, service

MAX_RELATED_BUTTONS = 4
LANGUAGES = {"en", "de", "es", "ru"}
# The explanation's frame in the language of the explanation itself.
LABELS = {
    "en": {
        "images": "On your images:",
        "ask": "You could ask your doctor:",
        "note": "This is general information, not advice about you. Your doctor can tell you what it means for you.",
    },
    "de": {
        "images": "Auf Ihren Bildern:",
        "ask": "Sie könnten Ihre Ärztin oder Ihren Arzt fragen:",
        "note": "Das ist eine allgemeine Information, kein Rat für Sie persönlich. Ihre Ärztin oder Ihr Arzt "
        "kann Ihnen sagen, was es für Sie bedeutet.",
    },
    "es": {
        "images": "En sus imágenes:",
        "ask": "Podría preguntar a su médico:",
        "note": "Esta es información general, no un consejo sobre usted. Su médico puede decirle qué significa "
        "para usted.",
    },
    "ru": {
        "images": "На ваших снимках:",
        "ask": "Можно спросить врача:",
        "note": "Это общая информация, а не совет лично вам. Что это значит для вас, скажет ваш врач.",
    },
}


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


async def explain_term(
    update: Update, context: ContextTypes.DEFAULT_TYPE, term: str, asked_in: str | None = None
) -> None:
    """Explain one word or phrase from the glossary, with buttons for related words.

    The explanation comes in the chat's language; a question asked in German, Spanish or Russian is
    answered in that language (and so is the rest of the reply).
    """
    asker = await asker_of(update, context)
    lang = asker.language if asker.language in LANGUAGES else "en"
    if asked_in in LANGUAGES and asked_in != "en":
        lang = asked_in
        texts.current_language.set(lang)
    result = await in_thread(glossary().lookup, term or "")
    if result.best is None:
        suggestions = [(c.id, glossary().explain(c, lang).term) for c in result.suggestions]
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
        labels=LABELS.get(explained.lang, LABELS["en"]),
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
