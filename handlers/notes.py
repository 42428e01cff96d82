"""Notes on pictures: replying to a study card with text saves a note on the picture it shows.

Notes are annotations (``store.models.Annotation``, kind ``note``) on an instance and frame; the card's
caption lists them, and the share viewer shows them to the specialist.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session
from telegram import Update
from telegram.ext import ContextTypes

from handlers.chat import Asker, asker_of, in_thread, reply, service
from handlers.previews import Slice, picture_at
from handlers.services import Services
from handlers.viewing import view_of_message
from store.audit import record_access
from store.models import Annotation, Series

MAX_NOTE_CHARS = 500


def add_annotation(
    session: Session,
    asker: Asker,
    series: Series,
    piece: Slice,
    kind: str,
    *,
    text: str = "",
    x: float | None = None,
    y: float | None = None,
    at: datetime | None = None,
) -> None:
    """One note or mark of the patient's on one picture, and its line in the access log."""
    assert asker.patient_id is not None
    values = {"created_at": at} if at is not None else {}
    session.add(
        Annotation(
            patient_id=asker.patient_id,
            instance_id=piece.instance.id,
            frame=piece.frame,
            kind=kind,
            x=x,
            y=y,
            text=text,
            author="patient",
            **values,
        )
    )
    record_access(
        session,
        asker.patient_id,
        "chat",
        asker.actor_ref,
        "annotate",
        study_id=series.study_id,
        series_id=series.id,
        instance_id=piece.instance.id,
        detail=kind,
    )


def _save(services: Services, asker: Asker, series_ref: str, slice_index: int, text: str) -> str:
    """Label a just-placed marker, or save a note; returns "labelled", "note" or "" (not theirs)."""
    from handlers.marking import label_newest_marker

    assert asker.patient_id is not None
    with services.sessions() as session:
        found = picture_at(session, asker.patient_id, series_ref, slice_index)
        target = (found[1][found[2]].instance.id, found[1][found[2]].frame) if found else None
    if target is None:
        return ""
    if label_newest_marker(services, asker, target[0], target[1], text):
        return "labelled"
    with services.sessions() as session, session.begin():
        found = picture_at(session, asker.patient_id, series_ref, slice_index)
        if found is None:
            return ""
        series, slices, index = found
        add_annotation(session, asker, series, slices[index], "note", text=text)
        return "note"


async def note_on_reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
    """Save the reply's text as a note on the picture the replied-to card shows; ``False`` if it is no card."""
    message = update.effective_message
    if message is None or message.reply_to_message is None or not message.text:
        return False
    view = view_of_message(context, message.reply_to_message.message_id)
    if view is None:
        return False
    asker = await asker_of(update, context)
    if asker.patient_id is None:
        return False
    text = " ".join(message.text.split())[:MAX_NOTE_CHARS]
    saved = await in_thread(_save, service(context), asker, view.series, view.slice, text)
    if not saved:
        return False
    await reply(update, "mark_labelled" if saved == "labelled" else "note_saved")
    return True
