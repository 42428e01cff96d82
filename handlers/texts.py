"""Replies are rendered from Jinja2 templates, one file per message kind, escaped for Telegram HTML.

Telegram's HTML parse mode understands ``&lt; &gt; &amp;`` and numeric entities, which is what
Jinja2's autoescape produces; templates use only the tags Telegram allows (b, i, u, s, code, pre, a,
tg-spoiler, blockquote).

Everything a patient reads follows the update's language (:data:`current_language`): whole messages are
templates (``templates/<lang>/<name>.html``), and the words Python puts together (button labels, dates,
counts, the kind of scan) come from ``labels.toml`` through :func:`label`, :func:`counted` and the filters
below. English is the fallback for both.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import tomllib
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from telegram.constants import MessageLimit

from imaging.fonts import can_draw

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
LABELS_FILE = Path(__file__).resolve().parent / "labels.toml"

LANGUAGES = ("en", "de", "es", "ru")
# The language of the update being handled: set by handlers.chat.asker_of for the update's task, so
# every reply of that update speaks it without threading it through each call.
# '' = not known yet: handlers.chat.reply then takes the Telegram app's language.
current_language: contextvars.ContextVar[str] = contextvars.ContextVar("lightbox_language", default="")

# DICOM modality code -> key of its patient word in labels.toml (modality.<key>).
MODALITY_KEYS = {
    "MR": "mri",
    "CT": "ct",
    "CR": "xray",
    "DX": "xray",
    "DR": "xray",
    "RF": "fluoroscopy",
    "XR": "xray",
    "US": "ultrasound",
    "MG": "mammogram",
    "PT": "pet",
    "NM": "nm",
    "XA": "angiogram",
    "OT": "image",
    "SC": "image",
    "SR": "report",
    "DOC": "document",
}
# Kinds that say nothing about how a study was made: left out of "MRI and CT scan".
_NOT_A_KIND = {"report", "document", "image"}


def language() -> str:
    """The update's language, English when none is set."""
    lang = current_language.get()
    return lang if lang in LANGUAGES else "en"


@contextlib.contextmanager
def speaking(lang: str) -> Iterator[None]:
    """Speak ``lang`` inside the block only (for code outside an update's own task, e.g. a job runner)."""
    token = current_language.set(lang if lang in LANGUAGES else "en")
    try:
        yield
    finally:
        current_language.reset(token)


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, dict[str, str | list[str]]]:
    """``{"button": {"back": {"en": ..}}}`` -> ``{"button.back": {"en": ..}}``: a table with an ``en`` entry
    is one label, in every language it has."""
    out: dict[str, dict[str, str | list[str]]] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if not isinstance(value, dict):
            raise ValueError(f"{LABELS_FILE.name}: {key} is not a table of languages")
        if "en" in value and not isinstance(value["en"], dict):
            out[key] = value
        else:
            out.update(_flatten(value, key + "."))
    return out


@functools.cache
def labels() -> dict[str, dict[str, str | list[str]]]:
    """Every label, by key, then by language (read once)."""
    return _flatten(tomllib.loads(LABELS_FILE.read_text(encoding="utf-8")))


def _entry(key: str, lang: str | None = None) -> str | list[str]:
    entry = labels()[key]  # an unknown key is a programming error: it fails loudly
    return entry.get(lang or language(), entry["en"])


def label(key: str, /, **values: Any) -> str:
    """The label ``key`` in the update's language (English where it has none), with ``values`` put in."""
    text = _entry(key)
    if not isinstance(text, str):
        raise TypeError(f"label {key} is a list; use label_list")
    return text.format(**values) if values else text


def label_list(key: str, /) -> list[str]:
    """A label that is a list (month names, a noun's plural forms) in the update's language."""
    found = _entry(key)
    if not isinstance(found, list):
        raise TypeError(f"label {key} is not a list")
    return found


def in_language(english: str, key: str, /, **values: Any) -> str:
    """``english`` (a message made elsewhere, often with more detail) in English, else the label ``key``."""
    return english if language() == "en" else label(key, **values)


def plural_index(count: int, lang: str | None = None) -> int:
    """Which plural form ``count`` takes: 0 = one, 1 = other (Russian: few, 2-4), 2 = many (Russian).

    Russian: 1, 21, 101 снимок; 2-4, 22-24 снимка; 0, 5-20, 25-30, 111-114 снимков.
    """
    n = abs(count)
    if (lang or language()) == "ru":
        if n % 10 == 1 and n % 100 != 11:
            return 0
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return 1
        return 2
    return 0 if n == 1 else 1


def plural(count: int, *forms: str) -> str:
    """``count`` and the noun's form for it, in the update's language: ``plural(3, "study", "studies")``;
    Russian gives three forms (``plural(5, "снимок", "снимка", "снимков")``); English alone may give one
    (``plural(3, "image")`` -> ``3 images``)."""
    if not forms:
        raise TypeError("plural needs at least one form")
    if len(forms) == 1:
        forms = (forms[0], forms[0] + "s")
    index = min(plural_index(count), len(forms) - 1)
    return f"{count} {forms[index]}"


def counted(count: int, key: str) -> str:
    """``count`` with the noun ``unit.<key>`` from labels.toml: ``counted(3, "picture")`` -> ``3 Bilder``."""
    return plural(count, *label_list(f"unit.{key}"))


def modality_word(modalities: str) -> str:
    """A patient's word for a study's modalities ("MR" -> "MRI", "CT\\PT" -> "CT scan and PET scan")."""
    words: list[str] = []
    for code in (modalities or "").replace(",", "\\").split("\\"):
        key = MODALITY_KEYS.get(code.strip().upper())
        if key and key not in _NOT_A_KIND:
            word = label(f"modality.{key}")
            if word not in words:
                words.append(word)
    if not words:
        return label("modality.scan")
    return label("modality.and").join(words)


def part_key(body_part: str) -> str:
    """labels.toml's key for a canonical body part (``"lumbar spine"`` -> ``"lumbar_spine"``)."""
    return body_part.strip().lower().replace(" ", "_")


def part_name(body_part: str) -> str:
    """The body part's name in the update's language (a heading: "knee", "Knie", "колено")."""
    key = f"part.{part_key(body_part)}"
    return label(key) if key in labels() else body_part


def what_of(modalities: str, body_part: str = "") -> str:
    """``MRI of the knee``, ``MRT des Knies``, ``МРТ коленного сустава``; the kind alone without a part."""
    what = modality_word(modalities)
    if not body_part:
        return what
    key = f"part_of.{part_key(body_part)}"
    if key in labels():
        return f"{what} {label(key)}"
    return label("study.what_part", what=what, part=body_part)


def sentence_start(text: str) -> str:
    """``text`` with its first letter upper case (the rest as it is: never ``str.capitalize``, which would
    lower-case German nouns and abbreviations)."""
    return text[:1].upper() + text[1:]


def mid_sentence(text: str) -> str:
    """``text`` as it reads inside a sentence: a lower-case word stays lower-case ("ultrasound"), an
    abbreviation or a German noun keeps its capital ("MRI", "X-ray", "Röntgenbild")."""
    if language() == "de" or not text[1:2].islower():
        return text
    return text[:1].lower() + text[1:]


def _month(value: date | datetime, key: str) -> str:
    return label_list(key)[value.month - 1]


def nice_date(value: date | datetime | None) -> str:
    """``12 March 2025``, ``12. März 2025``, ``12 de marzo de 2025``, ``12 марта 2025 г.``; month names
    come from labels.toml, never from the C library's locale."""
    if value is None:
        return label("date.unknown")
    return label("date.pattern", day=value.day, month=_month(value, "date.months"), year=value.year)


def nice_time(value: datetime | None) -> str:
    """``12 Mar 2025, 14:05 UTC`` (and the same in the update's language)."""
    if value is None:
        return ""
    return label(
        "time.pattern", day=value.day, month=_month(value, "time.months"), year=value.year, time=f"{value:%H:%M}"
    )


def what_when(what: str, value: date | datetime | None) -> str:
    """``MRI of the knee from 12 March 2025`` (or the language's way of saying an unknown date)."""
    if value is None:
        return label("study.undated", what=what)
    return label("study.from", what=what, when=nice_date(value))


def interval_words(earlier: date | None, later: date | None) -> str:
    """``14 months apart``, ``2 years apart``, ``5 days apart`` (in the update's language)."""
    if earlier is None or later is None:
        return label("interval.unknown")
    days = abs((later - earlier).days)
    if days < 45:
        amount = counted(days, "day")
    elif (months := round(days / 30.44)) < 24:
        amount = counted(months, "month")
    else:
        amount = counted(round(days / 365.25), "year")
    return label("interval.apart", count=amount)



def drawable(text: str, fallback: str) -> str:
    """``text`` when the pictures' font can draw every letter of it, else ``fallback`` (e.g. an ISO date)."""
    return text if can_draw(text) else fallback


def picture_date(value: date | datetime | None) -> str:
    """A date to draw on a picture: :func:`nice_date` where the font has its letters, else ``2025-03-12``."""
    return drawable(nice_date(value), value.isoformat()[:10] if value is not None else "?")


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


def template_name(name: str, lang: str, suffix: str = ".html") -> str:
    """``<lang>/<name>.html`` where that translation exists, else the English ``<name>.html``."""
    if lang != "en" and (TEMPLATES_DIR / lang / f"{name}{suffix}").is_file():
        return f"{lang}/{name}{suffix}"
    return f"{name}{suffix}"


def render(name: str, /, **values: Any) -> str:
    """Render template ``name`` in the update's language (English where it has no translation) and keep
    it within Telegram's message length."""
    template = environment().get_template(template_name(name, language()))
    text = template.render(**values).strip()
    return clip(text, MessageLimit.MAX_TEXT_LENGTH)


def plain_text(name: str, /) -> str:
    """A plain-text message (``<name>.txt``, e.g. a button's short alert) in the update's language."""
    return (TEMPLATES_DIR / template_name(name, language(), ".txt")).read_text(encoding="utf-8").strip()


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
