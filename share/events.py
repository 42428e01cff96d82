"""Image-view access events, written in batches.

Every image a specialist's viewer shows is an access event, and scrolling a 200-slice series asks for
hundreds of images a minute. Writing each in its own transaction makes SQLite writers queue behind one
another, so image views are buffered here and written together: by the app's background task every
``max_delay`` seconds, by whichever request finds the oldest one overdue, and at shutdown. Opens,
downloads and code attempts are still written in their request's own transaction.

What a crash can lose: at most ``max_delay`` seconds of image-view events (never opens or downloads).
An event whose patient or image was erased while it waited is dropped; a database that is down keeps
the events here for the next try.
Each worker process has its own buffer; they all write to the same database.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from store.audit import access_row, record_accesses
from store.db import transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingView:
    """One image view waiting to be written."""

    patient_id: int
    link_id: int
    link_public_id: str
    at: datetime
    study_id: int
    series_id: int
    instance_id: int
    detail: str
    action: str = "share_view"


class EventBuffer:
    """A thread-safe buffer of :class:`PendingView` written in one transaction per flush."""

    def __init__(self, sessions: sessionmaker[Session], max_delay: float = 0.5, max_items: int = 1000) -> None:
        self.sessions = sessions
        self.max_delay = max_delay
        self.max_items = max_items
        self._items: list[PendingView] = []
        self._oldest = 0.0
        self._lock = threading.Lock()
        self._flushing = threading.Lock()

    def add(self, view: PendingView) -> bool:
        """Buffer one view; returns whether a flush is due (the caller may then :meth:`flush`)."""
        with self._lock:
            if not self._items:
                self._oldest = time.monotonic()
            self._items.append(view)
            return len(self._items) >= self.max_items or time.monotonic() - self._oldest >= self.max_delay

    def flush(self) -> int:
        """Write everything buffered; returns how many events were written. One flush at a time."""
        with self._flushing:
            with self._lock:
                items, self._items = self._items, []
            if not items:
                return 0
            try:
                rows = [access_row(v.patient_id, "share", v.link_public_id, v.action, study_id=v.study_id,
                                   series_id=v.series_id, instance_id=v.instance_id, share_link_id=v.link_id,
                                   detail=v.detail, at=v.at) for v in items]
                try:
                    with transaction(self.sessions) as session:
                        record_accesses(session, rows)
                except IntegrityError:
                    return self._write_one_by_one(rows)
            except Exception:
                with self._lock:  # keep them for the next try rather than lose them
                    self._items[:0] = items
                log.exception("could not write %d image-view events; will retry", len(items))
                return 0
            return len(items)

    def _write_one_by_one(self, rows: list[dict[str, Any]]) -> int:
        """Write what can be written when the batch broke a constraint: an event whose patient, study or
        image was erased while it waited (the patient used /forget) is dropped, never retried for ever."""
        written = 0
        with transaction(self.sessions) as session:
            for row in rows:
                try:
                    with session.begin_nested():
                        written += record_accesses(session, [row])
                except IntegrityError:
                    pass
        if written < len(rows):
            log.info("dropped %d image-view events of erased records", len(rows) - written)
        return written

    def __len__(self) -> int:
        return len(self._items)
