"""Attacks through the chat, end to end: the real Application against the Bot API sandbox.

Each case sends what an attacker or a confused patient would and checks the exact reply, and that no
record, file or link changed hands.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import func, select

from handlers.callbacks import encode_action
from store.linking import create_link_code
from store.models import AccessEvent, ChatLink, Instance, Patient, ShareLink, Study
from tests.adversarial.conftest import fresh, to_bytes, zip_of
from tests.handlers.conftest import Lightbox, study

MR = "MR_small.dcm"
CT = "CT_small.dcm"
EXPIRED = "This button has expired"
UNKNOWN_CODE = "I don't know that link. Please check it, or ask your clinic for a new one."


def counts(lightbox: Lightbox) -> tuple[int, int, int, int]:
    with lightbox.services.sessions() as session:
        return (
            int(session.scalar(select(func.count()).select_from(Patient)) or 0),
            int(session.scalar(select(func.count()).select_from(Instance)) or 0),
            int(session.scalar(select(func.count()).select_from(ShareLink)) or 0),
            len(lightbox.services.files.keys()),
        )


async def upload(lightbox: Lightbox, user_name: str, filename: str, data: bytes, until: str) -> str:
    user = lightbox.driver.user(user_name)
    await user.send_document(filename, data)
    status = await user.wait_for_reply()
    await user.wait_until(lambda: until in (status.text or ""))
    return status.text or ""


async def test_pdf_upload_gets_the_not_images_answer(lightbox: Lightbox) -> None:
    text = await upload(lightbox, "Pam", "letter.pdf", b"%PDF-1.4\n%%EOF\n", "couldn't find")
    assert text == ("I couldn't find any medical images in this file.\n\n"
                    "I skipped 1 file that was not medical images (not a DICOM file).")
    assert counts(lightbox) == (0, 0, 0, 0)


async def test_zip_bomb_upload_gets_refused_in_the_chat(lightbox: Lightbox) -> None:
    bomb = zip_of([("CD/IMG.dcm", bytes(300 * 1024 * 1024))])
    text = await upload(lightbox, "Bo", "cd.zip", bomb, "Sorry")
    assert text == ("Sorry, I couldn't import this file: This archive unpacks to far more than its size, "
                    "so it was not opened.")
    assert counts(lightbox) == (0, 0, 0, 0)
    bo = lightbox.driver.user("Bo")
    await bo.wait_until(lambda: not any((lightbox.services.work_dir / "uploads").glob("*")))  # upload folder gone


async def test_file_larger_than_telegram_lets_bots_download(lightbox: Lightbox) -> None:
    big = b"\0" * (20 * 1024 * 1024 + 1)
    ana = lightbox.driver.user("Ana")
    await ana.send_document("huge.zip", big)
    answer = await ana.wait_for_reply()
    assert answer.text == ("Sorry, I couldn't import this file: it is larger than the 20 MB Telegram lets me "
                           "download. Please send the CD as several smaller .zip files, or ask your clinic for a link.")
    assert counts(lightbox) == (0, 0, 0, 0)


async def test_upload_with_two_people_asks_and_a_forged_claim_changes_nothing(lightbox: Lightbox) -> None:
    a = fresh(MR, patient_id="TWO-A", patient_name="Able^Amy")
    b = fresh(CT, patient_id="TWO-B", patient_name="Baker^Bob")
    kim = lightbox.driver.user("Kim")
    await kim.send_document("cd.zip", zip_of([("a.dcm", to_bytes(a)), ("b.dcm", to_bytes(b))]))
    status = await kim.wait_for_reply()
    await kim.wait_until(lambda: "Which are yours" in (status.text or ""))
    assert sorted(status.button_texts) == ["I am Amy A.", "I am Bob B.", "None of these"]
    # A claim for a patient who was not in the upload (forged public id, right nonce) is refused.
    real_claim = status.button("I am Amy A.")["callback_data"]
    nonce = real_claim.rsplit("|", 1)[1]
    tap = await kim.send_callback(status, encode_action("claim", "0" * 32, nonce))
    assert EXPIRED in ((await kim.wait_for_answer(tap)).answer_text or "")
    assert counts(lightbox)[0] == 2
    tap = await kim.tap(status, "I am Amy A.")
    await kim.wait_for_answer(tap)
    await kim.wait_until(lambda: "kept" in (status.text or ""))
    assert status.text == "Thanks. I kept 1 study as yours and removed the images of 1 other person."
    # Replaying the claim button after it was used does nothing.
    tap = await kim.send_callback(status, real_claim)
    assert EXPIRED in ((await kim.wait_for_answer(tap)).answer_text or "")
    with lightbox.services.sessions() as session:
        assert [p.name for p in session.scalars(select(Patient))] == ["Able^Amy"]
    assert counts(lightbox)[1:] == (1, 0, 1)


async def test_extremely_long_message_gets_one_ordinary_reply(lightbox: Lightbox) -> None:
    lou = lightbox.driver.user("Lou")
    await lou.say("show my scan please " * 200)
    answer = await lou.wait_for_reply()
    assert answer.text is not None and "reference" not in answer.text.lower()
    assert len(lou.bot_messages) == 1


async def test_markup_in_a_message_is_never_echoed_as_markup(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-MK", "Mark^Up", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR)])
    max_ = lightbox.driver.user("Max")
    await max_.command("start", lightbox.link_code(mine))
    await max_.wait_for_reply()
    await max_.command("explain", '<b>x</b><a href="http://evil.example">click</a><script>alert(1)</script>')
    answer = await max_.wait_for_reply()
    source = answer.source or ""
    assert "<script>" not in source and "<a href=\"http://evil" not in source
    assert lightbox.sandbox.spec_violations == []


async def test_control_characters_and_nul_bytes_are_harmless(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-CC", "Ctrl^Cy", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR)])
    cy = lightbox.driver.user("Cy")
    await cy.command("start", lightbox.link_code(mine))
    await cy.wait_for_reply()
    await cy.say("show\x00 my\x1b[2J last\u202e MRI\x07")
    card = await cy.wait_for_reply()
    assert card.photo_bytes is not None and "MRI of the brain" in (card.caption or "")


async def test_link_code_reused_expired_and_guessed(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-LC", "Code^Cara", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR)])
    cara = lightbox.driver.user("Cara")
    code = lightbox.link_code(mine)
    await cara.command("start", code)
    assert "linked" in ((await cara.wait_for_reply()).text or "")
    thief = lightbox.driver.user("Thief")
    await thief.command("start", code)
    assert (await thief.wait_for_reply()).text == ("That link was already used. Each link works once: please ask "
                                                   "your clinic for a new one.\nYou can also send me your images "
                                                   "(a .zip of the CD, or .dcm files).")
    with lightbox.services.sessions() as session, session.begin():
        old = create_link_code(session, mine, ttl=timedelta(hours=1),
                               now=lightbox.services.now() - timedelta(hours=2))
    late = lightbox.driver.user("Late")
    await late.command("start", old)
    assert ((await late.wait_for_reply()).text or "").startswith(
        "That link has expired. Please ask your clinic for a new one.")
    guesser = lightbox.driver.user("Guesser")
    for _ in range(20):
        await guesser.command("start", secrets.token_urlsafe(12))
        assert ((await guesser.wait_for_reply()).text or "").startswith(UNKNOWN_CODE)
    with lightbox.services.sessions() as session:
        links = session.scalars(select(ChatLink)).all()
    assert [(link.telegram_user_id, link.patient_id) for link in links] == [(cara.id, mine)]


async def test_another_chats_study_in_a_share_or_open_button_gets_nothing(lightbox: Lightbox) -> None:
    victim = lightbox.add_patient("P-VV", "Victim^Val", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR, copies=2)])
    thief_patient = lightbox.add_patient("P-TT", "Thief^Tom", [study("ct", 2, "CT", "CT chest", "CHEST", CT)])
    with lightbox.services.sessions() as session:
        victim_study = session.scalars(select(Study.public_id).where(Study.patient_id == victim)).one()
    tom = lightbox.driver.user("Tom")
    await tom.command("start", lightbox.link_code(thief_patient))
    await tom.wait_for_reply()
    await tom.command("last")
    card = await tom.wait_for_reply()
    before = len(tom.bot_messages)
    for kind in ("share", "open", "compare", "explain_image", "revoke", "series"):
        tap = await tom.send_callback(card, encode_action(kind, victim_study))
        answered = await tom.wait_for_answer(tap)
        assert EXPIRED in (answered.answer_text or ""), kind
    assert len(tom.bot_messages) == before
    with lightbox.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ShareLink)) == 0
        assert session.scalar(select(func.count()).select_from(AccessEvent).where(
            AccessEvent.patient_id == victim, AccessEvent.action.in_(["view", "share_create"]))) == 0


async def test_stale_forget_button_from_before_a_new_forget_question(lightbox: Lightbox) -> None:
    mine = lightbox.add_patient("P-SF", "Stale^Sue", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR)])
    sue = lightbox.driver.user("Sue")
    await sue.command("start", lightbox.link_code(mine))
    await sue.wait_for_reply()
    await sue.command("forget")
    first = await sue.wait_for_reply()
    await sue.command("forget")
    second = await sue.wait_for_reply(after=first)
    tap = await sue.send_callback(first, first.button("Yes, delete everything")["callback_data"])
    assert EXPIRED in ((await sue.wait_for_answer(tap)).answer_text or "")
    with lightbox.services.sessions() as session:
        assert session.get(Patient, mine) is not None  # the old question's button deleted nothing
    tap = await sue.tap(second, "No, keep it")
    await sue.wait_for_answer(tap)
    with lightbox.services.sessions() as session:
        assert session.get(Patient, mine) is not None


async def test_an_upload_conflicting_with_a_stored_image_keeps_no_unreachable_file(lightbox: Lightbox) -> None:
    original = fresh(CT, patient_id="DUP-1", patient_name="Dupe^Dana")
    first_bytes = to_bytes(original)
    original.PixelData = bytes(reversed(original.PixelData))  # same UIDs, other pixels
    forged_bytes = to_bytes(original)
    dana = lightbox.driver.user("Dana")
    await dana.send_document("scan.dcm", first_bytes)
    first = await dana.wait_for_reply()
    await dana.wait_until(lambda: "Done!" in (first.text or ""))
    stored = lightbox.services.files.keys()
    await dana.send_document("scan-again.dcm", forged_bytes)
    second = await dana.wait_for_reply(after=first)
    await dana.wait_until(lambda: "same label" in (second.text or ""))
    assert "1 picture had the same label as one I already had but different content. I kept the one I had and did " \
           "not overwrite it." in (second.text or "")
    assert lightbox.services.files.keys() == stored  # the forged copy is not kept where nobody can erase it
    assert counts(lightbox) == (1, 1, 0, 1)
