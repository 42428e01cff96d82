"""Fixtures for the Bot API sandbox tests: a running sandbox, its driver, and a real PTB Application on it."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Callable

import pytest
from PIL import Image
from telegram.ext import AIORateLimiter, Application, BaseHandler, BaseRateLimiter

from bot.sandbox import BotApiSandbox, TelegramDriver


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
    builder = (
        Application.builder()
        .token(sandbox.token)
        .base_url(sandbox.base_url)
        .base_file_url(sandbox.base_file_url)
        .rate_limiter(rate_limiter or AIORateLimiter(max_retries=3))
    )
    app = builder.build()
    for handler in handlers:
        app.add_handler(handler)
    return app


@contextlib.asynccontextmanager
async def polling(app: Application) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    """Start the Application by hand with long polling, as `lightbox run` does; stop it afterwards."""
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0.0, timeout=2)
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


def png(width: int, height: int, shade: int = 128) -> bytes:
    """A real PNG of the given size (a gradient, so different shades give different bytes)."""
    image = Image.linear_gradient("L").resize((width, height)).point(lambda v: (v + shade) % 256)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


Factory = Callable[..., Application]  # type: ignore[type-arg]
