"""Lookup that survives typing, and finding terms in descriptions and reports."""

from __future__ import annotations

from dataclasses import replace

import pytest

from glossary.concepts import Concept, Translation
from glossary.lookup import Glossary, UnknownLanguageError, default_glossary
from glossary.text import clean_text, normalise, singular_forms
from tests.glossary.conftest import devset_rows


def ids(concepts: tuple[Concept, ...] | list[Concept]) -> list[str]:
    return [c.id for c in concepts]


def found_id(glossary: Glossary, query: str) -> str | None:
    best = glossary.lookup(query).best
    return best.id if best else None


# -- normalising ----------------------------------------------------------------------------------


def test_normalise_folds_case_accents_punctuation_and_plus() -> None:
    assert normalise("  Hyper-Intense ") == "hyper intense"
    assert normalise("Ödem") == "odem"
    assert normalise("T1 C+") == "t1 c plus"
    assert normalise("<b>FLAIR</b>\x00\x07") == "flair"
    assert normalise("Ёлка") == "елка"
    assert normalise("") == ""


def test_clean_text_bounds_length_and_drops_markup() -> None:
    assert len(clean_text("a" * 300_000)) == 200_000
    assert clean_text("<script>x</script>&amp;y") == " x  y"


def test_singular_forms() -> None:
    assert "opacity" in singular_forms("opacities")
    assert "stenosis" in singular_forms("stenoses")
    assert "lesion" in singular_forms("lesions")
    assert "vertebra" in singular_forms("vertebrae")


# -- lookup ---------------------------------------------------------------------------------------


def test_exact_term_and_alias(glossary: Glossary) -> None:
    result = glossary.lookup("FLAIR")
    assert result.match == "exact" and ids(result.concepts) == ["flair"]
    result = glossary.lookup("cat scan")
    assert result.match == "alias" and ids(result.concepts) == ["ct"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("mri", "mri"),
        ("M.R.I.", "mri"),
        ("  Mri   SCAN ", "mri"),
        ("X-Ray", "xray"),
        ("xray", "xray"),
        ("x ray", "xray"),
        ("T1 weighted", "t1_weighted"),
        ("t1-weighted", "t1_weighted"),
        ("Gadolínium", "gadolinium"),
        ("hounsfield units", "hounsfield_unit"),
        ("HU", "hounsfield_unit"),
        ("post gad", "with_contrast"),
        ("C+", "with_contrast"),
        ("w/o contrast", "without_contrast"),
        ("ct-angio", "cta"),
        ("PET/CT", "pet_ct"),
        ("3T", "field_strength"),
    ],
)
def test_case_accent_and_punctuation_insensitive(glossary: Glossary, query: str, expected: str) -> None:
    assert found_id(glossary, query) == expected


def test_plurals_are_folded(glossary: Glossary) -> None:
    assert found_id(glossary, "slices") == "slice"
    assert found_id(glossary, "Hounsfield-Units") == "hounsfield_unit"
    assert found_id(glossary, "MIPs") == "mip"


def test_closed_up_spelling_matches(glossary: Glossary) -> None:
    # "fat sat" is an alias; "fatsat" and "fat-sat" must find it too.
    assert found_id(glossary, "fatsat") == "fat_suppression"
    assert found_id(glossary, "FAT-SAT") == "fat_suppression"
    assert found_id(glossary, "ultra-sound") == "ultrasound"


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("gadolinum", "gadolinium"),
        ("gadolinuim", "gadolinium"),
        ("mamogrm", "mammogram"),
        ("ultrsound", "ultrasound"),
        ("hounsfeild", "hounsfield_unit"),
        ("fluroscopy", "fluoroscopy"),
        ("angiogrm", "angiography"),
        ("echocardiogrm", "echocardiogram"),
    ],
)
def test_fuzzy_matches_a_misspelling(glossary: Glossary, typo: str, expected: str) -> None:
    result = glossary.lookup(typo)
    assert result.found, (typo, ids(result.suggestions))
    assert result.best is not None and result.best.id == expected
    assert result.match in {"fuzzy", "alias"}


def test_unsure_fuzzy_gives_suggestions_not_an_answer(glossary: Glossary) -> None:
    result = glossary.lookup("contrat agen")
    assert ids(result.concepts + result.suggestions)[:1] == ["contrast_agent"] or "contrast_agent" in ids(
        result.suggestions
    )
    result = glossary.lookup("t3")  # close to T1, T2 and others: no single answer
    assert not result.found
    assert result.match == "none"


def test_a_real_miss_has_no_answer(glossary: Glossary) -> None:
    result = glossary.lookup("zqxjv wpfk")
    assert result.match == "none" and not result.found and result.suggestions == ()


def test_suggestions_are_offered_for_a_near_miss(glossary: Glossary) -> None:
    result = glossary.lookup("diffusin tensr")
    assert "dti" in ids(result.concepts + result.suggestions)


def test_phrase_inside_a_sentence(glossary: Glossary) -> None:
    result = glossary.lookup("what does mild disc bulge at L4-5 mean")
    assert result.match == "phrase"
    found = ids(result.concepts)
    assert found[0] == "disc_bulge"  # the longest name is the question's subject
    assert "mild" in found
    result = glossary.lookup("Why did they give me gadolinium for my MRI?")
    assert {"gadolinium", "mri"} <= set(ids(result.concepts))


def test_phrase_with_a_misspelt_word_also_finds_the_misspelling(glossary: Glossary) -> None:
    result = glossary.lookup("is gadolinum contrast safe")
    assert {"gadolinium", "contrast_agent"} <= set(ids(result.concepts))


def test_other_languages_are_looked_up_and_explained(glossary: Glossary) -> None:
    assert found_id(glossary, "Kernspintomographie") == "mri"
    assert found_id(glossary, "resonancia magnética") == "mri"
    assert found_id(glossary, "resonancia magnetica") == "mri"
    assert found_id(glossary, "МРТ") == "mri"
    assert found_id(glossary, "Kontrastmittel") == "contrast_agent"
    mri = glossary.by_id["mri"]
    de = glossary.explain(mri, "de")
    assert de.lang == "de" and de.term == "MRT" and "Magneten" in de.explanation
    assert glossary.explain(mri, "ru").lang == "ru"


def test_missing_translation_falls_back_to_english(glossary: Glossary) -> None:
    # Every packaged concept is translated now, so the test builds its own concept without a Russian text.
    translated = glossary.by_id["pineal_gland"]
    concept = replace(translated, translations={k: v for k, v in translated.translations.items() if k != "ru"})
    assert "ru" not in concept.translations and "de" in concept.translations
    explained = glossary.explain(concept, "ru")
    assert explained.lang == "en" and explained.explanation == concept.explanation
    assert explained.term == concept.term and explained.on_your_images == concept.on_your_images
    assert glossary.explain(concept, "de").lang == "de"


def test_unknown_language_is_a_clear_error(glossary: Glossary) -> None:
    with pytest.raises(UnknownLanguageError, match="choose one of: en, de, es, ru"):
        glossary.explain(glossary.by_id["mri"], "fr")


def test_explanation_json_has_the_promised_keys(glossary: Glossary) -> None:
    data = glossary.explain(glossary.by_id["flair"]).as_dict()
    assert {"term", "explanation", "related", "source"} <= set(data)
    assert data["term"] == "FLAIR"
    assert "T2-weighted" in data["related"]
    assert data["source"]


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "   ", "\x00\x01\x02", "<br/>", "!!!???", "\u200b"])
def test_empty_queries_say_so(glossary: Glossary, query: str) -> None:
    result = glossary.lookup(query)
    assert result.match == "empty" and not result.found


def test_markup_and_control_characters_are_ignored(glossary: Glossary) -> None:
    assert found_id(glossary, "<script>alert(1)</script> FLAIR") == "flair"
    assert found_id(glossary, "FL\x00AIR") in {"flair", None}  # never a crash
    assert found_id(glossary, "\x1b[31mDWI\x1b[0m") == "dwi"


def test_a_20000_character_query_is_answered(glossary: Glossary) -> None:
    text = ("The patient had an MRI with gadolinium. " * 600)[:20_000]
    result = glossary.lookup(text)
    assert result.found
    assert {"mri", "gadolinium"} <= set(ids(result.concepts))
    garbage = "qzx " * 5000
    assert not glossary.lookup(garbage).found


# -- finding terms in text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("AX T2 FLAIR", {"axial", "t2_weighted", "flair"}),
        ("SAG T1 POST GAD", {"sagittal", "t1_weighted", "with_contrast"}),
        ("CT HEAD WO CONTRAST", {"ct", "without_contrast"}),
        ("COR STIR", {"coronal", "stir"}),
        ("ep2d_diff_3scan_trace ADC", {"adc"}),
        ("AX DWI B1000", {"axial", "dwi", "b_value"}),
        ("T1 MPRAGE SAG", {"t1_weighted", "mprage", "sagittal"}),
        ("CTA HEAD AND NECK W CONTRAST", {"cta", "with_contrast"}),
        ("PD FS COR", {"proton_density", "fat_suppression", "coronal"}),
        ("3-plane localizer", {"localizer"}),
        ("TOF MRA COW MIP", {"time_of_flight", "mra", "mip"}),
        ("CHEST PA AND LATERAL", {"xray_view"}),
    ],
)
def test_find_terms_in_series_descriptions(glossary: Glossary, description: str, expected: set[str]) -> None:
    found = {hit.concept.id for hit in glossary.find_terms(description)}
    assert expected <= found, (description, found)


def test_find_terms_in_a_report_paragraph(glossary: Glossary) -> None:
    paragraph = (
        "MRI LUMBAR SPINE WITHOUT CONTRAST. FINDINGS: At L4-5 there is a mild disc bulge without "
        "significant canal stenosis. T2 hyperintense signal in the posterior annulus. "
        "IMPRESSION: Degenerative changes. No acute findings. Clinical correlation recommended."
    )
    hits = glossary.find_terms(paragraph)
    found = [h.concept.id for h in hits]
    for expected in ("mri", "without_contrast", "disc_bulge", "t2_weighted", "hyperintense", "mild"):
        assert expected in found, (expected, found)
    assert any("stenosis" in f for f in found), found
    assert len(found) == len(set(found)), "each concept is listed once"
    # Spans point back at the words in the original text, in reading order.
    for hit in hits:
        assert paragraph[hit.start : hit.end] == hit.matched
    assert [h.start for h in hits] == sorted(h.start for h in hits)


def test_find_terms_prefers_the_longest_name(glossary: Glossary) -> None:
    found = [h.concept.id for h in glossary.find_terms("pleural effusion")]
    assert found == ["pleural_effusion"]


def test_find_terms_over_a_20000_character_report(glossary: Glossary) -> None:
    report = ("No acute findings. Mild degenerative changes of the lumbar spine. " * 400)[:20_000]
    report += " Hounsfield units measured on CT."
    found = {h.concept.id for h in glossary.find_terms(report)}
    assert {"hounsfield_unit", "ct", "lumbar_spine"} <= found


def test_find_terms_on_empty_or_junk_text(glossary: Glossary) -> None:
    assert glossary.find_terms("") == []
    assert glossary.find_terms("\x00\x01 <p></p>") == []


# -- the development term list --------------------------------------------------------------------------


ROWS = devset_rows()


@pytest.mark.parametrize(("term", "category", "variant"), ROWS, ids=[f"{r[0]}|{r[2]}" for r in ROWS])
def test_every_devset_term_and_variant_is_found(glossary: Glossary, term: str, category: str, variant: str) -> None:
    del category
    by_term = glossary.lookup(term)
    assert by_term.found, f"term {term!r} not found; suggestions {ids(by_term.suggestions)}"
    concept = by_term.best
    assert concept is not None
    by_variant = glossary.lookup(variant)
    assert by_variant.found, f"variant {variant!r} not found; suggestions {ids(by_variant.suggestions)}"
    # The variant leads to the same concept, or one the entries link to each other.
    linked = {concept.id, *concept.related}
    variant_ids = set(ids(by_variant.concepts))
    assert variant_ids & linked or any(concept.id in glossary.by_id[v].related for v in variant_ids), (
        term,
        variant,
        ids(by_variant.concepts),
    )


def test_the_devset_copy_is_read() -> None:
    assert len(ROWS) >= 50


def test_default_glossary_is_loaded_once() -> None:
    assert default_glossary() is default_glossary()
    assert len(default_glossary().concepts) >= 110


# -- typing slips and words that are not terms --------------------------------------------------------------


def slips(word: str) -> list[str]:
    """Four one-slip misspellings of ``word``: a letter dropped, two swapped, one doubled, one replaced."""
    i = len(word) // 2
    return [
        word[:i] + word[i + 1 :],
        word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :],
        word[:i] + word[i] + word[i:],
        word[:i] + ("x" if word[i] != "x" else "q") + word[i + 1 :],
    ]


def test_most_one_slip_misspellings_find_their_concept(glossary: Glossary) -> None:
    names = [(c.id, c.term) for c in glossary.concepts if len(c.term) >= 6 and c.term.isascii()]
    right = total = 0
    misses = []
    for cid, term in names:
        for typo in slips(term):
            if normalise(typo) in {normalise(n) for _, n in glossary.by_id[cid].names()}:
                continue
            total += 1
            best = glossary.lookup(typo).best
            if best is not None and best.id == cid:
                right += 1
            else:
                misses.append((typo, cid, best.id if best else None))
    assert total > 300
    assert right / total >= 0.9, misses[:20]


@pytest.mark.parametrize("text", ["hello", "banana", "pain", "headache", "thank you", "tomorrow", "what is wrong"])
def test_everyday_words_are_not_forced_onto_a_term(glossary: Glossary, text: str) -> None:
    assert not glossary.lookup(text).found


def test_chat_words_do_not_add_terms(glossary: Glossary) -> None:
    assert ids(glossary.lookup("show my last mri").concepts) == ["mri"]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("was ist eine Kernspintomographie", "mri"),
        ("qué es una resonancia", "mri"),
        ("что такое мрт", "mri"),
        ("что значит контраст", "contrast_agent"),
    ],
)
def test_questions_in_other_languages(glossary: Glossary, question: str, expected: str) -> None:
    result = glossary.lookup(question)
    assert ids(result.concepts) == [expected]


def test_related_terms_are_named_in_the_chosen_language(glossary: Glossary) -> None:
    flair = glossary.explain(glossary.by_id["flair"], "de")
    assert "T2-gewichtet" in flair.related
    assert "MRI sequence" not in flair.related and "MRT-Sequenz" in flair.related


def test_a_title_is_not_a_modality(glossary: Glossary) -> None:
    found = [h.concept.id for h in glossary.find_terms("Dear Dr Lee, Mr. Smith had a CT.")]
    assert found == ["ct"]
    assert "mri" in [h.concept.id for h in glossary.find_terms("MR BRAIN W WO")]


@pytest.mark.parametrize(
    ("query", "concept"),
    [("attenuated", "ct_density"), ("herniated", "disc_herniation"), ("dilated", "dilatation"),
     ("flow void", "flow_void"), ("signal voids", "flow_void")],
)
def test_other_forms_of_a_word_find_its_concept(glossary: Glossary, query: str, concept: str) -> None:
    result = glossary.lookup(query)
    assert result.best is not None and result.best.id == concept, (query, ids(result.concepts))


def test_word_families_come_from_english_names_only() -> None:
    # German "Hernie" cuts to the same English stem as "herniation"; it must neither take "herniated"
    # away from the English word family nor be found through it.
    def concept(cid: str, term: str, **translations: Translation) -> Concept:
        return Concept(cid, term, "finding", "Two. Sentences.", "Test", translations=translations)

    glossary = Glossary(
        [
            concept("disc_herniation", "Herniation"),
            concept("hernia", "Hernia", de=Translation(aliases=("Hernie",))),
        ]
    )
    assert found_id(glossary, "herniated") == "disc_herniation"
    assert found_id(glossary, "Hernie") == "hernia"


def test_word_stems_never_cut_short_words() -> None:
    from glossary.text import word_stem

    assert word_stem("attenuated") == word_stem("attenuation") == "attenu"
    assert word_stem("mass") == "mass" and word_stem("cysts") == "cysts"  # too short to cut safely
