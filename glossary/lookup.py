"""Finding glossary concepts from what a patient typed, or in a description or report.

Lookup tries, in order: the exact name (term or alias, any language, case- and
accent-insensitive), the same with plurals folded ("lesions"), the name with its
spaces closed up ("hyper intense"), the terms a sentence contains ("what does mild
disc bulge at L4-5 mean"), and fuzzy matching with rapidfuzz for the words no name
covered. A fuzzy match is only taken when it is a few typing slips away and clearly
closer than any other concept; otherwise the result carries "did you mean" suggestions.

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
from rapidfuzz.distance import OSA

from glossary.concepts import LANGUAGES, Concept, GlossaryDataError, load_concepts, read_concepts
from glossary.text import Token, clean_text, singular_forms, tokens, word_stem

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
    have has had not no yes so if then than also just very really some any
    was ist bedeutet heisst ein eine einen der die das den dem mein meine meinem im auf und oder bitte
    que es significa el la los las un una mi mis del en con por para favor
    что такое это значит означает мой моя мое мои мне в на и у по как""".split()
)

# "Mr Smith" in a letter is a person, not an MR scan; capital-only "MR" still is.
_TITLES = frozenset({"Mr", "Mrs", "Ms", "Dr"})

FUZZY_SUGGEST = 62.0  # ratio at or above which a concept is offered as "did you mean"
MAX_SUGGESTIONS = 5
MAX_QUERY_CHARS = 500  # a lookup reads at most this much; find_terms reads whole reports
_MAX_FUZZY_TOKENS = 12
_MAX_FUZZY_NGRAM = 5
_MAX_FUZZY_CANDIDATES = 40
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


def _stemmed(key: str) -> str:
    """A name with each word cut to its stem (:func:`glossary.text.word_stem`)."""
    return " ".join(word_stem(w) for w in key.split())


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
        english_names: dict[str, str] = {}  # normalised English term or alias -> id, for word families
        for c in self.concepts:
            self._english[" ".join(t.text for t in tokens(c.term))] = c.id
            for lang, name in c.names():
                key = " ".join(t.text for t in tokens(clean_text(name)))
                if key:
                    self._keys.setdefault(key, c.id)
                    if lang == "en":
                        english_names.setdefault(key, c.id)
        self._vocab = {word for key in self._keys for word in key.split()}
        # Word families: every English name again with each word cut to its stem, so "attenuated" finds
        # "attenuation" and "compressed" finds "compression". The stems are English ones, so names in other
        # languages take no part (German "Hernie" would otherwise share "herniated" with "herniation").
        # A stemmed name two concepts share is left out, not guessed.
        families: dict[str, set[str]] = {}
        for key, cid in english_names.items():
            if key.replace(" ", "").isascii():
                families.setdefault(_stemmed(key), set()).add(cid)
        self._family = {stem: next(iter(ids)) for stem, ids in families.items() if len(ids) == 1}
        compact: dict[str, set[str]] = {}
        for key, cid in self._keys.items():
            compact.setdefault(key.replace(" ", ""), set()).add(cid)
        # A closed-up form that two concepts share is ambiguous: leave it out.
        self._compact = {k: next(iter(ids)) for k, ids in compact.items() if len(ids) == 1}
        self._max_ngram = max((key.count(" ") + 1 for key in self._keys), default=1)
        self._prefixes: set[str] = set()
        for key in self._keys:
            parts = key.split()
            for n in range(1, len(parts)):
                self._prefixes.add(" ".join(parts[:n]))
        # Names by length: a name can only be k edits away from a query whose length differs by <= k,
        # so fuzzy matching looks at a few short lists instead of every name.
        self._by_length: dict[int, tuple[list[str], list[str]]] = {}
        for key, cid in self._keys.items():
            bucket = self._by_length.setdefault(len(key), ([], []))
            bucket[0].append(key)
            bucket[1].append(cid)
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
        if cid is None and key.replace(" ", "").isascii():
            cid = self._family.get(_stemmed(key))
        if cid is not None:
            return LookupResult(query=query, match="alias", concepts=(self.by_id[cid],))
        hits = self._scan(text, words)
        covered = {w.start for w in words for h in hits if h.start <= w.start < h.end}
        focus = {i for i, w in enumerate(words) if w.start not in covered and w.text not in STOPWORDS}
        if hits and not focus:
            return LookupResult(query=query, match="phrase", concepts=_by_length(hits))
        fuzzy, span = self._fuzzy([w.text for w in words], focus)
        if not hits:
            return LookupResult(query, fuzzy.match, fuzzy.concepts, fuzzy.suggestions)
        found = list(_by_length(hits))
        if fuzzy.best is not None:
            # A misspelt name over several words ("joint fluiid") is a better reading than the one word
            # it contains ("joint"); a misspelt single word is one more term in the question.
            found = [c for c in found if c.id != fuzzy.best.id]
            found.insert(0 if span > 1 else len(found), fuzzy.best)
        return LookupResult(query=query, match="phrase", concepts=tuple(found), suggestions=fuzzy.suggestions)

    def _fuzzy(self, words: list[str], focus: set[int]) -> tuple[LookupResult, int]:
        """Fuzzy match of ``words`` (or of their parts that include a ``focus`` word), and its word count.

        A match is taken when it is within a few edits (Damerau-Levenshtein, see :func:`allowed_edits`)
        and clearly closer than any other concept; otherwise near names become suggestions.
        """
        words = words[: _MAX_FUZZY_TOKENS * 2]
        content = [w for w in words if w not in STOPWORDS] or words
        # The whole question without its little words, then every run of up to five words that starts
        # and ends on a real word and holds a word no name covered ("watre on the lung").
        candidates: dict[str, int] = {" ".join(content[:_MAX_FUZZY_TOKENS]): len(content)}
        if len(words) <= _MAX_FUZZY_NGRAM:
            candidates.setdefault(" ".join(words), len(words))  # little words can be part of a name
        for i in range(len(words)):
            if words[i] in STOPWORDS:
                continue
            for j in range(i, min(i + _MAX_FUZZY_NGRAM, len(words))):
                if words[j] in STOPWORDS:
                    continue
                if not focus or any(k in focus for k in range(i, j + 1)):
                    candidates.setdefault(" ".join(words[i : j + 1]), j - i + 1)
            if len(candidates) >= _MAX_FUZZY_CANDIDATES:
                break
        near: dict[str, tuple[int, int]] = {}  # concept id -> (edits, -words): smaller is better
        ratios: dict[str, float] = {}
        for cand, n_words in candidates.items():
            if len(cand) < 3:
                continue
            allowed = allowed_edits(len(cand.replace(" ", "")))
            if allowed:
                for cid, edits in self._nearest(cand, len(cand) - allowed, len(cand) + allowed, allowed):
                    rank = (int(edits), -n_words)
                    if rank < near.get(cid, (99, 0)):
                        near[cid] = rank
            if n_words > 1 and cand != " ".join(content[:_MAX_FUZZY_TOKENS]):
                continue  # "did you mean" comes from the whole question and its single words
            # A ratio of 62 or more needs the other name to be between 0.45 and 2.2 times as long.
            for cid, score in self._similar(cand, int(len(cand) * 0.45), int(len(cand) * 2.23) + 1):
                ratios[cid] = max(ratios.get(cid, 0.0), score)
        ranked_near = sorted(near.items(), key=lambda kv: kv[1])
        order = [cid for cid, _ in ranked_near]
        order += [cid for cid, _ in sorted(ratios.items(), key=lambda kv: -kv[1]) if cid not in near]
        suggestions = tuple(self.by_id[cid] for cid in order[:MAX_SUGGESTIONS])
        if ranked_near:
            best_id, best = ranked_near[0]
            if len(ranked_near) == 1 or ranked_near[1][1] > best:
                result = LookupResult(
                    query=" ".join(words), match="fuzzy", concepts=(self.by_id[best_id],), suggestions=suggestions
                )
                return result, -best[1]
        return LookupResult(query=" ".join(words), match="none", suggestions=suggestions), 0

    def _nearest(self, cand: str, shortest: int, longest: int, allowed: int) -> Iterable[tuple[str, float]]:
        """(concept id, edits) of names of length ``shortest``..``longest`` within ``allowed`` edits."""
        for length in range(max(1, shortest), longest + 1):
            bucket = self._by_length.get(length)
            if bucket is None:
                continue
            for _choice, edits, index in process.extract(
                cand, bucket[0], scorer=OSA.distance, score_cutoff=allowed, limit=5
            ):
                yield bucket[1][index], edits

    def _similar(self, cand: str, shortest: int, longest: int) -> Iterable[tuple[str, float]]:
        """(concept id, ratio) of names of length ``shortest``..``longest`` with ratio >= FUZZY_SUGGEST."""
        for length in range(max(1, shortest), longest + 1):
            bucket = self._by_length.get(length)
            if bucket is None:
                continue
            for _choice, score, index in process.extract(
                cand, bucket[0], scorer=fuzz.ratio, limit=5, score_cutoff=FUZZY_SUGGEST
            ):
                yield bucket[1][index], float(score)

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
                if text[start:end] not in _TITLES:
                    hits.append(TermHit(self.by_id[best_id], text[start:end], start, end))
                    i += best_n
                    continue
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
            related=tuple(self._name_in(self.by_id[rid], used) for rid in related),
            related_ids=related,
            source=concept.source,
            lang=used,
            on_your_images=concept.on_your_images if used == "en" else "",
            ask_your_doctor=concept.ask_your_doctor if used == "en" else (),
        )

    @staticmethod
    def _name_in(concept: Concept, lang: str) -> str:
        tr = concept.translations.get(lang)
        return tr.term if tr is not None and tr.term and tr.explanation else concept.term

    def alias_count(self) -> int:
        """How many distinct names (terms, aliases and translations) the index knows."""
        return len(self._keys)


def allowed_edits(length: int) -> int:
    """How many typing slips a name of ``length`` letters may have and still be taken as that name."""
    if length < 5:
        return 0  # "last" is one slip from "lat", "mass" from "mast": too close to call
    if length <= 9:
        return 1
    if length <= 15:
        return 2
    return 3


def _by_length(hits: list[TermHit]) -> tuple[Concept, ...]:
    """Concepts of ``hits``, longest name first ("disc bulge" before "mild"), each once."""
    return _unique(h.concept for h in sorted(hits, key=lambda h: (-(h.end - h.start), h.start)))


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
