"""Showing studies: "show my last MRI", /studies, /last, and the study card's buttons."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.orm import Session
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import ContextTypes

from handlers import texts
from handlers.callbacks import View, encode_action, encode_view
from handlers.cards import Card, build_card, first_view, study_what
from handlers.chat import (
    Asker,
    answer_query,
    asker_of,
    cannot_show,
    edit_picture,
    in_thread,
    linked_asker,
    render_reason,
    reply,
    service,
)
from handlers.services import Services
from imaging.errors import RenderError
from store.audit import record_access
from store.models import Study
from store.queries import (
    QueryError,
    count_studies,
    earliest_study,
    find_studies,
    get_study_for_patient,
    latest_study,
    list_studies,
    previous_study,
    series_of_study,
)

log = logging.getLogger("lightbox.viewing")
STUDIES_PAGE = 8
CURRENT_KEY = "current_view"


@dataclass(frozen=True)
class StudyRequest:
    """What the patient asked to see, from the understanding slots."""

    modality: str | None = None
    body_part: str | None = None
    which: str | None = None  # latest | earliest | previous | YYYY | YYYY-MM | YYYY-MM-DD

    def words(self) -> str:
        """What was asked for, in the update's language ("a MRI of the knee from 2023", "MRT des Knies von 2023")."""
        what = texts.what_of(self.modality or "", self.body_part or "")
        if self.which and self.which[:1].isdigit():
            what = texts.label("wanted.from", what=what, which=self.which)
        elif self.which in {"earliest", "previous"}:
            what = texts.label(f"wanted.{self.which}", what=what)
        if texts.language() != "en":
            return what
        return f"a {what}" if not what.startswith(("a", "e", "i", "o", "u")) else f"an {what}"


def find_requested_study(session: Session, patient_id: int, request: StudyRequest) -> Study | None:
    """The study the patient means: latest by default; earliest, previous, or within a date."""
    kind: dict[str, Any] = {"modality": request.modality, "body_part": request.body_part}
    which = request.which or "latest"
    if which == "earliest":
        return earliest_study(session, patient_id, **kind)
    if which == "previous":
        newest = latest_study(session, patient_id, **kind)
        return previous_study(session, patient_id, newest, **kind) if newest else None
    if which[:1].isdigit():
        return latest_study(session, patient_id, on=which, **kind)
    return latest_study(session, patient_id, **kind)


def render_card(services: Services, asker: Asker, view: View) -> Card | None:
    """Build a card and log the view (worker thread)."""
    assert asker.patient_id is not None
    with services.sessions() as session, session.begin():
        card = build_card(services, session, asker.patient_id, view)
        if card is not None:
            record_access(
                session,
                asker.patient_id,
                "chat",
                asker.actor_ref,
                "view",
                study_id=card.study.id,
                series_id=card.series.id,
                instance_id=card.piece.instance.id,
                detail=f"picture {card.view.slice + 1}",
            )
        return card


async def send_card(update: Update, context: ContextTypes.DEFAULT_TYPE, asker: Asker, view: View) -> bool:
    """Send a new study card; ``False`` when there is nothing to show."""
    services = service(context)
    try:
        card = await in_thread(render_card, services, asker, view)
    except RenderError as exc:
        await reply(update, "render_failed", reason=render_reason(exc))
        return True
    if card is None:
        return False
    message = update.effective_message
    assert message is not None
    sent = await message.reply_photo(
        photo=card.photo,
        caption=card.caption,
        parse_mode=ParseMode.HTML,
        reply_markup=card.keyboard,
        protect_content=asker.protect_content,
    )
    remember_view(context, card.view, sent.message_id)
    return True


CARD_MESSAGES_KEY = "card_messages"
CARD_MESSAGES_KEPT = 50


def remember_view(context: ContextTypes.DEFAULT_TYPE, view: View, message_id: int | None = None) -> None:
    """What this chat looked at last ("what is this image showing me?"), and what each card shows now
    (a reply to a card adds a note to the picture it shows)."""
    if context.chat_data is None:
        return
    context.chat_data[CURRENT_KEY] = encode_view(view)
    if message_id is not None:
        cards = context.chat_data.setdefault(CARD_MESSAGES_KEY, {})
        cards.pop(str(message_id), None)
        cards[str(message_id)] = encode_view(view)
        while len(cards) > CARD_MESSAGES_KEPT:
            cards.pop(next(iter(cards)))


def view_of_message(context: ContextTypes.DEFAULT_TYPE, message_id: int) -> View | None:
    """The view a card message shows now, if this chat sent it recently."""
    from handlers.callbacks import BadCallback, decode_view

    cards = context.chat_data.get(CARD_MESSAGES_KEY, {}) if context.chat_data is not None else {}
    raw = cards.get(str(message_id)) if isinstance(cards, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        return decode_view(raw)
    except BadCallback:
        return None


def current_view(context: ContextTypes.DEFAULT_TYPE) -> View | None:
    from handlers.callbacks import BadCallback, decode_view

    raw = context.chat_data.get(CURRENT_KEY) if context.chat_data is not None else None
    if not isinstance(raw, str):
        return None
    try:
        return decode_view(raw)
    except BadCallback:
        return None


async def show_study(update: Update, context: ContextTypes.DEFAULT_TYPE, request: StudyRequest) -> None:
    """Find the study the patient asked for and send its card."""
    asker = await linked_asker(update, context)
    if asker is None:
        return
    services = service(context)
    patient_id = asker.linked_patient_id

    def lookup() -> tuple[View | None, int, str]:
        with services.sessions() as session:
            try:
                study = find_requested_study(session, patient_id, request)
            except QueryError:
                study = None
            total = count_studies(session, patient_id)
            suggestion = ""
            if study is None and total and (request.body_part or request.modality):
                # Offer the nearest thing we do have: same kind, any date; else same body part.
                near = latest_study(session, patient_id, modality=request.modality) if request.modality else None
                near = near or (
                    latest_study(session, patient_id, body_part=request.body_part) if request.body_part else None
                )
                if near is not None:
                    suggestion = texts.what_when(study_what(near, sentence_start=False), near.study_date)
            view = first_view(session, patient_id, study) if study is not None else None
            return view, total, suggestion

    view, total, suggestion = await in_thread(lookup)
    if view is None or not await send_card(update, context, asker, view):
        await reply(update, "no_study", any_studies=bool(total), wanted=request.words(), suggestion=suggestion)


async def last_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/last: the newest study of any kind."""
    await show_study(update, context, StudyRequest(which="latest"))


def study_rows(studies: list[Study]) -> list[dict[str, Any]]:
    return [
        {
            "when": texts.nice_date(s.study_date),
            "what": study_what(s),
            "description": s.description,
            "images": s.instance_count,
            "public_id": s.public_id,
        }
        for s in studies
    ]


async def list_studies_reply(
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
    *,
    page: int = 0,
    modality: str | None = None,
    body_part: str | None = None,
    edit: bool = False,
) -> None:
    """/studies: the patient's studies, newest first, a button each."""
    asker = await linked_asker(update, context)
    if asker is None:
        return
    services = service(context)
    patient_id = asker.linked_patient_id

    def load() -> tuple[list[dict[str, Any]], int]:
        with services.sessions() as session:
            if modality or body_part:
                try:
                    found = find_studies(session, patient_id, modality=modality, body_part=body_part)
                except QueryError:
                    found = []
                return study_rows(found[page * STUDIES_PAGE : (page + 1) * STUDIES_PAGE]), len(found)
            rows = list_studies(session, patient_id, limit=STUDIES_PAGE, offset=page * STUDIES_PAGE)
            return study_rows(rows), count_studies(session, patient_id)

    rows, total = await in_thread(load)
    buttons = [
        [
            InlineKeyboardButton(
                f"{i + 1 + page * STUDIES_PAGE}. {r['when']}: {r['what']}"[:60],
                callback_data=encode_action("open", r["public_id"]),
            )
        ]
        for i, r in enumerate(rows)
    ]
    paging = []
    if page > 0:
        paging.append(
            InlineKeyboardButton(texts.label("button.newer"), callback_data=encode_action("studies", str(page - 1)))
        )
    if (page + 1) * STUDIES_PAGE < total:
        paging.append(
            InlineKeyboardButton(texts.label("button.older"), callback_data=encode_action("studies", str(page + 1)))
        )
    if paging:
        buttons.append(paging)
    text = texts.render("studies", studies=rows, total=total, offset=page * STUDIES_PAGE)
    markup = InlineKeyboardMarkup(buttons) if buttons else None
    query = update.callback_query
    if edit and query is not None and query.message is not None:
        await query.edit_message_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)
    else:
        await reply(update, "studies", studies=rows, total=total, offset=page * STUDIES_PAGE, reply_markup=markup)


async def studies_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await list_studies_reply(update, context)


async def open_study(update: Update, context: ContextTypes.DEFAULT_TYPE, study_ref: str) -> bool:
    """A study button: send its card. ``False`` when the study is not this patient's."""
    asker = await asker_of(update, context)
    if asker.patient_id is None:
        return False
    services = service(context)
    patient_id = asker.linked_patient_id

    def load() -> View | None:
        with services.sessions() as session:
            study = get_study_for_patient(session, patient_id, study_ref)
            return first_view(session, patient_id, study) if study is not None else None

    view = await in_thread(load)
    if view is None:
        return False
    return await send_card(update, context, asker, view)


async def navigate(update: Update, context: ContextTypes.DEFAULT_TYPE, view: View) -> bool:
    """A card button: edit the same message to the new view. ``False`` when the view is not this patient's."""
    asker = await asker_of(update, context)
    if asker.patient_id is None:
        return False
    services = service(context)
    query = update.callback_query
    assert query is not None
    try:
        card = await in_thread(render_card, services, asker, view)
    except RenderError as exc:
        await answer_query(update, context, cannot_show(exc), show_alert=True)
        return True
    if card is None:
        return False
    await answer_query(update, context)
    await edit_picture(update, card.photo, card.caption, card.keyboard)
    message_id = query.message.message_id if query.message is not None else None
    remember_view(context, card.view, message_id)
    return True


async def choose_series(update: Update, context: ContextTypes.DEFAULT_TYPE, study_ref: str) -> bool:
    """The "Series" button: one button per series of the study."""
    asker = await asker_of(update, context)
    if asker.patient_id is None:
        return False
    services = service(context)
    patient_id = asker.linked_patient_id

    def load() -> list[tuple[str, str]] | None:
        with services.sessions() as session:
            study = get_study_for_patient(session, patient_id, study_ref)
            if study is None:
                return None
            out = []
            for s in series_of_study(session, patient_id, study.id):
                count = max(s.instance_count, s.frame_count)
                label = s.description or texts.modality_word(s.modality)
                out.append((s.public_id, f"{label} ({texts.counted(count, 'picture')})"[:60]))
            return out

    found = await in_thread(load)
    if found is None:
        return False
    query = update.callback_query
    assert query is not None
    await answer_query(update, context)
    buttons = [[InlineKeyboardButton(label, callback_data=encode_view(View(pid)))] for pid, label in found]
    await query.edit_message_reply_markup(InlineKeyboardMarkup(buttons))
    return True


def today_of(context: ContextTypes.DEFAULT_TYPE) -> date:
    return service(context).today()
