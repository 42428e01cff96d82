"""The German, Spanish and Russian translations of the glossary.

Every translated concept speaks all three languages in full (name, aliases, explanation); no name
points at two concepts; a translation says what the English says, sentence for sentence (exactly as
many sentences, and not far longer or shorter); the findings, report words, techniques, measurements,
modalities and anatomy words are all translated; and a patient's words in each language find the right concept.
"""

from __future__ import annotations

import re

import pytest

from glossary.concepts import Concept, count_sentences, read_concepts
from glossary.lookup import Glossary
from glossary.text import normalise

LANGS = ("de", "es", "ru")
# A translation may run longer than the English (German words are long), but not by more than this.
MAX_LENGTH_RATIO = 1.6
# Much shorter than the English means facts were left out.
MIN_LENGTH_RATIO = 0.5
MIN_FULLY_TRANSLATED = 555
# Every concept in these categories is translated: the findings and report words a patient meets first,
# how images are made and measured (technique, measurement, modality), and the anatomy words.
ALWAYS_TRANSLATED = frozenset({"finding", "report_language", "technique", "measurement", "modality", "anatomy"})
# count_sentences reads a lone letter before a full stop as an abbreviation ("z. B."), so a sentence
# ending on one ("No usa rayos X. Usted ...") is not counted and could hide a missing sentence.
LONE_LETTER_END = re.compile(r"(?<![\w.])[A-Za-z]\.(?=\s+[A-ZÄÖÜÁÉÍÓÚÑ¿¡А-ЯЁ«„]|\s*$)")


@pytest.fixture(scope="module")
def concepts() -> list[Concept]:
    concepts, problems = read_concepts()
    assert problems == [], "\n".join(problems)
    return concepts


def translated(concepts: list[Concept]) -> list[Concept]:
    return [c for c in concepts if c.translations]


def test_a_translated_concept_has_a_name_aliases_and_an_explanation_in_every_language(
    concepts: list[Concept],
) -> None:
    problems = []
    for c in translated(concepts):
        for lang in LANGS:
            tr = c.translations.get(lang)
            if tr is None:
                problems.append(f"{c.id}: no [{lang}] translation (has {sorted(c.translations)})")
                continue
            missing = [
                key
                for key, value in (("term", tr.term), ("aliases", tr.aliases), ("explanation", tr.explanation))
                if not value
            ]
            if missing:
                problems.append(f"{c.id} [{lang}]: missing {missing}")
    assert not problems, "\n".join(problems)


def test_no_name_points_at_two_concepts_within_a_language(concepts: list[Concept]) -> None:
    # The lookup reads every language at once, so a translated name must not be another concept's English name either.
    english: dict[str, str] = {}
    for c in concepts:
        for name in (c.term, *c.aliases):
            english.setdefault(normalise(name), c.id)
    clashes = []
    for lang in LANGS:
        owner = dict(english)
        for c in concepts:
            tr = c.translations.get(lang)
            if tr is None:
                continue
            for name in (tr.term, *tr.aliases):
                other = owner.setdefault(normalise(name), c.id)
                if other != c.id:
                    clashes.append(f"[{lang}] {name!r}: {other} and {c.id}")
    assert not clashes, "\n".join(clashes)


def test_no_alias_only_repeats_another_by_accent_or_case(concepts: list[Concept]) -> None:
    # The lookup folds accents and case: "lesión" and "lesion" are one name, so it is listed once.
    # A spelling without umlauts ("Oedem" for "Ödem") is a different name and welcome.
    repeats = []
    for c in translated(concepts):
        for lang, tr in c.translations.items():
            keys = [normalise(a) for a in tr.aliases]
            dupes = sorted({a for a, k in zip(tr.aliases, keys, strict=True) if keys.count(k) > 1})
            if dupes:
                repeats.append(f"{c.id} [{lang}]: {dupes}")
    assert not repeats, "\n".join(repeats)


def test_translated_explanations_stay_close_to_the_english(concepts: list[Concept]) -> None:
    problems = []
    for c in translated(concepts):
        english_sentences = count_sentences(c.explanation)
        for lang, tr in c.translations.items():
            ratio = len(tr.explanation) / len(c.explanation)
            sentences = count_sentences(tr.explanation)
            if not MIN_LENGTH_RATIO <= ratio <= MAX_LENGTH_RATIO:
                problems.append(f"{c.id} [{lang}]: {ratio:.2f} times the English length")
            if not 2 <= sentences <= 4:
                problems.append(f"{c.id} [{lang}]: {sentences} sentences, not 2 to 4")
            # Sentence for sentence, for every translated concept, old or new: a missing sentence is a
            # missing fact. No exceptions.
            if sentences != english_sentences:
                problems.append(f"{c.id} [{lang}]: {sentences} sentences where the English has {english_sentences}")
            for end in LONE_LETTER_END.finditer(tr.explanation):
                problems.append(f"{c.id} [{lang}]: a sentence ends on a lone letter ({end.group()!r}); reword it")
    assert not problems, "\n".join(problems)


def test_at_least_the_floor_of_concepts_speak_all_three_languages(concepts: list[Concept]) -> None:
    full = [c for c in concepts if set(LANGS) <= set(c.translations)]
    assert len(full) >= MIN_FULLY_TRANSLATED, f"only {len(full)} concepts have {LANGS}"


def test_every_finding_report_technique_modality_and_anatomy_word_is_translated(concepts: list[Concept]) -> None:
    missing = [c.id for c in concepts if c.category in ALWAYS_TRANSLATED and not set(LANGS) <= set(c.translations)]
    assert not missing, f"not yet in {LANGS}: {missing}"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Meniskusriss", "meniscus_tear"),
        ("Bandscheibenvorfall", "disc_herniation"),
        ("Bandscheibenprotrusion", "disc_protrusion"),
        ("Spinalkanalstenose", "spinal_stenosis"),
        ("Gelenkerguss", "joint_effusion"),
        ("Knochenmarkoedem", "bone_marrow_edema"),
        ("Hernie", "hernia"),
        ("was bedeutet Milchglastrübung", "ground_glass_opacity"),
        ("hernia discal", "disc_herniation"),
        ("protrusión discal", "disc_protrusion"),
        ("derrame articular", "joint_effusion"),
        ("higado graso", "fatty_liver"),
        ("no se puede descartar", "cannot_be_excluded"),
        ("qué es la espondilolistesis", "spondylolisthesis"),
        ("грыжа диска", "disc_herniation"),
        ("грыжа", "disc_herniation"),
        ("протрузия", "disc_bulge"),
        ("локальная протрузия", "disc_protrusion"),
        ("остеохондроз", "spondylosis"),
        ("отек костного мозга", "bone_marrow_edema"),
        ("признаков не выявлено", "no_evidence_of"),
        ("что такое киста Бейкера", "baker_cyst"),
        ("Schilddrüse", "thyroid"),
        ("was ist die Hypophyse", "pituitary_gland"),
        ("Bauchspeicheldrüse", "pancreas"),
        ("vesícula biliar", "gallbladder"),
        ("qué es el hipocampo", "hippocampus"),
        ("riñones", "kidney"),
        ("щитовидная железа", "thyroid"),
        ("что такое гипофиз", "pituitary_gland"),
        ("мозжечок", "cerebellum"),
    ],
)
def test_a_patients_words_find_the_concept(glossary: Glossary, query: str, expected: str) -> None:
    result = glossary.lookup(query)
    assert [c.id for c in result.concepts] == [expected], (query, result.match, [c.id for c in result.suggestions])


@pytest.mark.parametrize(
    ("lang", "report", "expected"),
    [
        (
            "de",
            "Befund: Kleiner Gelenkerguss. Keine Baker-Zyste. Beurteilung: Degenerative Veränderungen, "
            "V. a. Meniskusriss.",
            [
                "findings_section",
                "joint_effusion",
                "baker_cyst",
                "impression",
                "degenerative_change",
                "suggestive_of",
                "meniscus_tear",
            ],
        ),
        (
            "es",
            "Hallazgos: protrusión discal L4-L5 con estenosis foraminal. No se puede descartar compresión "
            "radicular. Impresión: cambios degenerativos.",
            [
                "findings_section",
                "disc_protrusion",
                "foraminal_narrowing",
                "cannot_be_excluded",
                "nerve_root_compression",
                "impression",
                "degenerative_change",
            ],
        ),
        (
            "ru",
            "Остеохондроз поясничного отдела. Грыжа диска L5-S1, стеноз позвоночного канала. "
            "Заключение: данных за перелом нет.",
            ["spondylosis", "disc_herniation", "spinal_stenosis", "impression", "no_evidence_of", "fracture"],
        ),
    ],
)
def test_a_translated_report_names_its_concepts(
    glossary: Glossary, lang: str, report: str, expected: list[str]
) -> None:
    found = [hit.concept.id for hit in glossary.find_terms(report)]
    assert [cid for cid in found if cid in expected] == expected, (lang, found)


@pytest.mark.parametrize(
    ("lang", "term"), [("de", "Gelenkerguss"), ("es", "Derrame articular"), ("ru", "Выпот в суставе")]
)
def test_an_explanation_is_given_in_the_chosen_language(glossary: Glossary, lang: str, term: str) -> None:
    concept = glossary.by_id["joint_effusion"]
    explained = glossary.explain(concept, lang)
    assert explained.lang == lang and explained.term == term
    assert explained.explanation == concept.translations[lang].explanation
