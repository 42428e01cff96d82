"""Intents, slots, reasons and problems for the situations the issue names."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.understanding import INTENTS, SLOT_KEYS, understand
from handlers.understanding.text import MAX_MESSAGE_CHARS

TODAY = dt.date(2026, 11, 28)


def u(text: str, today: dt.date = TODAY) -> tuple[str, dict[str, Any]]:
    result = understand(text, today)
    return result.intent, result.slots


@pytest.mark.parametrize(
    ("text", "intent", "slots"),
    [
        (
            "pls show the chest ct i had in october",
            "show_study",
            {"modality": "CT", "body_part": "chest", "which": {"date": "2026-10"}},
        ),
        ("xray of my back", "show_study", {"modality": "XR", "body_part": "lumbar spine"}),
        ("the mri from the summer before last", "show_study", {"modality": "MR", "which": {"year": 2025}}),
        ("knee mri now vs before", "compare", {"modality": "MR", "body_part": "knee"}),
        (
            "share my brain mri with dr lee for 3 days",
            "share",
            {"modality": "MR", "body_part": "brain", "duration_hours": 72, "recipient": "dr lee"},
        ),
        ("was bedeutet Erguss", "explain_term", {"term": "Erguss"}),
        ("whats a FLAIR sequence?", "explain_term", {"term": "FLAIR"}),
        ('what does "unremarkable" mean', "explain_term", {"term": "unremarkable"}),
        ("show me the cat scan of my belly", "show_study", {"modality": "CT", "body_part": "abdomen"}),
        ("revoke all my links", "revoke_share", {"all": True}),
        ("who has looked at my scans", "activity", {}),
        ("is my data safe with you?", "privacy", {}),
        ("delete all my data", "forget_me", {}),
        ("Zeig mir mein letztes MRT", "show_study", {"modality": "MR", "which": "latest"}),
        ("muéstrame mi última radiografía", "show_study", {"modality": "XR", "which": "latest"}),
        ("покажи мою последнюю КТ", "show_study", {"modality": "CT", "which": "latest"}),
        ("take the link back", "revoke_share", {}),
    ],
)
def test_issue_examples(text: str, intent: str, slots: dict[str, Any]) -> None:
    assert u(text) == (intent, slots)


@pytest.mark.parametrize(
    ("text", "today", "which"),
    [
        ("my ct from last March", dt.date(2026, 11, 28), {"date": "2026-03"}),
        ("my ct from last March", dt.date(2026, 3, 15), {"date": "2025-03"}),
        ("my ct from last March", dt.date(2026, 2, 1), {"date": "2025-03"}),
        ("my ct from december", dt.date(2025, 2, 10), {"date": "2024-12"}),
        ("my ct from this march", dt.date(2026, 11, 28), {"date": "2026-03"}),
        ("mri two years ago", dt.date(2026, 11, 28), {"year": 2024}),
        ("mri a year ago", dt.date(2026, 1, 5), {"year": 2025}),
        ("ultrasound from two months ago", dt.date(2026, 1, 20), {"date": "2025-11"}),
        ("mri from last summer", dt.date(2026, 7, 10), {"year": 2025}),
        ("mri from last summer", dt.date(2026, 9, 10), {"year": 2026}),
        ("mri from the summer before last", dt.date(2026, 9, 10), {"year": 2025}),
        ("ct from the year before last", dt.date(2026, 9, 10), {"year": 2024}),
        ("ct from 2024-03-12", TODAY, {"date": "2024-03-12"}),
        ("ct from 12.03.2024", TODAY, {"date": "2024-03-12"}),
        ("ct from March 12th, 2024", TODAY, {"date": "2024-03-12"}),
        ("ct from yesterday", TODAY, {"date": "2026-11-27"}),
        ("MRT vom letzten Jahr", TODAY, {"year": 2025}),
        ("MRT von vor drei Monaten", TODAY, {"date": "2026-08"}),
        ("resonancia del año pasado", TODAY, {"year": 2025}),
        ("resonancia de hace 3 años", TODAY, {"year": 2023}),
        ("мрт в марте 2024 года", TODAY, {"date": "2024-03"}),
        ("мрт в прошлом году", TODAY, {"year": 2025}),
        ("мрт позапрошлым летом", TODAY, {"year": 2025}),
    ],
)
def test_relative_dates_resolve_against_today(text: str, today: dt.date, which: dict[str, Any]) -> None:
    intent, slots = u(text, today)
    assert intent == "show_study"
    assert slots["which"] == which


@pytest.mark.parametrize(
    ("text", "today", "which"),
    [
        ("show the ct from last friday", dt.date(2026, 11, 28), {"date": "2026-11-27"}),  # a Saturday
        ("my ct from friday", dt.date(2026, 11, 27), {"date": "2026-11-27"}),  # said on that Friday: today
        ("my ct from last friday", dt.date(2026, 11, 27), {"date": "2026-11-20"}),  # "last": a week back
        ("mri on monday", dt.date(2026, 12, 2), {"date": "2026-11-30"}),
        ("zeig mir das MRT vom letzten Freitag", dt.date(2026, 11, 28), {"date": "2026-11-27"}),
        ("radiografía del viernes pasado", dt.date(2026, 11, 28), {"date": "2026-11-27"}),
        ("рентген в прошлую пятницу", dt.date(2026, 11, 28), {"date": "2026-11-27"}),
    ],
)
def test_weekdays_name_the_most_recent_such_day(text: str, today: dt.date, which: dict[str, Any]) -> None:
    assert u(text, today)[1]["which"] == which


@pytest.mark.parametrize(
    ("text", "today", "hours"),
    [
        ("share my knee MRI with Dr. Lee until Friday", dt.date(2026, 11, 28), 144),
        ("share my knee MRI with Dr. Lee until Friday", dt.date(2026, 11, 27), 168),  # said on a Friday
        ("share my ct with my GP till tomorrow", dt.date(2026, 11, 28), 24),
        ("share my ct until the day after tomorrow", dt.date(2026, 11, 28), 48),
        ("teile mein MRT mit Dr. Weber bis Montag", dt.date(2026, 11, 28), 48),
        ("comparte mi resonancia con el Dr. Ruiz hasta el viernes", dt.date(2026, 11, 30), 96),
        ("отправь МРТ врачу до среды", dt.date(2026, 11, 28), 96),
        ("поделись КТ с доктором до завтра", dt.date(2026, 11, 28), 24),
    ],
)
def test_until_a_day_is_a_share_duration_not_a_study_date(text: str, today: dt.date, hours: int) -> None:
    intent, slots = u(text, today)
    assert intent == "share"
    assert slots["duration_hours"] == hours
    assert "which" not in slots


@pytest.mark.parametrize(
    ("text", "intent", "recipient"),
    [
        ("give dr. jones access to my brain mri for 24 hours", "share", "dr. jones"),
        ("let my physio see my knee xray", "share", "my physio"),
        ("grant my surgeon access to the ct for 3 days", "share", "my surgeon"),
        ("gib Dr. Weber Zugriff auf mein MRT", "share", "Dr. Weber"),
        ("dale acceso a mi médico a la resonancia", "share", "mi médico"),
        ("дай врачу доступ к моей МРТ на 2 дня", "share", "врачу"),
        ("let me see my knee xray", "show_study", None),  # the patient, not someone else
        ("дай мне мою МРТ", "show_study", None),
    ],
)
def test_giving_someone_access_is_a_share(text: str, intent: str, recipient: str | None) -> None:
    got_intent, slots = u(text)
    assert got_intent == intent
    assert slots.get("recipient") == recipient


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("what does it mean when it says unremarkable", "unremarkable"),
        ("my report says mild degenerative changes, what is that", "mild degenerative changes"),
        ("meaning: disc protrusion", "disc protrusion"),
        ("in meinem Befund steht Erguss, was bedeutet das", "Erguss"),
        ("в заключении написано грыжа диска, что это значит", "грыжа диска"),
    ],
)
def test_a_word_quoted_from_the_report_is_explained(text: str, term: str) -> None:
    assert u(text) == ("explain_term", {"term": term})


@pytest.mark.parametrize(
    ("text", "recipient"),
    [
        ("remove dr brown's access", "dr brown"),
        ("take away my physio's access", "my physio"),
        ("entziehe Dr. Weber den Zugriff", "Dr. Weber"),
        ("quita el acceso al doctor López", "doctor López"),
    ],
)
def test_taking_someones_access_away_revokes_their_link(text: str, recipient: str) -> None:
    assert u(text) == ("revoke_share", {"recipient": recipient})


def test_a_link_that_expires_is_made_not_stopped() -> None:
    assert u("can you make a link for dr ray that expires in 6 hours") == (
        "share", {"duration_hours": 6, "recipient": "dr ray"})
    assert u("expire the link for dr ray") == ("revoke_share", {"recipient": "dr ray"})


def test_posting_online_is_a_public_share_the_bot_can_refuse() -> None:
    result = understand("post my mri on facebook", TODAY)
    assert result.intent == "share" and "recipient_public" in result.problems


def test_sat_and_sun_alone_are_words_not_days() -> None:
    assert "which" not in u("I sat down to look at my mri", dt.date(2026, 11, 28))[1]


def test_may_the_verb_is_not_a_month() -> None:
    assert "which" not in u("may I see my knee MRI")[1]
    assert u("my knee MRI from may")[1]["which"] == {"date": "2026-05"}


@pytest.mark.parametrize(
    ("text", "problem", "slot", "value"),
    [
        ("share it for minus two days", "duration_not_positive", "duration_hours", -48),
        ("share my ct for -2 days", "duration_not_positive", "duration_hours", -48),
        ("share my ct for 0 hours", "duration_not_positive", "duration_hours", 0),
        ("share my ct for 2 months", "duration_too_long", "duration_hours", 1440),
        ("share my ct for 30 minutes", "duration_too_short", "duration_hours", 0.5),
        ("share with the whole internet", "recipient_public", "recipient", "the whole internet"),
        ("teile mein MRT mit dem ganzen Internet", "recipient_public", "recipient", "dem ganzen Internet"),
    ],
)
def test_impossible_shares_are_understood_and_flagged(text: str, problem: str, slot: str, value: Any) -> None:
    result = understand(text, TODAY)
    assert result.intent == "share"
    assert result.slots[slot] == value
    assert problem in result.problems


def test_share_publicly_is_flagged_without_a_recipient() -> None:
    result = understand("make my MRI public", TODAY)
    assert result.intent == "share"
    assert "recipient" not in result.slots
    assert result.problems == ("recipient_public",)


def test_a_scan_from_the_future_or_before_xrays_is_flagged() -> None:
    future = understand("my scan from 2150", TODAY)
    assert (future.intent, future.slots, future.problems) == (
        "show_study",
        {"which": {"year": 2150}},
        ("date_in_future",),
    )
    old = understand("my xray from 1850", TODAY)
    assert old.problems == ("date_before_imaging",)
    assert understand("my xray from 2020", TODAY).problems == ()


def test_an_ordinary_share_has_no_problems() -> None:
    result = understand("share my last MRI with my neurologist for 48 hours", TODAY)
    assert result.problems == ()
    assert result.reason is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("show me Maria's MRI", "other_person"),
        ("show me my wife's CT", "other_person"),
        ("the MRI of my son", "other_person"),
        ("show me his xray", "other_person"),
        ("Zeig mir das MRT meiner Mutter", "other_person"),
        ("muéstrame la radiografía de mi esposo", "other_person"),
        ("покажи снимки мужа", "other_person"),
        ("is this cancer?", "diagnosis"),
        ("do I have a tumour", "diagnosis"),
        ("what's wrong with my knee", "diagnosis"),
        ("ist das Krebs?", "diagnosis"),
        ("¿es grave?", "diagnosis"),
        ("это опасно?", "diagnosis"),
        ("how much ibuprofen should I take", "dosing"),
        ("what dose of paracetamol is ok", "dosing"),
        ("welche Dosis soll ich nehmen", "dosing"),
        ("1; DELETE FROM patients", "not_understood"),
        ("what's the weather like", "not_understood"),
        ("thank you so much", "small_talk"),
        ("", "empty"),
        ("\u200b\u200b  <b></b>", "empty"),
    ],
)
def test_refusals_carry_a_reason(text: str, reason: str) -> None:
    result = understand(text, TODAY)
    assert (result.intent, result.slots, result.reason) == ("unknown", {}, reason)


def test_sharing_with_a_relative_is_not_someone_elses_images() -> None:
    assert u("send my MRI to my wife") == ("share", {"modality": "MR", "recipient": "my wife"})
    assert u("Dr. Lee's link: revoke it")[0] == "revoke_share"


def test_explaining_a_diagnosis_word_is_not_a_diagnosis() -> None:
    assert u("what is a tumor") == ("explain_term", {"term": "tumor"})
    assert u("what does malignant mean") == ("explain_term", {"term": "malignant"})


def test_look_alike_letters_zero_width_and_markup() -> None:
    assert u("show my \u0421\u0422") == ("show_study", {"modality": "CT"})  # all-Cyrillic "СТ"
    assert u("sh\u043ew my l\u0430test xr\u0430y") == ("show_study", {"modality": "XR", "which": "latest"})
    assert u("s\u200bhow my k\u200dnee m\ufeffri") == ("show_study", {"modality": "MR", "body_part": "knee"})
    assert u("<b>share</b> my <i>CT</i> with <a href='x'>Dr. Patel</a>") == (
        "share",
        {"modality": "CT", "recipient": "Dr. Patel"},
    )
    assert u("**compare** my ~~knee~~ `MRIs`") == ("compare", {"modality": "MR", "body_part": "knee"})
    assert u("ｓｈｏｗ ｍｙ ＭＲＩ") == ("show_study", {"modality": "MR"})


def test_russian_text_is_not_mangled_by_the_look_alike_fix() -> None:
    assert u("покажи мою КТ") == ("show_study", {"modality": "CT"})
    assert u("сравни мои снимки МРТ") == ("compare", {"modality": "MR"})


def test_typos_and_colloquial_words() -> None:
    assert u("sho my lst mri") == ("show_study", {"modality": "MR", "which": "latest"})
    assert u("shwo me my ultrasond") == ("show_study", {"modality": "US"})
    assert u("my tummy cat scan plz") == ("show_study", {"modality": "CT", "body_part": "abdomen"})
    assert u("boob xray") == ("show_study", {"modality": "XR", "body_part": "breast"})


def test_back_is_a_body_part_but_not_in_take_it_back() -> None:
    assert u("show my back mri")[1]["body_part"] == "lumbar spine"
    assert u("show my upper back mri")[1]["body_part"] == "thoracic spine"
    assert "body_part" not in u("take back the link for my mri")[1]


def test_very_long_messages_are_cut_and_still_understood() -> None:
    text = "show my knee mri " + "really " * 50_000
    result = understand(text, TODAY)
    assert result.intent == "show_study"
    assert result.slots == {"modality": "MR", "body_part": "knee"}
    assert len(text) > 10 * MAX_MESSAGE_CHARS


def test_language_is_guessed_for_replying_in_kind() -> None:
    assert understand("show my MRI", TODAY).language == "en"
    assert understand("Zeig mir mein MRT bitte", TODAY).language == "de"
    assert understand("muéstrame mi resonancia", TODAY).language == "es"
    assert understand("покажи мрт", TODAY).language == "ru"


def test_json_shape_is_intent_and_slots_only_unless_details_are_asked() -> None:
    result = understand("share it for minus two days", TODAY)
    assert result.as_json() == {"intent": "share", "slots": {"duration_hours": -48}}
    assert result.as_json(details=True)["problems"] == ["duration_not_positive"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_a_valid_answer(text: str) -> None:
    result = understand(text, TODAY)
    assert result.intent in INTENTS
    assert set(result.slots) <= set(SLOT_KEYS)
    if result.intent == "unknown":
        assert result.slots == {}
        assert result.reason


def _lexicon_with_glossary(monkeypatch: pytest.MonkeyPatch, terms: frozenset[str]) -> None:
    import dataclasses
    import importlib

    from handlers.understanding.lexicon import load_lexicon

    module = importlib.import_module("handlers.understanding.understand")
    patched = dataclasses.replace(load_lexicon(), glossary_terms=terms)
    monkeypatch.setattr(module, "load_lexicon", lambda: patched)


def test_a_bare_glossary_term_is_an_explain_request(monkeypatch: pytest.MonkeyPatch) -> None:
    _lexicon_with_glossary(monkeypatch, frozenset({"effusion", "mri"}))
    assert u("Effusion?") == ("explain_term", {"term": "Effusion"})
    assert u("MRI") == ("show_study", {"modality": "MR"})  # a study word stays a request for the study
    assert u("hello") == ("unknown", {})


def test_understanding_does_not_need_the_glossary(monkeypatch: pytest.MonkeyPatch) -> None:
    _lexicon_with_glossary(monkeypatch, frozenset())
    assert u("Effusion?") == ("unknown", {})
    assert u("what is pleural effusion") == ("explain_term", {"term": "pleural effusion"})
    assert u("was bedeutet Erguss") == ("explain_term", {"term": "Erguss"})


@pytest.mark.parametrize(
    ("text", "intent", "slots"),
    [
        ("Hi. What is a disc bulge? Thanks!", "explain_term", {"term": "disc bulge"}),
        ("what does meniscus tear mean? my doctor said it", "explain_term", {"term": "meniscus tear"}),
        ("what's the score of the game", "unknown", {}),
        ("what is the weather today", "unknown", {}),
        ("share my mri with dr lee and dr kim", "share", {"modality": "MR", "recipient": "dr lee and dr kim"}),
        ("share mri dr lee", "share", {"modality": "MR", "recipient": "dr lee"}),
        ("share my mri with my doctor.", "share", {"modality": "MR", "recipient": "my doctor"}),
        ("create a share link for my latest ultrasound", "share", {"modality": "US", "which": "latest"}),
        (
            "I had a bad fall last year, show me my knee MRI",
            "show_study",
            {"modality": "MR", "body_part": "knee", "which": {"year": 2025}},
        ),
        ("показать МРТ Марии", "unknown", {}),
        ("Zeig mir Marias MRT", "unknown", {}),
    ],
)
def test_sentences_recipients_and_names(text: str, intent: str, slots: dict[str, Any]) -> None:
    assert u(text) == (intent, slots)


def test_a_share_with_a_code_is_asked_for_in_each_language() -> None:
    for text in ("share my mri with dr ray with a code", "teile mein MRT mit Dr. Weber mit PIN",
                 "comparte mi resonancia con mi médico con código", "отправь МРТ врачу с кодом"):
        result = understand(text, TODAY)
        assert result.intent == "share" and result.wants_code, text
    assert not understand("share my mri with dr ray", TODAY).wants_code
    assert "wants_code" not in understand("share my mri with dr ray with a code", TODAY).as_json()


@pytest.mark.parametrize(
    ("text", "today", "hours"),
    [
        ("share my MRI with Dr Lee until December 5", dt.date(2026, 11, 28), 168),
        ("share my MRI with Dr Lee until 5 December", dt.date(2026, 12, 10), 360 * 24),  # next year's
        ("teile mein MRT bis zum 5. Dezember", dt.date(2026, 11, 28), 168),
        ("share my mri until next week", dt.date(2026, 11, 28), 168),
        ("share my ct till the end of the week", dt.date(2026, 11, 25), 96),  # a Wednesday: until Sunday
        ("share my mri until the end of the month", dt.date(2026, 11, 20), 240),
    ],
)
def test_until_a_date_ends_the_link_and_names_no_study(text: str, today: dt.date, hours: int) -> None:
    intent, slots = u(text, today)
    assert intent == "share" and "which" not in slots
    assert slots["duration_hours"] == hours


def test_a_russian_recipient_keeps_its_my_like_my_neurologist() -> None:
    assert u("скинь снимки моему неврологу") == ("share", {"recipient": "моему неврологу"})
    assert u("отправь МРТ врачу") == ("share", {"modality": "MR", "recipient": "врачу"})


def test_everyday_german_and_russian_body_words_are_read_as_such() -> None:
    assert u("zeig das MRT vom Gelenk") == ("show_study", {"modality": "MR"})  # a noun, not a person's name
    assert understand("zeig das MRT von Peter", TODAY).reason == "other_person"
    assert u("покажи МРТ голеностопа") == ("show_study", {"modality": "MR", "body_part": "ankle"})
    assert u("покажи рентген голени") == ("show_study", {"modality": "XR", "body_part": "leg"})
    assert u("Leiste")[0] != "list_studies"  # the groin, not a misspelt "Liste"
