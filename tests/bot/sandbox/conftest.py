"""Fixtures for the Bot API sandbox tests: a running sandbox, its driver, and a real PTB Application on it."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from PIL import Image
from telegram.ext import AIORateLimiter, Application, BaseHandler, BaseRateLimiter

from bot.sandbox import BotApiSandbox, TelegramDriver, running_with_polling


@pytest.fixture
async def sandbox() -> AsyncIterator[BotApiSandbox]:
    async with BotApiSandbox() as running:
        yield running
        assert running.spec_violations == [], "the sandbox returned objects that stray from the Bot API spec"


@pytest.fixture
def driver(sandbox: BotApiSandbox) -> TelegramDriver:
    return TelegramDriver(sandbox, timeout=10.0)


def build_app(sandbox: BotApiSandbox, handlers: list[BaseHandler], *,  # type: ignore[type-arg]
              rate_limiter: BaseRateLimiter | None = None) -> Application:  # type: ignore[type-arg]
    """A real PTB Application pointed at the sandbox through base_url/base_file_url (nothing patched)."""
    app = sandbox.configure(Application.builder()).rate_limiter(rate_limiter or AIORateLimiter(max_retries=3)).build()
    for handler in handlers:
        app.add_handler(handler)
    return app


polling = running_with_polling  # started by hand: initialize, start, updater.start_polling


def png(width: int, height: int, shade: int = 128) -> bytes:
    """A real PNG of the given size (a gradient, so different shades give different bytes)."""
    image = Image.linear_gradient("L").resize((width, height)).point(lambda v: (v + shade) % 256)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()

