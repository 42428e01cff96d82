"""A local Bot API sandbox for tests and the offline demo.

:class:`BotApiSandbox` serves the Bot API subset Lightbox uses on 127.0.0.1 inside the running event loop,
holds itself to Telegram's spec and limits, and answers with trouble on demand; :class:`TelegramDriver` plays
the users. A typical end-to-end test::

    async with BotApiSandbox() as sandbox:
        app = sandbox.configure(Application.builder()).rate_limiter(PerChatRateLimiter()).build()
        app.add_handler(...)
        async with running_with_polling(app):
            alex = TelegramDriver(sandbox).user("Alex")
            await alex.say("show my last MRI")
            card = await alex.wait_for_reply()
            assert card.photo_bytes and "MRI" in (card.caption or "")
            tap = await alex.tap(card, "Next")
            await alex.wait_for_edit(card)

Trouble: ``sandbox.trouble.rate_limit("sendPhoto", retry_after=2)``, ``.error(...)``, ``.server_error(...)``,
``.slow(..., seconds=3)``, ``.drop(..., after_processing=True)``, each for the next ``times`` calls, optionally
of one ``chat_id``. Telegram's flood limits: ``sandbox.pace.per_chat = 1.0`` (and ``.overall = 30``).
What the bot did: ``sandbox.calls(method, status)``, ``sandbox.world`` (messages, files, callbacks),
``sandbox.spec_violations`` (must stay empty).
"""

from bot.sandbox.driver import ChatUser, NoReply, TelegramDriver, running_with_polling
from bot.sandbox.server import DEFAULT_TOKEN, BotApiSandbox

__all__ = ["DEFAULT_TOKEN", "BotApiSandbox", "ChatUser", "NoReply", "TelegramDriver", "running_with_polling"]
