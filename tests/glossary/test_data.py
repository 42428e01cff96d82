"""The term files: format, cross-references, coverage and the readability gate."""

from __future__ import annotations

import importlib.metadata
import statistics
from pathlib import Path

import pytest
import textstat

from glossary.concepts import (
    CATEGORIES,
    TERMS_DIR,
    GlossaryDataError,
    count_sentences,
    load_concepts,
    read_concepts,
)

GOOD = '''
[[concept]]
id = "alpha"
term = "Alpha"
category = "technique"
aliases = ["first one", "a1"]
explanation = "Alpha is the first test word. It has two short sentences."
related = ["beta"]
source = "Test source"

[[concept]]
id = "beta"
term = "Beta"
category = "finding"
aliases = ["second one"]
explanation = "Beta is the second test word. It also has two sentences."
related = ["alpha"]
source = "Test source"
[concept.de]
aliases = ["Zweites Wort"]
explanation = "Beta ist das zweite Wort. Es hat zwei Sätze."
'''


def write(tmp_path: Path, text: str, name: str = "test.toml") -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def problems_of(tmp_path: Path) -> list[str]:
    with pytest.raises(GlossaryDataError) as info:
        load_concepts(tmp_path)
    return info.value.problems


def test_the_packaged_term_files_have_no_problems() -> None:
    concepts, problems = read_concepts()
    assert problems == [], "\n".join(problems)
    assert len(concepts) >= 110


def test_modality_and_technique_files_hold_at_least_110_concepts() -> None:
    concepts, _ = read_concepts()
    mine = [c for c in concepts if c.origin in {"modality.toml", "technique.toml"}]
    assert len(mine) >= 110
    assert {c.category for c in mine} <= {"modality", "technique", "measurement"}
    assert {"modality", "technique", "measurement"} <= {c.category for c in mine}


def test_every_concept_has_a_source_a_known_category_and_two_to_four_sentences() -> None:
    concepts, _ = read_concepts()
    for c in concepts:
        assert c.source, c.id
        assert c.category in CATEGORIES, c.id
        assert 2 <= count_sentences(c.explanation) <= 4, (c.id, c.explanation)


def test_readability_gate_over_all_term_files() -> None:
    """Flesch-Kincaid grade (textstat 0.7.3) of every English explanation: median <= 8, none above 10."""
    # Later textstat releases fetch NLTK data at run time, which fails offline: the gate is pinned to 0.7.3.
    assert importlib.metadata.version("textstat") == "0.7.3"
    concepts, _ = read_concepts()
    assert concepts, "no term files were read"
    grades = {c.id: textstat.flesch_kincaid_grade(c.explanation) for c in concepts}
    too_hard = {cid: g for cid, g in grades.items() if g > 10}
    assert too_hard == {}, f"explanations above grade 10: {too_hard}"
    assert statistics.median(grades.values()) <= 8


def test_a_good_file_loads_with_translations(tmp_path: Path) -> None:
    concepts = load_concepts(write(tmp_path, GOOD))
    by_id = {c.id: c for c in concepts}
    assert set(by_id) == {"alpha", "beta"}
    assert by_id["beta"].translations["de"].aliases == ("Zweites Wort",)
    assert by_id["alpha"].related == ("beta",)
    assert by_id["alpha"].origin == "test.toml"


def test_duplicate_ids_across_files_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.toml")
    write(tmp_path, GOOD.split("[[concept]]")[1].join(["[[concept]]", ""]).replace("first one", "x"), "b.toml")
    problems = problems_of(tmp_path)
    assert any("duplicate id 'alpha'" in p for p in problems), problems


def test_aliases_colliding_between_concepts_are_rejected(tmp_path: Path) -> None:
    # "Second-One" normalises to the same key as beta's "second one".
    write(tmp_path, GOOD.replace('aliases = ["first one", "a1"]', 'aliases = ["Second-One"]'))
    problems = problems_of(tmp_path)
    assert any("collides" in p and "'beta'" in p for p in problems), problems


def test_a_translated_alias_colliding_with_another_concept_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace('aliases = ["Zweites Wort"]', 'aliases = ["ALPHA"]'))
    assert any("collides" in p for p in problems_of(tmp_path))


def test_unknown_related_ids_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace('related = ["beta"]', 'related = ["gamma"]'))
    assert any("related id 'gamma' does not exist" in p for p in problems_of(tmp_path))


def test_missing_sources_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace('source = "Test source"\n\n[[concept]]', '\n[[concept]]'))
    assert any("'alpha': source is missing" in p for p in problems_of(tmp_path))


def test_bad_categories_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace('category = "finding"', 'category = "sequence"'))
    assert any("category 'sequence'" in p for p in problems_of(tmp_path))


def test_explanations_must_have_two_to_four_sentences(tmp_path: Path) -> None:
    long = "One. Two. Three. Four. Five."
    write(tmp_path, GOOD.replace("Alpha is the first test word. It has two short sentences.", long))
    assert any("2 to 4 sentences" in p for p in problems_of(tmp_path))


def test_unknown_keys_bad_ids_and_bad_toml_are_reported(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace('id = "alpha"', 'id = "Alpha Bad"\nexplanaton = "typo"'))
    problems = problems_of(tmp_path)
    assert any("lower-case slug" in p for p in problems)
    assert any("unknown key(s) ['explanaton']" in p for p in problems)
    (tmp_path / "test.toml").write_text("[[concept]\nid=", encoding="utf-8")
    assert any("cannot be read as TOML" in p for p in problems_of(tmp_path))


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    bad = GOOD.replace('related = ["beta"]', 'related = ["nope"]').replace('category = "finding"', 'category = "x"')
    write(tmp_path, bad)
    assert len(problems_of(tmp_path)) >= 2


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    assert any("no term files" in p for p in problems_of(tmp_path))


def test_sentence_counting() -> None:
    assert count_sentences("One short one. Another one!") == 2
    assert count_sentences("Uses e.g. a list. Then ends.") == 2
    assert count_sentences("No end mark") == 1
    assert count_sentences("") == 0


def test_term_files_live_in_the_package() -> None:
    assert (TERMS_DIR / "modality.toml").is_file()
    assert (TERMS_DIR / "technique.toml").is_file()
