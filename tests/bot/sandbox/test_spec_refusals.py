"""The sandbox refuses what Telegram refuses, with Telegram's status and description."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto
from telegram.error import BadRequest, EndPointNotFound, InvalidToken, NetworkError

from bot.sandbox import BotApiSandbox, TelegramDriver
from bot.sandbox.world import SandboxMessage
from tests.bot.sandbox.conftest import png


@pytest.fixture
async def bot(sandbox: BotApiSandbox) -> AsyncIterator[Bot]:
    async with Bot(sandbox.token, base_url=sandbox.base_url, base_file_url=sandbox.base_file_url) as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as running:
        yield running


@pytest.fixture
def chat_id(driver: TelegramDriver) -> int:
    return driver.user("Robin").id


def keyboard(data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton("Tap", callback_data=data)]])


async def test_caption_limit_is_1024(sandbox: BotApiSandbox, bot: Bot, chat_id: int) -> None:
    ok = await bot.send_photo(chat_id, png(20, 20), caption="x" * 1024)
    assert ok.caption == "x" * 1024
    with pytest.raises(BadRequest, match=r"(?i)caption is too long"):
        await bot.send_photo(chat_id, png(20, 20), caption="x" * 1025)
    # Markup does not count: the limit applies after entity parsing.
    tagged = await bot.send_photo(chat_id, png(20, 20), caption="<b>" + "y" * 1024 + "</b>", parse_mode="HTML")
    assert tagged.caption == "y" * 1024


async def test_text_limit_counts_after_parsing(bot: Bot, chat_id: int) -> None:
    await bot.send_message(chat_id, "<i>" + "a" * 4096 + "</i>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(chat_id, "a" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(chat_id, "<b> </b>", parse_mode="HTML")


@pytest.mark.parametrize("html", ["<b>never closed", "<blink>x</blink>", "1 < 2", "<b><i>x</b></i>",
                                  '<span class="red">x</span>'])
async def test_invalid_html_cannot_be_parsed(bot: Bot, chat_id: int, html: str) -> None:
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(chat_id, html, parse_mode="HTML")


async def test_valid_html_gives_entities(bot: Bot, chat_id: int) -> None:
    sent = await bot.send_message(chat_id, '1 &lt; 2 <a href="https://example.org">link</a> <tg-spoiler>s</tg-spoiler>'
                                           ' <pre><code class="language-python">x</code></pre>', parse_mode="HTML")
    assert sent.text == "1 < 2 link s x"
    kinds = [(e.type, e.offset, e.length) for e in sent.entities]
    assert kinds == [("text_link", 6, 4), ("spoiler", 11, 1), ("pre", 13, 1)]
    assert sent.entities[2].language == "python"


async def test_callback_data_limit_is_64_bytes(bot: Bot, chat_id: int) -> None:
    await bot.send_message(chat_id, "ok", reply_markup=keyboard("a" * 64))
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(chat_id, "too long", reply_markup=keyboard("a" * 65))
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(chat_id, "33 two-byte letters", reply_markup=keyboard("é" * 33))


async def test_missing_required_field_and_wrong_types(sandbox: BotApiSandbox, client: httpx.AsyncClient,
                                                      chat_id: int) -> None:
    url = f"{sandbox.base_url}{sandbox.token}"
    answer = await client.post(f"{url}/sendMessage", data={"chat_id": str(chat_id)})
    assert answer.status_code == 400
    assert answer.json() == {"ok": False, "error_code": 400, "description": 'Bad Request: parameter "text" is required'}

    bad_button = {"inline_keyboard": [[{"text": "x", "callback_data": 5}]]}
    answer = await client.post(f"{url}/sendMessage", json={"chat_id": chat_id, "text": "t", "reply_markup": bad_button})
    assert answer.status_code == 400
    assert "callback_data" in answer.json()["description"] and "String" in answer.json()["description"]

    answer = await client.post(f"{url}/sendMessage", data={"chat_id": "12ab", "text": "t"})
    assert answer.status_code == 400 and answer.json()["description"] == "Bad Request: chat not found"

    answer = await client.post(f"{url}/sendMessage", data={"chat_id": str(chat_id), "text": "t",
                                                           "disable_notification": "maybe"})
    assert answer.status_code == 400 and "Boolean" in answer.json()["description"]

    answer = await client.post(f"{url}/editMessageMedia", json={
        "chat_id": chat_id, "message_id": 1, "media": {"type": "picture", "media": "x"}})
    assert answer.status_code == 400 and "type" in answer.json()["description"]

    # The same request, well-formed as JSON and as a query string, is accepted.
    answer = await client.post(f"{url}/sendMessage", json={"chat_id": chat_id, "text": "fine"})
    assert answer.json()["ok"] is True and answer.json()["result"]["text"] == "fine"
    answer = await client.get(f"{url}/sendMessage", params={"chat_id": chat_id, "text": "also fine"})
    assert answer.json()["result"]["text"] == "also fine"


async def test_unknown_method_and_wrong_token(sandbox: BotApiSandbox, bot: Bot, client: httpx.AsyncClient) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTelepathy", api_kwargs={"chat_id": 1})
    answer = await client.post(f"{sandbox.base_url}{sandbox.token}/sendTelepathy")
    assert answer.status_code == 404 and answer.json()["description"] == "Not Found"  # Telegram's answer
    answer = await client.post(f"{sandbox.base_url}{sandbox.token}/SENDMESSAGE", data={"chat_id": "1"})
    assert answer.status_code == 400  # method names are case-insensitive; this one lacks "text"
    with pytest.raises(InvalidToken):
        async with Bot("42:not-the-token", base_url=sandbox.base_url) as stranger:
            await stranger.get_me()


async def test_media_group_needs_2_to_10(bot: Bot, chat_id: int) -> None:
    photos = [InputMediaPhoto(png(16, 16, shade=i)) for i in range(11)]
    with pytest.raises(BadRequest, match=r"(?i)number of media"):
        await bot.send_media_group(chat_id, photos[:1])
    with pytest.raises(BadRequest, match=r"(?i)number of media"):
        await bot.send_media_group(chat_id, photos)
    sent = await bot.send_media_group(chat_id, photos[:3], caption="three")
    assert len(sent) == 3 and len({m.media_group_id for m in sent}) == 1
    assert sent[0].caption == "three"


async def test_photo_limits(bot: Bot, chat_id: int) -> None:
    with pytest.raises(BadRequest, match=r"(?i)photo_invalid_dimensions"):
        await bot.send_photo(chat_id, png(10, 210))  # aspect ratio 21
    with pytest.raises(BadRequest, match=r"(?i)photo_invalid_dimensions"):
        await bot.send_photo(chat_id, png(9000, 1001))  # width + height 10001
    with pytest.raises(BadRequest, match=r"(?i)image_process_failed"):
        await bot.send_photo(chat_id, b"this is not an image at all")
    with pytest.raises(BadRequest, match=r"(?i)photo_save_file_invalid"):
        await bot.send_photo(chat_id, os.urandom(10 * 1024 * 1024 + 1))
    sent = await bot.send_photo(chat_id, png(200, 10))  # ratio exactly 20 passes
    assert sent.photo[-1].width == 200 and sent.photo[0].width == 90  # Telegram-like thumbnail first


async def test_document_limit_is_50_mb(bot: Bot, chat_id: int) -> None:
    with pytest.raises(NetworkError, match="Request Entity Too Large"):
        await bot.send_document(chat_id, b"\0" * (50 * 1024 * 1024 + 1), filename="huge.bin")


async def test_edits_follow_telegram_rules(sandbox: BotApiSandbox, bot: Bot, driver: TelegramDriver) -> None:
    robin = driver.user("Robin")
    sent = await bot.send_message(robin.id, "same", reply_markup=keyboard("k"))
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("same", robin.id, sent.message_id, reply_markup=keyboard("k"))
    # An edit without reply_markup drops the keyboard, as on Telegram.
    edited = await bot.edit_message_text("same", robin.id, sent.message_id)
    assert edited.reply_markup is None or edited.reply_markup.inline_keyboard == ()
    with pytest.raises(BadRequest, match=r"(?i)there is no media"):
        await bot.edit_message_media(InputMediaPhoto(png(8, 8)), robin.id, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", robin.id, 999)
    said: SandboxMessage = await robin.say("mine")
    with pytest.raises(BadRequest, match=r"(?i)message can't be edited"):
        await bot.edit_message_text("x", robin.id, said.message_id)
    assert await bot.delete_message(robin.id, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(robin.id, sent.message_id)


async def test_blocked_user_forbids_sending(bot: Bot, driver: TelegramDriver) -> None:
    from telegram.error import Forbidden

    robin = driver.user("Robin")
    robin.block_bot()
    with pytest.raises(Forbidden, match="blocked"):
        await bot.send_message(robin.id, "hello?")
    robin.block_bot(False)
    assert (await bot.send_message(robin.id, "hello")).text == "hello"


async def test_commands_and_chat_actions(bot: Bot, chat_id: int, sandbox: BotApiSandbox) -> None:
    from telegram import BotCommand

    await bot.set_my_commands([BotCommand("start", "Begin"), BotCommand("last", "My latest scan")])
    assert [c.command for c in await bot.get_my_commands()] == ["start", "last"]
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Has Space", "x")])
    assert await bot.send_chat_action(chat_id, "upload_photo")
    with pytest.raises(BadRequest, match=r"(?i)wrong parameter action"):
        await bot.send_chat_action(chat_id, "dancing")
    assert sandbox.world.chat_actions == [(chat_id, "upload_photo")]
    assert await bot.close() is True and await bot.log_out() is True
    assert json.loads(json.dumps(sandbox.spec_violations)) == []
