"""The webhook inbox without Telegram: two workers' inboxes on one database (SQLite and PostgreSQL), updates of
several chats handed alternately to both, processed in order per chat and once each; a broken update does not
block its chat; a repeat is dropped; a chat whose worker died moves on when the lease expires."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from telegram import Update

from bot.workers import ChatOrderedInbox
from store.models import utcnow
from store.models_state import ChatLease, InboundUpdate


class FakeApplication:
    """Records what it processed; ``poison`` update ids raise like a bug in a handler would."""

    bot = None

    def __init__(self, name: str, log: list[tuple[str, int, int]], poison: set[int]) -> None:
        self.name = name
        self.log = log
        self.poison = poison
        self.persisted = 0

    async def process_update(self, update: Update) -> None:
        await asyncio.sleep(random.uniform(0, 0.01))  # handlers take a while; other chats go on meanwhile
        chat = update.effective_chat
        assert chat is not None
        self.log.append((self.name, chat.id, update.update_id))
        if update.update_id in self.poison:
            raise RuntimeError("a bug")

    async def update_persistence(self) -> None:
        self.persisted += 1


def message(update_id: int, chat_id: int) -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 0, "text": "hi",
        "chat": {"id": chat_id, "type": "private"}, "from": {"id": chat_id, "is_bot": False, "first_name": "A"}}}


async def test_updates_alternating_between_two_inboxes_are_processed_in_order_once(
        sessions: sessionmaker[Session]) -> None:
    log: list[tuple[str, int, int]] = []
    poison = {1007}
    apps = [FakeApplication("a", log, poison), FakeApplication("b", log, poison)]
    inboxes = [ChatOrderedInbox(app, sessions, worker=app.name, lease_seconds=5, sweep_interval=0.2)  # type: ignore[arg-type]
               for app in apps]
    for inbox in inboxes:
        await inbox.start()
    chats = [11, 22, 33]
    sent: dict[int, list[int]] = {c: [] for c in chats}
    update_id = 1000
    accepted = []
    for _round in range(6):
        for chat in chats:
            update_id += 1
            sent[chat].append(update_id)
            data = message(update_id, chat)
            inbox = inboxes[update_id % 2]
            accepted.append(await inbox.accept(Update.de_json(data, None), data))
    # Telegram retries one, and a second worker gets the same update: both dropped.
    repeat = message(1004, 11)
    assert not await inboxes[0].accept(Update.de_json(repeat, None), repeat)
    assert not await inboxes[1].accept(Update.de_json(repeat, None), repeat)
    assert all(accepted)
    deadline = asyncio.get_running_loop().time() + 20
    while len(log) < update_id - 1000 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    for inbox in inboxes:
        await inbox.stop()
    for chat in chats:  # in order, once each, the broken one too (whichever worker held the chat)
        assert [u for _, c, u in log if c == chat] == sent[chat], log
    assert len(log) == update_id - 1000, log
    with sessions() as session:
        rows = session.execute(select(InboundUpdate.done_at, InboundUpdate.payload)).all()
        assert all(done is not None and payload == "" for done, payload in rows)  # no message text kept
        assert session.scalars(select(ChatLease)).all() == []  # every lease given back


async def test_a_chat_held_by_a_dead_worker_moves_on_when_its_lease_expires(sessions: sessionmaker[Session]) -> None:
    log: list[tuple[str, int, int]] = []
    with sessions() as session, session.begin():  # a worker took chat 44 and died
        session.add(ChatLease(chat_id=44, holder="dead", expires_at=utcnow() + timedelta(seconds=1.5)))
    app = FakeApplication("alive", log, set())
    inbox = ChatOrderedInbox(app, sessions, worker="alive", lease_seconds=5, sweep_interval=0.2)  # type: ignore[arg-type]
    await inbox.start()
    data = message(5001, 44)
    assert await inbox.accept(Update.de_json(data, None), data)
    await asyncio.sleep(0.5)
    assert log == []  # the dead worker's lease still holds
    deadline = asyncio.get_running_loop().time() + 10
    while not log and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    await inbox.stop()
    assert log == [("alive", 44, 5001)]
