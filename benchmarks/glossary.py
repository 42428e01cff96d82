"""Size, readability, lookup speed and term-list coverage of the glossary.

Run: ``.venv/bin/python benchmarks/glossary.py [TERMS.tsv ...]``

Prints: concepts (by category and file) and names (terms, aliases, translations); readability of the
English explanations (textstat 0.7.3 Flesch-Kincaid grade: median and worst); lookup time for fuzzy
misses over the whole glossary (misspelt names and junk words that match no name exactly: median,
p95, max); how many one-slip misspellings of names find their concept; lookup time for exact names
and terms in a sentence, and for find_terms over a 20,000-character report; and coverage of each
term list (default ../shared/devset/terms.tsv, or the copy in tests/glossary/data/). A row counts as
covered when its term and its variant are both found, and lead to the same concept or to two concepts
that name each other as related. Pass a held-back list as an argument to measure it the same way.

Targets (issue 5): median grade <= 8, none above 10; fuzzy-miss median under 2 ms; 100 % devset coverage.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import textstat  # noqa: E402

from glossary.concepts import read_concepts  # noqa: E402
from glossary.lookup import Glossary  # noqa: E402
from glossary.text import normalise  # noqa: E402

DEVSETS = (ROOT.parent / "shared" / "devset" / "terms.tsv", ROOT / "tests" / "glossary" / "data" / "terms.tsv")


def timed(fn, items: list[str]) -> list[float]:  # type: ignore[no-untyped-def]
    """Milliseconds per call of ``fn`` over ``items``."""
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"median {statistics.median(ms):.3f} ms, p95 {p95:.3f} ms, max {ms[-1]:.3f} ms (n={len(ms)})"


def misspell(word: str, rng: random.Random) -> str:
    """One random edit (drop, swap, double or replace a letter) of ``word``."""
    if len(word) < 4:
        return word + rng.choice("aeiouxq")
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[i + 1 :]


def fuzzy_misses(glossary: Glossary, count: int = 1000, seed: int = 5) -> list[str]:
    """Queries that match no name exactly, so every one goes through fuzzy matching."""
    rng = random.Random(seed)
    names = sorted({name for c in glossary.concepts for _lang, name in c.names()})
    queries: list[str] = []
    while len(queries) < count:
        if rng.random() < 0.8:
            query = misspell(rng.choice(names), rng)
        else:
            query = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(rng.randrange(4, 12)))
        if glossary.lookup(query).match in {"fuzzy", "none"}:
            queries.append(query)
    return queries


def read_tsv(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [(row["term"].strip(), row["variant"].strip()) for row in csv.DictReader(fh, delimiter="\t")]


def covered(glossary: Glossary, term: str, variant: str) -> bool:
    by_term, by_variant = glossary.lookup(term), glossary.lookup(variant)
    if not by_term.found or not by_variant.found or by_term.best is None:
        return False
    concept = by_term.best
    linked = {concept.id, *concept.related}
    found = {c.id for c in by_variant.concepts}
    return bool(found & linked) or any(concept.id in glossary.by_id[v].related for v in found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tsv", nargs="*", type=Path, help="term lists (term, category, variant); default: devset")
    args = parser.parse_args()

    start = time.perf_counter()
    concepts, problems = read_concepts()
    glossary = Glossary(concepts)
    load_ms = (time.perf_counter() - start) * 1000
    print(f"concepts: {len(glossary.concepts)} (load and index {load_ms:.0f} ms; data problems: {len(problems)})")
    by_category = Counter(c.category for c in glossary.concepts)
    by_file = Counter(c.origin for c in glossary.concepts)
    print("  by category: " + ", ".join(f"{k} {v}" for k, v in sorted(by_category.items())))
    print("  by file: " + ", ".join(f"{k} {v}" for k, v in sorted(by_file.items())))
    aliases = sum(len(c.aliases) for c in glossary.concepts)
    print(f"names: {glossary.alias_count()} distinct normalised names; {aliases} English aliases")
    for lang in ("de", "es", "ru"):
        explained = sum(1 for c in glossary.concepts if lang in c.translations and c.translations[lang].explanation)
        names = sum(len(c.translations[lang].aliases) for c in glossary.concepts if lang in c.translations)
        print(f"  {lang}: {explained} explanations, {names} aliases")

    grades = sorted(((textstat.flesch_kincaid_grade(c.explanation), c.id) for c in glossary.concepts), reverse=True)
    values = [g for g, _ in grades]
    print(
        f"readability (Flesch-Kincaid grade, textstat): median {statistics.median(values):.1f}, "
        f"worst {grades[0][0]:.1f} ({grades[0][1]}), above 10: {sum(1 for g in values if g > 10)} "
        f"[targets: median <= 8, none above 10]"
    )
    print("  hardest: " + ", ".join(f"{cid} {g:.1f}" for g, cid in grades[:5]))

    misses = fuzzy_misses(glossary)
    glossary.lookup("warm up")
    print(f"fuzzy-miss lookup: {summary(timed(glossary.lookup, misses))} [target: median < 2 ms]")
    rng = random.Random(11)
    pairs = [(c.id, name) for c in glossary.concepts for lang, name in c.names() if lang == "en" and len(name) >= 5]
    sample = rng.sample(pairs, min(2000, len(pairs)))
    right = wrong = 0
    for cid, name in sample:
        best = glossary.lookup(misspell(name, rng)).best
        right += best is not None and best.id == cid
        wrong += best is not None and best.id != cid
    print(
        f"one-slip misspellings of names (5+ letters): {100 * right / len(sample):.1f} % found, "
        f"{100 * wrong / len(sample):.1f} % led elsewhere, rest got suggestions only (n={len(sample)})"
    )
    exact = [c.term for c in glossary.concepts]
    print(f"exact lookup: {summary(timed(glossary.lookup, exact))}")
    sentences = [f"what does {c.term.lower()} mean on my scan" for c in glossary.concepts]
    print(f"term in a sentence: {summary(timed(glossary.lookup, sentences))}")
    report = ("MRI LUMBAR SPINE WITHOUT CONTRAST. At L4-5 there is a mild disc bulge. No acute findings. " * 250)
    report = report[:20_000]
    print(f"find_terms on a 20,000-character report: {summary(timed(glossary.find_terms, [report] * 20))}")

    lists = args.tsv or [next((p for p in DEVSETS if p.is_file()), DEVSETS[0])]
    for path in lists:
        if not path.is_file():
            print(f"coverage: {path} not found")
            continue
        rows = read_tsv(path)
        missed = [(t, v) for t, v in rows if not covered(glossary, t, v)]
        share = 100 * (len(rows) - len(missed)) / len(rows) if rows else 0.0
        print(f"coverage of {path.name} ({path.parent}): {len(rows) - len(missed)}/{len(rows)} = {share:.1f} %")
        for term, variant in missed:
            print(f"  missed: {term!r} / {variant!r} (normalised {normalise(variant)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
