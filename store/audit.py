"""The access log: every view, render, share, download and deletion of a patient's data.

Each :class:`store.models.AccessEvent` says who (a chat, a share link, an operator, the system), what,
and when. Patients read their own log ("who looked at my scans?") through :func:`recent_activity`.
The detail is short and free of health information: opaque ids and counts only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from store.models import AccessEvent, utcnow

ACTOR_KINDS = frozenset({"chat", "share", "operator", "system"})
ACTIONS = frozenset(
    {
        "view",
        "render",
        "import",
        "share_create",
        "share_open",
        "share_view",
        "download",
        "share_revoke",
        "delete",
        "export",
        "link",
        "unlink",
        "sync",
        "annotate",
    }
)
DETAIL_MAX = 256
ACTOR_REF_MAX = 64


class AuditError(ValueError):
    """An access event that cannot be recorded as given (an unknown actor kind or action)."""


def access_row(
    patient_id: int,
    actor_kind: str,
    actor_ref: str,
    action: str,
    *,
    study_id: int | None = None,
    series_id: int | None = None,
    instance_id: int | None = None,
    share_link_id: int | None = None,
    detail: str = "",
    at: datetime | None = None,
) -> dict[str, Any]:
    """The checked column values of one access event (raises :class:`AuditError` for an unknown kind)."""
    if actor_kind not in ACTOR_KINDS:
        raise AuditError(f"unknown actor kind {actor_kind!r}; expected one of {sorted(ACTOR_KINDS)}")
    if action not in ACTIONS:
        raise AuditError(f"unknown action {action!r}; expected one of {sorted(ACTIONS)}")
    return {
        "patient_id": patient_id,
        "at": at or utcnow(),
        "actor_kind": actor_kind,
        "actor_ref": actor_ref[:ACTOR_REF_MAX],
        "action": action,
        "study_id": study_id,
        "series_id": series_id,
        "instance_id": instance_id,
        "share_link_id": share_link_id,
        "detail": detail[:DETAIL_MAX],
    }


def record_access(
    session: Session,
    patient_id: int,
    actor_kind: str,
    actor_ref: str,
    action: str,
    *,
    study_id: int | None = None,
    series_id: int | None = None,
    instance_id: int | None = None,
    share_link_id: int | None = None,
    detail: str = "",
    at: datetime | None = None,
) -> AccessEvent:
    """Add one access event for ``patient_id`` to the session (flushed, committed with the caller's work)."""
    event = AccessEvent(**access_row(
        patient_id, actor_kind, actor_ref, action, study_id=study_id, series_id=series_id,
        instance_id=instance_id, share_link_id=share_link_id, detail=detail, at=at,
    ))
    session.add(event)
    session.flush()
    return event


def record_accesses(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert many events made by :func:`access_row` in one statement (committed with the caller's work).
    Much cheaper than :func:`record_access` per event: the share viewer writes hundreds a second."""
    if rows:
        session.execute(insert(AccessEvent), list(rows))
    return len(rows)


def recent_activity(
    session: Session,
    patient_id: int,
    limit: int = 20,
    *,
    actor_kind: str | None = None,
    since: datetime | None = None,
) -> list[AccessEvent]:
    """The patient's newest access events first (at most ``limit``), optionally one actor kind or since a time."""
    stmt = select(AccessEvent).where(AccessEvent.patient_id == patient_id)
    if actor_kind is not None:
        stmt = stmt.where(AccessEvent.actor_kind == actor_kind)
    if since is not None:
        stmt = stmt.where(AccessEvent.at >= since)
    stmt = stmt.order_by(AccessEvent.at.desc(), AccessEvent.id.desc()).limit(max(0, limit))
    return list(session.scalars(stmt))
