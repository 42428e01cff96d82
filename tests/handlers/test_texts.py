"""The words Python puts together follow the patient's language: counts, dates, kinds of scan, labels."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from handlers import texts


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, "0 снимков"),
        (1, "1 снимок"),
        (2, "2 снимка"),
        (4, "4 снимка"),
        (5, "5 снимков"),
        (11, "11 снимков"),
        (12, "12 снимков"),
        (14, "14 снимков"),
        (21, "21 снимок"),
        (22, "22 снимка"),
        (25, "25 снимков"),
        (101, "101 снимок"),
        (111, "111 снимков"),
        (112, "112 снимков"),
        (1004, "1004 снимка"),
    ],
)
def test_russian_counts_take_one_of_three_forms(count: int, expected: str) -> None:
    with texts.speaking("ru"):
        assert texts.counted(count, "picture") == expected
        assert texts.plural(count, "снимок", "снимка", "снимков") == expected


@pytest.mark.parametrize(
    ("lang", "count", "expected"),
    [
        ("en", 1, "1 picture"),
        ("en", 0, "0 pictures"),
        ("en", 21, "21 pictures"),
        ("de", 1, "1 Bild"),
        ("de", 2, "2 Bilder"),
        ("de", 21, "21 Bilder"),
        ("es", 1, "1 imagen"),
        ("es", 0, "0 imágenes"),
        ("es", 21, "21 imágenes"),
    ],
)
def test_english_german_and_spanish_have_one_and_other(lang: str, count: int, expected: str) -> None:
    with texts.speaking(lang):
        assert texts.counted(count, "picture") == expected


def test_english_plural_still_adds_an_s_when_given_one_form() -> None:
    with texts.speaking("en"):
        assert texts.plural(3, "image") == "3 images"
        assert texts.plural(1, "study", "studies") == "1 study"
        assert texts.plural(2, "study", "studies") == "2 studies"


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("en", "12 March 2025"),
        ("de", "12. März 2025"),
        ("es", "12 de marzo de 2025"),
        ("ru", "12 марта 2025 г."),
    ],
)
def test_dates_are_written_the_language_s_way(lang: str, expected: str) -> None:
    with texts.speaking(lang):
        assert texts.nice_date(date(2025, 3, 12)) == expected
        assert texts.nice_date(datetime(2025, 3, 12, 23, 59)) == expected


def test_every_month_has_its_name_in_every_language() -> None:
    names = {}
    for lang in texts.LANGUAGES:
        with texts.speaking(lang):
            names[lang] = [texts.nice_date(date(2024, month, 1)) for month in range(1, 13)]
    assert names["de"][4] == "1. Mai 2024" and names["de"][11] == "1. Dezember 2024"
    assert names["es"][0] == "1 de enero de 2024" and names["es"][8] == "1 de septiembre de 2024"
    assert names["ru"][4] == "1 мая 2024 г." and names["ru"][7] == "1 августа 2024 г."
    for lang in texts.LANGUAGES:
        assert len(set(names[lang])) == 12


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("en", "3 Aug 2025, 09:07 UTC"),
        ("de", "3. Aug. 2025, 09:07 UTC"),
        ("es", "3 ago 2025, 09:07 UTC"),
        ("ru", "3 авг. 2025 г., 09:07 UTC"),
    ],
)
def test_times_are_written_the_language_s_way(lang: str, expected: str) -> None:
    with texts.speaking(lang):
        assert texts.nice_time(datetime(2025, 8, 3, 9, 7)) == expected
        assert texts.nice_time(None) == ""


def test_an_unknown_date_is_said_in_the_language() -> None:
    with texts.speaking("de"):
        assert texts.nice_date(None) == "unbekanntes Datum"
        assert texts.what_when("MRT", None) == "MRT (Datum unbekannt)"
    with texts.speaking("en"):
        assert texts.nice_date(None) == "an unknown date"


@pytest.mark.parametrize(
    ("lang", "days", "expected"),
    [
        ("en", 425, "14 months apart"),
        ("en", 5, "5 days apart"),
        ("de", 425, "14 Monate Abstand"),
        ("de", 1, "1 Tag Abstand"),
        ("es", 800, "2 años de diferencia"),
        ("ru", 425, "разница 14 месяцев"),
        ("ru", 2, "разница 2 дня"),
        ("ru", 21, "разница 21 день"),
        ("ru", 1900, "разница 5 лет"),
    ],
)
def test_intervals_use_the_language_s_counts(lang: str, days: int, expected: str) -> None:
    earlier = date(2020, 1, 1)
    later = date.fromordinal(earlier.toordinal() + days)
    with texts.speaking(lang):
        assert texts.interval_words(earlier, later) == expected


@pytest.mark.parametrize(
    ("lang", "modalities", "part", "expected"),
    [
        ("en", "MR", "knee", "MRI of the knee"),
        ("en", "CT\\PT", "", "CT scan and PET scan"),
        ("en", "SR", "", "scan"),
        ("de", "MR", "knee", "MRT des Knies"),
        ("de", "CR", "chest", "Röntgenbild des Brustkorbs"),
        ("es", "US", "liver", "ecografía del hígado"),
        ("es", "CT\\PT", "", "TAC y PET"),
        ("ru", "MR", "knee", "МРТ коленного сустава"),
        ("ru", "CT", "lumbar spine", "КТ поясничного отдела позвоночника"),
        ("ru", "MR", "elsewhere", "МРТ (elsewhere)"),  # a part labels.toml does not know keeps its own word
    ],
)
def test_the_kind_of_scan_and_the_body_part_in_words(lang: str, modalities: str, part: str, expected: str) -> None:
    with texts.speaking(lang):
        assert texts.what_of(modalities, part) == expected


def test_every_canonical_body_part_has_a_name_and_an_of_form() -> None:
    from store.body_parts import CANONICAL

    for part in CANONICAL:
        assert f"part.{texts.part_key(part)}" in texts.labels()
        assert f"part_of.{texts.part_key(part)}" in texts.labels()
    with texts.speaking("de"):
        assert texts.part_name("whole body") == "ganzer Körper"


def test_the_start_of_a_sentence_keeps_the_rest_of_the_words() -> None:
    """``str.capitalize`` would lower-case German nouns ("14 monate abstand") and abbreviations."""
    assert texts.sentence_start("ecografía del hígado") == "Ecografía del hígado"
    assert texts.sentence_start("разница 14 месяцев") == "Разница 14 месяцев"
    with texts.speaking("en"):
        assert texts.mid_sentence("Ultrasound of the knee") == "ultrasound of the knee"
        assert texts.mid_sentence("MRI of the knee") == "MRI of the knee"
        assert texts.mid_sentence("X-ray of the hand") == "X-ray of the hand"
    with texts.speaking("de"):
        assert texts.mid_sentence("Röntgenbild des Knies") == "Röntgenbild des Knies"


def test_a_label_falls_back_to_english_and_fills_in_values() -> None:
    with texts.speaking("ru"):
        assert texts.label("button.stop_link", number=2) == "Остановить ссылку 2"
    with texts.speaking("xx"):  # a language Lightbox does not speak
        assert texts.language() == "en"
        assert texts.label("button.back") == "‹ Back"
    with pytest.raises(KeyError):
        texts.label("button.no_such_button")


def test_speaking_is_undone_after_the_block() -> None:
    assert texts.current_language.get() == ""
    with texts.speaking("de"):
        assert texts.label("button.next") == "Weiter ›"
        with texts.speaking("es"):
            assert texts.label("button.next") == "Siguiente ›"
        assert texts.label("button.next") == "Weiter ›"
    assert texts.current_language.get() == ""
    assert texts.label("button.next") == "Next ›"


def test_another_language_s_text_stands_in_for_an_english_message() -> None:
    with texts.speaking("en"):
        assert texts.in_language("The storage is full (3 saved).", "upload.problem.StorageFull") == (
            "The storage is full (3 saved)."
        )
    with texts.speaking("es"):
        assert texts.in_language("The storage is full.", "upload.problem.StorageFull").startswith(
            "El almacenamiento está lleno"
        )


def test_dates_drawn_on_pictures_are_words_with_dejavu_and_digits_without(monkeypatch: pytest.MonkeyPatch) -> None:
    from imaging import fonts

    day = date(2025, 3, 12)
    with texts.speaking("de"):
        assert texts.picture_date(day) == "12. März 2025"
    with texts.speaking("ru"):  # DejaVu Sans (fonts-dejavu-core, installed by scripts/setup.sh) has Cyrillic
        assert texts.picture_date(day) == "12 марта 2025 г."
    assert texts.drawable("МРТ", "MR") == "МРТ"
    monkeypatch.setattr(fonts, "_font_file", lambda: None)  # without it, Pillow's font has Latin letters only
    with texts.speaking("ru"):
        assert texts.picture_date(day) == "2025-03-12"
    assert texts.drawable("МРТ", "MR") == "MR"
