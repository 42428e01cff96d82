"""Pace the bot's messages per private chat, so a burst of slice taps never earns a 429.

Telegram asks bots to send about one message per second in a chat and 30 per second overall, and answers
floods with 429 "retry after N". PTB's :class:`~telegram.ext.AIORateLimiter` paces the overall and group
limits and retries 429s, but does not pace private chats. :class:`PerChatRateLimiter` wraps it and gives
each private chat its own queue of one slot per ``interval`` seconds for the methods that put something in
a chat (sends and edits); everything else goes straight to the wrapped limiter.

It also rides out the network's bad days: a request that fails with a 5xx or a dropped connection
(``NetworkError``, but not ``TimedOut``, where Telegram may still be working on it) is retried
``network_retries`` times. A connection dropped *after* Telegram did the work then repeats a message: Lightbox
prefers a rare duplicate to a lost reply. A retried edit, answer or delete that Telegram had already done
comes back as "not modified" / "query too old" / "not found" and counts as done.

The pace lives in this process's memory: it is a short-lived courtesy to Telegram, not state that matters
after a restart. Several webhook workers share Telegram's budget, so each worker would pace on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import BadRequest, NetworkError, TimedOut
from telegram.ext import AIORateLimiter, BaseRateLimiter

# Methods that show up in the chat and count against Telegram's per-chat flood limit.
PACED_ENDPOINTS = frozenset({
    "sendMessage", "sendPhoto", "sendDocument", "sendAnimation", "sendMediaGroup", "sendVideo", "sendAudio",
    "sendVoice", "sendSticker", "sendLocation", "sendContact", "sendPoll", "sendDice", "copyMessage",
    "copyMessages", "forwardMessage", "forwardMessages", "editMessageText", "editMessageCaption",
    "editMessageMedia", "editMessageReplyMarkup",
})
# Answers to a retry that mean the first attempt got through after all.
_ALREADY_DONE = {
    "editMessageText": "message is not modified",
    "editMessageCaption": "message is not modified",
    "editMessageMedia": "message is not modified",
    "editMessageReplyMarkup": "message is not modified",
    "answerCallbackQuery": "query is too old",
    "deleteMessage": "message to delete not found",
}
# HTTP answers PTB reports as NetworkError that no retry will change.
_NOT_TRANSIENT = frozenset({"Request Entity Too Large", "Not Found"})
_FORGET_AFTER = 4096  # chats remembered before idle ones are dropped


def private_chat_id(data: dict[str, Any]) -> int | None:
    """The chat a request goes to, if it is a private chat (Telegram gives those positive ids)."""
    chat_id = data.get("chat_id")
    if isinstance(chat_id, bool):
        return None
    if isinstance(chat_id, str):
        try:
            chat_id = int(chat_id)
        except ValueError:
            return None  # "@channel" names are never private chats
    return chat_id if isinstance(chat_id, int) and chat_id > 0 else None


class PerChatRateLimiter(BaseRateLimiter[int]):
    """:class:`AIORateLimiter` plus about one message per ``interval`` seconds per private chat.

    ``max_retries`` is handed to the wrapped limiter: how often a 429 that still happens (another worker, a
    Telegram hiccup) is waited out and retried.
    """

    def __init__(self, interval: float = 1.0, *, max_retries: int = 3, inner: AIORateLimiter | None = None,
                 paced_endpoints: frozenset[str] = PACED_ENDPOINTS, network_retries: int = 2,
                 network_retry_delay: float = 0.5) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.network_retries = network_retries
        self.network_retry_delay = network_retry_delay
        self.inner = inner or AIORateLimiter(max_retries=max_retries)
        self.paced_endpoints = paced_endpoints
        self._next_slot: dict[int, float] = {}

    async def initialize(self) -> None:
        await self.inner.initialize()

    async def shutdown(self) -> None:
        await self.inner.shutdown()

    def reserve(self, chat_id: int, now: float) -> float:
        """Book the chat's next free slot at or after ``now`` and return it (first come, first served)."""
        if len(self._next_slot) > _FORGET_AFTER:
            self._next_slot = {chat: slot for chat, slot in self._next_slot.items() if slot > now}
        slot = max(now, self._next_slot.get(chat_id, now))
        self._next_slot[chat_id] = slot + self.interval
        return slot

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        chat_id = private_chat_id(data)
        if chat_id is not None and endpoint in self.paced_endpoints:
            loop = asyncio.get_running_loop()
            now = loop.time()
            slot = self.reserve(chat_id, now)
            if slot > now:
                await asyncio.sleep(slot - now)
        for attempt in range(self.network_retries + 1):
            try:
                return await self.inner.process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
            except TimedOut:
                raise  # Telegram may still be doing it; a retry could double it
            except BadRequest as error:
                done = _ALREADY_DONE.get(endpoint)
                if attempt > 0 and done is not None and done in error.message.lower():
                    return True
                raise
            except NetworkError as error:
                if attempt == self.network_retries or error.message in _NOT_TRANSIENT:
                    raise
                await asyncio.sleep(self.network_retry_delay * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover
