"""The study card: one preview picture, a plain caption and the buttons to look around.

:func:`build_card` does the database reads and the rendering; it is synchronous and the handlers run
it in a worker thread. It checks that the series in the view belongs to the asking patient and returns
``None`` otherwise, exactly as for a series that no longer exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import MessageLimit

from handlers import texts
from handlers.callbacks import WINDOW_CODES, View, encode_action, encode_view
from handlers.marking_codec import encode_mark
from handlers.previews import Slice, best_series, picture_at, preview_jpeg
from handlers.services import Services
from imaging.overlays import Mark
from store.models import Annotation, Series, Study
from store.queries import series_of_study

# The CT window buttons, by window code (labels window_button.<code>).
CT_WINDOW_BUTTONS = ("b", "l", "o", "a")
PLANES = ("axial", "sagittal", "coronal", "oblique")  # labels plane.<plane>


@dataclass
class Card:
    """Everything a study card message needs."""

    photo: bytes
    caption: str
    keyboard: InlineKeyboardMarkup
    study: Study
    series: Series
    piece: Slice
    view: View
    count: int


def study_what(study: Study, *, sentence_start: bool = True) -> str:
    """``MRI of the knee`` from a study's modalities and body part, in the update's language; with
    ``sentence_start=False`` as it reads inside a sentence ("your ultrasound of the knee")."""
    what = texts.what_of(study.modalities, study.body_part)
    return texts.sentence_start(what) if sentence_start else texts.mid_sentence(what)


def window_text(view: View, modality: str) -> str:
    name = WINDOW_CODES.get(view.window, "default")
    if name == "default":
        return ""
    if name == "auto":
        return texts.label("window.auto")
    return texts.label(f"window.{name}") if modality == "CT" else ""


def caption_for(study: Study, series: Series, view: View, index: int, count: int, notes: str = "") -> str:
    caption = texts.render(
        "study_caption",
        what=study_what(study),
        when=texts.nice_date(study.study_date),
        plane=texts.label(f"plane.{series.plane}") if series.plane in PLANES else "",
        index=index + 1,
        count=count,
        series_text=series.description,
        window_text=window_text(view, series.modality),
        notes=notes,
    )
    return texts.clip(caption, MessageLimit.CAPTION_LENGTH)


def keyboard_for(
    study: Study, series: Series, view: View, index: int, count: int, series_count: int
) -> InlineKeyboardMarkup:
    """Navigation, windows, transforms and the study's actions."""

    def go(**changes: object) -> str:
        return encode_view(view.with_(**changes))

    rows: list[list[InlineKeyboardButton]] = []
    if count > 1:
        nav = []
        if count > 10:
            nav.append(InlineKeyboardButton("« 10", callback_data=go(slice=max(0, index - 10))))
        nav.append(InlineKeyboardButton(texts.label("button.back"), callback_data=go(slice=(index - 1) % count)))
        nav.append(InlineKeyboardButton(texts.label("button.next"), callback_data=go(slice=(index + 1) % count)))
        if count > 10:
            nav.append(InlineKeyboardButton("10 »", callback_data=go(slice=min(count - 1, index + 10))))
        rows.append(nav)
    if series.modality == "CT":
        rows.append(
            [
                InlineKeyboardButton(
                    ("• " if view.window == code else "") + texts.label(f"window_button.{code}"),
                    callback_data=go(slice=index, window="d" if view.window == code else code),
                )
                for code in CT_WINDOW_BUTTONS
            ]
        )
    zoom_next = (view.zoom + 1) % 5
    rows.append(
        [
            InlineKeyboardButton(
                texts.label("button.rotate"), callback_data=go(slice=index, rotate=(view.rotate + 1) % 4)
            ),
            InlineKeyboardButton(
                texts.label("button.zoom" if zoom_next else "button.whole_image"),
                callback_data=go(slice=index, zoom=zoom_next),
            ),
            InlineKeyboardButton(texts.label("button.invert"), callback_data=go(slice=index, invert=not view.invert)),
        ]
    )
    more = []
    if series_count > 1:
        more.append(
            InlineKeyboardButton(
                texts.label("button.series", count=series_count),
                callback_data=encode_action("series", study.public_id),
            )
        )
    more.append(
        InlineKeyboardButton(
            texts.label("button.explain"), callback_data=encode_action("explain_image", series.public_id)
        )
    )
    more.append(
        InlineKeyboardButton(texts.label("button.mark"), callback_data=encode_mark(series.public_id, index, 0, 0))
    )
    if count > 1:
        more.append(
            InlineKeyboardButton(
                texts.label("button.play"), callback_data=encode_action("cine", series.public_id, view.window)
            )
        )
    rows.append(more)
    rows.append(
        [
            InlineKeyboardButton(texts.label("button.share"), callback_data=encode_action("share", study.public_id)),
            InlineKeyboardButton(
                texts.label("button.compare"), callback_data=encode_action("compare", study.public_id)
            ),
        ]
    )
    return InlineKeyboardMarkup(rows)


def first_view(session: Session, patient_id: int, study: Study) -> View | None:
    """The view a study opens on: its best series at the key slice."""
    series = best_series(session, patient_id, series_of_study(session, patient_id, study.id))
    return View(series.public_id) if series is not None else None


def annotations_on(session: Session, patient_id: int, piece: Slice) -> list[Annotation]:
    """The patient's notes and marks on one picture, oldest first."""
    stmt = (
        select(Annotation)
        .where(
            Annotation.patient_id == patient_id,
            Annotation.instance_id == piece.instance.id,
            Annotation.frame == piece.frame,
        )
        .order_by(Annotation.id)
    )
    return list(session.scalars(stmt))


def marks_of(annotations: list[Annotation]) -> list[Mark]:
    """The annotations that have a place on the picture, as imaging marks."""
    return [
        Mark(a.kind, a.x, a.y, a.x2, a.y2, a.text if a.kind != "note" else "")
        for a in annotations
        if a.x is not None and a.y is not None
    ]


def build_card(services: Services, session: Session, patient_id: int, view: View) -> Card | None:
    """Render the card for ``view``; ``None`` when the series is not this patient's or has no picture."""
    found = picture_at(session, patient_id, view.series, view.slice)
    if found is None:
        return None
    series, slices, index = found
    view = view.with_(slice=index)
    piece = slices[index]
    study = series.study
    series_count = len(series_of_study(session, patient_id, study.id))
    annotations = annotations_on(session, patient_id, piece)
    photo = preview_jpeg(services, piece, view, study.patient.public_id, marks=marks_of(annotations))
    notes = [a.text for a in annotations if a.kind == "note" and a.text]
    return Card(
        photo=photo,
        caption=caption_for(study, series, view, index, len(slices), "; ".join(notes)),
        keyboard=keyboard_for(study, series, view, index, len(slices), series_count),
        study=study,
        series=series,
        piece=piece,
        view=view,
        count=len(slices),
    )
