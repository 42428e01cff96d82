"""Trouble on demand: 429s, errors, 5xx, slow answers and dropped connections, and how PTB meets them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from telegram import Bot, Update
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut
from telegram.ext import AIORateLimiter, ContextTypes, MessageHandler, filters

from bot.sandbox import BotApiSandbox, TelegramDriver
from tests.bot.sandbox.conftest import build_app, polling


@pytest.fixture
async def bot(sandbox: BotApiSandbox) -> AsyncIterator[Bot]:
    async with Bot(sandbox.token, base_url=sandbox.base_url, base_file_url=sandbox.base_file_url) as running:
        yield running


async def reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(f"re: {update.effective_message.text}")


async def test_429_is_ridden_out_by_aioratelimiter(sandbox: BotApiSandbox, driver: TelegramDriver) -> None:
    app = build_app(sandbox, [MessageHandler(filters.TEXT, reply)], rate_limiter=AIORateLimiter(max_retries=2))
    sandbox.trouble.rate_limit("sendMessage", retry_after=1)
    async with polling(app):
        alex = driver.user("Alex")
        await alex.say("hello")
        answer = await alex.wait_for_reply()
        await asyncio.sleep(0.3)  # room for a duplicate, if there were one
    assert answer.text == "re: hello"
    assert [m.text for m in alex.bot_messages] == ["re: hello"]  # arrived exactly once
    assert [c.status for c in sandbox.calls("sendMessage")] == [429, 200]
    retry = sandbox.calls("sendMessage")
    assert retry[1].started - retry[0].finished >= 1.0  # PTB waited out retry_after


async def test_429_answer_has_retry_after(bot: Bot, driver: TelegramDriver, sandbox: BotApiSandbox) -> None:
    chat = driver.user("Alex").id
    sandbox.trouble.rate_limit("sendMessage", retry_after=7)
    with pytest.raises(RetryAfter, match="Retry in 7 seconds"):
        await bot.send_message(chat, "x")
    async with httpx.AsyncClient(trust_env=False) as client:
        sandbox.trouble.rate_limit(retry_after=3)
        answer = await client.post(f"{sandbox.base_url}{sandbox.token}/sendMessage",
                                   data={"chat_id": chat, "text": "y"})
    assert answer.status_code == 429
    assert answer.json() == {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3",
                             "parameters": {"retry_after": 3}}


async def test_errors_for_next_n_calls_and_one_chat(bot: Bot, driver: TelegramDriver,
                                                    sandbox: BotApiSandbox) -> None:
    alex, sam = driver.user("Alex").id, driver.user("Sam").id
    sandbox.trouble.error("sendMessage", description="Bad Request: arranged", times=2, chat_id=alex)
    with pytest.raises(BadRequest, match="Arranged"):
        await bot.send_message(alex, "1")
    assert (await bot.send_message(sam, "other chat")).text == "other chat"
    with pytest.raises(BadRequest):
        await bot.send_message(alex, "2")
    assert (await bot.send_message(alex, "3")).text == "3"
    assert [m.text for m in driver.sandbox.world.chat_messages[alex]] == ["3"]


async def test_server_errors_and_dropped_connections(bot: Bot, driver: TelegramDriver,
                                                    sandbox: BotApiSandbox) -> None:
    chat = driver.user("Alex").id
    sandbox.trouble.server_error("sendMessage", status=502)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(chat, "lost to a 502")
    sandbox.trouble.server_error("sendMessage", status=500)
    with pytest.raises(NetworkError, match="Internal Server Error"):
        await bot.send_message(chat, "lost to a 500")

    sandbox.trouble.drop("sendMessage")
    with pytest.raises(NetworkError):
        await bot.send_message(chat, "dropped before")
    assert sandbox.world.chat_messages[chat] == []

    # The nasty case: Telegram did the work but the answer never came back.
    sandbox.trouble.drop("sendMessage", after_processing=True)
    with pytest.raises(NetworkError):
        await bot.send_message(chat, "dropped after")
    assert [m.text for m in sandbox.world.chat_messages[chat]] == ["dropped after"]
    assert (await bot.send_message(chat, "fine again")).text == "fine again"


async def test_slow_answers(bot: Bot, driver: TelegramDriver, sandbox: BotApiSandbox) -> None:
    chat = driver.user("Alex").id
    sandbox.trouble.slow("sendMessage", seconds=0.4)
    assert (await bot.send_message(chat, "patience")).text == "patience"
    slow_call = sandbox.calls("sendMessage")[-1]
    assert slow_call.finished - slow_call.started >= 0.4
    sandbox.trouble.slow("sendMessage", seconds=1.5)
    with pytest.raises(TimedOut):
        await bot.send_message(chat, "too slow", read_timeout=0.3)


async def test_polling_survives_get_updates_trouble(sandbox: BotApiSandbox, driver: TelegramDriver) -> None:
    app = build_app(sandbox, [MessageHandler(filters.TEXT, reply)])
    async with polling(app):
        alex = driver.user("Alex")
        await alex.say("before")
        await alex.wait_for_reply()
        sandbox.trouble.server_error("getUpdates", times=2)
        sandbox.trouble.drop("getUpdates")
        # The long poll already waiting is spared; the trouble starts with the next one.
        await alex.wait_until(lambda: sandbox.calls("getUpdates", status=502), timeout=10)
        await alex.say("during trouble")
        answer = await alex.wait_for_reply(timeout=20)
    assert answer.text == "re: during trouble"
    assert len(sandbox.calls("getUpdates", status=502)) == 2
    assert sandbox.calls("getUpdates", status=0)  # the dropped one


async def test_get_updates_long_polling_semantics(sandbox: BotApiSandbox, driver: TelegramDriver) -> None:
    url = f"{sandbox.base_url}{sandbox.token}/getUpdates"
    alex = driver.user("Alex")
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        assert (await client.post(url, data={"timeout": "0"})).json() == {"ok": True, "result": []}

        waiting = asyncio.create_task(client.post(url, data={"timeout": "5"}))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # long polling holds the request open
        await alex.say("one")
        first = (await waiting).json()["result"]
        assert [u["message"]["text"] for u in first] == ["one"]

        await alex.say("two")
        await alex.say("three")
        again = (await client.post(url, data={"limit": "1"})).json()["result"]
        assert [u["message"]["text"] for u in again] == ["one"]  # not confirmed yet
        confirmed = (await client.post(url, data={"offset": first[0]["update_id"] + 1})).json()["result"]
        assert [u["message"]["text"] for u in confirmed] == ["two", "three"]
        last = (await client.post(url, data={"offset": "-1"})).json()["result"]
        assert [u["message"]["text"] for u in last] == ["three"]

        older = asyncio.create_task(client.post(url, data={"offset": last[0]["update_id"] + 1, "timeout": "5"}))
        await asyncio.sleep(0.2)
        newer = asyncio.create_task(client.post(url, data={"timeout": "1"}))
        conflict = await older
        assert conflict.status_code == 409
        assert "terminated by other getUpdates request" in conflict.json()["description"]
        assert (await newer).json()["result"] == []


def test_pace_per_chat_and_overall() -> None:
    from bot.sandbox.errors import ApiError
    from bot.sandbox.trouble import Pace

    pace = Pace(per_chat=1.0)
    pace.check("sendMessage", 5)
    pace.check("answerCallbackQuery", None)  # not a message: never paced
    pace.check("sendMessage", 6)  # another chat has its own pace
    with pytest.raises(ApiError) as refused:
        pace.check("editMessageMedia", 5)
    assert refused.value.status == 429 and refused.value.parameters == {"retry_after": 1}
    assert pace.refused == 1

    overall = Pace(overall=30, slack=0.0)
    for chat in range(30):
        overall.check("sendPhoto", chat)
    with pytest.raises(ApiError):
        overall.check("sendPhoto", 99)


def test_rules_count_down_and_match_chats() -> None:
    from bot.sandbox.trouble import Trouble

    trouble = Trouble()
    trouble.rate_limit("sendMessage", times=2, chat_id=5)
    trouble.slow(seconds=0.25, times=None)
    assert trouble.plan("sendMessage", 6).error is None
    first = trouble.plan("SENDMESSAGE", 5)
    assert first.error is not None and first.error.status == 429 and first.delay == 0.25
    assert trouble.plan("sendMessage", 5).error is not None
    assert trouble.plan("sendMessage", 5).error is None  # used up
    assert trouble.plan("getFile", None).delay == 0.25  # until cleared
    trouble.server_error("getUpdates", times=2)
    trouble.drop("getUpdates")
    outcomes = [trouble.plan("getUpdates", None) for _ in range(4)]
    assert [(o.error.status if o.error else None, o.drop_before) for o in outcomes] == [
        (502, False), (502, False), (None, True), (None, False)]
    trouble.clear()
    assert trouble.plan("getFile", None).delay == 0.0
