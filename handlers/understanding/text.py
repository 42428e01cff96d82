"""Cleaning and tokenising a patient's message before any understanding happens.

Each stage is a small pure function so tests can hold each one to account:
``strip_markup`` -> ``remove_invisible`` -> ``fix_lookalikes`` -> ``tokenize`` (which also folds case and
accents for matching while keeping the cleaned text's spans, so a recipient like "Dr. Patel" or a term like
"FLAIR" comes back exactly as typed).
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

#: Longest message we read, in characters. A longer one (a whole story, or something pasted) is read from its
#: first and last ``MAX_MESSAGE_CHARS // 2`` characters, where requests sit, so understanding takes bounded time.
MAX_MESSAGE_CHARS = 1600

_TAG = re.compile(r"<[^<>]{0,200}>")
_MD_LINK = re.compile(r"\[([^\[\]]{0,200})\]\([^()\s]{0,500}\)")
_MD_MARKS = re.compile(r"[*_~`|]+")
_URL = re.compile(r"https?://\S{1,500}")

# Zero-width and other invisible format characters (category Cf covers most; a few others are listed).
_INVISIBLE_EXTRA = {"\u034f", "\u115f", "\u1160", "\u3164", "\uffa0", "\u180e"}

# Letters from Cyrillic and Greek that look like Latin ones, and the way back. Used only inside a word
# that mixes scripts, or in a word made only of look-alikes inside a message written in the other script.
_CYR_TO_LAT = {
    "а": "a",
    "в": "b",
    "е": "e",
    "ё": "e",
    "к": "k",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "с": "c",
    "т": "t",
    "у": "y",
    "х": "x",
    "і": "i",
    "ј": "j",
    "ѕ": "s",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "һ": "h",
    "А": "A",
    "В": "B",
    "Е": "E",
    "К": "K",
    "М": "M",
    "Н": "H",
    "О": "O",
    "Р": "P",
    "С": "C",
    "Т": "T",
    "У": "Y",
    "Х": "X",
    "І": "I",
    "Ј": "J",
    "Ѕ": "S",
    # Greek
    "α": "a",
    "ο": "o",
    "ρ": "p",
    "ι": "i",
    "κ": "k",
    "ν": "v",
    "τ": "t",
    "υ": "u",
    "χ": "x",
    "ε": "e",
    "Α": "A",
    "Β": "B",
    "Ε": "E",
    "Ζ": "Z",
    "Η": "H",
    "Ι": "I",
    "Κ": "K",
    "Μ": "M",
    "Ν": "N",
    "Ο": "O",
    "Ρ": "P",
    "Τ": "T",
    "Υ": "Y",
    "Χ": "X",
}
_LAT_TO_CYR = {
    "a": "а",
    "e": "е",
    "k": "к",
    "m": "м",
    "o": "о",
    "p": "р",
    "c": "с",
    "t": "т",
    "y": "у",
    "x": "х",
    "A": "А",
    "B": "В",
    "E": "Е",
    "K": "К",
    "M": "М",
    "H": "Н",
    "O": "О",
    "P": "Р",
    "C": "С",
    "T": "Т",
    "Y": "У",
    "X": "Х",
}
_IS_CONTRACTIONS = frozenset({"what", "that", "it", "there", "here", "who", "where", "how", "he", "she", "this"})
# Format (Cf) characters live in the Basic Multilingual Plane plus a few supplementary blocks (tags, shorthand
# format controls, musical symbol formatting); scanning just those keeps import fast.
_CF_RANGES = (
    range(0x10000),
    range(0x110B0, 0x110D0),
    range(0x13430, 0x13440),
    range(0x1BCA0, 0x1BCA4),
    range(0x1D170, 0x1D180),
    range(0xE0000, 0xE0080),
)
_INVISIBLE_TABLE: dict[int, str | None] = {
    code: None
    for block in _CF_RANGES
    for code in block
    if unicodedata.category(chr(code)) == "Cf" or chr(code) in _INVISIBLE_EXTRA
}
_INVISIBLE_TABLE.update({ord(c): "'" for c in "’‘ʼ`´"})
_INVISIBLE_TABLE.update({ord(c): "-" for c in "‐‑‒–—−"})
_SPACE = re.compile(r"\s")
_WORD = re.compile(r"[^\W_]+")
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


@dataclass(frozen=True, slots=True)
class Token:
    """One word of the cleaned message.

    ``text`` is as typed (after cleaning); ``norm`` is lowercased and accent-folded for matching;
    ``start``/``end`` index the cleaned text; ``possessive`` marks an English "'s" that was split off.
    """

    text: str
    norm: str
    start: int
    end: int
    possessive: bool = False


def strip_markup(text: str) -> str:
    """Drop HTML tags and entities, Markdown emphasis and links, and URLs, keeping the words."""
    text = html.unescape(text)
    text = _TAG.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    return _MD_MARKS.sub(" ", text)


def remove_invisible(text: str) -> str:
    """NFKC-normalise (full-width and styled letters become plain) and drop zero-width characters.

    Apostrophe look-alikes become ``'`` and dashes become ``-`` so "Maria’s" and "x‑ray" read as typed.
    """
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE_TABLE)
    return _SPACE.sub(" ", text)


def _script(ch: str) -> str:
    """'cyr', 'lat', 'grk' or '' for a letter, by its Unicode name (cheap: only called on letters)."""
    if "a" <= ch.lower() <= "z":
        return "lat"
    code = ord(ch)
    if 0x0400 <= code <= 0x052F:
        return "cyr"
    if 0x0370 <= code <= 0x03FF:
        return "grk"
    if ch.isalpha() and code < 0x0250:
        return "lat"  # Latin-1 and Latin Extended letters (ä, ñ, ß ...)
    return ""


def fix_lookalikes(text: str) -> str:
    """Replace Cyrillic/Greek letters that pose as Latin ones (and the reverse) where they are out of place.

    A word mixing scripts is turned into its majority script. A word made only of look-alike letters is
    turned into the message's main script (so "МRI" or an all-Cyrillic "СТ" in an English message is read
    as Latin), while genuine Russian text is left alone.
    """
    if text.isascii():
        return text
    words = _WORD.findall(text)
    counts = {"lat": 0.0, "cyr": 0.0}
    for word in words:
        scripts = {_script(c) for c in word if c.isalpha()}
        if scripts == {"lat"}:
            counts["lat"] += 1
        elif scripts == {"cyr"}:
            # a word of look-alikes only ("такое", "СТ") is weaker evidence than one with e.g. "ч" or "ж"
            counts["cyr"] += 0.5 if all(c in _CYR_TO_LAT for c in word if c.isalpha()) else 1
    main = "cyr" if counts["cyr"] > counts["lat"] else "lat"

    def repl(match: re.Match[str]) -> str:
        word = match.group(0)
        letters = [c for c in word if c.isalpha()]
        if not letters:
            return word
        scripts = [_script(c) for c in letters]
        n_lat = scripts.count("lat")
        n_other = scripts.count("cyr") + scripts.count("grk")
        if n_lat and n_other:  # mixed word: majority wins, ties go to the message's main script
            target = "lat" if (n_lat > n_other or (n_lat == n_other and main == "lat")) else "cyr"
        elif n_other and main == "lat" and all(c in _CYR_TO_LAT for c in letters):
            target = "lat"
        elif "grk" in scripts and all(c in _CYR_TO_LAT for c in letters):
            target = "lat"
        else:
            return word
        table = _CYR_TO_LAT if target == "lat" else _LAT_TO_CYR
        if target == "cyr":
            return "".join(table.get(c, c) if _script(c) == "lat" else c for c in word)
        return "".join(table.get(c, c) if _script(c) in ("cyr", "grk") else c for c in word)

    return _WORD.sub(repl, text)


def fold(word: str) -> str:
    """Lowercase and strip accents ("Última" -> "ultima", "Röntgen" -> "rontgen", "ё" -> "е")."""
    word = word.lower().replace("ß", "ss")
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def clean(text: str) -> str:
    """The message as the understanding reads it: bounded length, no markup, no invisible or look-alike tricks."""
    text = _head_and_tail(text, MAX_MESSAGE_CHARS * 4)  # markup removal may shrink it; cut again after
    text = remove_invisible(strip_markup(text))
    text = re.sub(r" {2,}", " ", text).strip()
    return fix_lookalikes(_head_and_tail(text, MAX_MESSAGE_CHARS))


def _head_and_tail(text: str, limit: int) -> str:
    """The first and last ``limit // 2`` characters of a long text, cut at spaces where possible."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit // 2 - 2], text[-(limit // 2 - 1) :]
    head = head.rsplit(" ", 1)[0] if " " in head[-40:] else head
    tail = tail.split(" ", 1)[1] if " " in tail[:40] else tail
    return f"{head} \n {tail}"


def tokenize(cleaned: str) -> list[Token]:
    """Words of the cleaned text with their spans; an English possessive "'s" is split off and flagged."""
    tokens: list[Token] = []
    for match in _TOKEN.finditer(cleaned):
        raw = match.group(0)
        start, end = match.span()
        possessive = False
        low = raw.lower()
        if low.endswith("'s") and len(raw) > 2:
            raw, end, possessive = raw[:-2], end - 2, True
            if raw.lower() in _IS_CONTRACTIONS:  # "what's" is "what is", not a possessive
                tokens.append(Token(raw, fold(raw), start, end))
                tokens.append(Token("'s", "is", end, end + 2))
                continue
        norm = fold(raw).replace("'", "")
        tokens.append(Token(raw, norm, start, end, possessive))
    return tokens
