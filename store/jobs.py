"""Long work recorded in the database, claimed by any worker, resumed if its worker dies.

A job is a row of :class:`store.models_state.Job`: ``kind`` says which runner does it, ``payload`` (JSON)
what to do, ``checkpoint`` (JSON) how far it got. A worker claims the oldest claimable job:

- PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` (two workers never pick the same row and never wait);
- SQLite: a conditional ``UPDATE ... WHERE id = ? AND <still claimable>`` (the row count says who won).

Claimable means queued, or running with a heartbeat older than ``lease`` (its worker died or hung). While
it works the owner calls :func:`heartbeat` (refused once another worker has taken the job over, so a worker
that was only slow stops instead of doing the work twice) and :func:`save_progress` with its checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from store.models import utcnow
from store.models_state import Job

DEFAULT_LEASE = timedelta(seconds=30)
MAX_ATTEMPTS = 5


class JobLost(RuntimeError):
    """Another worker took this job over (our heartbeat was too old); stop working on it."""


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker now owns: what to do and where it got to."""

    id: int
    kind: str
    chat_id: int | None
    payload: dict[str, Any]
    checkpoint: dict[str, Any]
    attempts: int
    progress_message_id: int | None


def enqueue(sessions: sessionmaker[Session], kind: str, payload: dict[str, Any], *, chat_id: int | None = None,
            total: int = 0, progress_message_id: int | None = None) -> int:
    """Record a new queued job; returns its id. ``progress_message_id`` is the chat message the job's
    progress should edit (set here, in the same row, so a worker claiming the job at once sees it)."""
    with sessions() as session, session.begin():
        job = Job(kind=kind, payload=json.dumps(payload), chat_id=chat_id, progress_total=total,
                  progress_message_id=progress_message_id)
        session.add(job)
        session.flush()
        return job.id


def _claimable(now: datetime, lease: timedelta) -> Any:
    stale = now - lease
    return or_(Job.state == "queued", and_(Job.state == "running", Job.heartbeat_at < stale))


def claim(sessions: sessionmaker[Session], worker: str, *, kinds: tuple[str, ...] | None = None,
          lease: timedelta = DEFAULT_LEASE) -> ClaimedJob | None:
    """Take the oldest claimable job (of ``kinds``) for ``worker``, or ``None`` when there is none."""
    with sessions() as session, session.begin():
        now = utcnow()
        condition = _claimable(now, lease)
        if kinds is not None:
            condition = and_(condition, Job.kind.in_(kinds))
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            job = session.scalars(select(Job).where(condition).order_by(Job.id).limit(1)
                                  .with_for_update(skip_locked=True)).first()
            if job is None:
                return None
        else:
            job_id = session.scalars(select(Job.id).where(condition).order_by(Job.id).limit(1)).first()
            if job_id is None:
                return None
            won = session.execute(update(Job).where(Job.id == job_id, condition)
                                  .values(owner=worker, heartbeat_at=now, state="running")
                                  .execution_options(synchronize_session=False))
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return None
            job = session.get(Job, job_id, populate_existing=True)
            assert job is not None
        if job.attempts >= MAX_ATTEMPTS:
            job.state, job.error, job.finished_at = "failed", "too many attempts", now
            return None
        job.state, job.owner, job.heartbeat_at = "running", worker, now
        job.attempts += 1
        return ClaimedJob(job.id, job.kind, job.chat_id, json.loads(job.payload), json.loads(job.checkpoint or "{}"),
                          job.attempts, job.progress_message_id)


def _owned(job_id: int, worker: str) -> Any:
    return and_(Job.id == job_id, Job.owner == worker, Job.state == "running")


def heartbeat(sessions: sessionmaker[Session], job_id: int, worker: str) -> None:
    """Say this worker is still on the job; raises :class:`JobLost` if another one has taken it."""
    with sessions() as session, session.begin():
        done = session.execute(update(Job).where(_owned(job_id, worker)).values(heartbeat_at=utcnow())
                               .execution_options(synchronize_session=False))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise JobLost(f"job {job_id} is no longer ours")


def save_progress(sessions: sessionmaker[Session], job_id: int, worker: str, *, done: int, total: int,
                  checkpoint: dict[str, Any]) -> None:
    """Record how far the job got (and renew the heartbeat); raises :class:`JobLost` if it is not ours."""
    with sessions() as session, session.begin():
        saved = session.execute(update(Job).where(_owned(job_id, worker)).values(
            progress_done=done, progress_total=total, checkpoint=json.dumps(checkpoint), heartbeat_at=utcnow())
            .execution_options(synchronize_session=False))
        if saved.rowcount != 1:  # type: ignore[attr-defined]
            raise JobLost(f"job {job_id} is no longer ours")


def set_progress_message(sessions: sessionmaker[Session], job_id: int, message_id: int) -> None:
    """Remember the chat message that shows this job's progress (any later owner edits the same one)."""
    with sessions() as session, session.begin():
        session.execute(update(Job).where(Job.id == job_id).values(progress_message_id=message_id)
                        .execution_options(synchronize_session=False))


def finish(sessions: sessionmaker[Session], job_id: int, worker: str, *, result: dict[str, Any] | None = None,
           error: str = "") -> bool:
    """Mark the job done (or failed, with a short PHI-free ``error``); ``False`` if it was not ours."""
    with sessions() as session, session.begin():
        ended = session.execute(update(Job).where(_owned(job_id, worker)).values(
            state="failed" if error else "done", error=error[:256], result=json.dumps(result or {}),
            finished_at=utcnow(), heartbeat_at=utcnow()).execution_options(synchronize_session=False))
        return ended.rowcount == 1  # type: ignore[attr-defined]


def job_state(sessions: sessionmaker[Session], job_id: int) -> Job | None:
    """The job row as it is now (detached), for status displays and tests."""
    with sessions() as session:
        return session.get(Job, job_id)
