"""Marking a spot: the card's "Mark" button, a 3 x 3 grid, then a finer 3 x 3 grid inside the chosen cell.

The marker is stored in normalised coordinates of the original frame (an Annotation of kind ``marker``)
and drawn on every later preview of that picture; replying to the card with a word labels the newest
unlabelled marker. /notes lists the patient's notes and marks with a button to delete each.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from handlers import texts
from handlers.callbacks import View, encode_view
from handlers.cards import annotations_on, marks_of, study_what
from handlers.chat import (
    Asker,
    answer_query,
    asker_of,
    edit_picture,
    in_thread,
    linked_asker,
    numbered_buttons,
    reply,
    service,
)
from handlers.marking_codec import decode_mark, encode_mark
from handlers.notes import add_annotation
from handlers.previews import picture_at, preview_jpeg
from handlers.services import Services
from imaging.overlays import grid_cell
from store.models import Annotation, Instance, Series, Study

LABEL_WINDOW = timedelta(minutes=30)
NOTES_SHOWN = 20


def _grid_picture(
    services: Services, asker: Asker, series_ref: str, slice_index: int, cell: int
) -> tuple[bytes, int] | None:
    assert asker.patient_id is not None
    with services.sessions() as session:
        found = picture_at(session, asker.patient_id, series_ref, slice_index)
        if found is None:
            return None
        series, slices, index = found
        piece = slices[index]
        marks = marks_of(annotations_on(session, asker.patient_id, piece))
        photo = preview_jpeg(
            services,
            piece,
            View(series.public_id, index),
            series.study.patient.public_id,
            marks=marks,
            grid=True,
            region=grid_cell(cell) if cell else None,
        )
        return photo, index


def _save_marker(services: Services, asker: Asker, series_ref: str, slice_index: int, cell: int, sub_cell: int) -> bool:
    assert asker.patient_id is not None
    cx, cy, cw, ch = grid_cell(cell)
    sx, sy, sw, sh = grid_cell(sub_cell)
    x, y = cx + (sx + sw / 2) * cw, cy + (sy + sh / 2) * ch
    with services.sessions() as session, session.begin():
        found = picture_at(session, asker.patient_id, series_ref, slice_index)
        if found is None:
            return False
        series, slices, index = found
        add_annotation(session, asker, series, slices[index], "marker", x=x, y=y, at=services.now())
        return True


async def on_mark(update: Update, context: ContextTypes.DEFAULT_TYPE, data: str) -> bool:
    """A button of the mark flow. ``False`` when the series is not this patient's (or the data is forged)."""
    series_ref, slice_index, cell, sub_cell = decode_mark(data)
    asker = await asker_of(update, context)
    if asker.patient_id is None:
        return False
    services = service(context)
    query = update.callback_query
    assert query is not None
    if cell and sub_cell:
        if not await in_thread(_save_marker, services, asker, series_ref, slice_index, cell, sub_cell):
            return False
        await answer_query(update, context, texts.label("mark.marked"))
        from handlers.viewing import navigate

        await navigate(update, context, View(series_ref, slice_index))
        await reply(update, "mark_saved")
        return True
    made = await in_thread(_grid_picture, services, asker, series_ref, slice_index, cell)
    if made is None:
        return False
    photo, index = made
    await answer_query(update, context)
    numbers = [
        [
            InlineKeyboardButton(str(n), callback_data=encode_mark(series_ref, index, cell or n, n if cell else 0))
            for n in range(row * 3 + 1, row * 3 + 4)
        ]
        for row in range(3)
    ]
    numbers.append(
        [InlineKeyboardButton(texts.label("button.cancel"), callback_data=encode_view(View(series_ref, index)))]
    )
    caption = texts.render("mark_pick", refine=bool(cell))
    await edit_picture(update, photo, caption, InlineKeyboardMarkup(numbers))
    return True


def label_newest_marker(services: Services, asker: Asker, instance_id: int, frame: int, text: str) -> bool:
    """Put ``text`` on the newest unlabelled marker of this picture placed in the last half hour."""
    assert asker.patient_id is not None
    with services.sessions() as session, session.begin():
        marker = session.scalars(
            select(Annotation)
            .where(
                Annotation.patient_id == asker.patient_id,
                Annotation.instance_id == instance_id,
                Annotation.frame == frame,
                Annotation.kind == "marker",
                Annotation.text == "",
                Annotation.created_at >= services.now() - LABEL_WINDOW,
            )
            .order_by(Annotation.id.desc())
        ).first()
        if marker is None:
            return False
        marker.text = text[:40]
        return True


def _notes(services: Services, patient_id: int) -> list[dict[str, Any]]:
    with services.sessions() as session:
        rows = session.execute(
            select(Annotation, Instance, Series, Study)
            .join(Instance, Instance.id == Annotation.instance_id)
            .join(Series, Series.id == Instance.series_id)
            .join(Study, Study.id == Series.study_id)
            .where(Annotation.patient_id == patient_id, Study.patient_id == patient_id)
            .order_by(Annotation.created_at.desc(), Annotation.id.desc())
            .limit(NOTES_SHOWN)
        ).all()
        return [
            {
                "public_id": a.public_id,
                "kind": "mark" if a.kind != "note" else "note",
                "text": a.text,
                "what": f"{study_what(st)} ({texts.nice_date(st.study_date)})",
            }
            for a, _i, _s, st in rows
        ]


async def notes_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/notes: the patient's notes and marks, newest first, with a delete button each."""
    asker = await linked_asker(update, context)
    if asker is None:
        return
    rows = await in_thread(_notes, service(context), asker.patient_id)
    await reply(update, "notes", notes=rows, reply_markup=numbered_buttons(rows, "button.delete_note", "del_note"))


def _delete(services: Services, patient_id: int, public_id: str) -> bool:
    with services.sessions() as session, session.begin():
        found = session.scalars(
            select(Annotation).where(Annotation.patient_id == patient_id, Annotation.public_id == public_id)
        ).first()
        if found is None:
            return False
        session.delete(found)
        return True


async def delete_note(update: Update, context: ContextTypes.DEFAULT_TYPE, public_id: str) -> bool:
    asker = await asker_of(update, context)
    if asker.patient_id is None:
        return False
    if not await in_thread(_delete, service(context), asker.patient_id, public_id):
        return False
    await answer_query(update, context, texts.label("note.deleted"))
    await reply(update, "note_deleted")
    return True
