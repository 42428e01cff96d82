"""The anatomy, finding and report-language term files, read as plain data (stdlib tomllib).

These checks look at the data itself, independently of the loader in ``glossary.concepts``:
the shape of every entry, ids and names that stay unique across *all* term files, related ids
that exist, a named source, complete translations, readability, and coverage of the
development term list in ../shared/devset/terms.tsv.
"""

from __future__ import annotations

import csv
import re
import statistics
import tomllib
from pathlib import Path
from typing import Any

import pytest
import textstat

from glossary.text import normalise

TERMS_DIR = Path(__file__).resolve().parents[2] / "glossary" / "terms"
OUR_FILES = {
    "anatomy.toml": {"anatomy", "measurement"},
    "finding.toml": {"finding", "measurement"},
    "report_language.toml": {"report_language", "measurement"},
}
REQUIRED = ("id", "term", "category", "aliases", "explanation", "related", "source")
OPTIONAL = ("on_your_images", "ask_your_doctor")
LANGS = ("de", "es", "ru")
_ID = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
# The development list names these categories for the files above.
DEVSET_CATEGORIES = {"plane", "anatomy", "finding", "report-language"}
DEVSET_CANDIDATES = (
    Path(__file__).resolve().parent / "data" / "terms.tsv",
    Path(__file__).resolve().parents[3] / "shared" / "devset" / "terms.tsv",
)


def _load(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    concepts = data.get("concept")
    assert isinstance(concepts, list) and concepts, f"{path.name}: no [[concept]] tables"
    return concepts


@pytest.fixture(scope="module")
def ours() -> dict[str, list[dict[str, Any]]]:
    return {name: _load(TERMS_DIR / name) for name in OUR_FILES}


@pytest.fixture(scope="module")
def everything() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(TERMS_DIR.glob("*.toml")):
        out.extend(_load(path))
    return out


def _our_concepts(ours: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [c for concepts in ours.values() for c in concepts]


def _sentences(text: str) -> int:
    return len(_SENTENCE_END.findall(text.strip()))


def test_every_entry_has_the_required_keys_and_types(ours: dict[str, list[dict[str, Any]]]) -> None:
    problems = []
    for name, concepts in ours.items():
        for c in concepts:
            where = f"{name}:{c.get('id', '?')}"
            unknown = set(c) - set(REQUIRED) - set(OPTIONAL) - set(LANGS)
            if unknown:
                problems.append(f"{where}: unknown keys {sorted(unknown)}")
            for key in ("id", "term", "category", "explanation", "source"):
                if not isinstance(c.get(key), str) or not c[key].strip():
                    problems.append(f"{where}: {key} missing or empty")
            for key in ("aliases", "related"):
                value = c.get(key)
                if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                    problems.append(f"{where}: {key} must be a list of non-empty strings")
            if not c.get("aliases"):
                problems.append(f"{where}: no aliases (add spellings, abbreviations or lay words)")
            if "on_your_images" in c and not (isinstance(c["on_your_images"], str) and c["on_your_images"].strip()):
                problems.append(f"{where}: on_your_images must be a non-empty string")
            if "ask_your_doctor" in c:
                asks = c["ask_your_doctor"]
                if not isinstance(asks, list) or not asks or not all(isinstance(q, str) and q.strip() for q in asks):
                    problems.append(f"{where}: ask_your_doctor must be a non-empty list of questions")
            if not _ID.match(str(c.get("id", ""))):
                problems.append(f"{where}: id is not a lower-case slug")
            if c.get("category") not in OUR_FILES[name]:
                problems.append(f"{where}: category {c.get('category')!r} does not belong in {name}")
            explanation = str(c.get("explanation", ""))
            if not 2 <= _sentences(explanation) <= 4:
                problems.append(f"{where}: explanation has {_sentences(explanation)} sentences, not 2 to 4")
    assert not problems, "\n".join(problems)


def test_sources_name_a_public_reference(ours: dict[str, list[dict[str, Any]]]) -> None:
    # "Publisher: page" so a reviewer can find the page the facts were checked against.
    bad = [c["id"] for c in _our_concepts(ours) if not re.match(r"^[A-Za-z][\w .-]*: \S", c["source"])]
    assert not bad, f"sources without 'Publisher: page title': {bad}"


def test_ids_are_unique_across_all_term_files(everything: list[dict[str, Any]]) -> None:
    ids = [c["id"] for c in everything]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"duplicate ids: {dupes}"


def test_names_do_not_point_at_two_concepts(everything: list[dict[str, Any]]) -> None:
    owner: dict[str, str] = {}
    clashes = []
    for c in everything:
        names = [c["term"], *c.get("aliases", [])]
        for lang in LANGS:
            names += c.get(lang, {}).get("aliases", [])
        for name in names:
            key = normalise(name)
            assert key, f"{c['id']}: name {name!r} has no letters or digits"
            if owner.setdefault(key, c["id"]) != c["id"]:
                clashes.append(f"{name!r}: {owner[key]} and {c['id']}")
    assert not clashes, "\n".join(clashes)


def test_a_term_with_a_note_in_brackets_is_also_findable_without_it(ours: dict[str, list[dict[str, Any]]]) -> None:
    # "Disc (intervertebral disc)": a report says "disc", so the bare head must be a name too.
    missing = []
    for c in _our_concepts(ours):
        if "(" in c["term"]:
            head = c["term"].split("(")[0].strip()
            if normalise(head) not in {normalise(a) for a in c["aliases"]}:
                missing.append(f"{c['id']}: {head!r}")
    assert not missing, f"add the bare term as an alias: {missing}"


def test_related_ids_exist_somewhere_in_the_glossary(
    ours: dict[str, list[dict[str, Any]]], everything: list[dict[str, Any]]
) -> None:
    known = {c["id"] for c in everything}
    missing = [f"{c['id']} -> {r}" for c in _our_concepts(ours) for r in c["related"] if r not in known or r == c["id"]]
    assert not missing, f"related ids that do not exist (or point to themselves): {missing}"


def test_translations_are_complete(ours: dict[str, list[dict[str, Any]]]) -> None:
    problems = []
    translated = 0
    for c in _our_concepts(ours):
        present = [lang for lang in LANGS if lang in c]
        if present and len(present) != len(LANGS):
            problems.append(f"{c['id']}: has {present}, expected all of {list(LANGS)}")
        for lang in present:
            tr = c[lang]
            if set(tr) - {"term", "aliases", "explanation"}:
                problems.append(
                    f"{c['id']} [{lang}]: unknown keys {sorted(set(tr) - {'term', 'aliases', 'explanation'})}"
                )
            if not tr.get("aliases") or not all(isinstance(a, str) and a.strip() for a in tr["aliases"]):
                problems.append(f"{c['id']} [{lang}]: aliases missing")
            explanation = tr.get("explanation", "")
            if not isinstance(explanation, str) or not 2 <= _sentences(explanation) <= 4:
                problems.append(f"{c['id']} [{lang}]: explanation missing or not 2 to 4 sentences")
        translated += len(present) == len(LANGS)
    assert not problems, "\n".join(problems)
    assert translated >= 40, f"only {translated} concepts translated into {LANGS}; the brief asks for about 40"


def test_there_are_enough_concepts(ours: dict[str, list[dict[str, Any]]]) -> None:
    assert len(_our_concepts(ours)) >= 200


def test_explanations_are_plain_enough(ours: dict[str, list[dict[str, Any]]]) -> None:
    grades = {c["id"]: textstat.flesch_kincaid_grade(c["explanation"]) for c in _our_concepts(ours)}
    too_hard = {cid: g for cid, g in grades.items() if g > 10}
    assert not too_hard, f"Flesch-Kincaid grade above 10: {too_hard}"
    assert statistics.median(grades.values()) <= 8


def test_development_terms_are_covered_with_their_variants(everything: list[dict[str, Any]]) -> None:
    path = next((p for p in DEVSET_CANDIDATES if p.is_file()), None)
    if path is None:
        pytest.skip(f"development term list not found (looked in {[str(p) for p in DEVSET_CANDIDATES]})")
    names: dict[str, str] = {}
    for c in everything:
        for name in [c["term"], *c.get("aliases", [])]:
            names[normalise(name)] = c["id"]
    with path.open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["category"] in DEVSET_CATEGORIES]
    assert rows, f"{path}: no rows in {sorted(DEVSET_CATEGORIES)}"
    missing = []
    for row in rows:
        term_owner = names.get(normalise(row["term"]))
        variant_owner = names.get(normalise(row["variant"]))
        if term_owner is None or variant_owner != term_owner:
            missing.append(f"{row['term']} / {row['variant']} -> {term_owner} / {variant_owner}")
    assert not missing, "development terms not covered (term and variant must name the same concept):\n" + "\n".join(
        missing
    )
