"""State that must outlive a process: conversation data, the webhook inbox, per-chat leases and jobs.

Several identical workers share one database; nothing the conversation needs lives only in one
worker's memory. Everything here is JSON text (never pickles) or plain columns.

- :class:`BotState`: python-telegram-bot persistence (user, chat, bot and callback data, conversation states).
- :class:`InboundUpdate`: every webhook update once (``update_id`` is the key, so a repeat is dropped).
- :class:`ChatLease`: which worker is working through a chat's updates now, until when.
- :class:`Job`: long work (a big import, a cine) any worker can claim, with heartbeat and checkpoint.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.models import Base, UTCDateTime, utcnow


class BotState(Base):
    """One persisted PTB object as JSON: kind user|chat|bot|callback|conversation, key its id."""

    __tablename__ = "bot_state"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    data: Mapped[str] = mapped_column(Text, default="{}")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class InboundUpdate(Base):
    """A Telegram update accepted by some worker's webhook; processed once, in ``update_id`` order per chat."""

    __tablename__ = "inbound_update"
    __table_args__ = (Index("ix_inbound_update_chat_pending", "chat_id", "done_at", "update_id"),)

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # Updates without a chat get chat_id 0 and are ordered among themselves.
    chat_id: Mapped[int] = mapped_column(BigInteger, default=0)
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Opaque worker id that processed it.
    worker: Mapped[str] = mapped_column(String(64), default="")


class ChatLease(Base):
    """The one worker allowed to process a chat's updates until ``expires_at`` (renewed while it works)."""

    __tablename__ = "chat_lease"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    holder: Mapped[str] = mapped_column(String(64), default="")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    """Long work recorded in the database: queued, claimed by a worker (running), done or failed.

    A running job whose ``heartbeat_at`` is older than the lease is taken over by another worker, which
    resumes from ``checkpoint`` (JSON the job's runner writes as it goes).
    """

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_state_heartbeat", "state", "heartbeat_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    # queued | running | done | failed
    state: Mapped[str] = mapped_column(String(16), default="queued")
    chat_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    payload: Mapped[str] = mapped_column(Text, default="{}")
    checkpoint: Mapped[str] = mapped_column(Text, default="{}")
    result: Mapped[str] = mapped_column(Text, default="{}")
    error: Mapped[str] = mapped_column(String(256), default="")
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    # The chat message showing progress (edited as the job goes).
    progress_message_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    owner: Mapped[str] = mapped_column(String(64), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
