"""The lexicon data: canonical values only, and the matcher and corrector behave."""

from __future__ import annotations

import tomllib
from importlib import resources

from handlers.understanding.lexicon import Matcher, load_lexicon

CANONICAL_BODY_PARTS = {
    "brain",
    "head",
    "face",
    "sinuses",
    "orbit",
    "neck",
    "cervical spine",
    "thoracic spine",
    "lumbar spine",
    "sacrum",
    "spine",
    "chest",
    "lung",
    "heart",
    "breast",
    "abdomen",
    "pelvis",
    "liver",
    "kidney",
    "prostate",
    "thyroid",
    "shoulder",
    "upper arm",
    "elbow",
    "forearm",
    "wrist",
    "hand",
    "finger",
    "hip",
    "thigh",
    "knee",
    "leg",
    "ankle",
    "foot",
    "toe",
    "whole body",
}


def _toml(name: str) -> dict:
    return tomllib.loads(
        resources.files("handlers.understanding").joinpath("data").joinpath(name).read_text("utf-8")
    )


def test_body_parts_are_exactly_the_store_vocabulary() -> None:
    assert set(_toml("body_parts.toml")) == CANONICAL_BODY_PARTS


def test_modalities_are_the_issue_codes() -> None:
    assert set(_toml("modalities.toml")) == {"MR", "CT", "XR", "US", "MG", "PT", "NM"}


def test_matcher_prefers_the_longest_phrase_and_handles_stems() -> None:
    matcher = Matcher.build([("back", "lumbar spine"), ("upper back", "thoracic spine"), ("колен*", "knee")])
    words = ["my", "upper", "back", "and", "коленного"]
    assert [(m.start, m.end, m.value) for m in matcher.find_longest(words)] == [
        (1, 3, "thoracic spine"),
        (4, 5, "knee"),
    ]


def test_corrector_fixes_typos_but_leaves_known_and_foreign_words() -> None:
    lexicon = load_lexicon()
    assert lexicon.correct("ultrasond") == "ultrasound"
    assert lexicon.correct("mammogrm") == "mammogram"
    assert lexicon.correct("lst") == "last"
    for word in ("bitte", "patel", "hyperintense", "неврологом", "show"):
        assert lexicon.correct(word) == word
