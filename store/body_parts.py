"""Body parts: one canonical English name per region, from DICOM terms and the words on real CDs.

Reads Body Part Examined (0018,0015) and the Study/Series Description (0008,1030)/(0008,103E) texts.
The vocabulary, the DICOM defined terms and the words in several languages live in
``store/body_parts.toml``; this module only matches them.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_FILE = Path(__file__).with_name("body_parts.toml")

CANONICAL = (
    "brain", "head", "face", "sinuses", "orbit", "neck", "cervical spine", "thoracic spine", "lumbar spine",
    "sacrum", "spine", "chest", "lung", "heart", "breast", "abdomen", "pelvis", "liver", "kidney", "prostate",
    "thyroid", "shoulder", "upper arm", "elbow", "forearm", "wrist", "hand", "finger", "hip", "thigh", "knee",
    "leg", "ankle", "foot", "toe", "whole body",
)  # fmt: skip


@dataclass(frozen=True)
class _Vocabulary:
    dicom: dict[str, str]  # squeezed defined term -> canonical
    phrases: dict[str, str]  # folded phrase -> canonical
    longest_phrase: int  # in words
    within: dict[str, str]  # canonical -> broader canonical
    matches: dict[str, frozenset[str]]
    query_words: dict[str, frozenset[str]]


def fold_text(text: str) -> str:
    """Lower case, no accents, words separated by single spaces ("L-SPINE" -> "l spine", "Schädel" -> "schadel")."""
    text = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return " ".join(re.split(r"[^0-9a-z]+", text)).strip()


def _squeeze(term: str) -> str:
    return re.sub(r"[\s\-_]+", "", term.upper())


@cache
def _vocabulary() -> _Vocabulary:
    data = tomllib.loads(DATA_FILE.read_text(encoding="utf-8"))
    parts: dict[str, dict[str, object]] = data["parts"]
    unknown = set(parts) ^ set(CANONICAL)
    if unknown:
        raise ValueError(f"{DATA_FILE.name}: parts differ from the canonical vocabulary: {sorted(unknown)}")
    dicom: dict[str, str] = {}
    phrases: dict[str, str] = {}
    within: dict[str, str] = {}
    matches: dict[str, frozenset[str]] = {}
    for name, entry in parts.items():
        for term in entry.get("dicom", []):  # type: ignore[attr-defined]
            dicom[_squeeze(str(term))] = name
        phrases[fold_text(name)] = name
        for word in entry.get("words", []):  # type: ignore[attr-defined]
            phrases.setdefault(fold_text(str(word)), name)
        if "within" in entry:
            within[name] = str(entry["within"])
        listed = {str(m) for m in entry.get("matches", [name])}  # type: ignore[attr-defined]
        matches[name] = frozenset(listed | {name})
    for name in [*within.values(), *(m for ms in matches.values() for m in ms)]:
        if name not in parts:
            raise ValueError(f"{DATA_FILE.name}: {name!r} is not a canonical body part")
    query_words = {fold_text(k): frozenset(str(v) for v in vs) for k, vs in data.get("query_words", {}).items()}
    longest = max(len(p.split()) for p in phrases)
    return _Vocabulary(dicom, phrases, longest, within, matches, query_words)


def parts_in_text(text: str | None) -> list[str]:
    """Canonical parts named in a free text, in the order they appear (longest phrase wins at each word)."""
    if not text:
        return []
    vocab = _vocabulary()
    words = fold_text(text).split()
    found: list[str] = []
    i = 0
    while i < len(words):
        for size in range(min(vocab.longest_phrase, len(words) - i), 0, -1):
            part = vocab.phrases.get(" ".join(words[i : i + size]))
            if part is not None:
                found.append(part)
                i += size
                break
        else:
            i += 1
    return found


def part_from_body_part_examined(value: str | None) -> str:
    """The canonical part for a Body Part Examined value (defined term or free text), '' when unknown."""
    if not value:
        return ""
    exact = _vocabulary().dicom.get(_squeeze(value))
    if exact:
        return exact
    found = parts_in_text(value)
    return found[0] if found else ""


def is_within(part: str, broader: str) -> bool:
    """Whether ``part`` lies inside ``broader`` (brain within head, lumbar spine within spine)."""
    within = _vocabulary().within
    seen: set[str] = set()
    while part in within and part not in seen:
        seen.add(part)
        part = within[part]
        if part == broader:
            return True
    return False


def refine(chosen: str, candidates: list[str]) -> str:
    """``chosen``, or a candidate inside it when one is (a "CT HEAD" whose description says "brain" -> brain)."""
    for candidate in candidates:
        if chosen and is_within(candidate, chosen):
            return candidate
    return chosen


def normalise_body_part(body_part_examined: str | None, *descriptions: str | None) -> str:
    """Canonical body part from Body Part Examined, then the descriptions; '' when none names one.

    Body Part Examined wins when it is known; a more specific part named in a description refines it.
    """
    from_descriptions = [part for text in descriptions for part in parts_in_text(text)]
    chosen = part_from_body_part_examined(body_part_examined)
    if not chosen and from_descriptions:
        chosen = from_descriptions[0]
    return refine(chosen, from_descriptions)


def body_part_matches(name: str) -> set[str]:
    """The stored canonical values a patient's request for ``name`` should find; empty when unknown.

    "brain" -> {"brain", "head"}; "spine" -> every spine part; "back" -> the lower and middle spine.
    """
    vocab = _vocabulary()
    folded = fold_text(name or "")
    if not folded:
        return set()
    if folded in vocab.query_words:
        return set(vocab.query_words[folded])
    part = vocab.phrases.get(folded) or vocab.dicom.get(_squeeze(name))
    if part is None:
        found = parts_in_text(name)
        if not found:
            return set()
        part = refine(found[0], found)
    return set(vocab.matches[part])
