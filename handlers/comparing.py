"""Comparing two dates: "compare my knee MRIs", /compare, the card's "compare with earlier" button.

One side-by-side picture (earlier left, later right, same window on both), both dates and the
interval, and buttons that step through paired slices together. The buttons carry both series as
compact ids, so the comparison is stateless like the study card.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import ContextTypes

from handlers import texts
from handlers.callbacks import BadCallback
from handlers.cards import study_what
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
from handlers.previews import picture_source
from handlers.services import Services
from imaging.compose import side_by_side
from imaging.errors import RenderError
from imaging.render import photo_bytes
from store.audit import record_access
from store.comparison import ComparisonPlan, pair_series, pair_slice, plan_comparison, stack
from store.queries import get_series_for_patient, get_study_for_patient

_COMPACT = re.compile(r"^[A-Za-z0-9_-]{22}$")


def compact(public_id: str) -> str:
    """32 hex characters as 22 URL-safe ones, so two ids fit in one button."""
    return base64.urlsafe_b64encode(bytes.fromhex(public_id)).decode().rstrip("=")


def expand(short: str) -> str:
    if not _COMPACT.match(short):
        raise BadCallback("bad id")
    try:
        return base64.urlsafe_b64decode(short + "==").hex()
    except ValueError:
        raise BadCallback("bad id") from None


def encode_pair(earlier_series: str, later_series: str, index: int) -> str:
    return f"c|{compact(earlier_series)}|{compact(later_series)}|{index}"


def decode_pair(data: str) -> tuple[str, str, int]:
    parts = data.split("|")
    if len(parts) != 4 or parts[0] != "c" or not parts[3].isdigit():
        raise BadCallback("not a comparison")
    return expand(parts[1]), expand(parts[2]), int(parts[3])


@dataclass
class ComparisonPicture:
    photo: bytes
    caption: str
    keyboard: InlineKeyboardMarkup


def render_pair(
    services: Services, asker: Asker, earlier_ref: str, later_ref: str, index: int | None
) -> ComparisonPicture | None:
    """The side-by-side picture of paired slices (worker thread); ``None`` if a series is not theirs."""
    assert asker.patient_id is not None
    with services.sessions() as session, session.begin():
        old_series = get_series_for_patient(session, asker.patient_id, earlier_ref)
        new_series = get_series_for_patient(session, asker.patient_id, later_ref)
        if old_series is None or new_series is None:
            return None
        old_stack, new_stack = (
            stack(session, asker.patient_id, old_series),
            stack(session, asker.patient_id, new_series),
        )
        if not old_stack or not new_stack:
            return None
        index = (len(new_stack) - 1) // 2 if index is None else min(index, len(new_stack) - 1)
        partner = pair_slice(old_stack, new_stack, index)
        old_study, new_study = old_series.study, new_series.study
        pixels = side_by_side(
            (picture_source(services.files, old_stack[partner]), 0),
            (picture_source(services.files, new_stack[index]), 0),
            (texts.picture_date(old_study.study_date), texts.picture_date(new_study.study_date)),
            max_size=640,
        )
        for study in (old_study, new_study):
            record_access(
                session, asker.patient_id, "chat", asker.actor_ref, "view", study_id=study.id, detail="comparison"
            )
        caption = texts.render(
            "compare_caption",
            what=study_what(new_study),
            earlier=texts.nice_date(old_study.study_date),
            later=texts.nice_date(new_study.study_date),
            interval=texts.sentence_start(texts.interval_words(old_study.study_date, new_study.study_date)),
            index=index + 1,
            count=len(new_stack),
        )
        count = len(new_stack)
        nav = []
        if count > 1:
            if count > 10:
                nav.append(
                    InlineKeyboardButton("« 10", callback_data=encode_pair(earlier_ref, later_ref, max(0, index - 10)))
                )
            nav.append(
                InlineKeyboardButton(
                    texts.label("button.back"), callback_data=encode_pair(earlier_ref, later_ref, (index - 1) % count)
                )
            )
            nav.append(
                InlineKeyboardButton(
                    texts.label("button.next"), callback_data=encode_pair(earlier_ref, later_ref, (index + 1) % count)
                )
            )
            if count > 10:
                nav.append(
                    InlineKeyboardButton(
                        "10 »", callback_data=encode_pair(earlier_ref, later_ref, min(count - 1, index + 10))
                    )
                )
        return ComparisonPicture(photo_bytes(pixels), caption, InlineKeyboardMarkup([nav] if nav else []))


def problem_words(plan: ComparisonPlan) -> str:
    """Why there is nothing to compare: the store's own English words, else the label for its code."""
    if plan.code == "different_kinds":
        part, earlier, later = plan.values
        values = {
            "part": texts.part_name(part),
            "earlier": texts.mid_sentence(texts.modality_word(earlier)),
            "later": texts.mid_sentence(texts.modality_word(later)),
        }
        return texts.in_language(plan.problem, "compare.problem.different_kinds", **values)
    if plan.code == "missing_date":
        return texts.in_language(plan.problem, "compare.problem.missing_date", date=plan.values[0])
    key = f"compare.problem.{plan.code}"
    return texts.in_language(plan.problem, key if key in texts.labels() else "compare.problem.nothing")


def _plan(services: Services, patient_id: int, slots: dict[str, Any], study_ref: str | None) -> tuple[str, str] | str:
    from handlers.router import which_text

    with services.sessions() as session:
        later = get_study_for_patient(session, patient_id, study_ref) if study_ref else None
        if study_ref and later is None:
            raise LookupError("stale study")
        which = slots.get("which")
        dates: list[str] = []
        if isinstance(which, list):
            dates = [d for d in (which_text(w) for w in which) if d]
        elif which is not None and (text := which_text(which)) and text[:1].isdigit():
            dates = [text]
        plan = plan_comparison(
            session,
            patient_id,
            modality=slots.get("modality"),
            body_part=slots.get("body_part"),
            dates=dates,
            later_study=later,
        )
        if plan.earlier is None or plan.later is None:
            return problem_words(plan)
        pair = pair_series(session, patient_id, plan.earlier, plan.later)
        if pair is None:
            return texts.label("compare.no_pictures")
        return pair[0].public_id, pair[1].public_id


async def compare(
    update: Update, context: ContextTypes.DEFAULT_TYPE, slots: dict[str, Any], study_ref: str | None = None
) -> bool:
    asker = await linked_asker(update, context)
    if asker is None:
        return True
    services = service(context)
    planned = await in_thread(_plan, services, asker.patient_id, slots, study_ref)
    if isinstance(planned, str):
        await reply(update, "compare_none", reason=planned)
        return True
    try:
        picture = await in_thread(render_pair, services, asker, planned[0], planned[1], None)
    except RenderError as exc:
        await reply(update, "render_failed", reason=render_reason(exc))
        return True
    if picture is None:
        await reply(update, "compare_none", reason=texts.label("compare.no_pictures"))
        return True
    message = update.effective_message
    assert message is not None
    await message.reply_photo(
        photo=picture.photo,
        caption=picture.caption,
        parse_mode=ParseMode.HTML,
        reply_markup=picture.keyboard,
        protect_content=asker.protect_content,
    )
    return True


async def compare_study(update: Update, context: ContextTypes.DEFAULT_TYPE, study_ref: str) -> bool:
    """The card's "compare with earlier" button."""
    return await compare(update, context, {}, study_ref)


async def step(update: Update, context: ContextTypes.DEFAULT_TYPE, data: str) -> bool:
    """A comparison button: edit the picture to the next pair of slices."""
    earlier, later, index = decode_pair(data)
    asker = await asker_of(update, context)
    if asker.patient_id is None:
        return False
    query = update.callback_query
    assert query is not None
    try:
        picture = await in_thread(render_pair, service(context), asker, earlier, later, index)
    except RenderError as exc:
        await answer_query(update, context, cannot_show(exc), show_alert=True)
        return True
    if picture is None:
        return False
    await answer_query(update, context)
    await edit_picture(update, picture.photo, picture.caption, picture.keyboard)
    return True
