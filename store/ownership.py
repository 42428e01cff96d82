"""Whose images are whose: linking a chat to a patient found in an upload, merging, discarding.

A patient's own upload is filed under an issuer scoped to the uploader (see ``handlers.uploads``), so
a CD can never add images to somebody else's record. Afterwards the uploader says which of the
people on the CD they are; that patient is merged into (or becomes) their record, the others go.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.models import (
    AccessEvent,
    Annotation,
    ChatLink,
    LinkCode,
    Patient,
    PatientIdentifier,
    ShareLink,
    Study,
    StudyModality,
    utcnow,
)


def patient_by_public_id(session: Session, public_id: str) -> Patient | None:
    return session.scalars(select(Patient).where(Patient.public_id == public_id)).first()


def is_linked_to_a_chat(session: Session, patient_id: int) -> bool:
    """Whether some Telegram user is linked to this patient."""
    return session.scalars(select(ChatLink.id).where(ChatLink.patient_id == patient_id).limit(1)).first() is not None


def link_chat(session: Session, telegram_user_id: int, chat_id: int, patient_id: int) -> ChatLink:
    """Link a Telegram user to ``patient_id`` (replacing an earlier link of that user)."""
    link = session.scalars(select(ChatLink).where(ChatLink.telegram_user_id == telegram_user_id)).first()
    if link is None:
        link = ChatLink(telegram_user_id=telegram_user_id, chat_id=chat_id, patient_id=patient_id, created_at=utcnow())
        session.add(link)
    else:
        link.patient_id = patient_id
        link.chat_id = chat_id
    session.flush()
    return link


def merge_patient(session: Session, source_id: int, target_id: int) -> int:
    """Move everything of patient ``source_id`` to ``target_id`` and delete the source; returns studies moved."""
    if source_id == target_id:
        return 0
    moved = len(list(session.scalars(select(Study.id).where(Study.patient_id == source_id))))
    for model in (Study, StudyModality, PatientIdentifier, ShareLink, Annotation, AccessEvent, LinkCode):
        session.execute(
            update(model)
            .where(model.patient_id == source_id)
            .values(patient_id=target_id)
            .execution_options(synchronize_session=False)
        )
    source = session.get(Patient, source_id)
    if source is not None:
        session.expire_all()
        session.delete(session.get(Patient, source_id))
    session.flush()
    return moved
