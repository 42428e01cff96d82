"""The conversation end to end: the real Application over HTTP against the Bot API sandbox.

Each test acts as a patient would (types, taps, sends files) and reads what the bot sent, images included.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from sqlalchemy import func, select

from store.models import AccessEvent, ChatLink, Instance, Patient, Study
from tests.handlers.conftest import Lightbox, study

MR = "MR_small.dcm"
CT = "CT_small.dcm"


def picture(data: bytes | None) -> np.ndarray:
    assert data is not None
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


async def test_start_without_a_code_explains_and_warns_about_encryption(lightbox: Lightbox) -> None:
    alex = lightbox.driver.user("Alex")
    await alex.command("start")
    welcome = await alex.wait_for_reply()
    assert "Lightbox" in (welcome.text or "")
    assert "not" in (welcome.text or "") and "end-to-end encrypted" in (welcome.text or "")


async def test_link_code_links_once(lightbox: Lightbox) -> None:
    patient = lightbox.add_patient("P-LINK", "Link^Test", [study("mr", 10, "MR", "MRI brain", "BRAIN", MR)])
    code = lightbox.link_code(patient)
    alex = lightbox.driver.user("Alex")
    await alex.command("start", code)
    linked = await alex.wait_for_reply()
    assert "linked" in (linked.text or "")
    assert "1 study" in (linked.text or "")
    sam = lightbox.driver.user("Sam")
    await sam.command("start", code)
    refused = await sam.wait_for_reply()
    assert "already used" in (refused.text or "")
    await sam.command("start", "not-a-real-code")
    unknown = await sam.wait_for_reply()
    assert "don't know that link" in (unknown.text or "")
    with lightbox.services.sessions() as session:
        links = session.scalars(select(ChatLink)).all()
    assert [(link.telegram_user_id, link.patient_id) for link in links] == [(alex.id, patient)]


async def test_show_my_last_mri_finds_the_right_study_of_the_right_patient(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-A", "Alpha^Ann", [
        study("mr-new", 30, "MR", "MRI brain", "BRAIN", MR, copies=12),
        study("mr-old", 400, "MR", "MRI brain", "BRAIN", MR, copies=6),
        study("ct", 5, "CT", "CT chest", "CHEST", CT),
    ])
    lightbox.add_patient("P-B", "Beta^Ben", [study("mr-b", 1, "MR", "MRI knee", "KNEE", MR)])
    ann = await lightbox.linked_user(mine, "Ann")
    await ann.say("show my last MRI")
    card = await ann.wait_for_reply()
    assert card.photo_bytes is not None
    caption = card.caption or ""
    assert "MRI of the brain" in caption
    assert "29 October 2026" in caption  # 30 days before 28 Nov 2026: not the CT (newer) nor patient B's MRI
    assert "picture 6 of 12" in caption  # the key (middle) slice
    assert card.protect_content is True
    image = picture(card.photo_bytes)
    assert image.std() > 5  # a real picture, not a blank


async def test_slice_navigation_and_windows_edit_the_same_message(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-NAV", "Nav^Nina", [study("ct", 3, "CT", "CT head", "HEAD", CT, copies=15)])
    nina = await lightbox.linked_user(mine, "Nina")
    await nina.command("last")
    card = await nina.wait_for_reply()
    assert "picture 8 of 15" in (card.caption or "")
    before = card.version
    tap = await nina.tap(card, "Next ›")
    await nina.wait_for_answer(tap)
    card = await nina.wait_for_edit(card, since_version=before)
    assert "picture 9 of 15" in (card.caption or "")
    before = card.version
    first_picture = picture(card.photo_bytes)
    tap = await nina.tap(card, "Lung")
    await nina.wait_for_answer(tap)
    card = await nina.wait_for_edit(card, since_version=before)
    assert "lung window" in (card.caption or "")
    assert np.abs(picture(card.photo_bytes).astype(int) - first_picture.astype(int)).mean() > 5
    before = card.version
    tap = await nina.tap(card, "10 »")
    await nina.wait_for_answer(tap)
    card = await nina.wait_for_edit(card, since_version=before)
    assert "picture 15 of 15" in (card.caption or "")
    # Navigation never floods the chat: one photo message in all.
    assert len([m for m in nina.bot_messages if m.photo_bytes is not None]) == 1


async def test_explain_a_word(lightbox: Lightbox) -> None:
    ann = lightbox.driver.user("Ann")
    await ann.say("what does hyperintense mean?")
    answer = await ann.wait_for_reply()
    text = answer.text or ""
    assert "brighter" in text.lower() or "bright" in text.lower()
    assert "doctor" in text.lower()
    await ann.command("explain", "flair")
    flair = await ann.wait_for_reply()
    assert "FLAIR" in (flair.text or "")


async def test_a_forged_callback_for_another_patients_study_shows_nothing(lightbox: Lightbox) -> None:
    victim = lightbox.add_patient("P-V", "Victim^Vera", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR, copies=3)])
    attacker_patient = lightbox.add_patient("P-X", "Other^Oscar", [study("ct", 2, "CT", "CT chest", "CHEST", CT)])
    vera = await lightbox.linked_user(victim, "Vera")
    await vera.command("last")
    vera_card = await vera.wait_for_reply()
    series_button = next(b["callback_data"] for row in vera_card.reply_markup["inline_keyboard"] for b in row
                         if b["text"].startswith("Next"))
    oscar = await lightbox.linked_user(attacker_patient, "Oscar")
    await oscar.command("last")
    oscar_card = await oscar.wait_for_reply()
    before = oscar_card.version
    photos_before = len([m for m in oscar.bot_messages if m.photo_bytes is not None])
    tap = await oscar.send_callback(oscar_card, series_button)
    answered = await oscar.wait_for_answer(tap)
    assert "expired" in (answered.answer_text or "")
    for forged in ("v|" + "0" * 32 + "|0|d000", "a|open|" + "f" * 32, "a|revoke|" + "1" * 32, "garbage", "v|x|y|z"):
        tap = await oscar.send_callback(oscar_card, forged)
        answered = await oscar.wait_for_answer(tap)
        assert "expired" in (answered.answer_text or "")
    assert oscar_card.version == before
    assert len([m for m in oscar.bot_messages if m.photo_bytes is not None]) == photos_before
    with lightbox.services.sessions() as session:
        seen_by_oscar = session.scalar(select(func.count()).select_from(AccessEvent).where(
            AccessEvent.patient_id == victim, AccessEvent.actor_ref.like("chat:%"),
            AccessEvent.actor_ref != f"chat:{_link_id(lightbox, vera.id)}"))
    assert seen_by_oscar == 0


def _link_id(lightbox: Lightbox, telegram_user_id: int) -> int:
    with lightbox.services.sessions() as session:
        return session.scalars(select(ChatLink.id).where(ChatLink.telegram_user_id == telegram_user_id)).one()


async def test_views_are_logged_and_activity_lists_them(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-ACT", "Act^Amy", [study("mr", 2, "MR", "MRI knee", "KNEE", MR)])
    amy = await lightbox.linked_user(mine, "Amy")
    await amy.say("show my knee mri")
    await amy.wait_for_reply()
    await amy.command("activity")
    log = await amy.wait_for_reply()
    assert "you looked at your MRI" in (log.text or "")


async def test_forget_deletes_everything_of_the_patient(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-F", "Forget^Fay", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR, copies=4)])
    other = lightbox.add_patient("P-K", "Keep^Kim", [study("ct", 2, "CT", "CT chest", "CHEST", CT)])
    with lightbox.services.sessions() as session:
        keys = session.scalars(select(Instance.storage_key)).all()
    fay = await lightbox.linked_user(mine, "Fay")
    await fay.command("last")
    await fay.wait_for_reply()
    await fay.command("forget")
    confirm = await fay.wait_for_reply()
    assert "Delete everything?" in (confirm.text or "")
    yes_data = confirm.button("Yes, delete everything")["callback_data"]
    tap = await fay.tap(confirm, "Yes, delete everything")
    await fay.wait_for_answer(tap)
    done = await fay.wait_for_reply()
    assert "I deleted 1 study" in (done.text or "")
    with lightbox.services.sessions() as session:
        assert session.get(Patient, mine) is None
        assert session.scalars(select(Study).where(Study.patient_id == mine)).all() == []
        assert session.scalar(select(func.count()).select_from(AccessEvent).where(AccessEvent.patient_id == mine)) == 0
        remaining = session.scalars(select(Instance.storage_key)).all()
        assert session.get(Patient, other) is not None
    assert len(remaining) == 1
    for key in keys:
        assert lightbox.services.files.exists(key) == (key in remaining)
    cache = lightbox.services.cache_dir
    assert cache is not None
    # The patient's cached previews went too (the other patient never rendered any).
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    # Replaying the old confirmation button does nothing.
    tap = await fay.send_callback(confirm, yes_data)
    answered = await fay.wait_for_answer(tap)
    assert "expired" in (answered.answer_text or "")


async def test_what_is_this_image_showing_me_describes_the_picture_on_screen(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-D", "Desc^Dora", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR, copies=3)])
    dora = await lightbox.linked_user(mine, "Dora")
    await dora.say("what is this image showing me?")
    first = await dora.wait_for_reply()
    assert "Open an image first" in (first.text or "")
    await dora.command("last")
    await dora.wait_for_reply()
    await dora.say("what is this image showing me?")
    described = await dora.wait_for_reply()
    text = (described.text or "").lower()
    assert "mri" in text
    assert "doctor" in text  # always points to the report and the doctor
    assert "diagnos" not in text or "not a diagnosis" in text or "can't" in text


async def test_share_from_the_chat_gives_a_forwardable_link_and_a_qr_code(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-S", "Share^Sue", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR)])
    sue = await lightbox.linked_user(mine, "Sue")
    await sue.say("share my brain MRI with Dr. Lee for 3 days")
    link = await sue.wait_for_reply()
    qr = await sue.wait_for_reply()
    text = link.text or ""
    assert "Dr. Lee" in text and "http://127.0.0.1:9/s/" in text
    assert link.protect_content is False  # the patient must be able to forward it
    assert qr.photo_bytes is not None
    await sue.command("shares")
    listing = await sue.wait_for_reply()
    assert "Dr. Lee" in (listing.text or "")
    tap = await sue.tap(listing, "Stop link 1")
    await sue.wait_for_answer(tap)
    stopped = await sue.wait_for_reply()
    assert "stopped working" in (stopped.text or "")
    await sue.say("share it for minus two days")
    refused = await sue.wait_for_reply()
    assert "future" in (refused.text or "")


async def test_a_share_with_a_code_sends_the_code_in_a_message_of_its_own(lightbox: Lightbox) -> None:
    import re

    from share.links import list_shares

    mine = lightbox.add_patient("P-SC", "Code^Cat", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR)])
    cat = await lightbox.linked_user(mine, "Cat")
    await cat.say("share my brain MRI with Dr. Lee with a code")
    link = await cat.wait_for_reply()
    await cat.wait_for_reply()  # the QR code
    code = await cat.wait_for_reply()
    digits = re.search(r"(\d{6,})", code.text or "")
    assert digits is not None, code.text
    assert digits.group(1) not in (link.text or "")  # forwarding the link never forwards the code
    assert "access code" in (link.text or "") and "next message" in (link.text or "")
    with lightbox.services.sessions() as session:
        (made,) = list_shares(session, mine, active_only=True)
        assert made.access_code_hash and made.recipient_label == "Dr. Lee"


async def test_stopping_the_link_for_one_person_stops_only_theirs(lightbox: Lightbox) -> None:
    from share.links import list_shares

    mine = lightbox.add_patient("P-SR", "Stop^Sam", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR)])
    sam = await lightbox.linked_user(mine, "Sam")
    for person in ("Dr. Lee", "my physio"):
        await sam.say(f"share my brain MRI with {person} for 3 days")
        await sam.wait_for_reply()  # the link
        await sam.wait_for_reply()  # its QR code
    await sam.say("remove dr lee's access")
    stopped = await sam.wait_for_reply()
    assert "1 link stopped working" in (stopped.text or ""), stopped.text
    with lightbox.services.sessions() as session:
        active = list_shares(session, mine, active_only=True)
        assert [link.recipient_label for link in active] == ["my physio"]
    await sam.say("stop the link for Dr. Nobody")
    nothing = await sam.wait_for_reply(after=stopped)
    assert "could not find an active link for Dr. Nobody" in (nothing.text or "")
    listing = await sam.wait_for_reply(after=nothing)
    assert "my physio" in (listing.text or "")
    with lightbox.services.sessions() as session:
        assert len(list_shares(session, mine, active_only=True)) == 1


async def test_play_sends_the_series_as_an_animation(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-C", "Cine^Cy", [study("ct", 2, "CT", "CT head", "HEAD", CT, copies=6)])
    cy = await lightbox.linked_user(mine, "Cy")
    await cy.command("last")
    card = await cy.wait_for_reply()
    tap = await cy.tap(card, "Play ▶")
    await cy.wait_for_answer(tap)
    animation = await cy.wait_for_reply()
    assert animation.method == "sendAnimation"
    assert animation.protect_content is True
    assert "all 6 pictures" in (animation.caption or "")
    data = animation.content.animation.data if animation.content.animation else b""
    assert data[:6] in (b"GIF89a", b"GIF87a")


async def test_the_patient_can_turn_preview_protection_off_and_on(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-PR", "Prot^Pat", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR)])
    pat = await lightbox.linked_user(mine, "Pat")
    await pat.command("privacy")
    notice = await pat.wait_for_reply()
    assert "not end-to-end encrypted" in (notice.text or "")
    tap = await pat.tap(notice, "Let me save previews")
    await pat.wait_for_answer(tap)
    await pat.wait_for_reply()
    await pat.command("last")
    card = await pat.wait_for_reply()
    assert card.protect_content is False
    await pat.command("privacy")
    notice = await pat.wait_for_reply()
    tap = await pat.tap(notice, "Protect previews again")
    await pat.wait_for_answer(tap)
    await pat.wait_for_reply()
    await pat.command("last")
    card = await pat.wait_for_reply()
    assert card.protect_content is True


async def test_a_question_in_german_is_answered_in_german(lightbox: Lightbox) -> None:
    greta = lightbox.driver.user("Greta")
    await greta.say("was bedeutet Erguss")
    answer = await greta.wait_for_reply()
    text = answer.text or ""
    assert "Erguss" in text
    assert "Ärztin" in text or "Arzt" in text
    await greta.say("what does effusion mean?")
    english = await greta.wait_for_reply()
    assert "doctor" in (english.text or "")


async def test_draw_gives_the_patient_a_protected_link_of_their_own(lightbox: Lightbox) -> None:
    from store.models import ShareLink

    mine = lightbox.add_patient("P-DR", "Draw^Di", [study("mr", 2, "MR", "MRI knee", "KNEE", MR)])
    di = await lightbox.linked_user(mine, "Di")
    await di.command("draw")
    link = await di.wait_for_reply()
    assert "/s/" in (link.text or "")
    assert link.protect_content is True
    with lightbox.services.sessions() as session:
        row = session.scalars(select(ShareLink)).one()
    assert row.can_annotate and row.download == "none" and row.patient_id == mine


def button_texts(message: object) -> list[str]:
    markup = getattr(message, "reply_markup", None) or {}
    return [b["text"] for row in markup.get("inline_keyboard", []) for b in row]


# The study card's English button labels: none may show in a chat that speaks another language.
ENGLISH_CARD_BUTTONS = {"‹ Back", "Next ›", "Rotate ↻", "Zoom 🔍", "Invert ◐", "Explain this", "Mark 📍", "Play ▶",
                        "Share", "Compare with earlier"}


async def test_the_chat_speaks_the_patients_language(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-L", "Lang^Lena", [study("mr", 2, "MR", "MRI knee", "KNEE", MR, copies=3)])
    lena = lightbox.driver.user("Lena", language_code="de")
    await lena.command("start")
    welcome = await lena.wait_for_reply()
    assert "Ich bin Lightbox" in (welcome.text or "") and "nicht Ende-zu-Ende" in (welcome.text or "")
    await lena.command("start", lightbox.link_code(mine))
    linked = await lena.wait_for_reply()
    assert "verbunden" in (linked.text or "")
    # Her study card: German caption (kind, body part, date, picture count) and German buttons.
    await lena.command("last")
    card = await lena.wait_for_reply()
    caption = card.caption or ""
    assert "MRT des Knies" in caption
    assert "26. November 2026" in caption  # 2 days before 28 Nov 2026, German month name
    assert "Bild 2 von 3" in caption
    assert "picture" not in caption and "November 2026" in caption
    buttons = button_texts(card)
    assert {"Weiter ›", "‹ Zurück", "Drehen ↻", "Teilen", "Mit früher vergleichen", "Abspielen ▶"} <= set(buttons)
    assert ENGLISH_CARD_BUTTONS.isdisjoint(buttons)
    before = card.version
    tap = await lena.tap(card, "Weiter ›")
    await lena.wait_for_answer(tap)
    card = await lena.wait_for_edit(card, since_version=before)
    assert "Bild 3 von 3" in (card.caption or "")
    assert ENGLISH_CARD_BUTTONS.isdisjoint(button_texts(card))
    # "Explain this": how the pictures were made, in German, ending with the pointer to her doctor.
    tap = await lena.tap(card, "Erklären")
    await lena.wait_for_answer(tap)
    described = await lena.wait_for_reply()
    text = described.text or ""
    assert text.startswith("Aufnahme: MRT des Knies, gemacht am ")
    assert "Ihre Ärztin oder Ihr Arzt" in text and "This" not in text and "doctor" not in text
    # Sharing from the card: the link message and the QR code's caption are German too.
    tap = await lena.tap(card, "Teilen")
    await lena.wait_for_answer(tap)
    link = await lena.wait_for_reply()
    qr = await lena.wait_for_reply(after=link)
    text = link.text or ""
    assert "Hier ist Ihr Link zum Teilen" in text and "http://127.0.0.1:9/s/" in text
    assert "MRT des Knies vom 26. November 2026" in text
    assert "Leiten Sie diese Nachricht" in text and "your" not in text.lower()
    assert link.protect_content is False
    assert qr.photo_bytes is not None and "QR-Code" in (qr.caption or "")
    await lena.command("shares")
    listing = await lena.wait_for_reply()
    assert "Ihre aktiven Links zum Teilen" in (listing.text or "") and button_texts(listing) == ["Link 1 stoppen"]
    # Choosing Spanish switches every message, the card included.
    await lena.command("language")
    choice = await lena.wait_for_reply()
    tap = await lena.tap(choice, "Español")
    await lena.wait_for_answer(tap)
    await lena.command("help")
    help_text = await lena.wait_for_reply()
    assert "Lo que puedo hacer" in (help_text.text or "")
    await lena.command("last")
    card = await lena.wait_for_reply()
    assert "Resonancia magnética de la rodilla" in (card.caption or "")
    assert "26 de noviembre de 2026" in (card.caption or "") and "imagen 2 de 3" in (card.caption or "")
    assert {"Siguiente ›", "Compartir"} <= set(button_texts(card))
    ivan = lightbox.driver.user("Ivan", language_code="ru")
    await ivan.say("покажи моё последнее МРТ")
    not_linked = await ivan.wait_for_reply()
    assert "У меня пока нет ваших снимков" in (not_linked.text or "")


async def test_a_russian_speaker_s_card_list_and_counts_are_russian(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-RU", "Ivanov^Ivan", [
        study("ct", 3, "CT", "CT head", "HEAD", CT, copies=21),
        study("mr", 40, "MR", "MRI knee", "KNEE", MR, copies=2),
    ])
    ivan = lightbox.driver.user("Ivan", language_code="ru")
    await ivan.command("start", lightbox.link_code(mine))
    linked = await ivan.wait_for_reply()
    assert "Готово, этот чат связан" in (linked.text or "")
    await ivan.command("studies")
    listing = await ivan.wait_for_reply()
    text = listing.text or ""
    assert "21 снимок" in text and "2 снимка" in text  # Russian's one and few forms
    assert "25 ноября 2026 г." in text and "19 октября 2026 г." in text
    await ivan.command("last")
    card = await ivan.wait_for_reply()
    caption = card.caption or ""
    assert "КТ головы" in caption and "снимок 11 из 21" in caption
    buttons = button_texts(card)
    assert {"Вперёд ›", "« 10", "Лёгкие", "Кости", "Поделиться"} <= set(buttons)
    assert ENGLISH_CARD_BUTTONS.isdisjoint(buttons)
    before = card.version
    tap = await ivan.tap(card, "Лёгкие")
    await ivan.wait_for_answer(tap)
    card = await ivan.wait_for_edit(card, since_version=before)
    assert "Настройка: окно для лёгких" in (card.caption or "")
    assert "• Лёгкие" in button_texts(card)
