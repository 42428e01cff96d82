"""The card's "Play" button: the series as a short animation (GIF), bounded in frames and size.

An ultrasound clip or a stack of slices plays as it would on a workstation's cine loop. The animation
uses the card's window, is logged like any view, and is sent with protect_content like previews.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from handlers.callbacks import View
from handlers.cards import study_what
from handlers.chat import Asker, answer_query, asker_of, in_thread, service
from handlers.previews import series_slices, window_choice
from handlers.services import Services
from imaging.compose import cine_gif
from imaging.errors import RenderError
from store.audit import record_access
from store.queries import get_series_for_patient


def _cine(services: Services, asker: Asker, view: View) -> tuple[bytes, str] | None:
    assert asker.patient_id is not None
    with services.sessions() as session, session.begin():
        series = get_series_for_patient(session, asker.patient_id, view.series)
        if series is None:
            return None
        slices = series_slices(session, asker.patient_id, series)
        if len(slices) < 2:
            return None
        paths = [(services.files.path(s.instance.storage_key or ""), s.frame) for s in slices]
        data = cine_gif(paths, window=window_choice(view.window))
        record_access(session, asker.patient_id, "chat", asker.actor_ref, "view", study_id=series.study_id,
                      series_id=series.id, detail="cine")
        return data, f"{study_what(series.study)}: all {len(slices)} pictures as a loop"


async def play(update: Update, context: ContextTypes.DEFAULT_TYPE, view: View) -> bool:
    """Send the series as an animation; ``False`` when the series is not this patient's."""
    asker = await asker_of(update, context)
    if asker.patient_id is None:
        return False
    await answer_query(update, context, "Making the animation…")
    try:
        made = await in_thread(_cine, service(context), asker, view)
    except RenderError:
        made = None
    if made is None:
        return False
    data, caption = made
    message = update.effective_message
    assert message is not None
    await message.reply_animation(animation=data, caption=caption, filename="series.gif",
                                  protect_content=asker.protect_content)
    return True
