"""Trouble on demand: the sandbox answers like Telegram on a bad day when a test asks it to.

A test arranges trouble for the next N calls of a method (or any method), optionally only for one chat:

- ``rate_limit``: 429 "Too Many Requests: retry after N" with ``parameters.retry_after``;
- ``error``: any status and description (400s, 403, 5xx ...);
- ``slow``: answer after a delay (past the bot's read timeout it becomes a timeout on the bot's side);
- ``drop``: close the connection without an answer, before or after doing the work (the latter is the
  nasty case: the message was sent but the bot never heard back).

:class:`Pace` enforces Telegram's flood limits (about one message per second per chat, 30 per second overall)
with 429s when switched on, so a test can prove the bot paces itself.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from bot.sandbox.errors import ApiError, too_many_requests

# Methods that put something in a chat and count against Telegram's flood limits.
PACED_METHODS = frozenset({
    "sendmessage", "sendphoto", "senddocument", "sendanimation", "sendmediagroup", "sendvideo", "sendaudio",
    "sendvoice", "sendsticker", "sendlocation", "sendcontact", "sendpoll", "senddice", "copymessage",
    "copymessages", "forwardmessage", "forwardmessages", "editmessagetext", "editmessagecaption",
    "editmessagemedia", "editmessagereplymarkup",
})


@dataclass
class Rule:
    """One arranged piece of trouble; ``remaining`` None means until cleared."""

    kind: str  # error, slow, drop
    method: str | None
    chat_id: int | None
    remaining: int | None
    error: ApiError | None = None
    delay: float = 0.0
    after_processing: bool = False
    hits: int = 0

    def matches(self, method: str, chat_id: int | None) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method.lower() != method.lower():
            return False
        return self.chat_id is None or self.chat_id == chat_id


@dataclass
class Planned:
    """What the server must do for one request."""

    delay: float = 0.0
    error: ApiError | None = None
    drop_before: bool = False
    drop_after: bool = False


class Trouble:
    """The registry of arranged trouble; the server consults :meth:`plan` for every Bot API request."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []

    def _add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def rate_limit(self, method: str | None = None, *, retry_after: int = 1, times: int | None = 1,
                   chat_id: int | None = None) -> Rule:
        """Answer 429 with ``retry_after`` seconds to the next ``times`` matching calls."""
        return self._add(Rule("error", method, chat_id, times, error=too_many_requests(retry_after)))

    def error(self, method: str | None = None, *, status: int = 400, description: str = "Bad Request: test error",
              times: int | None = 1, chat_id: int | None = None) -> Rule:
        """Answer ``status`` with ``description`` to the next ``times`` matching calls."""
        return self._add(Rule("error", method, chat_id, times, error=ApiError(status, description)))

    def server_error(self, method: str | None = None, *, status: int = 502, times: int | None = 1,
                     chat_id: int | None = None) -> Rule:
        """Answer a 5xx (Telegram's front ends answer 502 Bad Gateway on a bad day)."""
        descriptions = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                        504: "Gateway Timeout"}
        return self.error(method, status=status, description=descriptions.get(status, "Server Error"),
                          times=times, chat_id=chat_id)

    def slow(self, method: str | None = None, *, seconds: float, times: int | None = 1,
             chat_id: int | None = None) -> Rule:
        """Answer the next ``times`` matching calls after ``seconds``."""
        return self._add(Rule("slow", method, chat_id, times, delay=seconds))

    def drop(self, method: str | None = None, *, times: int | None = 1, chat_id: int | None = None,
             after_processing: bool = False) -> Rule:
        """Close the connection without answering (after doing the work if ``after_processing``)."""
        return self._add(Rule("drop", method, chat_id, times, after_processing=after_processing))

    def clear(self) -> None:
        self.rules.clear()

    def plan(self, method: str, chat_id: int | None) -> Planned:
        """Consume the matching rules for one request and say what to do.

        Every matching ``slow`` rule adds its delay; of the error and drop rules, only the first arranged one
        that matches applies (and counts down), so "two 502s, then a drop" happens in that order.
        """
        planned = Planned()
        outcome_taken = False
        for rule in self.rules:
            if not rule.matches(method, chat_id):
                continue
            if rule.kind != "slow" and outcome_taken:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
            rule.hits += 1
            if rule.kind == "slow":
                planned.delay += rule.delay
                continue
            outcome_taken = True
            if rule.kind == "drop":
                planned.drop_after = rule.after_processing
                planned.drop_before = not rule.after_processing
            else:
                planned.error = rule.error
        self.rules = [r for r in self.rules if r.remaining is None or r.remaining > 0]
        return planned


@dataclass
class Pace:
    """Telegram's flood limits, enforced with 429 when ``per_chat``/``overall`` are set (messages per second).

    ``slack`` forgives a little jitter: a message arriving ``slack`` seconds early still passes, as a client
    pacing at exactly the limit sees its requests arrive a few milliseconds apart from where it sent them.
    """

    per_chat: float | None = None
    overall: float | None = None
    slack: float = 0.1
    refused: int = 0
    _last_in_chat: dict[int, float] = field(default_factory=dict)
    _recent: list[float] = field(default_factory=list)

    def check(self, method: str, chat_id: int | None) -> None:
        """Raise 429 when this call would break the configured pace; otherwise count it."""
        if method.lower() not in PACED_METHODS:
            return
        now = time.monotonic()
        if self.per_chat and chat_id is not None and chat_id > 0:  # private chats have positive ids
            interval = 1.0 / self.per_chat
            last = self._last_in_chat.get(chat_id)
            if last is not None and now - last < interval - self.slack:
                self.refused += 1
                raise too_many_requests(max(1, math.ceil(interval - (now - last))))
        if self.overall:
            self._recent = [t for t in self._recent if now - t < 1.0]
            if len(self._recent) >= self.overall * (1 + self.slack):
                self.refused += 1
                raise too_many_requests(1)
            self._recent.append(now)
        if chat_id is not None:
            self._last_in_chat[chat_id] = now
