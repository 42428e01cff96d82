"""python-telegram-bot persistence in Lightbox's database, so any worker can carry on any conversation.

:class:`DatabasePersistence` keeps user data, chat data, callback data and conversation states as JSON
rows of :class:`store.models_state.BotState` (never pickles: nothing from the database is ever executed).
Bot data is not stored: it holds this process's :class:`handlers.services.Services`, which is wiring, not
state.

Several workers: PTB calls ``refresh_chat_data``/``refresh_user_data`` before every update, and these load
the row afresh, so a chat's data is whatever the worker that handled its previous update wrote. Nothing
is loaded at start-up (``get_chat_data`` returns an empty mapping): a worker with 100,000 patients starts
at once and reads a chat when it hears from it. Writes happen when PTB calls ``update_*`` (the webhook
dispatcher in :mod:`bot.workers` calls ``application.update_persistence()`` right after each update; with
long polling PTB does so every ``update_interval`` seconds, and data this process changed but has not
written yet is kept over the row, so a refresh never loses it).
Values must be JSON: dicts with string keys, lists, strings, numbers, booleans, ``None``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from copy import deepcopy
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from telegram.ext import BasePersistence, PersistenceInput
from telegram.ext._utils.types import CDCData, ConversationDict, ConversationKey

from store.models_state import BotState

USER, CHAT, CALLBACK, CONVERSATION = "user", "chat", "callback", "conversation"


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _digest(raw: str) -> bytes:
    return hashlib.sha256(raw.encode()).digest()


class DatabasePersistence(BasePersistence[dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """PTB persistence backed by SQLAlchemy sessions (SQLite or PostgreSQL), JSON only."""

    def __init__(self, sessions: sessionmaker[Session], *, update_interval: float = 5.0) -> None:
        super().__init__(store_data=PersistenceInput(bot_data=False, chat_data=True, user_data=True,
                                                     callback_data=True), update_interval=update_interval)
        self.sessions = sessions
        # A digest of what this process last read or wrote per row (32 bytes a chat, whatever the data's
        # size), so an unchanged dict is not written again and unsaved local changes are recognised.
        self._seen: dict[tuple[str, str], bytes] = {}

    # ---- rows
    def _read(self, kind: str, key: str) -> Any | None:
        with self.sessions() as session:
            raw = session.scalars(select(BotState.data).where(BotState.kind == kind, BotState.key == key)).first()
        if raw is None:
            self._seen.pop((kind, key), None)
            return None
        self._seen[(kind, key)] = _digest(raw)
        return json.loads(raw)

    def _write(self, kind: str, key: str, value: object) -> None:
        raw = _dump(value)
        if self._seen.get((kind, key)) == _digest(raw):
            return
        for _attempt in range(3):
            try:
                with self.sessions() as session, session.begin():
                    row = session.get(BotState, (kind, key))
                    if row is None:
                        session.add(BotState(kind=kind, key=key, data=raw))
                    else:
                        row.data = raw
                break
            except IntegrityError:
                continue  # another worker inserted the same row first: update it instead
        self._seen[(kind, key)] = _digest(raw)

    def _delete(self, kind: str, key: str) -> None:
        with self.sessions() as session, session.begin():
            session.execute(delete(BotState).where(BotState.kind == kind, BotState.key == key))
        self._seen.pop((kind, key), None)

    # ---- loading at start-up: nothing (rows are read per update by refresh_*)
    async def get_user_data(self) -> dict[int, dict[Any, Any]]:
        return {}

    async def get_chat_data(self) -> dict[int, dict[Any, Any]]:
        return {}

    async def get_bot_data(self) -> dict[Any, Any]:
        return {}

    async def get_callback_data(self) -> CDCData | None:
        value = await asyncio.to_thread(self._read, CALLBACK, "")
        if value is None:
            return None
        queries, mapping = value
        return [(str(q[0]), float(q[1]), dict(q[2])) for q in queries], dict(mapping)

    async def get_conversations(self, name: str) -> ConversationDict:
        value = await asyncio.to_thread(self._read, CONVERSATION, name)
        if value is None:
            return {}
        return {tuple(key): state for key, state in value}

    # ---- refreshing before each update: the row as the last worker left it
    @staticmethod
    def _replace(target: dict[Any, Any], value: Mapping[Any, Any] | None) -> None:
        target.clear()
        if value:
            target.update(value)

    def _unsaved(self, kind: str, key: str, data: dict[Any, Any]) -> bool:
        """Whether ``data`` holds changes this process has not written yet (polling mode writes every few
        seconds): those win over the row, which is then older than what this process knows."""
        seen = self._seen.get((kind, key))
        if seen is None:
            return bool(data)
        return _digest(_dump(data)) != seen

    async def _refresh(self, kind: str, key: str, data: dict[Any, Any]) -> None:
        if self._unsaved(kind, key, data):
            return
        self._replace(data, await asyncio.to_thread(self._read, kind, key))

    async def refresh_user_data(self, user_id: int, user_data: dict[Any, Any]) -> None:
        await self._refresh(USER, str(user_id), user_data)

    async def refresh_chat_data(self, chat_id: int, chat_data: dict[Any, Any]) -> None:
        await self._refresh(CHAT, str(chat_id), chat_data)

    async def refresh_bot_data(self, bot_data: dict[Any, Any]) -> None:
        return None  # bot data is process wiring, never persisted

    # ---- writing
    async def update_user_data(self, user_id: int, data: dict[Any, Any]) -> None:
        await asyncio.to_thread(self._write, USER, str(user_id), deepcopy(data))

    async def update_chat_data(self, chat_id: int, data: dict[Any, Any]) -> None:
        await asyncio.to_thread(self._write, CHAT, str(chat_id), deepcopy(data))

    async def update_bot_data(self, data: dict[Any, Any]) -> None:
        return None

    async def update_callback_data(self, data: CDCData) -> None:
        queries, mapping = data
        await asyncio.to_thread(self._write, CALLBACK, "", [[list(q) for q in queries], dict(mapping)])

    async def update_conversation(self, name: str, key: ConversationKey, new_state: object | None) -> None:
        def change() -> None:
            with self.sessions() as session, session.begin():
                row = session.get(BotState, (CONVERSATION, name), with_for_update=True)
                pairs = json.loads(row.data) if row is not None else []
                states = {tuple(k): s for k, s in pairs}
                if new_state is None:
                    states.pop(tuple(key), None)
                else:
                    states[tuple(key)] = new_state
                raw = _dump([[list(k), s] for k, s in states.items()])
                if row is None:
                    session.add(BotState(kind=CONVERSATION, key=name, data=raw))
                else:
                    row.data = raw

        await asyncio.to_thread(change)

    async def drop_chat_data(self, chat_id: int) -> None:
        await asyncio.to_thread(self._delete, CHAT, str(chat_id))

    async def drop_user_data(self, user_id: int) -> None:
        await asyncio.to_thread(self._delete, USER, str(user_id))

    async def flush(self) -> None:
        return None  # every update_* call has already committed
