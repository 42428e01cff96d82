"""PerChatRateLimiter: a burst to one private chat earns no 429 when the sandbox enforces Telegram's pace."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    AIORateLimiter,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.pacing import PerChatRateLimiter, private_chat_id
from bot.sandbox import BotApiSandbox, TelegramDriver
from tests.bot.sandbox.conftest import build_app, polling

BURST = 10
NEXT = InlineKeyboardMarkup([[InlineKeyboardButton("Next", callback_data="next")]])


@pytest.fixture
async def strict_sandbox() -> AsyncIterator[BotApiSandbox]:
    async with BotApiSandbox() as sandbox:
        sandbox.pace.per_chat = 1.0  # Telegram: about one message per second in a private chat
        yield sandbox
        assert sandbox.spec_violations == []


async def burst(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None
    await asyncio.gather(*(message.reply_text(f"slice {i}") for i in range(BURST)))


async def card(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text("slice 0", reply_markup=NEXT)


async def next_slice(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.message is not None
    await query.answer()
    # Each tap carries the card as it was when tapped, so the slice number is kept by the bot.
    number = context.chat_data["slice"] = context.chat_data.get("slice", 0) + 1  # type: ignore[index,union-attr]
    await query.edit_message_text(f"slice {number}", reply_markup=NEXT)


async def test_burst_of_replies_is_paced_without_429(strict_sandbox: BotApiSandbox) -> None:
    driver = TelegramDriver(strict_sandbox, timeout=30)
    app = build_app(strict_sandbox, [CommandHandler("burst", burst)], rate_limiter=PerChatRateLimiter(1.0))
    async with polling(app):
        alex = driver.user("Alex")
        await alex.command("burst")
        replies = await alex.wait_for_replies(BURST, timeout=30)
    assert sorted(m.text or "" for m in replies) == sorted(f"slice {i}" for i in range(BURST))
    sends = strict_sandbox.calls("sendMessage")
    assert [c.status for c in sends] == [200] * BURST  # not a single 429
    assert strict_sandbox.pace.refused == 0
    gaps = [b.started - a.started for a, b in itertools.pairwise(sends)]
    assert min(gaps) >= 1.0 - strict_sandbox.pace.slack


async def test_without_the_pace_the_same_burst_earns_429(strict_sandbox: BotApiSandbox) -> None:
    # The control: PTB's own limiter does not pace private chats, so the sandbox refuses part of the burst.
    driver = TelegramDriver(strict_sandbox, timeout=5)
    app = build_app(strict_sandbox, [CommandHandler("burst", burst)], rate_limiter=AIORateLimiter(max_retries=0))
    async with polling(app):
        alex = driver.user("Alex")
        await alex.command("burst")
        await alex.wait_until(lambda: len(strict_sandbox.calls("sendMessage")) >= BURST)
    assert strict_sandbox.calls("sendMessage", status=429)
    assert strict_sandbox.pace.refused > 0
    assert len(alex.bot_messages) < BURST


async def test_burst_of_slice_taps_edits_without_429(strict_sandbox: BotApiSandbox) -> None:
    driver = TelegramDriver(strict_sandbox, timeout=30)
    app = build_app(strict_sandbox, [CommandHandler("card", card), CallbackQueryHandler(next_slice)],
                    rate_limiter=PerChatRateLimiter(1.0))
    taps = 5
    async with polling(app):
        alex = driver.user("Alex")
        await alex.command("card")
        shown = await alex.wait_for_reply()
        presses = [await alex.tap(shown, "Next") for _ in range(taps)]
        await alex.wait_until(lambda: shown.version >= taps, timeout=30)
        for press in presses:
            await alex.wait_for_answer(press)
    assert shown.text == f"slice {taps}"
    assert strict_sandbox.calls(status=429) == []
    assert [c.status for c in strict_sandbox.calls("editMessageText")] == [200] * taps


async def reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None and message.text is not None
    if message.text == "edit":
        sent = await message.reply_text("draft")
        await sent.edit_text("final")
    else:
        await message.reply_text(f"re: {message.text}")


@pytest.fixture
async def sandbox() -> AsyncIterator[BotApiSandbox]:
    async with BotApiSandbox() as running:
        yield running
        assert running.spec_violations == []


@pytest.fixture
async def resilient(sandbox: BotApiSandbox) -> AsyncIterator[TelegramDriver]:
    limiter = PerChatRateLimiter(0.05, network_retry_delay=0.05)
    app = build_app(sandbox, [MessageHandler(filters.TEXT, reply)], rate_limiter=limiter)
    async with polling(app):
        yield TelegramDriver(sandbox, timeout=10)


async def test_5xx_and_dropped_connections_lose_no_reply(sandbox: BotApiSandbox,
                                                          resilient: TelegramDriver) -> None:
    alex = resilient.user("Alex")
    sandbox.trouble.server_error("sendMessage", status=502)
    await alex.say("one")
    assert (await alex.wait_for_reply()).text == "re: one"
    sandbox.trouble.server_error("sendMessage", status=503, times=2)
    await alex.say("two")
    assert (await alex.wait_for_reply()).text == "re: two"
    sandbox.trouble.drop("sendMessage")
    await alex.say("three")
    assert (await alex.wait_for_reply()).text == "re: three"
    assert [m.text for m in alex.bot_messages] == ["re: one", "re: two", "re: three"]  # each exactly once
    assert len(sandbox.calls("sendMessage", status=502)) == 1 and len(sandbox.calls("sendMessage", status=503)) == 2


async def test_a_drop_after_the_work_repeats_rather_than_loses(sandbox: BotApiSandbox,
                                                                resilient: TelegramDriver) -> None:
    alex = resilient.user("Alex")
    sandbox.trouble.drop("sendMessage", after_processing=True)
    await alex.say("once")
    await alex.wait_until(lambda: len(alex.bot_messages) == 2)
    assert [m.text for m in alex.bot_messages] == ["re: once", "re: once"]  # the documented trade-off

    # An edit whose answer was lost is retried; Telegram says "not modified", which means it was done.
    sandbox.trouble.drop("editMessageText", after_processing=True)
    await alex.say("edit")
    draft = await alex.wait_for_reply(predicate=lambda m: m.text in {"draft", "final"})
    await alex.wait_until(lambda: draft.text == "final")
    await alex.wait_until(lambda: len(sandbox.calls("editMessageText")) == 2)
    assert [c.status for c in sandbox.calls("editMessageText")] == [0, 400]  # dropped, then "not modified"
    assert draft.version == 1
    assert sandbox.calls("sendMessage", status=200)


def test_slots_are_one_interval_apart_per_chat() -> None:
    limiter = PerChatRateLimiter(1.0)
    assert [limiter.reserve(7, now=100.0) for _ in range(3)] == [100.0, 101.0, 102.0]
    assert limiter.reserve(8, now=100.5) == 100.5  # another chat is not held up
    assert limiter.reserve(7, now=110.0) == 110.0  # an idle chat starts afresh


@pytest.mark.parametrize(("data", "expected"), [
    ({"chat_id": 42}, 42), ({"chat_id": "42"}, 42), ({"chat_id": -100123}, None), ({"chat_id": "@news"}, None),
    ({}, None), ({"chat_id": True}, None),
])
def test_private_chat_id(data: dict[str, object], expected: int | None) -> None:
    assert private_chat_id(data) == expected
