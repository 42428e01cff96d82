"""Glossary term data: the concept model, the TOML loader and its validation.

Term data lives in ``glossary/terms/*.toml``, one file per category, one ``[[concept]]``
table per concept::

    [[concept]]
    id = "flair"                      # unique slug across all files
    term = "FLAIR"
    category = "technique"            # modality | technique | anatomy | finding | report_language | measurement
    aliases = ["fluid attenuated inversion recovery", "flare"]  # abbreviations, spellings, lay forms
    explanation = "..."               # 2 to 4 short plain sentences (Flesch-Kincaid grade <= 10, aim <= 8)
    on_your_images = "..."            # optional
    ask_your_doctor = ["..."]         # optional
    related = ["t2_weighted", "mri"]  # ids of other concepts
    source = "RadiologyInfo: MRI of the head"  # public source the facts were checked against
    [concept.de]                      # optional translations (de, es, ru): term, aliases, explanation
    aliases = ["..."]
    explanation = "..."

Names are compared after :func:`glossary.text.normalise` (case, accents, punctuation folded).
:func:`load_concepts` reads every file and checks it as a whole: unique ids, aliases that
do not collide between concepts, related ids that exist, a source for every entry, a known
category, and two to four sentences of explanation. All problems are reported at once.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glossary.text import normalise

TERMS_DIR = Path(__file__).resolve().parent / "terms"

CATEGORIES = frozenset({"modality", "technique", "anatomy", "finding", "report_language", "measurement"})
LANGUAGES = ("en", "de", "es", "ru")
TRANSLATION_LANGUAGES = frozenset(LANGUAGES) - {"en"}

CONCEPT_KEYS = frozenset(
    {
        "id",
        "term",
        "category",
        "aliases",
        "explanation",
        "on_your_images",
        "ask_your_doctor",
        "related",
        "source",
        *TRANSLATION_LANGUAGES,
    }
)
TRANSLATION_KEYS = frozenset({"term", "aliases", "explanation"})

_ID = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
# A sentence ends at . ! ? followed by space or the end, not after a one-letter abbreviation ("e.g.").
_SENTENCE_END = re.compile(r"(?<![A-Za-z]\.[A-Za-z])(?<!\b[A-Za-z])[.!?](?=\s|$)")


class GlossaryDataError(ValueError):
    """The term files break the format; ``problems`` lists every one, each naming file and concept."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"{len(problems)} problem(s) in the glossary term files: {shown}{more}")


@dataclass(frozen=True)
class Translation:
    """A concept in another language: its own aliases, and optionally its name and explanation."""

    aliases: tuple[str, ...] = ()
    explanation: str = ""
    term: str = ""


@dataclass(frozen=True)
class Concept:
    """One glossary entry: a word or phrase patients meet, explained in plain English."""

    id: str
    term: str
    category: str
    explanation: str
    source: str
    aliases: tuple[str, ...] = ()
    on_your_images: str = ""
    ask_your_doctor: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    translations: Mapping[str, Translation] = field(default_factory=dict)
    origin: str = ""

    def names(self) -> Iterable[tuple[str, str]]:
        """Every ``(language, name)`` this concept can be looked up by: term, aliases, translations."""
        yield "en", self.term
        for alias in self.aliases:
            yield "en", alias
        for lang, tr in self.translations.items():
            if tr.term:
                yield lang, tr.term
            for alias in tr.aliases:
                yield lang, alias


def count_sentences(text: str) -> int:
    """Number of sentences in ``text`` (ends of . ! ? before a space or the end)."""
    text = text.strip()
    if not text:
        return 0
    ends = len(_SENTENCE_END.findall(text))
    return ends if text[-1] in ".!?" else ends + 1


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _str_list(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return tuple(v.strip() for v in value if v.strip())


def _parse_translation(raw: Any, where: str, problems: list[str]) -> Translation | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: a translation must be a table")
        return None
    unknown = set(raw) - TRANSLATION_KEYS
    if unknown:
        problems.append(f"{where}: unknown key(s) {sorted(unknown)}")
    aliases = _str_list(raw.get("aliases"))
    if aliases is None:
        problems.append(f"{where}: aliases must be a list of strings")
        aliases = ()
    explanation = _str(raw.get("explanation"))
    if explanation and not 2 <= count_sentences(explanation) <= 4:
        problems.append(f"{where}: explanation must have 2 to 4 sentences")
    return Translation(aliases=aliases, explanation=explanation, term=_str(raw.get("term")))


def _parse_concept(raw: Any, origin: str, index: int, problems: list[str]) -> Concept | None:
    where = f"{origin} concept #{index + 1}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a table")
        return None
    cid = _str(raw.get("id"))
    if cid:
        where = f"{origin} concept {cid!r}"
    if not _ID.match(cid):
        problems.append(f"{where}: id must be a lower-case slug (a-z, 0-9, _)")
    unknown = set(raw) - CONCEPT_KEYS
    if unknown:
        problems.append(f"{where}: unknown key(s) {sorted(unknown)}")
    term = _str(raw.get("term"))
    if not term:
        problems.append(f"{where}: term is missing")
    category = _str(raw.get("category"))
    if category not in CATEGORIES:
        problems.append(f"{where}: category {category!r} is not one of {sorted(CATEGORIES)}")
    explanation = _str(raw.get("explanation"))
    if not explanation:
        problems.append(f"{where}: explanation is missing")
    elif not 2 <= count_sentences(explanation) <= 4:
        problems.append(f"{where}: explanation must have 2 to 4 sentences, has {count_sentences(explanation)}")
    source = _str(raw.get("source"))
    if not source:
        problems.append(f"{where}: source is missing (name the public source the facts were checked against)")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("aliases", "ask_your_doctor", "related"):
        value = _str_list(raw.get(key))
        if value is None:
            problems.append(f"{where}: {key} must be a list of strings")
            value = ()
        lists[key] = value
    on_your_images = raw.get("on_your_images", "")
    if not isinstance(on_your_images, str):
        problems.append(f"{where}: on_your_images must be a string")
        on_your_images = ""
    translations: dict[str, Translation] = {}
    for lang in sorted(TRANSLATION_LANGUAGES):
        if lang in raw:
            tr = _parse_translation(raw[lang], f"{where} [{lang}]", problems)
            if tr is not None:
                translations[lang] = tr
    return Concept(
        id=cid,
        term=term,
        category=category,
        explanation=explanation,
        source=source,
        aliases=lists["aliases"],
        on_your_images=on_your_images.strip(),
        ask_your_doctor=lists["ask_your_doctor"],
        related=lists["related"],
        translations=translations,
        origin=origin,
    )


def _read_file(path: Path, problems: list[str]) -> list[Concept]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        problems.append(f"{path.name}: cannot be read as TOML ({exc})")
        return []
    unknown = set(data) - {"concept"}
    if unknown:
        problems.append(f"{path.name}: unknown top-level key(s) {sorted(unknown)}")
    raw_concepts = data.get("concept", [])
    if not isinstance(raw_concepts, list):
        problems.append(f"{path.name}: 'concept' must be an array of tables ([[concept]])")
        return []
    out = []
    for i, raw in enumerate(raw_concepts):
        concept = _parse_concept(raw, path.name, i, problems)
        if concept is not None:
            out.append(concept)
    return out


def check_concepts(concepts: list[Concept]) -> list[str]:
    """Problems across concepts: duplicate ids, colliding names, unknown or self related ids."""
    problems: list[str] = []
    seen: dict[str, Concept] = {}
    for c in concepts:
        if c.id in seen:
            problems.append(f"{c.origin}: duplicate id {c.id!r} (also in {seen[c.id].origin})")
        else:
            seen[c.id] = c
    owner: dict[str, tuple[str, str]] = {}
    for c in concepts:
        for lang, name in c.names():
            key = normalise(name)
            if not key:
                problems.append(f"{c.origin} concept {c.id!r}: name {name!r} has no letters or digits")
                continue
            other = owner.get(key)
            if other is None:
                owner[key] = (c.id, name)
            elif other[0] != c.id:
                problems.append(
                    f"{c.origin} concept {c.id!r}: {lang} name {name!r} collides with {other[1]!r} of {other[0]!r}"
                )
    for c in concepts:
        for rid in c.related:
            if rid == c.id:
                problems.append(f"{c.origin} concept {c.id!r}: related lists itself")
            elif rid not in seen:
                problems.append(f"{c.origin} concept {c.id!r}: related id {rid!r} does not exist")
    return problems


def read_concepts(directory: Path | str | None = None) -> tuple[list[Concept], list[str]]:
    """Every concept in the ``*.toml`` files of ``directory``, and every problem found, without raising.

    For tools that must show what is there even while the data is being edited; the bot uses
    :func:`load_concepts`.
    """
    folder = Path(directory) if directory is not None else TERMS_DIR
    problems: list[str] = []
    concepts: list[Concept] = []
    files = sorted(folder.glob("*.toml"))
    if not files:
        return [], [f"{folder}: no term files (*.toml) found"]
    for path in files:
        concepts.extend(_read_file(path, problems))
    problems.extend(check_concepts(concepts))
    return concepts, problems


def load_concepts(directory: Path | str | None = None) -> list[Concept]:
    """Every concept in the ``*.toml`` files of ``directory`` (default: the packaged term files).

    Raises :class:`GlossaryDataError` listing every problem when any file breaks the format.
    """
    concepts, problems = read_concepts(directory)
    if problems:
        raise GlossaryDataError(problems)
    return concepts
