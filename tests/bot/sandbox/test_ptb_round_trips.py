"""A real python-telegram-bot Application against the sandbox: text, photos, buttons, edits, files, webhooks."""

from __future__ import annotations

import hashlib
import io

import httpx
import pytest
from PIL import Image
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, Update
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.sandbox import BotApiSandbox, TelegramDriver
from tests.bot.sandbox.conftest import build_app, png, polling

FIRST = png(64, 48, shade=0)
SECOND = png(64, 48, shade=90)
KEYBOARD = InlineKeyboardMarkup([[InlineKeyboardButton("Next slice", callback_data="slice:2"),
                                  InlineKeyboardButton("Original file", callback_data="doc")]])


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None and update.effective_message.text is not None
    await update.effective_message.reply_text(f"You said: <b>{update.effective_message.text}</b>",
                                              parse_mode=ParseMode.HTML, do_quote=True)


async def show(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_photo(FIRST, caption="Slice 1 of 2", reply_markup=KEYBOARD,
                                               protect_content=True)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.message is not None
    if query.data == "slice:2":
        await query.answer("Slice 2")
        await query.edit_message_media(InputMediaPhoto(SECOND, caption="Slice 2 of 2"), reply_markup=KEYBOARD)
    elif query.data == "doc":
        await query.answer()
        await context.bot.send_document(query.message.chat.id, b"DICM" * 100, filename="slice.dcm")
    else:
        await query.answer("This button has expired.", show_alert=True)


async def on_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None and message.document is not None
    file = await message.document.get_file()
    data = await file.download_as_bytearray()
    await message.reply_text(f"{message.document.file_name} {len(data)} {hashlib.sha256(data).hexdigest()}")


def handlers() -> list:  # type: ignore[type-arg]
    return [
        CommandHandler("show", show),
        MessageHandler(filters.TEXT & ~filters.COMMAND, echo),
        MessageHandler(filters.Document.ALL, on_document),
        CallbackQueryHandler(on_button),
    ]


@pytest.fixture
async def app(sandbox: BotApiSandbox) -> Application:  # type: ignore[type-arg]
    return build_app(sandbox, handlers())


async def test_text_round_trip(sandbox: BotApiSandbox, driver: TelegramDriver, app: Application) -> None:  # type: ignore[type-arg]
    async with polling(app):
        alex = driver.user("Alex")
        said = await alex.say("show my last MRI")
        reply = await alex.wait_for_reply()
    assert reply.text == "You said: show my last MRI"  # HTML parsed away, as the user sees it
    assert reply.source == "You said: <b>show my last MRI</b>"
    assert reply.content.entities == [{"type": "bold", "offset": 10, "length": 16}]
    assert reply.reply_to is said
    assert app.bot.username == "lightbox_sandbox_bot"
    assert [c.method for c in sandbox.calls(status=200)][:1] == ["getMe"]


async def test_photo_button_edit_and_document(sandbox: BotApiSandbox, driver: TelegramDriver,
                                              app: Application) -> None:  # type: ignore[type-arg]
    async with polling(app):
        alex = driver.user("Alex")
        await alex.command("show")
        card = await alex.wait_for_reply()
        assert card.photo_bytes == FIRST
        assert card.caption == "Slice 1 of 2"
        assert card.protect_content
        assert card.button_texts == ["Next slice", "Original file"]
        with Image.open(io.BytesIO(card.photo_bytes)) as image:
            assert image.size == (64, 48)

        tap = await alex.tap(card, "Next slice")
        await alex.wait_for_answer(tap)
        assert tap.answer_text == "Slice 2"
        edited = await alex.wait_for_edit(card)
        assert edited is card and card.version == 1
        assert card.photo_bytes == SECOND
        assert card.caption == "Slice 2 of 2"
        assert card.history[0].photo is not None and card.history[0].photo[-1].data == FIRST
        assert card.buttons[0][0]["callback_data"] == "slice:2"

        tap = await alex.tap(card, "doc")
        document = await alex.wait_for_reply()
    assert document.document_name == "slice.dcm"
    assert document.document_bytes == b"DICM" * 100
    assert tap.answered


async def test_user_document_downloads_through_get_file(sandbox: BotApiSandbox, driver: TelegramDriver,
                                                        app: Application) -> None:  # type: ignore[type-arg]
    payload = bytes(range(256)) * 4000  # about 1 MB of every byte value
    async with polling(app):
        sam = driver.user("Sam")
        await sam.send_document("scan.zip", payload)
        reply = await sam.wait_for_reply()
    assert reply.text == f"scan.zip {len(payload)} {hashlib.sha256(payload).hexdigest()}"
    assert sandbox.calls("getFile", status=200)


async def test_forged_callback_gets_the_expired_answer(driver: TelegramDriver, app: Application) -> None:  # type: ignore[type-arg]
    async with polling(app):
        alex = driver.user("Alex")
        await alex.command("show")
        card = await alex.wait_for_reply()
        tap = await alex.send_callback(card, "study:999999")
        await alex.wait_for_answer(tap)
    assert tap.answer_text == "This button has expired." and tap.show_alert
    assert card.version == 0


async def test_webhook_delivery_carries_the_secret(sandbox: BotApiSandbox, driver: TelegramDriver,
                                                   unused_tcp_port: int) -> None:
    app = build_app(sandbox, handlers())
    await app.initialize()
    await app.start()
    assert app.updater is not None
    webhook_url = f"http://127.0.0.1:{unused_tcp_port}/telegram"
    await app.updater.start_webhook(listen="127.0.0.1", port=unused_tcp_port, url_path="telegram",
                                    webhook_url=webhook_url, secret_token="s3cret-Token_1")
    try:
        info = await app.bot.get_webhook_info()
        assert info.url == webhook_url
        alex = driver.user("Alex")
        await alex.say("hello over the webhook")
        reply = await alex.wait_for_reply()
        assert reply.text == "You said: hello over the webhook"
        assert sandbox.webhook_attempts and all(a.secret_sent for a in sandbox.webhook_attempts)
        assert sandbox.webhook_attempts[0].status == 200

        # A wrong secret is refused by PTB's webhook server (403) and the sandbox keeps the update to retry.
        sandbox.api.webhook.secret_token = "wrong"
        await alex.say("with the wrong secret")
        failed = await alex.wait_until(lambda: [a for a in sandbox.webhook_attempts if a.status == 403])
        assert failed[0].error == "Wrong response from the webhook: 403 Forbidden"
        assert (await app.bot.get_webhook_info()).pending_update_count == 1
        sandbox.api.webhook.secret_token = "s3cret-Token_1"
        reply = await alex.wait_for_reply()
        assert reply.text == "You said: with the wrong secret"
        # getUpdates is refused while a webhook is set, as on Telegram.
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{sandbox.base_url}{sandbox.token}/getUpdates")
        assert answer.status_code == 409
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
