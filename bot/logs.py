"""Logging that never writes protected health information.

Lightbox code logs opaque ids only (row ids, hashes), never names, patient ids,
birth dates, tokens or message texts. As a second line of defence a filter
masks anything shaped like a Telegram bot token or a share-link path, and
httpx is held at WARNING because its request lines carry the bot token in
the URL.
"""

from __future__ import annotations

import logging
import re

_BOT_TOKEN = re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}")
_SHARE_PATH = re.compile(r"(/s/)[A-Za-z0-9_-]{16,}")


def redact(text: str) -> str:
    """Mask bot tokens and share tokens in a log line."""
    text = _BOT_TOKEN.sub("<bot-token>", text)
    return _SHARE_PATH.sub(r"\1<token>", text)


class RedactingFilter(logging.Filter):
    """Rewrite each record's message with :func:`redact` applied."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Set up the root logger once for the process."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # URLs of Bot API requests hold the bot token.
    for noisy in ("httpx", "httpcore", "telegram.ext.Updater", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # python-telegram-bot logs whole updates and request parameters (message texts, names) at DEBUG:
    # never below INFO, whatever LIGHTBOX_LOG_LEVEL says.
    logging.getLogger("telegram").setLevel(max(logging.INFO, logging.getLevelName(level)))
