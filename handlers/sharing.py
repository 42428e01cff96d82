"""Share links from the chat: "share my brain MRI with Dr. Lee for 3 days", /share, /shares, revoke."""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from typing import Any

import segno
from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import ContextTypes

from handlers import texts
from handlers.cards import study_what
from handlers.chat import Asker, in_thread, linked_asker, numbered_buttons, reply, service
from handlers.services import Services
from handlers.viewing import StudyRequest, current_view, find_requested_study
from share.links import ShareError, create_annotation_link, create_share, find_shares, list_shares, revoke_share
from store.models import Patient, ShareLink, Study
from store.queries import get_series_for_patient, get_study_for_patient

log = logging.getLogger("lightbox.sharing")


def _pick_study(
    services: Services, asker: Asker, request: StudyRequest | None, study_ref: str | None, current_series: str | None
) -> Study | None:
    assert asker.patient_id is not None
    with services.sessions() as session:
        if study_ref:
            return get_study_for_patient(session, asker.patient_id, study_ref)
        if request is not None and (request.modality or request.body_part or request.which):
            return find_requested_study(session, asker.patient_id, request)
        if current_series:
            series = get_series_for_patient(session, asker.patient_id, current_series)
            if series is not None:
                return series.study
        return find_requested_study(session, asker.patient_id, StudyRequest())


def _create(
    services: Services, asker: Asker, study_id: int, hours: float | None, recipient: str, with_code: bool = False
) -> tuple[str, dict[str, Any]]:
    assert asker.patient_id is not None
    with services.sessions() as session, session.begin():
        patient = session.get(Patient, asker.patient_id)
        study = session.get(Study, study_id)
        assert patient is not None and study is not None
        created = create_share(
            session, patient=patient, study=study, hours=hours, recipient_label=recipient, access_code=with_code,
            now=services.now(),
        )
        url = created.url(services.public_url)
        values = {
            "url": url,
            "recipient": recipient,
            "what": _your_study(study),
            "expires": texts.nice_time(created.link.expires_at),
            "max_views": created.link.max_views,
            "code": created.access_code,
        }
        return url, values


def _your_study(study: Study) -> str:
    """``your MRI of the brain from 12 March 2025`` (the other languages leave out "your")."""
    return texts.label("share.what", what=texts.what_when(study_what(study, sentence_start=False), study.study_date))


def qr_png(url: str) -> bytes:
    """The link as a QR code picture, for showing to a doctor across the desk."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="png", scale=8, border=3)
    return out.getvalue()


async def share_study(
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
    *,
    request: StudyRequest | None = None,
    study_ref: str | None = None,
    hours: float | None = None,
    recipient: str = "",
    with_code: bool = False,
) -> None:
    """Make a share link and send it (without protect_content, so it can be forwarded) with a QR code. With
    ``with_code`` the link also needs a six-digit access code, sent in a message of its own so the patient
    does not forward it together with the link."""
    asker = await linked_asker(update, context)
    if asker is None:
        return
    services = service(context)
    if hours is not None and (hours < 1 or hours > 720):
        await reply(update, "share_failed", reason=texts.label("share.hours"))
        return
    view = current_view(context)
    study = await in_thread(_pick_study, services, asker, request, study_ref, view.series if view else None)
    if study is None:
        if study_ref:
            raise LookupError("stale study button")
        await reply(update, "no_study", any_studies=True, wanted=(request or StudyRequest()).words(), suggestion="")
        return
    try:
        url, values = await in_thread(_create, services, asker, study.id, hours, recipient, with_code)
    except ShareError:
        # Its message is for an operator's command line; the patient gets the plain sentence.
        await reply(update, "share_failed", reason=texts.label("share.failed"))
        return
    message = update.effective_message
    assert message is not None
    text = texts.render("share_created", **values)
    # The link message must be forwardable: no protect_content here (previews stay protected).
    await message.reply_text(text, parse_mode=ParseMode.HTML, disable_web_page_preview=True, protect_content=False)
    await message.reply_photo(photo=qr_png(url), caption=texts.label("share.qr_caption"), protect_content=False)
    if values["code"]:
        await reply(update, "share_code", code=values["code"], recipient=recipient)


def _links(services: Services, patient_id: int) -> list[dict[str, Any]]:
    with services.sessions() as session:
        rows: list[dict[str, Any]] = []
        for link in list_shares(session, patient_id, now=services.now(), active_only=True):
            study = session.get(Study, link.study_id)
            rows.append(
                {
                    "public_id": link.public_id,
                    "what": (
                        f"{study_what(study)} ({texts.nice_date(study.study_date)})"
                        if study
                        else texts.label("shares.a_study")
                    ),
                    "recipient": link.recipient_label,
                    "expires": texts.nice_time(link.expires_at),
                    "views": link.view_count,
                }
            )
        return rows


async def shares_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/shares: active links with a revoke button each."""
    asker = await linked_asker(update, context)
    if asker is None:
        return
    rows = await in_thread(_links, service(context), asker.patient_id)
    await reply(update, "shares", links=rows, reply_markup=numbered_buttons(rows, "button.stop_link", "revoke"))


def _revoke(services: Services, patient_id: int, public_id: str | None) -> int:
    with services.sessions() as session, session.begin():
        if public_id is None:
            active = list_shares(session, patient_id, now=services.now(), active_only=True)
            for link in active:
                revoke_share(session, link.public_id, patient_id=patient_id, now=services.now())
            return len(active)
        try:
            revoked: ShareLink = revoke_share(session, public_id, patient_id=patient_id, now=services.now())
        except ShareError:
            return -1
        return 1 if revoked.revoked_at is not None else 0


async def revoke(update: Update, context: ContextTypes.DEFAULT_TYPE, public_id: str | None) -> bool:
    """Revoke one link (a button) or all of them ("revoke all my links"). ``False`` if the link is not theirs."""
    asker = await linked_asker(update, context)
    if asker is None:
        return True
    count = await in_thread(_revoke, service(context), asker.patient_id, public_id)
    if count < 0:
        return False
    await reply(update, "share_revoked", count=count)
    return True


def _matching(services: Services, patient_id: int, slots: dict[str, Any]) -> list[str]:
    with services.sessions() as session:
        links = find_shares(
            session, patient_id, recipient=str(slots.get("recipient") or ""), modality=str(slots.get("modality") or ""),
            body_part=str(slots.get("body_part") or ""), now=services.now(),
        )
        return [link.public_id for link in links]


async def revoke_intent(update: Update, context: ContextTypes.DEFAULT_TYPE, slots: dict[str, Any]) -> None:
    """'Stop my share links': all of them when asked; the one link the patient named ("stop the link for
    Dr Lee", "stop sharing my knee MRI"); otherwise, or when several or none fit, the list to choose from."""
    if slots.get("all"):
        await revoke(update, context, None)
        return
    if not any(slots.get(k) for k in ("recipient", "modality", "body_part")):
        await shares_command(update, context)
        return
    asker = await linked_asker(update, context)
    if asker is None:
        return
    matches = await in_thread(_matching, service(context), asker.patient_id, slots)
    if len(matches) == 1:
        await revoke(update, context, matches[0])
        return
    if not matches:
        await reply(update, "revoke_no_match", recipient=str(slots.get("recipient") or ""))
    await shares_command(update, context)


async def share_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/share: share the study on screen (or the newest one) for the default 72 hours."""
    await share_study(update, context)


DEFAULT_SHARE = timedelta(hours=72)
DRAW_LINK_HOURS = 24


def _draw_link(services: Services, asker: Asker, study_id: int) -> dict[str, Any]:
    assert asker.patient_id is not None
    with services.sessions() as session, session.begin():
        patient = session.get(Patient, asker.patient_id)
        study = session.get(Study, study_id)
        assert patient is not None and study is not None
        created = create_annotation_link(
            session, patient=patient, study=study, hours=DRAW_LINK_HOURS, now=services.now(), actor_ref=asker.actor_ref
        )
        return {
            "url": created.url(services.public_url),
            "what": _your_study(study),
            "expires": texts.nice_time(created.link.expires_at),
        }


async def draw_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/draw: a link of the patient's own to draw arrows, circles and text on the study on screen.

    Sent with protect_content: it is for the patient, not for forwarding (a share link is for doctors).
    """
    asker = await linked_asker(update, context)
    if asker is None:
        return
    services = service(context)
    view = current_view(context)
    study = await in_thread(_pick_study, services, asker, None, None, view.series if view else None)
    if study is None:
        await reply(update, "no_study", any_studies=False, wanted=StudyRequest().words(), suggestion="")
        return
    values = await in_thread(_draw_link, services, asker, study.id)
    message = update.effective_message
    assert message is not None
    await message.reply_text(
        texts.render("draw_link", **values),
        parse_mode=ParseMode.HTML,
        disable_web_page_preview=True,
        protect_content=True,
    )
