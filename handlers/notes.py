"""Notes on pictures: replying to a study card with text saves a note on the picture it shows.

Notes are annotations (``store.models.Annotation``, kind ``note``) on an instance and frame; the card's
caption lists them, and the share viewer shows them to the specialist.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.chat import Asker, asker_of, in_thread, reply, service
from handlers.previews import key_slice, series_slices
from handlers.services import Services
from handlers.viewing import view_of_message
from store.audit import record_access
from store.models import Annotation
from store.queries import get_series_for_patient

MAX_NOTE_CHARS = 500


def _save(services: Services, asker: Asker, series_ref: str, slice_index: int, text: str) -> str:
    """Label a just-placed marker, or save a note; returns "labelled", "note" or "" (not theirs)."""
    from handlers.marking import label_newest_marker

    assert asker.patient_id is not None
    with services.sessions() as session:
        series = get_series_for_patient(session, asker.patient_id, series_ref)
        slices = series_slices(session, asker.patient_id, series) if series is not None else []
        if slices:
            index = key_slice(len(slices)) if slice_index < 0 else min(slice_index, len(slices) - 1)
            target = (slices[index].instance.id, slices[index].frame)
        else:
            target = None
    if target is not None and label_newest_marker(services, asker, target[0], target[1], text):
        return "labelled"
    with services.sessions() as session, session.begin():
        series = get_series_for_patient(session, asker.patient_id, series_ref)
        if series is None:
            return ""
        slices = series_slices(session, asker.patient_id, series)
        if not slices:
            return ""
        index = key_slice(len(slices)) if slice_index < 0 else min(slice_index, len(slices) - 1)
        piece = slices[index]
        session.add(
            Annotation(
                patient_id=asker.patient_id,
                instance_id=piece.instance.id,
                frame=piece.frame,
                kind="note",
                text=text,
                author="patient",
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
        )
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
