"""A local Bot API sandbox for tests and the offline demo.

:class:`BotApiSandbox` serves the Bot API subset Lightbox uses on 127.0.0.1, holds itself to Telegram's spec
and limits, and answers with trouble on demand; :class:`TelegramDriver` plays the users.
"""

from bot.sandbox.driver import ChatUser, NoReply, TelegramDriver
from bot.sandbox.server import DEFAULT_TOKEN, BotApiSandbox

__all__ = ["DEFAULT_TOKEN", "BotApiSandbox", "ChatUser", "NoReply", "TelegramDriver"]
