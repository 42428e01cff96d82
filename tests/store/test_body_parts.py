"""Body parts: the canonical vocabulary, DICOM defined terms, words on real CDs, what a request matches."""

from __future__ import annotations

import tomllib

import pytest

from store.body_parts import (
    CANONICAL,
    DATA_FILE,
    body_part_matches,
    fold_text,
    is_within,
    normalise_body_part,
)

SPEC_VOCABULARY = [
    "brain", "head", "face", "sinuses", "orbit", "neck", "cervical spine", "thoracic spine", "lumbar spine",
    "sacrum", "spine", "chest", "lung", "heart", "breast", "abdomen", "pelvis", "liver", "kidney", "prostate",
    "thyroid", "shoulder", "upper arm", "elbow", "forearm", "wrist", "hand", "finger", "hip", "thigh", "knee",
    "leg", "ankle", "foot", "toe", "whole body",
]  # fmt: skip


def test_data_file_holds_exactly_the_canonical_vocabulary() -> None:
    data = tomllib.loads(DATA_FILE.read_text(encoding="utf-8"))
    assert sorted(data["parts"]) == sorted(SPEC_VOCABULARY)
    assert list(CANONICAL) == SPEC_VOCABULARY


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("HEAD", "head"), ("BRAIN", "brain"), ("SKULL", "head"), ("CSPINE", "cervical spine"),
        ("TSPINE", "thoracic spine"), ("LSPINE", "lumbar spine"), ("SSPINE", "sacrum"), ("SPINE", "spine"),
        ("CHEST", "chest"), ("ABDOMEN", "abdomen"), ("PELVIS", "pelvis"), ("KNEE", "knee"), ("HIP", "hip"),
        ("SHOULDER", "shoulder"), ("ANKLE", "ankle"), ("FOOT", "foot"), ("HAND", "hand"), ("WRIST", "wrist"),
        ("ELBOW", "elbow"), ("BREAST", "breast"), ("HEART", "heart"), ("LUNG", "lung"), ("NECK", "neck"),
        ("LIVER", "liver"), ("KIDNEY", "kidney"), ("PROSTATE", "prostate"), ("THYROID", "thyroid"),
        ("WHOLEBODY", "whole body"), ("FEMUR", "thigh"), ("HUMERUS", "upper arm"), ("TOE", "toe"),
        ("FINGER", "finger"), ("ORBIT", "orbit"), ("SINUS", "sinuses"), ("FOREARM", "forearm"),
        ("LEG", "leg"), ("JAW", "face"), ("SACRUM", "sacrum"), ("ABDOMENPELVIS", "abdomen"),
        ("c-spine", "cervical spine"), ("Knie", "knee"), ("THORAX", "chest"), ("L SPINE", "lumbar spine"),
    ],
)  # fmt: skip
def test_body_part_examined_defined_terms(term: str, expected: str) -> None:
    assert normalise_body_part(term) == expected


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("MRI KNEE LT", "knee"),
        ("CT HEAD WO", "head"),
        ("L-SPINE", "lumbar spine"),
        ("Thorax", "chest"),
        ("Schädel nativ", "head"),
        ("SCHAEDEL", "head"),
        ("MRT LWS mit KM", "lumbar spine"),
        ("HWS in 2 Ebenen", "cervical spine"),
        ("Becken-Übersicht", "pelvis"),
        ("Sprunggelenk re", "ankle"),
        ("IRM du genou droit", "knee"),
        ("RM rodilla izquierda", "knee"),
        ("Mammographie bds", "breast"),
        ("XR C Spine Comp Min 4 Views", "cervical spine"),
        ("CT, HEAD/BRAIN WO CONTRAST", "brain"),
        ("Carotids", "neck"),
        ("CT ABD/PELVIS W CONTRAST", "abdomen"),
        ("US Thyroid", "thyroid"),
        ("FAST SPIN ECHO T2", ""),
        ("Scout", ""),
        ("", ""),
    ],
)
def test_descriptions(description: str, expected: str) -> None:
    assert normalise_body_part(None, description) == expected


def test_body_part_examined_wins_and_a_description_refines_it() -> None:
    assert normalise_body_part("HEAD", "Routine Brain") == "brain"
    assert normalise_body_part("SPINE", "MRI L-SPINE") == "lumbar spine"
    # A description naming somewhere else does not override a known Body Part Examined.
    assert normalise_body_part("KNEE", "CT HEAD") == "knee"
    # Unknown Body Part Examined falls through to the descriptions, in order.
    assert normalise_body_part("XYZ", None, "", "Series: Knie") == "knee"
    assert normalise_body_part(None, None) == ""


def test_whole_words_only() -> None:
    # "hand" inside the German "Handgelenk" (wrist) and "arm" inside "Unterarm" (forearm).
    assert normalise_body_part(None, "Handgelenk links") == "wrist"
    assert normalise_body_part(None, "Unterarm") == "forearm"
    assert normalise_body_part(None, "Kreuzbein") == "sacrum"


def test_request_matches() -> None:
    assert body_part_matches("brain") == {"brain", "head"}
    assert body_part_matches("head") == {"head", "brain"}
    assert body_part_matches("spine") == {"spine", "cervical spine", "thoracic spine", "lumbar spine", "sacrum"}
    assert body_part_matches("back") >= {"lumbar spine", "thoracic spine"}
    assert "cervical spine" not in body_part_matches("back")
    assert body_part_matches("Knee") == {"knee"}
    assert body_part_matches("my left KNEE") == {"knee"}
    assert body_part_matches("L-spine") == {"lumbar spine", "spine"}
    assert body_part_matches("Rücken") == body_part_matches("back")
    assert body_part_matches("nonsense words") == set()
    assert body_part_matches("") == set()


def test_every_match_list_is_canonical_and_contains_itself() -> None:
    for name in SPEC_VOCABULARY:
        matched = body_part_matches(name)
        assert name in matched, name
        assert matched <= set(SPEC_VOCABULARY), name


def test_hierarchy_and_folding() -> None:
    assert is_within("brain", "head")
    assert is_within("lumbar spine", "spine")
    assert not is_within("head", "brain")
    assert fold_text("Schädel-Übersicht  L-SPINE") == "schadel ubersicht l spine"
