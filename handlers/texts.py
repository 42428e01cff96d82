"""Replies are rendered from Jinja2 templates, one file per message kind, escaped for Telegram HTML.

Telegram's HTML parse mode understands ``&lt; &gt; &amp;`` and numeric entities, which is what
Jinja2's autoescape produces; templates use only the tags Telegram allows (b, i, u, s, code, pre, a,
tg-spoiler, blockquote).
"""

from __future__ import annotations

import contextvars
import functools
from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from telegram.constants import MessageLimit

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

MODALITY_WORDS = {
    "MR": "MRI",
    "CT": "CT scan",
    "CR": "X-ray",
    "DX": "X-ray",
    "DR": "X-ray",
    "RF": "X-ray video (fluoroscopy)",
    "XR": "X-ray",
    "US": "ultrasound",
    "MG": "mammogram",
    "PT": "PET scan",
    "NM": "nuclear medicine scan",
    "XA": "angiogram",
    "OT": "image",
    "SC": "image",
    "SR": "report",
    "DOC": "document",
}


def modality_word(modalities: str) -> str:
    """A patient's word for a study's modalities ("MR" -> "MRI", "CT\\PT" -> "CT scan and PET scan")."""
    words: list[str] = []
    for code in (modalities or "").replace(",", "\\").split("\\"):
        word = MODALITY_WORDS.get(code.strip().upper())
        if word and word not in words and word not in {"report", "document", "image"}:
            words.append(word)
    if not words:
        return "scan"
    return " and ".join(words)


def nice_date(value: date | datetime | None) -> str:
    """``12 March 2025``; ``an unknown date`` when the file did not say."""
    if value is None:
        return "an unknown date"
    return f"{value.day} {value.strftime('%B %Y')}"


def nice_time(value: datetime | None) -> str:
    """``12 Mar 2025, 14:05 UTC``."""
    if value is None:
        return ""
    return f"{value.day} {value.strftime('%b %Y, %H:%M')} UTC"


def plural(count: int, one: str, many: str | None = None) -> str:
    """``1 image`` / ``3 images``."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def interval_words(earlier: date | None, later: date | None) -> str:
    """``14 months apart``, ``2 years apart``, ``5 days apart``."""
    if earlier is None or later is None:
        return "dates unknown"
    days = abs((later - earlier).days)
    if days < 45:
        return f"{plural(days, 'day')} apart"
    months = round(days / 30.44)
    if months < 24:
        return f"{plural(months, 'month')} apart"
    years = round(days / 365.25)
    return f"{plural(years, 'year')} apart"


@functools.cache
def environment() -> Environment:
    """The template environment (autoescaped, strict about missing values)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["modality_word"] = modality_word
    env.filters["nice_date"] = nice_date
    env.filters["nice_time"] = nice_time
    env.globals["plural"] = plural
    return env


LANGUAGES = ("en", "de", "es", "ru")
# The language of the update being handled: set by handlers.chat.asker_of for the update's task, so
# every reply of that update speaks it without threading it through each call.
# '' = not known yet: handlers.chat.reply then takes the Telegram app's language.
current_language: contextvars.ContextVar[str] = contextvars.ContextVar("lightbox_language", default="")


def template_name(name: str, lang: str) -> str:
    """``<lang>/<name>.html`` where that translation exists, else the English ``<name>.html``."""
    if lang != "en" and (TEMPLATES_DIR / lang / f"{name}.html").is_file():
        return f"{lang}/{name}.html"
    return f"{name}.html"


def render(name: str, /, **values: Any) -> str:
    """Render template ``name`` in the update's language (English where it has no translation yet) and keep
    it within Telegram's message length."""
    template = environment().get_template(template_name(name, current_language.get() or "en"))
    text = template.render(**values).strip()
    return clip(text, MessageLimit.MAX_TEXT_LENGTH)


def clip(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters at a line break, never inside an HTML tag or entity."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit - 2)
    if cut <= 0:
        cut = limit - 2
        # Do not end inside a tag or an entity.
        for opener, closer in (("<", ">"), ("&", ";")):
            last_open = text.rfind(opener, 0, cut)
            if last_open > text.rfind(closer, 0, cut):
                cut = last_open
    return text[:cut].rstrip() + "\n…"
