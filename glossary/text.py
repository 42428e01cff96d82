"""Text clean-up shared by the glossary: what a patient typed -> comparable tokens.

Every key in the glossary and every query go through the same two steps, so
"Hyper-intense", "hyperintense" and "HYPERINTENSE" meet in the middle:

1. :func:`clean_text` drops markup and control characters and bounds the length.
2. :func:`tokens` splits into word tokens (letters and digits, any script), folds
   case and accents, and turns ``+`` into the word ``plus`` (so "C+" survives).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

# A pasted report is rarely over 20,000 characters; we still read ten times that, then stop.
MAX_TEXT_CHARS = 200_000

_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])")
_TAG = re.compile(r"<[^<>]{0,200}>")
_ENTITY = re.compile(r"&(?:[a-zA-Z]{2,8}|#[0-9]{1,6});")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_TOKEN = re.compile(r"[^\W_]+|\+")


@dataclass(frozen=True)
class Token:
    """One normalised word and where it sits in the cleaned text."""

    text: str
    start: int
    end: int


def clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` without HTML/XML tags, entities and control characters, at most ``limit`` characters."""
    if not text:
        return ""
    text = text[:limit]
    text = _ANSI.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _ENTITY.sub(" ", text)
    text = _CONTROL.sub(" ", text)
    return text


@functools.lru_cache(maxsize=65536)
def fold(word: str) -> str:
    """Case- and accent-insensitive form of one word (``Ödem`` -> ``odem``, ``ё`` -> ``е``)."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def tokens(text: str) -> list[Token]:
    """Normalised word tokens of already-cleaned ``text``, with their character spans."""
    out: list[Token] = []
    for match in _TOKEN.finditer(text):
        raw = match.group(0)
        word = "plus" if raw == "+" else fold(raw)
        if word:
            out.append(Token(word, match.start(), match.end()))
    return out


def normalise(text: str) -> str:
    """The comparable form of a term or query: folded tokens joined by single spaces."""
    return " ".join(t.text for t in tokens(clean_text(text)))


def singular_forms(word: str) -> list[str]:
    """Likely singular forms of an English (or Latin/Greek medical) plural, most likely first."""
    forms: list[str] = []
    if len(word) < 4:
        return forms
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith("ses") or word.endswith("xes"):
        forms.append(word[:-2] + "is")  # stenoses -> stenosis, diagnoses -> diagnosis
    if word.endswith("es"):
        forms.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        forms.append(word[:-1])
    if word.endswith("ae"):
        forms.append(word[:-1])  # vertebrae -> vertebra
    if word.endswith("i"):
        forms.append(word[:-1] + "us")  # foci -> focus
    if word.endswith("ices"):
        forms.append(word[:-4] + "ex")  # cortices -> cortex
    if word.endswith("ing"):
        forms.append(word[:-3] + "e")  # enhancing -> enhance
        forms.append(word[:-3])
    if word.endswith("ed"):
        forms.append(word[:-1])  # enhanced -> enhance
        forms.append(word[:-2])  # thickened -> thicken
    return forms


# Derivational endings, longest first: "attenuated" and "attenuation" share the stem "attenu".
_DERIVATIONAL = ("ations", "ation", "ments", "ment", "ings", "ing", "ions", "ion", "ated", "ates", "ate", "ities",
                 "ity", "ies", "ed", "es", "ic", "al", "s", "y", "e")
MIN_STEM = 5


def word_stem(word: str) -> str:
    """A crude English stem for matching word families ("attenuated" ~ "attenuation"); ``word`` itself when
    cutting would leave fewer than :data:`MIN_STEM` letters, so short words never collide."""
    for suffix in _DERIVATIONAL:
        if word.endswith(suffix) and len(word) - len(suffix) >= MIN_STEM:
            return word[: -len(suffix)]
    return word
