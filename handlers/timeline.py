"""/timeline ("show my history"): the patient's studies per body part over time, one thumbnail each."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from telegram import Update
from telegram.constants import MessageLimit, ParseMode
from telegram.ext import ContextTypes

from handlers import texts
from handlers.cards import first_view
from handlers.chat import Asker, in_thread, linked_asker, reply, service
from handlers.previews import ArchiveUnavailable, key_slice, picture_source, series_slices
from handlers.services import Services
from imaging.compose import labelled_sheet
from imaging.errors import RenderError
from imaging.render import photo_bytes
from store.audit import record_access
from store.queries import get_series_for_patient, list_studies

MAX_THUMBNAILS = 12
TILE = 256


def _timeline(services: Services, asker: Asker) -> tuple[list[dict[str, Any]], bytes | None]:
    assert asker.patient_id is not None
    with services.sessions() as session, session.begin():
        studies = list_studies(session, asker.patient_id, newest_first=False)
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        tiles: list[tuple[tuple[Path | Dataset, int], str]] = []
        for study in studies:
            part = texts.sentence_start(texts.part_name(study.body_part or "other"))
            groups[part].append(
                {"when": texts.nice_date(study.study_date), "what": texts.modality_word(study.modalities)}
            )
            if len(tiles) >= MAX_THUMBNAILS:
                continue
            view = first_view(session, asker.patient_id, study)
            series = get_series_for_patient(session, asker.patient_id, view.series) if view else None
            slices = series_slices(session, asker.patient_id, series) if series is not None else []
            if not slices:
                continue
            piece = slices[key_slice(len(slices))]
            try:
                source = picture_source(services.files, piece.instance)
            except ArchiveUnavailable:
                continue  # the dates still list it; only its thumbnail is missing
            # Drawn on the picture: the kind's word where the font has its letters, else the DICOM code.
            kind = texts.drawable(texts.modality_word(study.modalities), study.modalities.replace("\\", "/"))
            label = f"{study.study_date.isoformat() if study.study_date else '?'} {kind}"
            tiles.append(((source, piece.frame), label))
            record_access(
                session, asker.patient_id, "chat", asker.actor_ref, "view", study_id=study.id, detail="timeline"
            )
        rows = [{"part": part, "studies": items} for part, items in sorted(groups.items())]
        picture = None
        if tiles:
            try:
                picture = photo_bytes(labelled_sheet(tiles, tile_size=TILE))
            except RenderError:
                picture = None
        return rows, picture


async def timeline(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    asker = await linked_asker(update, context)
    if asker is None:
        return
    rows, picture = await in_thread(_timeline, service(context), asker)
    text = texts.render("timeline", parts=rows)
    message = update.effective_message
    assert message is not None
    if picture is not None and len(text) <= MessageLimit.CAPTION_LENGTH:
        await message.reply_photo(
            picture, caption=text, parse_mode=ParseMode.HTML, protect_content=asker.protect_content
        )
        return
    await reply(update, "timeline", parts=rows)
    if picture is not None:
        await message.reply_photo(picture, protect_content=asker.protect_content)
