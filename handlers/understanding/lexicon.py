"""The lexicon: the TOML files under ``data/`` turned into phrase matchers and a typo corrector.

Phrases are token sequences; a token ending in ``*`` matches any word starting with that stem. Matching is a
dictionary lookup per word (plus one lookup per prefix length for stems), so it stays linear in the message.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from rapidfuzz import process
from rapidfuzz.distance import OSA

from handlers.understanding.text import fold

_SPLIT = re.compile(r"[^\w*]+")
_MIN_STEM = 2
_LONGEST_STEM = 24
#: Longer "words" (pasted codes, keyboard mashing) are never typo-corrected, which keeps the time bounded.
MAX_CORRECTED_LENGTH = 30


def phrase_tokens(phrase: str) -> tuple[str, ...]:
    """A lexicon phrase as folded pattern tokens ("X-ray" -> ("x", "ray"), "letzt*" -> ("letzt*",))."""
    return tuple(t for t in (fold(p).replace("'", "") for p in _SPLIT.split(phrase)) if t)


def token_matches(pattern: str, word: str) -> bool:
    """Whether one folded word matches one pattern token (exact, or stem when the pattern ends in ``*``)."""
    if pattern.endswith("*"):
        return word.startswith(pattern[:-1])
    return word == pattern


@dataclass(frozen=True, slots=True)
class Match:
    """A phrase found in the message: tokens ``start`` to ``end`` (exclusive) carry ``value``."""

    start: int
    end: int
    value: str

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class Matcher:
    """Finds lexicon phrases in a list of folded words."""

    exact: dict[str, list[tuple[tuple[str, ...], str]]] = field(default_factory=dict)
    stems: dict[str, list[tuple[tuple[str, ...], str]]] = field(default_factory=dict)

    @classmethod
    def build(cls, entries: Iterable[tuple[str, str]]) -> Matcher:
        """From ``(phrase, value)`` pairs."""
        matcher = cls()
        for phrase, value in entries:
            pattern = phrase_tokens(phrase)
            if not pattern:
                continue
            first = pattern[0]
            table = matcher.stems if first.endswith("*") else matcher.exact
            key = first[:-1] if first.endswith("*") else first
            table.setdefault(key, []).append((pattern, value))
        return matcher

    def words(self) -> Iterator[str]:
        """Every whole (non-stem) word in the phrases, for the typo corrector's vocabulary."""
        for table in (self.exact, self.stems):
            for entries in table.values():
                for pattern, _ in entries:
                    yield from (t for t in pattern if not t.endswith("*"))

    def stem_keys(self) -> Iterator[str]:
        for table in (self.exact, self.stems):
            for entries in table.values():
                for pattern, _ in entries:
                    yield from (t[:-1] for t in pattern if t.endswith("*"))

    def _candidates(self, word: str) -> Iterator[tuple[tuple[str, ...], str]]:
        yield from self.exact.get(word, ())
        if self.stems:
            for n in range(_MIN_STEM, min(len(word), _LONGEST_STEM) + 1):
                yield from self.stems.get(word[:n], ())

    def at(self, words: Sequence[str], i: int) -> list[Match]:
        """Every phrase that starts at word ``i``."""
        found = []
        for pattern, value in self._candidates(words[i]):
            end = i + len(pattern)
            if end <= len(words) and all(token_matches(p, w) for p, w in zip(pattern, words[i:end], strict=True)):
                found.append(Match(i, end, value))
        return found

    def find_all(self, words: Sequence[str]) -> list[Match]:
        """All phrases anywhere, overlapping allowed (for cue detection)."""
        found: list[Match] = []
        for i in range(len(words)):
            found.extend(self.at(words, i))
        return found

    def find_longest(self, words: Sequence[str]) -> list[Match]:
        """Non-overlapping phrases, left to right, the longest at each position (for slot values)."""
        found: list[Match] = []
        i = 0
        while i < len(words):
            here = self.at(words, i)
            if here:
                best = max(here, key=lambda m: m.length)
                found.append(best)
                i = best.end
            else:
                i += 1
        return found

    def any(self, words: Sequence[str]) -> bool:
        return any(self.at(words, i) for i in range(len(words)))


def _read(name: str) -> dict[str, Any]:
    data = resources.files("handlers.understanding").joinpath("data").joinpath(name).read_bytes()
    return tomllib.loads(data.decode("utf-8"))


def _folded_set(words: Iterable[str]) -> frozenset[str]:
    return frozenset(" ".join(phrase_tokens(w)) for w in words)


@dataclass(eq=False)
class Lexicon:
    """Everything the understanding reads from data files (compared and hashed by identity)."""

    modality: Matcher
    modality_upper: dict[str, str]
    body_part: Matcher
    guards: dict[str, tuple[frozenset[str], frozenset[str]]]
    cues: dict[str, Matcher]
    cue_index: Matcher
    time_index: Matcher
    months: Matcher
    ambiguous_months: frozenset[str]
    month_context: frozenset[str]
    seasons: Matcher
    season_months: dict[str, tuple[int, int]]
    units: Matcher
    numbers: Matcher
    time_words: dict[str, Matcher]
    language_words: dict[str, frozenset[str]]
    own_possessives: frozenset[str]
    others: frozenset[str]
    owner_of: frozenset[str]
    third_person: frozenset[str]
    genitive_my: frozenset[str]
    recipient_before: frozenset[str]
    duration_prepositions: frozenset[str]
    recipient_stop: frozenset[str]
    dative: frozenset[str]
    titles: frozenset[str]
    vocabulary: list[str]
    vocabulary_by_initial: dict[str, list[str]]
    known: frozenset[str]
    stem_keys: frozenset[str]
    typos: dict[str, str]
    glossary_terms: frozenset[str]

    def is_known(self, word: str) -> bool:
        """A word the corrector leaves alone: in the lexicon, a common word, a stem's inflection, or a number."""
        if word in self.known or not word.isalpha():
            return True
        return any(word[:n] in self.stem_keys for n in range(3, min(len(word), _LONGEST_STEM) + 1))

    def correct(self, word: str) -> str:
        """The lexicon word a typo most likely meant ("ultrasond" -> "ultrasound"), or the word itself."""
        if word in self.typos:
            return self.typos[word]
        if len(word) < 4 or len(word) > MAX_CORRECTED_LENGTH or self.is_known(word):
            return word
        return _correct_cached(self, word)


@lru_cache(maxsize=8192)
def _correct_cached(lexicon: Lexicon, word: str) -> str:
    # Typos rarely hit the first letter, and requiring it keeps names ("jones") from becoming words ("ones").
    candidates = lexicon.vocabulary_by_initial.get(word[0], [])
    limit = 1 if len(word) < 8 else 2
    best = process.extractOne(word, candidates, scorer=OSA.distance, score_cutoff=limit)
    return best[0] if best is not None else word


def _entries(table: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for value, spec in table.items():
        words = spec["words"] if isinstance(spec, dict) else spec
        for phrase in words:
            yield phrase, str(value)


#: Separates the kind from the value in the combined time index ("months\x003").
KIND_SEP = "\x00"


def _time_entries(time: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every time phrase once, valued "kind<KIND_SEP>value", so one pass finds all of them."""
    for kind in ("months", "units", "numbers", "weekdays"):
        for phrase, value in _entries(time[kind]):
            yield phrase, f"{kind}{KIND_SEP}{value}"
    for name, spec in time["seasons"].items():
        for phrase in spec["words"]:
            yield phrase, f"seasons{KIND_SEP}{name}"
    for name, words in time["words"].items():
        for phrase in words:
            yield phrase, f"{name}{KIND_SEP}{name}"


def _by_initial(words: list[str]) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for word in words:
        table.setdefault(word[0], []).append(word)
    return table


def _glossary_terms() -> frozenset[str]:
    """Terms and aliases from the glossary's data, if present (used only to recognise explain requests)."""
    terms: set[str] = set()
    try:
        folder = Path(str(resources.files("glossary").joinpath("terms")))
    except (ModuleNotFoundError, TypeError):
        return frozenset()
    if not folder.is_dir():
        return frozenset()
    for path in sorted(folder.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        for concept in data.get("concept", []):
            if not isinstance(concept, dict):
                continue
            names = [concept.get("term", ""), *list(concept.get("aliases", []) or [])]
            for lang in ("de", "es", "ru"):
                local = concept.get(lang)
                if isinstance(local, dict):
                    names += [local.get("term", ""), *list(local.get("aliases", []) or [])]
            for name in names:
                if isinstance(name, str) and name.strip():
                    terms.add(" ".join(phrase_tokens(name)))
    return frozenset(terms)


@lru_cache(maxsize=1)
def load_lexicon() -> Lexicon:
    """Read and index the lexicon files once per process."""
    modalities = _read("modalities.toml")
    body_parts = _read("body_parts.toml")
    guards = _read("guards.toml")
    cues = _read("cues.toml")
    time = _read("time.toml")
    language = _read("language.toml")
    recipients = _read("recipients.toml")
    typos = _read("typos.toml")

    modality = Matcher.build(_entries({k: v for k, v in modalities.items()}))
    modality_upper = {w: code for code, spec in modalities.items() for w in spec.get("upper_only", [])}
    body_part = Matcher.build(_entries(body_parts))
    cue_matchers = {name: Matcher.build((w, name) for w in spec["words"]) for name, spec in cues.items()}
    months = Matcher.build(_entries(time["months"]))
    seasons = Matcher.build((w, name) for name, spec in time["seasons"].items() for w in spec["words"])
    season_months = {name: (int(spec["months"][0]), int(spec["months"][1])) for name, spec in time["seasons"].items()}
    units = Matcher.build(_entries(time["units"]))
    numbers = Matcher.build(_entries(time["numbers"]))
    weekdays = Matcher.build(_entries(time["weekdays"]))
    time_words = {name: Matcher.build((w, name) for w in words) for name, words in time["words"].items()}
    language_words = {lang: _folded_set(language[lang]) for lang in ("en", "de", "es", "ru")}

    matchers: list[Matcher] = [modality, body_part, months, seasons, units, numbers, weekdays]
    matchers += list(cue_matchers.values()) + list(time_words.values())
    vocab_words: set[str] = set()
    stems: set[str] = set()
    for m in matchers:
        vocab_words.update(m.words())
        stems.update(m.stem_keys())
    known = set(vocab_words)
    for words in language_words.values():
        known.update(words)
    known.update(fold(w) for w in language["others"])
    known.update(fold(w) for w in recipients["dative"])
    # The corrector only proposes content words long enough to be told apart.
    vocabulary = sorted(w for w in vocab_words if len(w) >= 4 and w.isalpha())

    lexicon = Lexicon(
        modality=modality,
        modality_upper=modality_upper,
        body_part=body_part,
        guards={
            fold(word): (_folded_set(spec.get("not_after", [])), _folded_set(spec.get("not_before", [])))
            for word, spec in guards.items()
        },
        cues=cue_matchers,
        cue_index=Matcher.build((w, name) for name, spec in cues.items() for w in spec["words"]),
        time_index=Matcher.build(_time_entries(time)),
        months=months,
        ambiguous_months=_folded_set(time["month_context"]["ambiguous"]),
        month_context=_folded_set(time["month_context"]["before"]),
        seasons=seasons,
        season_months=season_months,
        units=units,
        numbers=numbers,
        time_words=time_words,
        language_words=language_words,
        own_possessives=_folded_set(language["own_possessives"]),
        others=_folded_set(language["others"]),
        owner_of=_folded_set(language["owner_of"]),
        third_person=_folded_set(language["third_person"]),
        genitive_my=_folded_set(language["genitive_my"]),
        recipient_before=_folded_set(recipients["before"]),
        duration_prepositions=_folded_set(recipients["duration_prepositions"]),
        recipient_stop=_folded_set(recipients["stop"]),
        dative=_folded_set(recipients["dative"]),
        titles=_folded_set(recipients["titles"]),
        vocabulary=vocabulary,
        vocabulary_by_initial=_by_initial(vocabulary),
        known=frozenset(known),
        stem_keys=frozenset(s for s in stems if len(s) >= 3),
        typos={fold(k): fold(v) for k, v in typos.items()},
        glossary_terms=_glossary_terms(),
    )
    return lexicon
