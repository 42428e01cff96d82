"""The test driver's own contract: what it hands out, in which order, and how it reports a silent bot."""

from __future__ import annotations

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup

from bot.sandbox import BotApiSandbox, NoReply, TelegramDriver


async def test_replies_are_handed_out_once_in_order(sandbox: BotApiSandbox, driver: TelegramDriver) -> None:
    alex, sam = driver.user("Alex"), driver.user("Sam")
    async with Bot(sandbox.token, base_url=sandbox.base_url) as bot:
        for text in ("one", "two", "three"):
            await bot.send_message(alex.id, text)
        await bot.send_message(sam.id, "for Sam")
        assert (await alex.wait_for_reply()).text == "one"
        assert (await alex.wait_for_reply(predicate=lambda m: m.text == "three")).text == "three"
        assert (await alex.wait_for_reply()).text == "two"  # skipped by the predicate, still available
        assert [m.text for m in await sam.wait_for_replies(1)] == ["for Sam"]  # chats do not mix
        with pytest.raises(NoReply, match=r"waited 0\.2s for a reply"):
            await alex.wait_for_reply(timeout=0.2)
        first = alex.bot_messages[0]
        assert (await alex.wait_for_reply(after=first)).text == "two"


async def test_taps_need_a_callback_button_on_a_live_message(sandbox: BotApiSandbox,
                                                             driver: TelegramDriver) -> None:
    alex = driver.user("Alex")
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Open", url="https://example.org"),
                                    InlineKeyboardButton("Explain", callback_data="explain:1")]])
    async with Bot(sandbox.token, base_url=sandbox.base_url) as bot:
        sent = await bot.send_message(alex.id, "card", reply_markup=markup)
        card = await alex.wait_for_reply()
        assert card.message_id == sent.message_id
        with pytest.raises(LookupError, match="opens a link"):
            await alex.tap(card, "Open")
        with pytest.raises(LookupError, match="no button"):
            await alex.tap(card, "Share")
        tap = await alex.tap(card, "explain")  # by text, case-insensitive substring
        assert tap.data == "explain:1" and not tap.answered
        with pytest.raises(NoReply, match="an answer to a button tap"):
            await alex.wait_for_answer(tap, timeout=0.2)
        await bot.delete_message(alex.id, sent.message_id)
        assert card.deleted and alex.bot_messages == []
        with pytest.raises(LookupError, match="deleted"):
            await alex.tap(card, "Explain")
