"""Share links: create, find, check, scope and revoke.

A link is a random token (192 bits from :mod:`secrets`, URL-safe) that the patient forwards. Only its
SHA-256 is stored (``ShareLink.token_hash``); a lookup hashes the presented token, finds the row by
that hash and compares the hashes again in constant time. The token itself never reaches the database
or a log line.

The rules, in the patient's words: a link lives 72 hours unless the patient chooses between 1 hour and
30 days; the patient can revoke it at once; an optional access code (six or more digits, hashed with
scrypt) locks the link after five wrong tries; an optional view limit counts viewing sessions. A link
reaches one study (or chosen series of it) and, when asked, the patient's earlier studies of the same
body part (priors). Nothing else is reachable through it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, or_, select, update
from sqlalchemy.orm import Session

from store.audit import record_access
from store.models import Instance, Patient, Series, ShareLink, Study, utcnow
from store.queries import slice_order

TOKEN_BYTES = 24  # 192 bits; the rule is at least 128.
DEFAULT_LIFETIME = timedelta(hours=72)
MIN_LIFETIME = timedelta(hours=1)
MAX_LIFETIME = timedelta(days=30)
MIN_CODE_DIGITS = 6
MAX_CODE_ATTEMPTS = 5
DOWNLOAD_CHOICES = ("original", "deidentified", "none")

Clock = Callable[[], datetime]


class ShareError(ValueError):
    """A share request cannot be done as asked; the message is fit to show the patient or operator."""


class LinkState(enum.Enum):
    """What a presented token currently allows."""

    OK = "ok"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    LOCKED = "locked"
    USED_UP = "used_up"

    @property
    def status_code(self) -> int:
        """404 for a token that never existed, 410 for one that no longer works, 200 otherwise."""
        if self is LinkState.OK:
            return 200
        return 404 if self is LinkState.UNKNOWN else 410


@dataclass
class CreatedShare:
    """A new link: the row, the token (shown once, never stored) and the access code if one was made."""

    link: ShareLink
    token: str
    access_code: str | None = None

    def url(self, public_url: str) -> str:
        """The address the patient forwards."""
        return share_url(public_url, self.token)


def new_token() -> str:
    """A fresh URL-safe token with 192 bits of randomness."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The SHA-256 (hex) of a token: the only form that is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def share_url(public_url: str, token: str) -> str:
    """The viewer address for ``token`` under the service's public URL."""
    return f"{public_url.rstrip('/')}/s/{token}"


def new_access_code(digits: int = MIN_CODE_DIGITS) -> str:
    """A random numeric access code of ``digits`` digits (leading zeros kept)."""
    return f"{secrets.randbelow(10**digits):0{digits}d}"


def hash_access_code(code: str, salt: bytes | None = None) -> str:
    """``scrypt$<salt hex>$<hash hex>``: a six-digit code is guessable offline, so make each guess costly."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(code.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def access_code_matches(code: str, stored: str) -> bool:
    """Whether ``code`` is the one ``stored`` was made from (constant-time comparison)."""
    try:
        scheme, salt_hex, _ = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    return hmac.compare_digest(hash_access_code(code, salt), stored)


def validate_access_code(code: str) -> str:
    """The code itself when it is six or more digits, else :class:`ShareError`."""
    code = code.strip()
    if not code.isdigit() or not code.isascii() or len(code) < MIN_CODE_DIGITS:
        raise ShareError(f"An access code must be at least {MIN_CODE_DIGITS} digits.")
    return code


def lifetime_from_hours(hours: float | None) -> timedelta:
    """The link's lifetime: 72 hours by default, between 1 hour and 30 days."""
    if hours is None:
        return DEFAULT_LIFETIME
    lifetime = timedelta(hours=hours)
    if lifetime < MIN_LIFETIME or lifetime > MAX_LIFETIME:
        raise ShareError("A link can last from 1 hour up to 30 days (720 hours).")
    return lifetime


def record_event(
    session: Session,
    link: ShareLink,
    action: str,
    *,
    at: datetime,
    actor_kind: str = "share",
    actor_ref: str = "",
    study_id: int | None = None,
    series_id: int | None = None,
    instance_id: int | None = None,
    detail: str = "",
) -> None:
    """Write one access event for ``link`` (actor is the link's public id, never its token)."""
    record_access(
        session,
        link.patient_id,
        actor_kind,
        link.public_id if actor_kind == "share" else actor_ref or ("cli" if actor_kind == "operator" else ""),
        action,
        study_id=study_id if study_id is not None else link.study_id,
        series_id=series_id,
        instance_id=instance_id,
        share_link_id=link.id,
        detail=detail,
        at=at,
    )


def create_share(
    session: Session,
    *,
    patient: Patient,
    study: Study,
    hours: float | None = None,
    series: Sequence[Series] = (),
    include_priors: bool = False,
    recipient_label: str = "",
    download: str = "none",
    access_code: bool | str = False,
    max_views: int | None = None,
    can_annotate: bool = False,
    now: datetime | None = None,
    actor_kind: str = "chat",
    actor_ref: str = "",
) -> CreatedShare:
    """Make a link to ``study`` (or the chosen ``series`` of it) for ``patient``.

    ``access_code`` is ``True`` for a random six-digit code, a string for the patient's own code, or
    ``False`` for none. The returned token and code are the only copies: hand them to the patient.
    """
    now = now or utcnow()
    if study.patient_id != patient.id:
        raise ShareError("That study is not in this patient's records.")
    for one in series:
        if one.study_id != study.id:
            raise ShareError("A chosen series is not part of that study.")
    if download not in DOWNLOAD_CHOICES:
        raise ShareError("Download must be 'original', 'deidentified' or 'none'.")
    if max_views is not None and max_views < 1:
        raise ShareError("A view limit must be at least 1.")
    lifetime = lifetime_from_hours(hours)
    code: str | None = None
    if access_code is True:
        code = new_access_code()
    elif isinstance(access_code, str) and access_code:
        code = validate_access_code(access_code)
    token = new_token()
    link = ShareLink(
        patient_id=patient.id,
        study_id=study.id,
        token_hash=hash_token(token),
        series_scope=json.dumps(sorted(s.public_id for s in series)) if series else "",
        include_priors=include_priors,
        recipient_label=recipient_label.strip()[:128],
        download=download,
        access_code_hash=hash_access_code(code) if code else "",
        max_views=max_views,
        created_at=now,
        expires_at=now + lifetime,
        can_annotate=can_annotate,
    )
    session.add(link)
    session.flush()
    record_event(session, link, "share_create", at=now, actor_kind=actor_kind, actor_ref=actor_ref)
    return CreatedShare(link=link, token=token, access_code=code)


def create_annotation_link(
    session: Session,
    *,
    patient: Patient,
    study: Study,
    hours: float | None = None,
    include_priors: bool = True,
    now: datetime | None = None,
    actor_kind: str = "chat",
    actor_ref: str = "",
) -> CreatedShare:
    """A link for the patient themself, to draw arrows, circles and text on ``study`` in the viewer.

    It can write marks (``can_annotate``; see :mod:`share.marks`), shows the earlier studies of the
    same body part too, offers no download and is labelled as the patient's own. Send it only to the patient.
    """
    return create_share(
        session, patient=patient, study=study, hours=hours, include_priors=include_priors,
        recipient_label="you (to mark up)", download="none", can_annotate=True, now=now,
        actor_kind=actor_kind, actor_ref=actor_ref,
    )


def find_link(session: Session, token: str) -> ShareLink | None:
    """The link whose token is ``token``, or ``None``. The work done is the same either way."""
    wanted = hash_token(token)
    link = session.scalars(select(ShareLink).where(ShareLink.token_hash == wanted)).first()
    stored = link.token_hash if link is not None else "0" * 64
    if not hmac.compare_digest(stored, wanted) or link is None:
        return None
    return link


_LINK_BY_HASH = select(ShareLink.__table__).where(ShareLink.__table__.c.token_hash == bindparam("token_hash"))


def read_link(connection: Connection, token: str) -> ShareLink | None:
    """Like :func:`find_link`, for read-only hot paths such as the viewer's image requests: one Core
    query (about six times cheaper than the ORM's) whose row becomes a *detached* ``ShareLink``.
    Changing it changes nothing in the database. The work done is the same whether or not it exists."""
    wanted = hash_token(token)
    row = connection.execute(_LINK_BY_HASH, {"token_hash": wanted}).first()
    stored = row.token_hash if row is not None else "0" * 64
    if not hmac.compare_digest(stored, wanted) or row is None:
        return None
    return ShareLink(**row._mapping)


def link_state(link: ShareLink | None, now: datetime, *, opening: bool = False) -> LinkState:
    """What ``link`` allows at ``now``. ``opening`` means a new viewing session would start."""
    if link is None:
        return LinkState.UNKNOWN
    if link.revoked_at is not None and link.revoked_at <= now:
        return LinkState.REVOKED
    if now >= link.expires_at:
        return LinkState.EXPIRED
    if link.locked_at is not None:
        return LinkState.LOCKED
    if opening and link.max_views is not None and link.view_count >= link.max_views:
        return LinkState.USED_UP
    return LinkState.OK


class CodeCheck(enum.Enum):
    """What a presented access code did."""

    OK = "ok"
    WRONG = "wrong"
    LOCKED_NOW = "locked_now"  # this wrong code was the one that locked the link: tell the patient
    LOCKED = "locked"  # already locked before


def check_access_code(session: Session, link: ShareLink, code: str, now: datetime) -> CodeCheck:
    """Check a presented access code; the fifth wrong one locks the link.

    Wrong tries are counted with one atomic UPDATE, so tries racing in parallel (or on several workers)
    still lock the link at the fifth, and exactly one of them reports :attr:`CodeCheck.LOCKED_NOW`.
    """
    if not link.access_code_hash:
        return CodeCheck.OK
    if link.locked_at is not None:
        return CodeCheck.LOCKED
    if access_code_matches(code.strip(), link.access_code_hash):
        return CodeCheck.OK
    session.execute(
        update(ShareLink).where(ShareLink.id == link.id)
        .values(failed_code_attempts=ShareLink.failed_code_attempts + 1)
        .execution_options(synchronize_session=False)
    )
    locked_now = getattr(session.execute(
        update(ShareLink)
        .where(ShareLink.id == link.id, ShareLink.locked_at.is_(None),
               ShareLink.failed_code_attempts >= MAX_CODE_ATTEMPTS)
        .values(locked_at=now)
        .execution_options(synchronize_session=False)
    ), "rowcount", 0) == 1
    session.refresh(link)
    record_event(session, link, "share_open", at=now,
                 detail=f"wrong access code, attempt {link.failed_code_attempts}")
    if locked_now:
        record_event(session, link, "share_open", at=now, detail="locked after too many wrong access codes")
        return CodeCheck.LOCKED_NOW
    return CodeCheck.LOCKED if link.locked_at is not None else CodeCheck.WRONG


def count_open(session: Session, link: ShareLink, now: datetime) -> tuple[int, bool] | None:
    """Count a new viewing session: (its number, whether it was the link's first open), or ``None``
    when the view limit is used up. One atomic UPDATE, so parallel opens cannot exceed the limit."""
    counted = session.execute(
        update(ShareLink)
        .where(ShareLink.id == link.id,
               or_(ShareLink.max_views.is_(None), ShareLink.view_count < ShareLink.max_views))
        .values(view_count=ShareLink.view_count + 1)
        .execution_options(synchronize_session=False)
    )
    if getattr(counted, "rowcount", 0) != 1:
        return None
    first = getattr(session.execute(
        update(ShareLink)
        .where(ShareLink.id == link.id, ShareLink.first_opened_at.is_(None))
        .values(first_opened_at=now)
        .execution_options(synchronize_session=False)
    ), "rowcount", 0) == 1
    session.refresh(link)
    record_event(session, link, "share_open", at=now, detail=f"view {link.view_count}")
    return link.view_count, first


def revoke_share(session: Session, public_id: str, *, patient_id: int | None = None,
                 now: datetime | None = None, actor_kind: str = "chat", actor_ref: str = "") -> ShareLink:
    """Revoke the link ``public_id`` (of ``patient_id`` when given); takes effect on the next request."""
    now = now or utcnow()
    query = select(ShareLink).where(ShareLink.public_id == public_id)
    if patient_id is not None:
        query = query.where(ShareLink.patient_id == patient_id)
    link = session.scalars(query).first()
    if link is None:
        raise ShareError("There is no share link with that id.")
    if link.revoked_at is None:
        link.revoked_at = now
        record_event(session, link, "share_revoke", at=now, actor_kind=actor_kind, actor_ref=actor_ref)
    return link


def list_shares(session: Session, patient_id: int, *, now: datetime | None = None,
                active_only: bool = False) -> list[ShareLink]:
    """The patient's links, newest first; ``active_only`` leaves out expired, revoked and locked ones."""
    now = now or utcnow()
    links = list(
        session.scalars(
            select(ShareLink).where(ShareLink.patient_id == patient_id).order_by(ShareLink.created_at.desc())
        )
    )
    if active_only:
        links = [link for link in links if link_state(link, now) is LinkState.OK]
    return links


# Words around a person's name that do not tell two people apart ("Dr. Lee" and "doctor lee" are one).
_NAME_NOISE = frozenset({"dr", "doctor", "doc", "prof", "professor", "mr", "mrs", "ms", "my", "the", "to", "for",
                         "doktor", "arzt", "arztin", "frau", "herr", "mein", "meine", "meinem", "meinen", "meiner",
                         "dra", "doctora", "el", "la", "mi", "al", "доктор", "доктору", "доктора", "врач",
                         "мой", "моей", "моему", "моя"})


# Russian names and nouns change their ending with the case ("доктору Иванову", "для доктора Иванова").
_RUSSIAN_ENDINGS = ("ого", "ому", "ым", "ом", "ой", "ей", "ую", "ая", "а", "у", "е", "ы", "и", "ю", "я")


def _name_stem(word: str) -> str:
    if word.isalpha() and "а" <= word[0] <= "я":
        for ending in _RUSSIAN_ENDINGS:
            if word.endswith(ending) and len(word) - len(ending) >= 3:
                return word[: -len(ending)]
    return word


def _name_words(text: str) -> set[str]:
    folded = unicodedata.normalize("NFKD", text.casefold())
    # NFKD splits "й" into "и" and a combining mark: dropping marks is what Latin names need, and
    # harmless here since both sides are folded alike.
    plain = "".join(c if c.isalnum() else " " for c in folded if not unicodedata.combining(c))
    return {_name_stem(w) for w in plain.split() if w not in _NAME_NOISE}


def recipient_matches(asked: str, label: str) -> bool:
    """Whether the person a patient names ("dr smith", "my physio") is the link's recipient label
    ("Dr. Smith", "my physio"): every word of the one is in the other, titles and "my" aside."""
    wanted, have = _name_words(asked), _name_words(label)
    return bool(wanted and have) and (wanted <= have or have <= wanted)


def find_shares(session: Session, patient_id: int, *, recipient: str = "", modality: str = "", body_part: str = "",
                now: datetime | None = None) -> list[ShareLink]:
    """The patient's active links for ``recipient`` and/or a study of ``modality`` / ``body_part`` (as the
    chat understood them: "stop the link for Dr Lee", "stop sharing my knee MRI"), newest first."""
    from store.queries import find_studies

    links = list_shares(session, patient_id, now=now, active_only=True)
    if recipient:
        links = [link for link in links if recipient_matches(recipient, link.recipient_label)]
    if modality or body_part:
        # The same matching as "show my knee MRI" (X-ray families, body-part synonyms).
        studies = find_studies(session, patient_id, modality=modality or None, body_part=body_part or None)
        wanted = {study.id for study in studies}
        links = [link for link in links if link.study_id in wanted]
    return links


# ---------------------------------------------------------------- scope


@dataclass
class Scope:
    """What one link reaches: its studies (main first, then priors newest first) and their series."""

    studies: list[Study]
    series: dict[int, list[Series]] = field(default_factory=dict)

    def study_by_uid(self, study_uid: str) -> Study | None:
        """The study with ``study_uid`` if the link reaches it."""
        return next((s for s in self.studies if s.study_uid == study_uid), None)

    def series_by_uid(self, study: Study, series_uid: str) -> Series | None:
        """The series with ``series_uid`` of ``study`` if the link reaches it."""
        return next((s for s in self.series.get(study.id, []) if s.series_uid == series_uid), None)


def _chosen_series(link: ShareLink) -> set[str]:
    if not link.series_scope:
        return set()
    try:
        return {str(x) for x in json.loads(link.series_scope)}
    except (ValueError, TypeError):
        return {"<unreadable scope>"}  # reaches nothing rather than everything


def series_sort_key(series: Series) -> tuple[int, str]:
    """Series in Series Number order, unnumbered last."""
    return (series.series_number if series.series_number is not None else 1 << 30, series.series_uid)


def link_scope(session: Session, link: ShareLink) -> Scope:
    """The studies and series ``link`` reaches, all of them the link's patient's."""
    main = session.get(Study, link.study_id)
    if main is None or main.patient_id != link.patient_id:
        return Scope(studies=[])
    studies = [main]
    if link.include_priors and main.body_part:
        query = select(Study).where(
            Study.patient_id == link.patient_id, Study.body_part == main.body_part, Study.id != main.id
        )
        if main.study_date is not None:
            query = query.where(Study.study_date < main.study_date)
        priors = [s for s in session.scalars(query) if s.study_date is not None or main.study_date is None]
        priors.sort(key=lambda s: (s.study_date is None, s.study_date), reverse=True)
        studies.extend(priors)
    chosen = _chosen_series(link)
    scope = Scope(studies=studies)
    for study in studies:
        rows = list(session.scalars(select(Series).where(Series.study_id == study.id)))
        if study.id == main.id and chosen:
            rows = [s for s in rows if s.public_id in chosen]
        scope.series[study.id] = sorted(rows, key=series_sort_key)
    return scope


def instances_in_order(session: Session, series: Series) -> list[Instance]:
    """A series' instances in slice order (:func:`store.queries.slice_order`); the caller has scoped the series."""
    return slice_order(list(session.scalars(select(Instance).where(Instance.series_id == series.id))))


def find_instance(session: Session, scope: Scope, study_uid: str, series_uid: str,
                  sop_uid: str) -> tuple[Study, Series, Instance] | None:
    """The instance named by the three UIDs when the link reaches all of them, else ``None``."""
    study = scope.study_by_uid(study_uid)
    if study is None:
        return None
    series = scope.series_by_uid(study, series_uid)
    if series is None:
        return None
    instance = session.scalars(
        select(Instance).where(Instance.series_id == series.id, Instance.sop_instance_uid == sop_uid)
    ).first()
    if instance is None:
        return None
    return study, series, instance
