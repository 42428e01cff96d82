"""``lightbox explain TERM [--lang en|de|es|ru] [--json]``: a medical word in plain language.

TERM can be a word, an abbreviation, a misspelling or a whole question ("what does mild disc
bulge mean"). Unknown words exit with status 1 and "did you mean" suggestions.
"""

from __future__ import annotations

import argparse
import json
import sys

from bot.commands import CommandError
from bot.settings import Settings
from glossary.concepts import LANGUAGES, GlossaryDataError
from glossary.lookup import Explanation, Glossary, UnknownLanguageError, default_glossary

MAX_EXPLAINED = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``explain`` sub-command."""
    parser = subparsers.add_parser(
        "explain",
        help="explain a medical imaging word in plain language",
        description="Explain a word from a scan or report in plain language (for example: FLAIR, 'disc bulge').",
    )
    parser.add_argument("term", nargs="+", metavar="TERM", help="the word, phrase or question")
    parser.add_argument("--lang", default="en", metavar="LANG", help=f"language: {', '.join(LANGUAGES)} (default en)")
    parser.add_argument("--json", action="store_true", help="print JSON (keys term, explanation, related, source)")
    parser.set_defaults(handler=run)


def glossary_or_error() -> Glossary:
    """The packaged glossary, or a CommandError when its data files are broken."""
    try:
        return default_glossary()
    except GlossaryDataError as exc:
        raise CommandError(f"the glossary data has problems: {exc}") from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Look the term up and print its explanation; 1 when it is unknown."""
    del settings
    query = " ".join(args.term)
    lang = str(args.lang).strip().lower()
    if lang not in LANGUAGES:
        raise CommandError(f"language {args.lang!r} is not available; choose one of: {', '.join(LANGUAGES)}.", 2)
    glossary = glossary_or_error()
    result = glossary.lookup(query)
    if result.match == "empty":
        raise CommandError("please give a word to explain, for example: lightbox explain FLAIR", 2)
    if not result.found:
        names = [c.term for c in result.suggestions]
        if args.json:
            print(json.dumps({"query": query, "found": False, "suggestions": names}, ensure_ascii=False))
        hint = f" Did you mean: {', '.join(names)}?" if names else " Try a shorter or different word."
        print(f"lightbox: no glossary entry for {_shown(query)}.{hint}", file=sys.stderr)
        return 1
    try:
        explained = [glossary.explain(c, lang) for c in result.concepts[:MAX_EXPLAINED]]
    except UnknownLanguageError as exc:  # pragma: no cover - checked above
        raise CommandError(str(exc), 2) from None
    if args.json:
        first = explained[0].as_dict()
        first.update(
            query=query,
            found=True,
            match=result.match,
            also=[e.as_dict() for e in explained[1:]],
            suggestions=[c.term for c in result.suggestions if c.id != explained[0].id],
        )
        print(json.dumps(first, ensure_ascii=False, indent=2))
        return 0
    if result.match == "fuzzy":
        print(f"(Showing {explained[0].term} for {_shown(query)}.)\n")
    print("\n\n".join(_as_text(e, lang) for e in explained))
    return 0


def _shown(query: str) -> str:
    """The query as it may be echoed back: one line, at most 60 characters."""
    one_line = " ".join(query.split())
    return repr(one_line if len(one_line) <= 60 else one_line[:57] + "...")


def _as_text(e: Explanation, lang: str) -> str:
    lines = [e.term, e.explanation]
    if lang != "en" and e.lang == "en":
        lines.insert(1, f"(Not yet written in {lang}; here it is in English.)")
    if e.on_your_images:
        lines.append(f"On your images: {e.on_your_images}")
    if e.ask_your_doctor:
        lines.append("Questions you could ask your doctor:")
        lines.extend(f"  - {q}" for q in e.ask_your_doctor)
    if e.related:
        lines.append(f"Related: {', '.join(e.related)}")
    lines.append(f"Source: {e.source}")
    return "\n".join(lines)
