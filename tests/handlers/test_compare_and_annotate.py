"""Comparison, notes, marks and the timeline end to end through the Bot API sandbox."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from sqlalchemy import select

from store.models import Annotation
from tests.handlers.conftest import Lightbox, study

MR = "MR_small.dcm"
CT = "CT_small.dcm"


def picture(data: bytes | None) -> np.ndarray:
    assert data is not None
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def yellow(image: np.ndarray) -> int:
    return int(((image[..., 0] > 200) & (image[..., 1] > 150) & (image[..., 2] < 90)).sum())


async def test_compare_my_knee_mris_side_by_side_with_dates_and_interval(lightbox: Lightbox) -> None:
    patient = lightbox.add_patient("P-CMP", "Cmp^Cara", [
        study("new", 10, "MR", "MRI knee", "KNEE", MR, copies=8),
        study("old", 435, "MR", "MRI knee", "KNEE", MR, copies=6),
        study("ct", 3, "CT", "CT chest", "CHEST", CT),
    ])
    cara = await lightbox.linked_user(patient, "Cara")
    await cara.say("compare my knee MRIs")
    shown = await cara.wait_for_reply()
    caption = shown.caption or ""
    assert "19 September 2025 (left) and 18 November 2026 (right)" in caption
    assert "14 months apart" in caption
    image = picture(shown.photo_bytes)
    assert image.shape[1] > image.shape[0]  # two pictures next to each other
    before = shown.version
    tap = await cara.tap(shown, "Next ›")
    await cara.wait_for_answer(tap)
    shown = await cara.wait_for_edit(shown, since_version=before)
    assert "picture 5 of 8" in (shown.caption or "")


async def test_nothing_comparable_is_explained_in_plain_words(lightbox: Lightbox) -> None:
    patient = lightbox.add_patient("P-NC", "Nc^Nell", [
        study("mr", 10, "MR", "MRI knee", "KNEE", MR),
        study("xr", 400, "CR", "X-ray knee", "KNEE", CT),
    ])
    nell = await lightbox.linked_user(patient, "Nell")
    await nell.say("compare my knee MRIs")
    answer = await nell.wait_for_reply()
    assert "earlier knee study is an X-ray" in (answer.text or "")
    assert "newer one is an MRI" in (answer.text or "")


async def test_a_note_and_a_mark_are_saved_and_drawn(lightbox: Lightbox) -> None:
    patient = lightbox.add_patient("P-MK", "Mark^Mo", [study("mr", 5, "MR", "MRI brain", "BRAIN", MR, copies=3)])
    mo = await lightbox.linked_user(patient, "Mo")
    await mo.command("last")
    card = await mo.wait_for_reply()
    plain = picture(card.photo_bytes)
    await mo.reply_to(card, "this is where it hurts")
    saved = await mo.wait_for_reply()
    assert "Saved your note" in (saved.text or "")
    # Mark: pick square 5 (the middle), then square 1 inside it.
    before = card.version
    tap = await mo.tap(card, "Mark 📍")
    await mo.wait_for_answer(tap)
    card = await mo.wait_for_edit(card, since_version=before)
    assert yellow(picture(card.photo_bytes)) > yellow(plain)  # the grid is drawn
    before = card.version
    tap = await mo.tap(card, "5")
    await mo.wait_for_answer(tap)
    card = await mo.wait_for_edit(card, since_version=before)
    before = card.version
    tap = await mo.tap(card, "1")
    await mo.wait_for_answer(tap)
    card = await mo.wait_for_edit(card, since_version=before)
    marked = picture(card.photo_bytes)
    assert yellow(marked) > yellow(plain) + 20
    assert "this is where it hurts" in (card.caption or "")
    await mo.wait_for_reply()  # "Marked. ..."
    await mo.reply_to(card, "sore spot")
    labelled = await mo.wait_for_reply()
    assert "Added the word" in (labelled.text or "")
    with lightbox.services.sessions() as session:
        rows = session.scalars(select(Annotation).order_by(Annotation.id)).all()
    assert [(a.kind, a.text) for a in rows] == [("note", "this is where it hurts"), ("marker", "sore spot")]
    marker = rows[1]
    assert marker.x is not None and marker.y is not None
    # Middle square's top-left sub-square: centre at 1/3 + 1/18 of the frame.
    assert abs(marker.x - (1 / 3 + 1 / 18)) < 1e-6 and abs(marker.y - (1 / 3 + 1 / 18)) < 1e-6
    # The list, and deleting the mark.
    await mo.command("notes")
    listing = await mo.wait_for_reply()
    assert "sore spot" in (listing.text or "") and "this is where it hurts" in (listing.text or "")
    tap = await mo.tap(listing, "Delete 1")
    await mo.wait_for_answer(tap)
    await mo.wait_for_reply()
    with lightbox.services.sessions() as session:
        assert [a.kind for a in session.scalars(select(Annotation)).all()] == ["note"]


async def test_timeline_lists_studies_per_body_part_with_thumbnails(lightbox: Lightbox) -> None:
    patient = lightbox.add_patient("P-TL", "Time^Tia", [
        study("mr1", 10, "MR", "MRI knee", "KNEE", MR),
        study("mr0", 700, "MR", "MRI knee", "KNEE", MR),
        study("ct", 100, "CT", "CT chest", "CHEST", CT),
    ])
    tia = await lightbox.linked_user(patient, "Tia")
    await tia.say("show my history")
    shown = await tia.wait_for_reply()
    caption = shown.caption or ""
    assert "Knee" in caption and "Chest" in caption
    assert caption.index("28 December 2024") < caption.index("18 November 2026")
    sheet = picture(shown.photo_bytes)
    assert sheet.shape[1] >= 3 * 200  # three thumbnails side by side
