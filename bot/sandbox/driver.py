"""Drive the Bot API sandbox as people would: say things, send files, tap buttons, read what the bot sent.

Async by design: the sandbox, the PTB Application and the test share one event loop (see
:mod:`bot.sandbox.server`), so every wait is an ``await`` that lets the bot work meanwhile. A synchronous
wrapper would have to block that very loop.

    driver = TelegramDriver(sandbox)
    alex = driver.user("Alex")
    await alex.command("start")
    welcome = await alex.wait_for_reply()
    card = await alex.wait_for_reply(predicate=lambda m: m.photo_bytes is not None)
    tap = await alex.tap(card, "Next")
    await alex.wait_for_answer(tap)
    await alex.wait_for_edit(card)
"""

from __future__ import annotations

import contextlib
import mimetypes
from collections.abc import AsyncIterator, Callable
from typing import Any

from telegram.ext import Application

from bot.sandbox.server import BotApiSandbox
from bot.sandbox.world import CallbackRecord, SandboxMessage


class NoReply(TimeoutError):
    """The bot did not do what the test waited for in time."""


class ChatUser:
    """One Telegram user in a private chat with the bot."""

    def __init__(self, driver: TelegramDriver, user: dict[str, Any]) -> None:
        self.driver = driver
        self.sandbox = driver.sandbox
        self.user = user
        self.id: int = user["id"]
        self._returned: set[int] = set()  # bot message ids already handed out by wait_for_reply

    # --- acting ----------------------------------------------------------------------------------------------
    async def say(self, text: str) -> SandboxMessage:
        """Send a text message; returns the user's own message."""
        return self.sandbox.user_message(self.id, text=text)

    async def command(self, name: str, *args: str) -> SandboxMessage:
        """Send ``/name arg ...`` (Telegram marks the bot_command entity)."""
        text = " ".join(["/" + name.removeprefix("/"), *args])
        return await self.say(text)

    async def reply_to(self, message: SandboxMessage, text: str) -> SandboxMessage:
        """Reply to ``message`` with text."""
        return self.sandbox.user_message(self.id, text=text, reply_to=message)

    async def send_document(self, filename: str, data: bytes, *, mime_type: str | None = None,
                            caption: str | None = None) -> SandboxMessage:
        """Send a file as a document (a .dcm, a .zip ...)."""
        mime = mime_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return self.sandbox.user_message(self.id, document=(filename, data, mime), caption=caption)

    async def send_photo(self, data: bytes, *, caption: str | None = None) -> SandboxMessage:
        """Send a photo (for example a phone snapshot of a screen)."""
        return self.sandbox.user_message(self.id, photo=data, caption=caption)

    async def tap(self, message: SandboxMessage, button: str) -> CallbackRecord:
        """Tap the inline button whose text or callback_data is ``button`` on ``message`` as it is now."""
        if message.deleted:
            raise LookupError(f"message {message.message_id} was deleted; there is nothing to tap")
        found = message.button(button)
        if "callback_data" not in found:
            raise LookupError(f"button {found.get('text')!r} opens a link, it sends no callback")
        return self.sandbox.user_tap(self.id, message, found["callback_data"])

    async def send_callback(self, message: SandboxMessage, callback_data: str) -> CallbackRecord:
        """Send arbitrary callback data for ``message``, as a modified client could (forgery tests)."""
        return self.sandbox.user_tap(self.id, message, callback_data)

    def block_bot(self, blocked: bool = True) -> None:
        """Block the bot: its sends to this user get 403 Forbidden."""
        self.sandbox.block(self.id, blocked)

    # --- reading ---------------------------------------------------------------------------------------------
    @property
    def messages(self) -> list[SandboxMessage]:
        """Every message in this chat, in order (deleted ones included, marked ``deleted``)."""
        return list(self.sandbox.world.chat_messages.get(self.id, []))

    @property
    def bot_messages(self) -> list[SandboxMessage]:
        """What the bot sent to this chat and has not deleted, in order."""
        return [m for m in self.messages if m.from_bot and not m.deleted]

    @property
    def last_bot_message(self) -> SandboxMessage | None:
        sent = self.bot_messages
        return sent[-1] if sent else None

    async def wait_for_reply(self, *, timeout: float | None = None, after: SandboxMessage | None = None,
                             predicate: Callable[[SandboxMessage], bool] | None = None) -> SandboxMessage:
        """The next bot message this user has not been handed yet (or the first after ``after``).

        ``predicate`` skips messages that do not match (they stay available to later waits).
        """
        def find() -> SandboxMessage | None:
            for message in self.messages:
                if not message.from_bot or message.deleted:
                    continue
                if after is not None:
                    if message.message_id <= after.message_id:
                        continue
                elif message.message_id in self._returned:
                    continue
                if predicate is None or predicate(message):
                    return message
            return None

        message = await self._wait(find, timeout, "a reply")
        self._returned.add(message.message_id)
        return message

    async def wait_for_replies(self, count: int, *, timeout: float | None = None) -> list[SandboxMessage]:
        """The next ``count`` bot messages."""
        return [await self.wait_for_reply(timeout=timeout) for _ in range(count)]

    async def wait_for_edit(self, message: SandboxMessage, *, since_version: int | None = None,
                            timeout: float | None = None) -> SandboxMessage:
        """Wait until ``message`` is edited past ``since_version`` (default: its version now)."""
        version = message.version if since_version is None else since_version

        def edited() -> SandboxMessage | None:
            return message if message.version > version else None

        return await self._wait(edited, timeout, f"an edit of message {message.message_id}")

    async def wait_for_answer(self, tap: CallbackRecord, *, timeout: float | None = None) -> CallbackRecord:
        """Wait until the bot answers the callback query of ``tap``."""
        return await self._wait(lambda: tap if tap.answered else None, timeout, "an answer to a button tap")

    async def wait_until(self, condition: Callable[[], Any], *, timeout: float | None = None,
                         what: str = "a condition") -> Any:
        """Wait until ``condition()`` is truthy and return its value."""
        return await self._wait(condition, timeout, what)

    async def _wait(self, found: Callable[[], Any], timeout: float | None, what: str) -> Any:
        limit = self.driver.timeout if timeout is None else timeout
        try:
            return await self.sandbox.world.wait_for(found, limit)
        except TimeoutError:
            seen = [(m.message_id, "bot" if m.from_bot else "user", (m.text or m.caption or "")[:60])
                    for m in self.messages[-5:]]
            raise NoReply(f"user {self.id} waited {limit:.1f}s for {what}; last messages: {seen}") from None


class TelegramDriver:
    """Creates users on a :class:`BotApiSandbox` and gives tests their point of view."""

    def __init__(self, sandbox: BotApiSandbox, *, timeout: float = 10.0) -> None:
        self.sandbox = sandbox
        self.timeout = timeout

    def user(self, first_name: str = "Alex", *, user_id: int | None = None, last_name: str | None = None,
             username: str | None = None, language_code: str | None = "en") -> ChatUser:
        """A new user (with a private chat with the bot)."""
        user = self.sandbox.add_user(first_name, user_id=user_id, last_name=last_name, username=username,
                                     language_code=language_code)
        return ChatUser(self, user)


@contextlib.asynccontextmanager
async def running_with_polling(app: Application, *, timeout: int = 2) -> AsyncIterator[Application]:
    """Start a PTB Application by hand with long polling (initialize, start, start_polling); stop it after.

    ``timeout`` is the long-poll timeout in seconds: short, so stopping never waits long.
    """
    await app.initialize()
    await app.start()
    if app.updater is None:
        raise RuntimeError("the Application was built without an Updater")
    await app.updater.start_polling(poll_interval=0.0, timeout=timeout)
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
