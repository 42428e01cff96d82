"""Finding glossary concepts from what a patient typed, or in a description or report.

Lookup tries, in order: the exact name (term or alias, any language, case- and
accent-insensitive), the same with plurals folded ("lesions"), the name with its
spaces closed up ("hyper intense"), the terms a sentence contains ("what does mild
disc bulge at L4-5 mean"), and finally fuzzy matching with rapidfuzz. A fuzzy match is
only taken when it is clearly the best; otherwise the result carries "did you mean"
suggestions and no concept.

:meth:`Glossary.find_terms` scans any text (a series description such as
"SAG T1 POST GAD", or a 20,000-character report) for the longest names it contains,
in linear time.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import fuzz, process

from glossary.concepts import LANGUAGES, Concept, GlossaryDataError, load_concepts, read_concepts
from glossary.text import Token, clean_text, singular_forms, tokens

log = logging.getLogger(__name__)

# Short words that describe DICOM series and studies, spelled out so the glossary's names match.
# Only used when the short form is not a glossary name itself.
DESCRIPTION_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "ax": ("axial",),
    "axi": ("axial",),
    "tra": ("axial",),
    "trans": ("axial",),
    "sag": ("sagittal",),
    "cor": ("coronal",),
    "obl": ("oblique",),
    "wo": ("without",),
    "wwo": ("with", "and", "without"),
    "gd": ("gadolinium",),
    "abd": ("abdomen",),
    "lsp": ("lumbar", "spine"),
    "csp": ("cervical", "spine"),
    "tsp": ("thoracic", "spine"),
    "lt": ("left",),
    "rt": ("right",),
}

# Words that carry no meaning of their own in a question about a term.
STOPWORDS = frozenset(
    """a an the my me i is are was be it its this that these those what whats does do did mean means meaning
    of on in at to for and or with by from about please explain tell say says said word words term
    you your can could would should how why when where which who there their they them we our us
    have has had not no yes so if then than also just very really some any""".split()
)

FUZZY_ACCEPT = 88.0  # rapidfuzz ratio at or above which a lone best match is taken
FUZZY_MARGIN = 4.0  # ... when the best other concept scores at least this much lower
FUZZY_SUGGEST = 62.0  # ratio at or above which a concept is offered as "did you mean"
MAX_SUGGESTIONS = 5
MAX_QUERY_CHARS = 500  # a lookup reads at most this much; find_terms reads whole reports
_MAX_FUZZY_TOKENS = 12
_MAX_COMPACT_NGRAM = 3


class UnknownLanguageError(ValueError):
    """A language the glossary does not speak was asked for."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        super().__init__(f"Language {lang!r} is not available; choose one of: {', '.join(LANGUAGES)}.")


@dataclass(frozen=True)
class TermHit:
    """A glossary concept found in a text, with the words that named it."""

    concept: Concept
    matched: str
    start: int
    end: int


@dataclass(frozen=True)
class LookupResult:
    """The answer to a lookup: the concepts found (best first) and how, or suggestions."""

    query: str
    match: str  # exact | alias | phrase | fuzzy | none | empty
    concepts: tuple[Concept, ...] = ()
    suggestions: tuple[Concept, ...] = ()

    @property
    def found(self) -> bool:
        """Whether at least one concept was found."""
        return bool(self.concepts)

    @property
    def best(self) -> Concept | None:
        """The concept that best answers the query, if any."""
        return self.concepts[0] if self.concepts else None


@dataclass(frozen=True)
class Explanation:
    """A concept explained in one language, ready to show."""

    id: str
    term: str
    category: str
    explanation: str
    related: tuple[str, ...]
    related_ids: tuple[str, ...]
    source: str
    lang: str
    on_your_images: str = ""
    ask_your_doctor: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form (keys ``term``, ``explanation``, ``related``, ``source`` and more)."""
        return {
            "id": self.id,
            "term": self.term,
            "category": self.category,
            "explanation": self.explanation,
            "related": list(self.related),
            "related_ids": list(self.related_ids),
            "source": self.source,
            "lang": self.lang,
            "on_your_images": self.on_your_images,
            "ask_your_doctor": list(self.ask_your_doctor),
        }


class Glossary:
    """An index over concepts for lookup and term finding. Build once, use from any thread."""

    def __init__(self, concepts: Sequence[Concept]) -> None:
        # Incomplete entries and repeated ids (which the data tests reject) are left out, first one wins.
        kept: dict[str, Concept] = {}
        for c in concepts:
            if c.id and c.term and c.explanation and c.id not in kept:
                kept[c.id] = c
        self.concepts: tuple[Concept, ...] = tuple(kept.values())
        self.by_id: dict[str, Concept] = kept
        self._keys: dict[str, str] = {}
        self._english: dict[str, str] = {}  # normalised English term -> id, to tell "exact" from "alias"
        for c in self.concepts:
            self._english[" ".join(t.text for t in tokens(c.term))] = c.id
            for _lang, name in c.names():
                key = " ".join(t.text for t in tokens(clean_text(name)))
                if key:
                    self._keys.setdefault(key, c.id)
        self._vocab = {word for key in self._keys for word in key.split()}
        compact: dict[str, set[str]] = {}
        for key, cid in self._keys.items():
            compact.setdefault(key.replace(" ", ""), set()).add(cid)
        # A closed-up form that two concepts share is ambiguous: leave it out.
        self._compact = {k: next(iter(ids)) for k, ids in compact.items() if len(ids) == 1}
        self._max_ngram = max((key.count(" ") + 1 for key in self._keys), default=1)
        self._prefixes = set()
        for key in self._keys:
            parts = key.split()
            for n in range(1, len(parts)):
                self._prefixes.add(" ".join(parts[:n]))
        self._fuzzy_keys = list(self._keys)
        self._fuzzy_ids = [self._keys[k] for k in self._fuzzy_keys]
        self._canon_cache: dict[str, str] = {}

    # -- normalising ---------------------------------------------------------------------------

    def _canonical(self, word: str) -> str:
        """``word``, or the singular form the glossary knows when ``word`` itself is unknown."""
        if word in self._vocab:
            return word
        cached = self._canon_cache.get(word)
        if cached is not None:
            return cached
        result = word
        for form in singular_forms(word):
            if form in self._vocab:
                result = form
                break
        else:
            expansion = DESCRIPTION_ABBREVIATIONS.get(word)
            if expansion and all(w in self._vocab for w in expansion):
                result = " ".join(expansion)
        if len(self._canon_cache) < 50_000:
            self._canon_cache[word] = result
        return result

    def _words(self, text: str) -> list[Token]:
        """Tokens of ``text`` with plurals and description abbreviations folded to glossary words."""
        out: list[Token] = []
        for tok in tokens(text):
            canon = self._canonical(tok.text)
            for word in canon.split():
                out.append(Token(word, tok.start, tok.end))
        return out

    def _exact(self, words: Sequence[str]) -> str | None:
        key = " ".join(words)
        cid = self._keys.get(key)
        if cid is None and len(words) <= _MAX_COMPACT_NGRAM:
            cid = self._compact.get(key.replace(" ", ""))
        return cid

    # -- lookup ----------------------------------------------------------------------------------

    def lookup(self, query: str) -> LookupResult:
        """Concepts named by ``query``: exact, alias, phrase inside a sentence, or fuzzy; else suggestions."""
        text = clean_text(query or "", MAX_QUERY_CHARS)
        raw = [t.text for t in tokens(text)]
        if not raw:
            return LookupResult(query=query or "", match="empty")
        key = " ".join(raw)
        cid = self._keys.get(key)
        if cid is not None:
            kind = "exact" if self._english.get(key) == cid else "alias"
            return LookupResult(query=query, match=kind, concepts=(self.by_id[cid],))
        words = self._words(text)
        cid = self._exact([w.text for w in words]) or self._compact.get(key.replace(" ", ""))
        if cid is not None:
            return LookupResult(query=query, match="alias", concepts=(self.by_id[cid],))
        hits = self._scan(text, words)
        if hits:
            # The longest name is most likely what the question is about ("disc bulge" over "mild").
            ranked = sorted(hits, key=lambda h: (-(h.end - h.start), h.start))
            found = list(_unique(h.concept for h in ranked))
            # Words no name covered may still be a misspelt term ("gadolinum contrast").
            covered = {i for h in hits for i in range(h.start, h.end)}
            left = [w.text for w in words if w.start not in covered and w.text not in STOPWORDS]
            if left:
                extra = self._fuzzy(query, left)
                if extra.match == "fuzzy":
                    found.extend(c for c in extra.concepts if c not in found)
            return LookupResult(query=query, match="phrase", concepts=tuple(found))
        return self._fuzzy(query, raw)

    def _fuzzy(self, query: str, raw: list[str]) -> LookupResult:
        content = [w for w in raw if w not in STOPWORDS] or raw
        content = content[:_MAX_FUZZY_TOKENS]
        candidates = {" ".join(content)}
        if len(content) > 1:
            for n in range(1, min(3, len(content)) + 1):
                for i in range(len(content) - n + 1):
                    candidates.add(" ".join(content[i : i + n]))
        scores: dict[str, float] = {}
        for cand in candidates:
            if len(cand) < 3:
                continue
            for _choice, score, index in process.extract(
                cand, self._fuzzy_keys, scorer=fuzz.ratio, limit=10, score_cutoff=FUZZY_SUGGEST
            ):
                cid = self._fuzzy_ids[index]
                if float(score) > scores.get(cid, 0.0):
                    scores[cid] = float(score)
        if not scores:
            return LookupResult(query=query, match="none")
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        suggestions = tuple(self.by_id[cid] for cid, _ in ranked[:MAX_SUGGESTIONS])
        best_id, best = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
        if best >= FUZZY_ACCEPT and best - runner_up >= FUZZY_MARGIN:
            return LookupResult(query=query, match="fuzzy", concepts=(self.by_id[best_id],), suggestions=suggestions)
        return LookupResult(query=query, match="none", suggestions=suggestions)

    def suggest(self, query: str, limit: int = MAX_SUGGESTIONS) -> tuple[Concept, ...]:
        """Up to ``limit`` concepts whose names look like ``query`` ("did you mean")."""
        result = self.lookup(query)
        return (result.concepts + result.suggestions)[:limit] if result.match != "empty" else ()

    # -- finding terms in text ---------------------------------------------------------------------

    def find_terms(self, text: str) -> list[TermHit]:
        """Glossary concepts named in ``text``, in reading order, longest names first, each once."""
        cleaned = clean_text(text or "")
        hits = self._scan(cleaned, self._words(cleaned))
        seen: set[str] = set()
        out = []
        for hit in hits:
            if hit.concept.id not in seen:
                seen.add(hit.concept.id)
                out.append(hit)
        return out

    def _scan(self, text: str, words: list[Token]) -> list[TermHit]:
        """Greedy longest-match scan over ``words``; each word belongs to at most one hit.

        From each word, names are extended one word at a time only while some name starts that
        way, so a long report costs a few set look-ups per word.
        """
        hits: list[TermHit] = []
        seq = [w.text for w in words]
        i = 0
        while i < len(seq):
            best_n, best_id = 0, ""
            key = ""
            for n in range(1, min(self._max_ngram, len(seq) - i) + 1):
                key = seq[i] if n == 1 else f"{key} {seq[i + n - 1]}"
                cid = self._keys.get(key)
                if cid is not None:
                    best_n, best_id = n, cid
                if key not in self._prefixes:
                    break
            compact = ""
            for n in range(1, min(_MAX_COMPACT_NGRAM, len(seq) - i) + 1):
                compact += seq[i + n - 1]
                cid = self._compact.get(compact)
                if cid is not None and n > best_n:
                    best_n, best_id = n, cid
            if best_n:
                start, end = words[i].start, words[i + best_n - 1].end
                hits.append(TermHit(self.by_id[best_id], text[start:end], start, end))
                i += best_n
            else:
                i += 1
        return hits

    # -- explaining ----------------------------------------------------------------------------

    def explain(self, concept: Concept, lang: str = "en") -> Explanation:
        """``concept`` in ``lang`` (falls back to English where no translation is written)."""
        lang = (lang or "en").strip().lower()
        if lang not in LANGUAGES:
            raise UnknownLanguageError(lang)
        term, text, used = concept.term, concept.explanation, "en"
        tr = concept.translations.get(lang)
        if tr is not None and tr.explanation:
            text, used = tr.explanation, lang
            term = tr.term or concept.term
        related = tuple(rid for rid in concept.related if rid in self.by_id)
        return Explanation(
            id=concept.id,
            term=term,
            category=concept.category,
            explanation=text,
            related=tuple(self.by_id[rid].term for rid in related),
            related_ids=related,
            source=concept.source,
            lang=used,
            on_your_images=concept.on_your_images if used == "en" else "",
            ask_your_doctor=concept.ask_your_doctor if used == "en" else (),
        )

    def alias_count(self) -> int:
        """How many distinct names (terms, aliases and translations) the index knows."""
        return len(self._keys)


def _unique(concepts: Iterable[Concept]) -> tuple[Concept, ...]:
    seen: set[str] = set()
    out = []
    for c in concepts:
        if c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return tuple(out)


def load_glossary(directory: Path | str | None = None) -> Glossary:
    """A :class:`Glossary` over the term files in ``directory`` (default: the packaged ones)."""
    return Glossary(load_concepts(directory))


@functools.cache
def default_glossary() -> Glossary:
    """The packaged glossary, loaded once per process.

    The data tests hold the files to :func:`glossary.concepts.load_concepts`'s rules; at run time a
    problem in one entry (say a related id not written yet) is logged and that link or entry is left
    out, so one slip in the data does not silence the whole glossary. No term files at all is an error.
    """
    concepts, problems = read_concepts()
    if problems:
        log.warning("glossary term files have %d problem(s); run tests/glossary to see them", len(problems))
    if not concepts:
        raise GlossaryDataError(problems or ["no concepts in the glossary term files"])
    return Glossary(concepts)
