"""Every object the sandbox returns carries the spec's required fields with the right types."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bot.sandbox import BotApiSandbox, TelegramDriver
from bot.sandbox.apispec import SPEC_PATH, check_object, check_result, load_spec
from tests.bot.sandbox.conftest import png

SHARED_SPEC = Path("/work/shared/telegram/bot-api.json")


def gif() -> bytes:
    frames = [Image.new("L", (32, 24), shade) for shade in (0, 120, 240)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=500, loop=0)
    return out.getvalue()


class Caller:
    """Raw Bot API calls that check each result against the spec by themselves."""

    def __init__(self, sandbox: BotApiSandbox, client: httpx.AsyncClient) -> None:
        self.sandbox = sandbox
        self.client = client
        self.checked: list[str] = []

    async def __call__(self, method: str, data: dict[str, Any] | None = None,
                       files: dict[str, Any] | None = None) -> Any:
        url = f"{self.sandbox.base_url}{self.sandbox.token}/{method}"
        if files:
            form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (data or {}).items()}
            answer = await self.client.post(url, data=form, files=files)
        else:
            answer = await self.client.post(url, json=data or {})
        body = answer.json()
        assert body["ok"] is True, (method, body)
        shape = load_spec().method(method)
        assert shape is not None
        assert check_result(shape, body["result"]) == [], method
        self.checked.append(method)
        return body["result"]


async def test_every_method_returns_spec_objects(sandbox: BotApiSandbox, driver: TelegramDriver) -> None:
    alex = driver.user("Alex", last_name="Doe", username="alexdoe")
    async with httpx.AsyncClient(trust_env=False) as client:
        call = Caller(sandbox, client)
        me = await call("getMe")
        assert me["is_bot"] is True and me["username"]
        chat = alex.id
        keyboard = {"inline_keyboard": [[{"text": "Next", "callback_data": "n"}, {"text": "Web",
                                                                                  "url": "https://example.org"}]]}
        text = await call("sendMessage", {"chat_id": chat, "text": "<b>Hi</b> there", "parse_mode": "HTML",
                                          "reply_markup": keyboard, "protect_content": True})
        photo = await call("sendPhoto", {"chat_id": chat, "caption": "<i>scan</i>", "parse_mode": "HTML"},
                           files={"photo": ("scan.png", png(300, 200), "image/png")})
        document = await call("sendDocument", {"chat_id": chat, "reply_parameters": {"message_id": text["message_id"]}},
                              files={"document": ("a.dcm", b"DICM" * 10, "application/dicom")})
        assert document["reply_to_message"]["message_id"] == text["message_id"]
        animation = await call("sendAnimation", {"chat_id": chat},
                               files={"animation": ("cine.gif", gif(), "image/gif")})
        assert animation["animation"]["width"] == 32 and animation["animation"]["duration"] == 2
        group = await call("sendMediaGroup", {"chat_id": chat, "media": [
            {"type": "photo", "media": "attach://one", "caption": "one"},
            {"type": "photo", "media": photo["photo"][-1]["file_id"]},
        ]}, files={"one": ("one.png", png(40, 40), "image/png")})
        assert len(group) == 2
        await call("editMessageText", {"chat_id": chat, "message_id": text["message_id"], "text": "Edited"})
        await call("editMessageCaption", {"chat_id": chat, "message_id": photo["message_id"], "caption": "new"})
        await call("editMessageMedia", {"chat_id": chat, "message_id": photo["message_id"],
                                        "media": {"type": "photo", "media": "attach://next", "caption": "2"},
                                        "reply_markup": keyboard},
                   files={"next": ("next.png", png(300, 200, shade=50), "image/png")})
        await call("editMessageReplyMarkup", {"chat_id": chat, "message_id": photo["message_id"]})
        await call("sendChatAction", {"chat_id": chat, "action": "typing"})
        for markup in ({"keyboard": [[{"text": "My last MRI"}]], "resize_keyboard": True},
                       {"remove_keyboard": True}, {"force_reply": True, "input_field_placeholder": "Name"}):
            shown = await call("sendMessage", {"chat_id": chat, "text": "keyboard", "reply_markup": markup})
            assert "reply_markup" not in shown  # only inline keyboards come back in a Message
            assert sandbox.world.messages[(chat, shown["message_id"])].reply_keyboard == markup
        await call("setMyDescription", {"description": "Your scans, in your hands."})
        await call("setMyShortDescription", {"short_description": "Lightbox"})
        await call("setChatMenuButton", {"menu_button": {"type": "commands"}})
        file = await call("getFile", {"file_id": document["document"]["file_id"]})
        download = await client.get(f"{sandbox.base_file_url}{sandbox.token}/{file['file_path']}")
        assert download.content == b"DICM" * 10
        await call("setMyCommands", {"commands": [{"command": "last", "description": "My latest scan"}]})
        assert await call("getMyCommands") == [{"command": "last", "description": "My latest scan"}]
        await call("deleteMyCommands")

        # Updates of every kind the sandbox makes: text with a command, reply, document, photo, callback.
        said = await alex.command("start", "CODE123")
        await alex.reply_to(said, "a reply")
        await alex.send_document("cd.zip", b"PK\x03\x04" + b"\0" * 100, caption="my CD")
        await alex.send_photo(png(120, 80))
        shown = sandbox.world.messages[(chat, photo["message_id"])]
        await alex.tap(shown, "Next") if shown.buttons else await alex.send_callback(shown, "n")
        updates = await call("getUpdates", {"timeout": 0})
        kinds = [next(k for k in u if k != "update_id") for u in updates]
        assert kinds == ["message"] * 4 + ["callback_query"]
        assert updates[0]["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
        assert updates[1]["message"]["reply_to_message"]["text"] == "/start CODE123"
        await call("setWebhook", {"url": "http://127.0.0.1:9/hook", "secret_token": "abc"})
        await call("getWebhookInfo")
        await call("deleteWebhook", {"drop_pending_updates": True})
        await call("getWebhookInfo")
        await call("answerCallbackQuery", {"callback_query_id": updates[-1]["callback_query"]["id"], "text": "ok"})
        await call("deleteMessage", {"chat_id": chat, "message_id": text["message_id"]})
        await call("close")
        await call("logOut")
    implemented = set(sandbox.api.handlers) | set(sandbox.api.async_handlers)
    assert implemented <= set(call.checked), implemented - set(call.checked)
    assert sandbox.spec_violations == []


def test_the_check_catches_strays() -> None:
    good = {"message_id": 1, "date": 1700000000, "chat": {"id": 5, "type": "private"}}
    assert check_object("Message", good) == []
    assert check_object("Message", {**good, "date": "yesterday"}) != []
    assert check_object("Message", {"message_id": 1, "date": 1}) != []  # chat is required
    assert check_object("Message", {**good, "colour": "red"}) != []  # unknown field
    assert check_object("Message", {**good, "photo": [{"file_id": "a", "file_unique_id": "b", "width": 1}]}) != []
    assert check_object("Array of Update", [{"update_id": 1, "message": good}]) == []
    assert check_object("Update", {"update_id": True}) != []  # a Boolean is not an Integer
    assert check_object("InputMedia", {"type": "photo", "media": "x"}) == []
    assert check_object("InputMedia", {"type": "photograph", "media": "x"}) != []


def test_spec_is_the_shared_copy_with_its_licence() -> None:
    if SHARED_SPEC.exists():
        assert SPEC_PATH.read_bytes() == SHARED_SPEC.read_bytes()
    licence = (SPEC_PATH.parent / "LICENSE").read_text()
    assert "MIT License" in licence and "Copyright (c) 2020 Paul Larsen" in licence
    spec = load_spec()
    assert spec.version.startswith("Bot API")
    for method in ("getMe", "getUpdates", "sendPhoto", "editMessageMedia", "answerCallbackQuery", "getFile"):
        assert spec.method(method) is not None


@pytest.mark.parametrize("name", ["sendphoto", "SENDPHOTO", "sendPhoto"])
def test_method_names_are_case_insensitive(name: str) -> None:
    found = load_spec().method(name)
    assert found is not None and found.name == "sendPhoto"
