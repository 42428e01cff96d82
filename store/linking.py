"""Linking a Telegram user to a patient with one-time codes, and finding patients by their Patient ID.

A link code is what the ``/start <code>`` deep link carries: 32 characters of A-Z, a-z, 0-9, ``_`` and
``-`` (192 bits from :mod:`secrets`), inside Telegram's 64-character payload limit. Only its SHA-256 is
stored, and a code is looked up by that hash, so no comparison of secret text ever happens. A code works
once, and not after it expires (24 hours by default). Redeeming a code for a Telegram user who is
already linked moves that user to the new patient: one Telegram user, one patient.

Failures are typed (:class:`UnknownLinkCode`, :class:`ExpiredLinkCode`, :class:`UsedLinkCode`), each
with a short, friendly ``message`` the bot can send as is.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.models import ChatLink, LinkCode, Patient, PatientIdentifier, utcnow

DEFAULT_TTL = timedelta(hours=24)
# 24 random bytes -> 32 URL-safe base64 characters: 192 bits, well inside the 64-character payload.
CODE_BYTES = 24
# Telegram's /start payload alphabet and length.
DEEP_LINK_PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class LinkingError(Exception):
    """Linking failed; ``message`` is fit to show the patient."""

    message = "That link did not work. Please ask for a new one."

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class UnknownLinkCode(LinkingError):
    """No such code (mistyped, never issued, or cut short when copied)."""

    message = "I don't know that link code. Please check it, or ask for a new link."


class ExpiredLinkCode(LinkingError):
    """The code existed but its time ran out."""

    message = "That link has expired. Please ask for a new one; links last 24 hours."


class UsedLinkCode(LinkingError):
    """The code was already redeemed; each code works once."""

    message = "That link was already used. Each link works once, so please ask for a new one."


class UnknownPatient(LinkingError):
    """The patient a code was asked for does not exist."""

    message = "There is no such patient in this Lightbox."


class AmbiguousPatientId(LinkingError):
    """One Patient ID, several issuers, several patients: the issuer must be named."""

    message = "That Patient ID belongs to more than one patient here; please name the issuer too."


def hash_code(code: str) -> str:
    """SHA-256 (hex) of a link code: the only form it is stored in."""
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def new_code() -> str:
    """A fresh link code: 192 random bits, URL-safe, fit for a ``/start`` payload."""
    code = secrets.token_urlsafe(CODE_BYTES)
    assert DEEP_LINK_PAYLOAD.match(code)
    return code


def deep_link(bot_username: str, code: str) -> str:
    """The ``https://t.me/<bot>?start=<code>`` link that opens the bot with ``code``."""
    return f"https://t.me/{bot_username.lstrip('@')}?start={code}"


def create_link_code(
    session: Session, patient_id: int, *, ttl: timedelta = DEFAULT_TTL, now: datetime | None = None
) -> str:
    """Issue a one-time code linking a Telegram user to patient ``patient_id``; returns the code itself.

    The caller shows it once (or its deep link); it cannot be recovered later.
    """
    if ttl <= timedelta(0):
        raise ValueError("a link code needs a positive lifetime")
    if session.get(Patient, patient_id) is None:
        raise UnknownPatient()
    now = now or utcnow()
    code = new_code()
    session.add(LinkCode(code_hash=hash_code(code), patient_id=patient_id, created_at=now, expires_at=now + ttl))
    session.flush()
    return code


def redeem_link_code(
    session: Session, code: str, telegram_user_id: int, chat_id: int, *, now: datetime | None = None
) -> ChatLink:
    """Link ``telegram_user_id`` to the code's patient and use the code up.

    Raises :class:`UnknownLinkCode`, :class:`ExpiredLinkCode` or :class:`UsedLinkCode`. If the user was
    linked to another patient, that link is replaced. The code is marked used with a conditional UPDATE,
    so two redeems racing for one code cannot both win.
    """
    now = now or utcnow()
    code = code.strip()
    if not DEEP_LINK_PAYLOAD.match(code):
        raise UnknownLinkCode()
    row = session.scalars(select(LinkCode).where(LinkCode.code_hash == hash_code(code))).first()
    if row is None:
        raise UnknownLinkCode()
    if row.used_at is not None:
        raise UsedLinkCode()
    if row.expires_at <= now:
        raise ExpiredLinkCode()
    claimed = session.execute(
        update(LinkCode)
        .where(LinkCode.id == row.id, LinkCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        raise UsedLinkCode()
    session.refresh(row)
    link = session.scalars(select(ChatLink).where(ChatLink.telegram_user_id == telegram_user_id)).first()
    if link is None:
        link = ChatLink(telegram_user_id=telegram_user_id, chat_id=chat_id, patient_id=row.patient_id, created_at=now)
        session.add(link)
    else:
        link.patient_id = row.patient_id
        link.chat_id = chat_id
        link.created_at = now
    session.flush()
    return link


def patient_for_chat(session: Session, telegram_user_id: int) -> Patient | None:
    """The patient a Telegram user is linked to, or ``None``."""
    stmt = (
        select(Patient)
        .join(ChatLink, ChatLink.patient_id == Patient.id)
        .where(ChatLink.telegram_user_id == telegram_user_id)
    )
    return session.scalars(stmt).first()


def chat_link_for_user(session: Session, telegram_user_id: int) -> ChatLink | None:
    """The Telegram user's link row (with their chat preferences), or ``None``."""
    return session.scalars(select(ChatLink).where(ChatLink.telegram_user_id == telegram_user_id)).first()


def unlink_chat(session: Session, telegram_user_id: int) -> bool:
    """Remove the Telegram user's link to a patient; ``True`` if there was one."""
    link = chat_link_for_user(session, telegram_user_id)
    if link is None:
        return False
    session.delete(link)
    session.flush()
    return True


def find_patient_by_identifier(session: Session, value: str, issuer: str | None = None) -> Patient | None:
    """The patient known by Patient ID ``value`` (from ``issuer``; any issuer when ``None``).

    Raises :class:`AmbiguousPatientId` when, with no issuer named, the ID points at several patients.
    """
    stmt = (
        select(Patient)
        .join(PatientIdentifier, PatientIdentifier.patient_id == Patient.id)
        .where(PatientIdentifier.value == value)
    )
    if issuer is not None:
        stmt = stmt.where(PatientIdentifier.issuer == issuer)
    patients = {p.id: p for p in session.scalars(stmt)}
    if len(patients) > 1:
        raise AmbiguousPatientId()
    return next(iter(patients.values()), None)


def find_or_create_patient_by_identifier(session: Session, patient_id_value: str, issuer: str = "") -> Patient:
    """The patient with Patient ID ``patient_id_value`` from ``issuer``, created if new.

    Safe against a concurrent creator: the (issuer, value) unique constraint decides, and the loser
    reads the winner's row.
    """
    value = patient_id_value.strip()
    if not value:
        raise ValueError("a Patient ID cannot be empty")
    found = find_patient_by_identifier(session, value, issuer)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            patient = Patient(identifiers=[PatientIdentifier(issuer=issuer, value=value)])
            session.add(patient)
            session.flush()
        return patient
    except IntegrityError:
        found = find_patient_by_identifier(session, value, issuer)
        if found is None:
            raise
        return found
