"""From a patient's message to an intent with slots: ``understand(text, today)``.

Stages, each a small function: clean and tokenise (``text``), correct typos against the lexicon, find the
cues, the modality, body part and study references (``dates``), decide the intent, then read the slots that
intent takes. Everything is offline and table-driven; the words live in ``data/*.toml``.

What the conversation gets back (:class:`Understanding`):

- ``intent`` and ``slots``: exactly what ``lightbox understand`` prints and the devset holds.
- ``reason``: for ``unknown``, why: ``other_person`` (someone else's images), ``diagnosis`` (asks for a
  diagnosis or a judgement), ``dosing`` (medication advice), ``delete_study`` (deleting one study, which the
  bot does not do), ``small_talk`` (thanks, greetings), ``empty``, or ``not_understood``. The bot refuses kindly
  and points to the care team for the first three.
- ``problems``: what makes an understood request impossible as asked, so the bot can correct it instead of
  acting: ``duration_not_positive`` ("for minus two days"), ``duration_too_short`` (under an hour),
  ``duration_too_long`` (over 30 days), ``recipient_public`` ("with the whole internet", "publicly"),
  ``date_in_future`` ("my scan from 2150"), ``date_before_imaging`` (before 1895). The slot still holds what
  the patient said (``duration_hours: -48``, ``which: {"year": 2150}``), so the reply can quote it.
- ``language``: "en", "de", "es" or "ru", a best guess for replying in kind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from handlers.understanding.dates import (
    Duration,
    Reference,
    TimeRef,
    find_durations,
    find_time_refs,
    reference_problems,
    until_before,
    until_date,
)
from handlers.understanding.lexicon import Lexicon, Match, load_lexicon
from handlers.understanding.text import Token, clean, tokenize

INTENTS = (
    "show_study",
    "list_studies",
    "explain_term",
    "describe_current",
    "compare",
    "share",
    "list_shares",
    "revoke_share",
    "activity",
    "privacy",
    "forget_me",
    "help",
    "unknown",
)
SLOT_KEYS = ("modality", "body_part", "which", "term", "duration_hours", "recipient", "all")

#: Slots each intent may carry; anything else found in the message is not returned for that intent.
INTENT_SLOTS: dict[str, tuple[str, ...]] = {
    "show_study": ("modality", "body_part", "which"),
    "list_studies": ("modality", "body_part", "which"),
    "explain_term": ("term",),
    "describe_current": (),
    "compare": ("modality", "body_part", "which"),
    "share": ("modality", "body_part", "which", "duration_hours", "recipient"),
    "list_shares": (),
    "revoke_share": ("modality", "body_part", "which", "recipient", "all"),
    "activity": ("modality", "body_part", "which"),
    "privacy": (),
    "forget_me": (),
    "help": (),
    "unknown": (),
}

#: Words read from a message; longer ones are read from their first and last ``MAX_TOKENS // 2`` words.
MAX_TOKENS = 160

#: Share links last between one hour and 30 days (design.md).
MIN_SHARE_HOURS = 1
MAX_SHARE_HOURS = 720


@dataclass(frozen=True)
class Understanding:
    """What a message asks for. ``slots`` only holds what the patient said (absent keys were not said)."""

    intent: str
    slots: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    problems: tuple[str, ...] = ()
    language: str = "en"
    # A share the patient wants protected with an access code ("share my MRI with Dr Lee with a code").
    # Not a slot: the devset's slots stay exactly what it lists.
    wants_code: bool = False

    def as_json(self, details: bool = False) -> dict[str, Any]:
        """The devset's shape ``{"intent", "slots"}``; with ``details`` also reason, problems, language and
        whether a share should have an access code."""
        out: dict[str, Any] = {"intent": self.intent, "slots": dict(self.slots)}
        if details:
            out["reason"] = self.reason
            out["problems"] = list(self.problems)
            out["language"] = self.language
            out["wants_code"] = self.wants_code
        return out


@dataclass
class _Message:
    """A message after reading: tokens, corrected words and every cue found, indexed for the rules."""

    cleaned: str
    tokens: list[Token]
    words: list[str]
    lex: Lexicon
    cues: dict[str, list[Match]]
    modality_matches: list[Match] = field(default_factory=list)
    body_matches: list[Match] = field(default_factory=list)

    def has(self, *names: str) -> bool:
        return any(self.cues.get(n) for n in names)

    def first(self, name: str) -> Match | None:
        found = self.cues.get(name)
        return min(found, key=lambda m: (m.start, -m.length)) if found else None


def detect_language(cleaned: str, words: Sequence[str], lexicon: Lexicon) -> str:
    """ "ru" for Cyrillic text; otherwise whichever of en/de/es has the most of its common words (en on ties)."""
    cyr = sum(1 for c in cleaned if "\u0400" <= c <= "\u04ff")
    lat = sum(1 for c in cleaned if c.isascii() and c.isalpha())
    if cyr > lat:
        return "ru"
    scores = {lang: sum(1 for w in words if w in lexicon.language_words[lang]) for lang in ("en", "de", "es")}
    lower = cleaned.lower()
    scores["de"] += 2 * sum(lower.count(c) for c in "äöüß")
    scores["es"] += 2 * sum(lower.count(c) for c in "ñ¿¡áéíóú")
    best = max(scores.values())
    for lang in ("en", "de", "es"):
        if scores[lang] == best:
            return lang
    return "en"  # pragma: no cover


def _find_cues(words: Sequence[str], lexicon: Lexicon) -> dict[str, list[Match]]:
    found: dict[str, list[Match]] = {}
    for m in lexicon.cue_index.find_all(words):
        found.setdefault(m.value, []).append(m)
    return found


def _guarded(msg: _Message, match: Match) -> bool:
    """A one-word match that its neighbours rule out ("take it back", "cat pictures")."""
    if match.length != 1:
        return False
    guard = msg.lex.guards.get(msg.words[match.start])
    if guard is None:
        return False
    not_after, not_before = guard
    before = msg.words[match.start - 1] if match.start > 0 else ""
    after = msg.words[match.end] if match.end < len(msg.words) else ""
    return before in not_after or after in not_before


def find_modalities(msg: _Message) -> list[Match]:
    """Modality mentions in order (guarded words dropped; capitals-only words like "MR" checked as typed)."""
    found = [m for m in msg.modality_matches if not _guarded(msg, m)]
    taken = {i for m in found for i in range(m.start, m.end)}
    for i, token in enumerate(msg.tokens):
        code = msg.lex.modality_upper.get(token.text)
        if code and i not in taken:
            found.append(Match(i, i + 1, code))
    return sorted(found, key=lambda m: m.start)


def find_body_parts(msg: _Message, exclude: set[int]) -> list[Match]:
    """Body-part mentions in order, longest phrase first, skipping tokens already read as something else."""
    found = msg.body_matches
    return [m for m in found if not _guarded(msg, m) and not any(i in exclude for i in range(m.start, m.end))]


def find_references(msg: _Message, today: dt.date) -> tuple[list[TimeRef], set[int]]:
    """Study references in order: dated ones, then "previous", "latest", "earliest" in the words left over."""
    refs = find_time_refs(msg.words, msg.tokens, msg.cleaned, today, msg.lex)
    taken = {i for r in refs for i in range(r.start, r.end)}
    for name, value in (("before_last", "previous"), ("latest", "latest"), ("earliest", "earliest")):
        for m in msg.lex.cues[name].find_longest(msg.words):
            if any(i in taken for i in range(m.start, m.end)):
                continue
            refs.append(TimeRef(m.start, m.end, value))
            taken.update(range(m.start, m.end))
    refs.sort(key=lambda r: r.start)
    return refs, taken


def _span_text(msg: _Message, start: int, end: int) -> str:
    """The cleaned text of tokens ``start`` to ``end``, as typed."""
    text = msg.cleaned[msg.tokens[start].start : msg.tokens[end - 1].end]
    if msg.tokens[end - 1].possessive:
        text += "'s"
    return text.strip(" \"'«»“”„.,;:!?()[]")


def _strip_cues(msg: _Message, start: int, end: int, lead: str, tail: str) -> tuple[int, int]:
    """Trim words matching the ``lead`` cue off the front and ``tail`` off the back of a span."""
    changed = True
    while changed and start < end:
        changed = False
        fronts = [m for m in msg.lex.cues[lead].at(msg.words, start) if m.end <= end]
        if fronts:
            start, changed = max(m.end for m in fronts), True
        for i in range(max(start, end - _LONGEST_CUE), end):  # tail phrases are a few words long
            if any(m.end == end for m in msg.lex.cues[tail].at(msg.words, i)):
                end, changed = i, True
                break
    return start, end


_LONGEST_CUE = 6


def read_explain(msg: _Message) -> tuple[str, str | None, int, int] | None:
    """An explain request: ``(kind, term, start, end)`` with kind "term", "describe" or "diagnosis", or None.

    The term is what follows "explain"/"what does ... mean"/"was bedeutet"/"qué significa"/"что значит" (or,
    more cautiously, "what is"), minus articles and trailing words like "mean" or "sequence"; ``start``/``end``
    is its token span. A term pointing at the screen ("this image") makes it "describe"; the patient's own
    health in it ("what is wrong with me") makes it "diagnosis".
    """
    starts, ends = _clauses(msg)

    def near_start(m: Match, slack: int) -> bool:
        return m.start - starts[m.start] <= slack

    strong = [m for m in msg.cues.get("explain_strong", []) if near_start(m, 3)]
    strong += [
        m
        for m in msg.cues.get("explain_mean", [])
        if near_start(m, 3)
        and any(t.end == ends[m.start] and msg.words[t.start] in _MEAN_WORDS for t in msg.cues.get("term_tail", []))
    ]
    weak = [m for m in msg.cues.get("explain_weak", []) if near_start(m, 2)]
    for kind, matches in (("strong", strong), ("weak", weak)):
        if not matches:
            continue
        opening = min(matches, key=lambda m: (m.start, -m.end))
        opening = max((m for m in matches if m.start == opening.start), key=lambda m: m.end)
        clause_end = ends[opening.start]
        start, end = _strip_cues(msg, opening.end, clause_end, "term_lead", "term_tail")
        if start >= end:
            if kind == "strong" and opening.end < clause_end:
                # "explain this to me" trims to nothing after "this"
                return ("describe", None, opening.end, clause_end)
            continue
        term_words = msg.words[start:end]
        lex = msg.lex
        deictic = lex.cues["deictic"].at(msg.words, start)
        if deictic or msg.has("describe"):
            # "what is this picture showing", "explain this image", "what does it mean"
            if _mentions(msg, "diagnosis", start, end):
                return ("diagnosis", None, start, end)
            return ("describe", None, start, end)
        self_ref = any(
            w
            in (
                "my",
                "me",
                "i",
                "mein",
                "meine",
                "mich",
                "mir",
                "mi",
                "mis",
                "me",
                "мой",
                "моя",
                "мои",
                "меня",
                "мне",
                "у",
            )
            for w in term_words
        )
        if self_ref and _mentions(msg, "diagnosis", start, end):
            return ("diagnosis", None, start, end)
        if kind == "weak":
            if self_ref or _mentions(msg, "not_a_term", start, end) or end - start > 6:
                continue
            if msg.words[opening.end] in _DEFINITE and not _looks_medical(msg, start, end):
                continue  # "what's the score of the game"
            if any(msg.cues.get(c) for c in ("privacy", "link", "activity", "help", "list")):
                continue
            if any(_mentions(msg, c, start, end) for c in ("latest", "earliest", "before_last")):
                continue  # "what is the latest scan" asks for a study, not a word
        if self_ref and (msg.has("image") or _has_study_words(msg)):
            return ("describe", None, start, end)  # "explain my MRI"
        term = _span_text(msg, start, end)
        if not term:
            continue
        return ("term", term, start, end)
    return None


def _clauses(msg: _Message) -> tuple[list[int], list[int]]:
    """For each word, where its sentence starts and ends (token indices), split at . ? ! ; and line breaks."""
    n = len(msg.words)
    starts = [0] * n
    ends = [n] * n
    current = 0
    for i in range(1, n):
        gap = msg.cleaned[msg.tokens[i - 1].end : msg.tokens[i].start]
        if any(c in gap for c in ".?!;\n") and not (msg.words[i - 1] in msg.lex.titles and gap.strip() == "."):
            current = i
        starts[i] = current
    nxt = n
    for i in range(n - 1, -1, -1):
        ends[i] = nxt
        if starts[i] == i:
            nxt = i
    return starts, ends


_MEAN_WORDS = frozenset({"mean", "means", "meaning", "stand", "stands"})


def bare_glossary_term(msg: _Message) -> str | None:
    """A message that is nothing but a glossary term ("effusion?", "FLAIR", "Erguss"), as typed."""
    start, end = _strip_cues(msg, 0, len(msg.words), "term_lead", "term_tail")
    if start >= end or end - start > 5:
        return None
    if " ".join(msg.words[start:end]) not in msg.lex.glossary_terms:
        return None
    return _span_text(msg, start, end) or None


_DEFINITE = frozenset({"the", "der", "die", "das", "el", "la", "los", "las"})
_MEDICAL_ENDINGS = (
    "itis",
    "osis",
    "oma",
    "emia",
    "algia",
    "ectomy",
    "plasty",
    "pathy",
    "gram",
    "graphy",
    "scopy",
    "al",
    "ic",
    "ia",
    "ous",
    "ence",
    "ance",
    "ation",
    "ive",
    "ary",
    "oid",
    "um",
    "us",
)


def _looks_medical(msg: _Message, start: int, end: int) -> bool:
    """A term the glossary knows, or one that looks like medical language (suffixes, abbreviations)."""
    words = msg.words[start:end]
    if " ".join(words) in msg.lex.glossary_terms or any(w in msg.lex.glossary_terms for w in words):
        return True
    if any(i in range(start, end) for m in msg.modality_matches + msg.body_matches for i in range(m.start, m.end)):
        return True
    texts = [t.text for t in msg.tokens[start:end]]
    return any((t.isupper() and len(t) > 1) or any(c.isdigit() for c in t) for t in texts) or any(
        len(w) > 5 and w.endswith(_MEDICAL_ENDINGS) for w in words
    )


def _mentions(msg: _Message, cue: str, start: int, end: int) -> bool:
    return any(start <= m.start and m.end <= end for m in msg.cues.get(cue, []))


def _has_study_words(msg: _Message) -> bool:
    return bool(msg.modality_matches or msg.body_matches)


def other_person(msg: _Message, exclude: set[int]) -> bool:
    """Whether the images asked about belong to someone else ("Maria's MRI", "the scan of my wife")."""
    lex = msg.lex
    image_like = {i for m in msg.cues.get("image", []) for i in range(m.start, m.end)}
    image_like |= {i for m in msg.modality_matches for i in range(m.start, m.end)}
    image_like |= {i for m in msg.body_matches for i in range(m.start, m.end)}
    n = len(msg.words)

    def image_near(i: int, span: int = 3) -> bool:
        return any(j in image_like for j in range(i + 1, min(n, i + 1 + span)))

    for i, token in enumerate(msg.tokens):
        if i in exclude:
            continue
        word = msg.words[i]
        if token.possessive and word not in lex.own_possessives and i not in image_like and image_near(i):
            return True
        if word in lex.third_person and image_near(i, 2):
            return True
        # Russian genitive names after the study: "МРТ Марии", "снимки Иванова"
        if (
            i > 0
            and not text_is_latin(token.text)
            and token.text[:1].isupper()
            and token.text[1:].islower()
            and word.endswith(("ии", "ы", "а", "я", "и", "ой", "ого"))
            and (i - 1) in image_like
            and not lex.is_known(word)
            and not lex.body_part.at(msg.words, i)
        ):
            return True
        # German genitive names: "Marias MRT", "Peters Röntgenbild"
        text = token.text
        if (
            i > 0
            and len(text) > 3
            and text[0].isupper()
            and text[1:].islower()
            and text.endswith("s")
            and not lex.is_known(word)
            and not lex.is_known(word[:-1])
            and i not in image_like
            and image_near(i, 1)
        ):
            return True
        if word in lex.owner_of and i + 1 < n:
            j = i + 1
            if msg.words[j] in ("my", "mi", "mein", "meiner", "meinem", "meines", "meine", "the", "la", "el"):
                j += 1
            if j < n and j not in exclude and msg.words[j] in lex.others:
                return True
            # "la resonancia de María": a capitalised name after "de"/"of" that is not a month or study word
            if (
                j == i + 1
                and j < n
                and j not in exclude
                and msg.tokens[j].text[:1].isupper()
                and msg.tokens[j].text[1:].islower()
                and not lex.months.at(msg.words, j)
                and not lex.is_known(msg.words[j])  # a German noun is capitalised too: "vom Gelenk"
                and j not in image_like
                and any(k in image_like for k in range(max(0, i - 3), i))
            ):
                return True
        if word in lex.genitive_my and i + 1 < n and msg.words[i + 1] in lex.others and i + 1 not in exclude:
            return True
        # Russian relatives in the genitive: "МРТ жены", "снимки мамы" (the lexicon lists only those forms)
        if not word.isascii() and word in lex.others:
            return True
    return False


def text_is_latin(text: str) -> bool:
    return all(c.isascii() or not c.isalpha() or c in "äöüßáéíóúñ" for c in text)


def find_recipient(msg: _Message, share_at: int, taken: set[int]) -> tuple[int, int] | None:
    """Token span of the person a share goes to.

    After "with"/"to"/"mit"/"an"/"con"/"a"/"с"/"для" (the first one after the share verb that is followed by a
    person rather than a study or a duration), a Russian dative ("отправь МРТ врачу"), or right after the verb
    when a link or study follows ("give Dr Patel a link").
    """
    lex = msg.lex
    n = len(msg.words)
    blocked = {i for m in msg.cues.get("image", []) for i in range(m.start, m.end)}
    blocked |= {i for m in msg.modality_matches for i in range(m.start, m.end)}
    blocked |= {i for m in msg.body_matches for i in range(m.start, m.end)}
    blocked |= {i for m in msg.cues.get("link", []) for i in range(m.start, m.end)}
    blocked |= {i for m in msg.cues.get("share", []) for i in range(m.start, m.end)}

    def span_from(start: int) -> tuple[int, int] | None:
        end = start
        while end < n:
            if end > start and (end in taken or msg.words[end].isdigit()):
                break
            if end > start and msg.words[end] in lex.recipient_stop:
                # "Dr Lee and Dr Kim" is one list of people; "and" before anything else ends it
                joins = (
                    msg.words[end] in _AND
                    and end + 1 < n
                    and (msg.words[end + 1] in lex.titles or msg.words[end + 1] in _MY)
                )
                if not joins:
                    break
            if end > start:
                gap = msg.cleaned[msg.tokens[end - 1].end : msg.tokens[end].start]
                if any(c in gap for c in ",;!?()") or ("." in gap and msg.words[end - 1] not in lex.titles):
                    break
            end += 1
        if end == start or any(i in blocked for i in range(start, end)):
            return None
        if all(msg.words[i] in _ARTICLES for i in range(start, end)):
            return None  # "for my latest ultrasound": the possessive belongs to a study
        return start, end

    granted = _granted_person(msg, taken | blocked)
    if granted is not None and (span := span_from(granted)) is not None:
        return span
    for i in range(share_at, n - 1):
        word = msg.words[i]
        nxt = i + 1
        if i in taken or word not in lex.recipient_before or nxt in taken or msg.words[nxt].isdigit():
            continue
        if word in lex.duration_prepositions and (
            lex.numbers.at(msg.words, nxt) or lex.units.at(msg.words, nxt) or lex.cues["latest"].at(msg.words, nxt)
        ):
            continue
        if msg.words[nxt] in _NOT_PEOPLE:
            continue
        span = span_from(nxt)
        if span is not None:
            return span
    for i in range(share_at, n):
        if msg.words[i] in lex.dative and i not in taken:
            start = i - 1 if i > 0 and msg.words[i - 1] in _MY_DATIVE and i - 1 not in taken else i
            return span_from(start)  # "моему неврологу" keeps its "my", as "my neurologist" does
    # "share mri dr lee": a title after the verb starts the recipient
    for i in range(share_at, n):
        if msg.words[i] in lex.titles and i not in taken and i not in blocked:
            span = span_from(i)
            if span is not None:
                return span
    # "give Dr Patel a link", "send my GP the MRI"
    verbs = sorted(m.end for m in msg.cues.get("share", []) + msg.cues.get("make", []))
    for first in verbs:
        if first >= n or not (msg.words[first] in lex.titles or msg.words[first] in ("my", "mein", "meinem")):
            continue
        end = first + 1
        while end < n and end not in blocked and msg.words[end] not in _ARTICLES and end - first < 4:
            end += 1
        if end < n and end > first + 1 and (msg.words[end] in _ARTICLES or end in blocked):
            return first, end
    return None


_AND = frozenset({"and", "und", "y", "и"})
_MY_DATIVE = frozenset({"моему", "моей", "моеи", "нашему", "нашей", "нашеи"})
_MY = frozenset({"my", "mein", "meine", "meinen", "meinem", "mi", "mis", "мой", "моя", "мою", "мое", "мои", "моих"})
_NOT_PEOPLE = frozenset(
    {
        "me",
        "mich",
        "mir",
        "меня",
        "мне",
        "it",
        "this",
        "that",
        "es",
        "eso",
        "это",
        "you",
        "dich",
        "ti",
        "тебя",
        "them",
        "us",
    }
)
_ARTICLES = frozenset(
    {"a", "an", "the", "my", "einen", "ein", "eine", "den", "das", "un", "una", "el", "la", "mi", "mein", "meine"}
)


def decide(msg: _Message, study_mentioned: bool, study_tokens: set[int]) -> tuple[str, str | None]:
    """The intent (and, for unknown, the reason) from the cues. Order matters: the first rule that fits wins."""
    has = msg.has
    # "nuclear medicine" is a modality, not a question about medicine
    dosing = [m for m in msg.cues.get("dosing", []) if not any(i in study_tokens for i in range(m.start, m.end))]
    if has("injection"):
        return "unknown", "not_understood"
    if has("forget"):
        return "forget_me", None
    explain = read_explain(msg)
    outside = [
        m
        for name in ("share", "revoke", "compare")
        for m in msg.cues.get(name, [])
        if explain is not None and not (explain[2] <= m.start < explain[3])
    ]
    if explain is not None and not outside:
        kind = explain[0]
        if kind == "term":
            return "explain_term", None
        if kind == "describe":
            return "describe_current", None
        return "unknown", "diagnosis"
    if dosing:
        return "unknown", "dosing"
    if bare_glossary_term(msg) is not None and not study_mentioned:
        return "explain_term", None
    help_how = [m for m in msg.cues.get("help", []) if msg.words[m.start] in ("how", "wie", "como", "как")]
    if help_how and not study_mentioned and not has("link"):
        return "help", None
    link = has("link")
    sharing_words = [m for m in msg.cues.get("share", []) if not _is_send_me(msg, m)]
    # "make a link for Dr Ray that expires in 6 hours" makes one; "expire my link" stops one.
    making = link and has("make") and all(msg.words[m.start].startswith("expir") for m in msg.cues.get("revoke", []))
    if not making and (has("strong_revoke") or (has("revoke") and (link or sharing_words or has("access")))):
        return "revoke_share", None
    if study_mentioned and _grants_access(msg):
        return "share", None
    if has("delete") and (has("everything") or has("privacy")) and not link:
        return "forget_me", None
    if has("delete") and study_mentioned and not link:
        return "unknown", "delete_study"
    if has("diagnosis") and not has("privacy"):
        return "unknown", "diagnosis"
    if has("who") and has("viewed"):
        return "activity", None
    if msg.words and msg.words[0] in _ASKS_WHETHER and has("viewed") and (has("many_images") or link):
        return "activity", None  # "did Dr Lee look at my scans", "has anyone opened my link"
    if link and (has("shared_past") or (has("list", "active", "show") and not has("make"))):
        return "list_shares", None
    if has("shared_past") and not study_mentioned:
        return "list_shares", None
    privacy_who = [m for m in msg.cues.get("privacy", []) if msg.words[m.start] in ("who", "wer", "quien", "кто")]
    if privacy_who:
        return "privacy", None
    if has("activity"):
        return "activity", None
    if has("privacy") and not (sharing_words and study_mentioned):
        return "privacy", None
    if sharing_words or (link and (has("make") or study_mentioned)) or (has("make") and has("public")):
        return "share", None
    if has("compare"):
        return "compare", None
    if has("describe"):
        return "describe_current", None
    if has("list") and (has("image") or study_mentioned) and not has("thanks"):
        return "list_studies", None
    if has("list") and any(
        msg.words[m.start] in ("list", "liste", "lista", "список", "overview", "ubersicht")
        for m in msg.cues.get("list", [])
    ):
        return "list_studies", None
    if has("show") and study_mentioned:
        return "show_study", None
    if has("show", "list") and has("many_images") and not has("thanks"):
        return "list_studies", None  # "show me my scans"
    if has("help"):
        return "help", None
    if study_mentioned or (has("show") and has("image")):
        return "show_study", None
    if has("self_condition") and not has("image"):
        return "unknown", "diagnosis"
    if has("image") and any(w in _MY for w in msg.words):
        return "show_study", None  # "my DEXA scan"
    if has("thanks"):
        return "unknown", "small_talk"
    return "unknown", "not_understood"


def _end_of_period(words: Sequence[str], match: Match) -> bool:
    """Whether a revoke cue is the "end" of "the end of the week" rather than "end my link"."""
    if words[match.start] not in ("end", "ende", "fin", "final"):
        return False
    after = words[match.end] if match.end < len(words) else ""
    before = words[match.start - 1] if match.start > 0 else ""
    return after in ("of", "der", "des", "de", "del") or before in ("the", "until", "till", "by", "bis", "zum", "el")


def _possessor(msg: _Message, at: int, taken: set[int]) -> tuple[int, int] | None:
    """The person in "take away my physio's access": the first possessive word after ``at``, with the
    "my" or title before it."""
    for j in range(at, len(msg.words)):
        if j in taken or not msg.tokens[j].possessive:
            continue
        start = j
        while start - 1 > at and (msg.words[start - 1] in _MY or msg.words[start - 1] in msg.lex.titles):
            start -= 1
        return start, j + 1
    return None


def _owner_of_link(msg: _Message, taken: set[int]) -> tuple[int, int] | None:
    """Whose link to revoke, named with a title: "the link of Dr. Müller", "el acceso del Dr. García",
    "доступ у доктора Иванова"."""
    lex = msg.lex
    n = len(msg.words)
    for i in range(1, n):
        if msg.words[i] in lex.titles and msg.words[i - 1] in _OWNER_PREPOSITIONS and i not in taken:
            end = i + 1
            while end < n and end not in taken and msg.words[end] not in lex.recipient_stop and end - i < 4:
                gap = msg.cleaned[msg.tokens[end - 1].end : msg.tokens[end].start]
                if any(c in gap for c in ",;!?()") or ("." in gap and msg.words[end - 1] not in lex.titles):
                    break
                if not msg.tokens[end].text[:1].isupper() and msg.words[end - 1] not in lex.titles:
                    break
                end += 1
            if end > i + 1:
                return i, end
    return None


_OWNER_PREPOSITIONS = frozenset({"from", "of", "von", "vom", "de", "del", "у", "для", "fur", "for", "para", "al", "a"})


# A question that starts like "did Dr Lee look at my scans?"
_ASKS_WHETHER = frozenset({"did", "has", "have", "hat", "haben", "ha", "han", "habe"})
_SELF = frozenset({"me", "mich", "mir", "мне", "меня", "us", "uns"})


def _grant_at(msg: _Message, i: int) -> int | None:
    """The end of a grant verb ("give", "let", "дай") at word ``i`` followed by someone other than the
    patient, else None."""
    ends = [m.end for m in msg.lex.cues["grant"].at(msg.words, i)]
    if not ends or max(ends) >= len(msg.words) or msg.words[max(ends)] in _SELF:
        return None
    return max(ends)


def _grants_access(msg: _Message) -> bool:
    """ "give Dr Jones access to my MRI", "let my physio see the x-ray", "дай врачу доступ": a share, unless the
    patient asks for themself ("let me see my MRI")."""
    access = {m.start for m in msg.cues.get("access", [])}
    for i in range(len(msg.words)):
        end = _grant_at(msg, i)
        if end is not None and any(end <= a < end + 6 for a in access):
            return True
    return False


def _granted_person(msg: _Message, taken: set[int]) -> int | None:
    """Where the person starts in "give Dr Jones access", "let my physio see", "дай врачу доступ"."""
    access = {m.start for m in msg.cues.get("access", [])}
    for i in range(len(msg.words)):
        end = _grant_at(msg, i)
        if end is not None and end not in access and end not in taken:
            return end
    return None


def _is_send_me(msg: _Message, match: Match) -> bool:
    """ "send me my MRI" asks to be shown it, not to share it."""
    return (match.end < len(msg.words) and msg.words[match.end] in ("me", "mir", "me", "мне")) or any(
        m.start == match.start and m.length > match.length for m in msg.cues.get("show", [])
    )


def _is_all(msg: _Message) -> bool:
    """ "revoke all my links", "cancel every share", "alle Links", "todos los enlaces", "все ссылки"."""
    return any(
        w
        in (
            "all",
            "every",
            "everything",
            "everyone",
            "alle",
            "allen",
            "alles",
            "todos",
            "todas",
            "todo",
            "все",
            "всё",
            "всех",
            "всем",
        )
        for w in msg.words
    )


def _reference_value(refs: Sequence[TimeRef], intent: str) -> Reference | list[Reference] | None:
    values = [r.value for r in refs]
    if not values:
        return None
    if intent == "compare":
        distinct: list[Reference] = []
        for v in values:
            if v not in distinct:
                distinct.append(v)
        if len(distinct) >= 2:
            return distinct[:2]
        only = distinct[0]
        return only if isinstance(only, dict) else None  # "since the last one": comparing is the default
    return values[0]


def _duration_value(hours: float) -> int | float:
    return int(hours) if float(hours).is_integer() else round(hours, 2)


def understand(text: str, today: dt.date) -> Understanding:
    """What the message asks for, with slots resolved against ``today``. Never raises on any text."""
    lex = load_lexicon()
    cleaned = clean(text if isinstance(text, str) else str(text))
    tokens = tokenize(cleaned)
    if len(tokens) > MAX_TOKENS:
        # A long story: requests sit at its start or its end, so read those and keep time bounded.
        tokens = tokens[: MAX_TOKENS // 2] + tokens[-MAX_TOKENS // 2 :]
    if not tokens:
        return Understanding("unknown", {}, reason="empty")
    words = [lex.correct(t.norm) for t in tokens]
    language = detect_language(cleaned, words, lex)
    msg = _Message(cleaned, tokens, words, lex, _find_cues(words, lex))
    # "till the end of the week" ends a period, not a link.
    msg.cues["revoke"] = [m for m in msg.cues.get("revoke", []) if not _end_of_period(words, m)]
    msg.modality_matches = lex.modality.find_longest(words)
    msg.body_matches = lex.body_part.find_longest(words)

    modalities = find_modalities(msg)
    refs, ref_tokens = find_references(msg, today)
    modality_tokens = {i for m in modalities for i in range(m.start, m.end)}
    body_parts = find_body_parts(msg, modality_tokens | ref_tokens)
    # A date alone ("what is the weather today") is not a study; with a study word or "show" it is.
    study_mentioned = bool(modalities or body_parts) or bool(refs and msg.has("image", "show"))

    study_tokens = modality_tokens | {i for m in body_parts for i in range(m.start, m.end)}
    intent, reason = decide(msg, study_mentioned, study_tokens)
    slots: dict[str, Any] = {}
    problems: list[str] = []
    allowed = INTENT_SLOTS[intent]

    recipient_span: tuple[int, int] | None = None
    durations: list[Duration] = []
    ended: list[Duration] = []
    if intent == "share":
        share_cues = msg.cues.get("share", []) + msg.cues.get("link", [])
        share_at = min((m.start for m in share_cues), default=0)
        # "until 5 December" ends the link; it names no study.
        for ref in list(refs):
            until = until_before(msg.words, ref.start, lex)
            if until is None:
                continue
            refs.remove(ref)
            hours = until_date(ref, msg.words, today)
            if hours is not None:
                ended.append(Duration(until, ref.end, hours))
        durations = sorted(ended + find_durations(words, tokens, cleaned, lex, ref_tokens, today),
                           key=lambda d: d.start)
        taken = ref_tokens | {i for d in durations for i in range(d.start, d.end)}
        recipient_span = find_recipient(msg, share_at, taken)
    elif intent == "revoke_share":
        revoke_cues = msg.cues.get("revoke", []) + msg.cues.get("strong_revoke", [])
        at = min((m.start for m in revoke_cues), default=0)
        span = find_recipient(msg, at, ref_tokens) or _possessor(msg, at, ref_tokens)
        verb_ends = {m.end for m in revoke_cues}
        if span is not None and msg.tokens[span[1] - 1].possessive:
            recipient_span = span  # "remove Dr Brown's access", "take away my physio's access"
        elif span is not None and span[0] in verb_ends and msg.words[span[0]] in lex.titles:
            recipient_span = span  # "entziehe Dr. Weber den Zugriff"
        elif span is not None and msg.words[span[0] - 1] in (
            "with",
            "mit",
            "con",
            "с",
            "со",
            "for",
            "fur",
            "para",
            "для",
            "to",
            "an",
        ):
            recipient_span = span
        else:
            recipient_span = _owner_of_link(msg, ref_tokens)

    if intent in ("show_study", "list_studies", "compare", "share", "describe_current", "activity", "revoke_share"):
        exclude = set(range(*recipient_span)) if recipient_span else set()
        if other_person(msg, exclude):
            return Understanding("unknown", {}, reason="other_person", language=language)

    if "term" in allowed:
        explain = read_explain(msg)
        if explain is not None and explain[1]:
            slots["term"] = explain[1]
        else:
            bare = bare_glossary_term(msg)
            if bare:
                slots["term"] = bare
    if "modality" in allowed and modalities:
        slots["modality"] = modalities[0].value
    if "body_part" in allowed and body_parts:
        slots["body_part"] = body_parts[0].value
    if "which" in allowed:
        value = _reference_value(refs, intent)
        if value is not None:
            slots["which"] = value
            for v in value if isinstance(value, list) else [value]:
                problems += reference_problems(v, today)
    if "duration_hours" in allowed and durations:
        hours = durations[0].hours
        slots["duration_hours"] = _duration_value(hours)
        if hours <= 0:
            problems.append("duration_not_positive")
        elif hours < MIN_SHARE_HOURS:
            problems.append("duration_too_short")
        elif hours > MAX_SHARE_HOURS:
            problems.append("duration_too_long")
    if "recipient" in allowed and recipient_span is not None:
        recipient = _span_text(msg, *recipient_span)
        if recipient:
            last = msg.tokens[recipient_span[1] - 1]
            abbreviation = msg.words[recipient_span[1] - 1] in lex.titles and len(last.text) <= 4
            if abbreviation and msg.cleaned[last.end : last.end + 1] == ".":
                recipient += "."  # "share with Dr." keeps the title's full stop
            if intent == "revoke_share" and last.possessive:
                recipient = recipient.removesuffix("'s")  # "remove Dr Brown's access": the person is Dr Brown
            slots["recipient"] = recipient
    if intent == "share":
        alone = recipient_span is not None and any(
            m.start == recipient_span[0] and m.end == recipient_span[1] for m in msg.cues.get("public_alone", [])
        )
        if msg.has("public") or alone:
            problems.append("recipient_public")
    if "all" in allowed and _is_all(msg):
        slots["all"] = True
    wants_code = intent == "share" and msg.has("access_code")
    return Understanding(intent, slots, reason=reason, problems=tuple(dict.fromkeys(problems)), language=language,
                         wants_code=wants_code)
