"""The composition root: services from settings, the python-telegram-bot Application, and running it.

One place wires everything: :func:`build_services` (database, file store, render cache),
:func:`build_application` (PTB with the per-chat pace limiter, Lightbox's handlers and commands), and
:func:`running` (started by hand: initialize, start, polling; never ``run_polling``, so the web viewer can
share the event loop).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from telegram import BotCommand
from telegram.ext import Application, ApplicationBuilder, BasePersistence

from bot.pacing import PerChatRateLimiter
from bot.settings import Settings
from handlers.router import COMMANDS, commands, register
from handlers.services import SERVICES_KEY, Services
from handlers.texts import LANGUAGES
from store.db import make_engine, session_factory, upgrade
from store.filestore import FileStore

log = logging.getLogger("lightbox.app")


def open_files(settings: Settings, sessions: sessionmaker[Session]) -> FileStore:
    """Where images are read from: the file store, or with ``LIGHTBOX_STORE=dicomweb`` the PACS behind a
    bounded local cache (a :class:`store.pacs_store.PacsFileStore`). Every command that shows or erases
    images opens them here, so none of them misses the PACS-only ones."""
    if settings.store != "dicomweb":
        return FileStore(settings.dicom_dir)
    from store.pacs_store import pacs_store

    if not settings.dicomweb_url:
        raise ValueError("LIGHTBOX_STORE=dicomweb needs LIGHTBOX_DICOMWEB_URL")
    return pacs_store(settings.dicom_dir, sessions, url=settings.dicomweb_url,
                      username=settings.dicomweb_username, password=settings.dicomweb_password,
                      cache_root=settings.data_dir / "pacs-cache", cache_limit_bytes=settings.pacs_cache_bytes)


def build_services(settings: Settings, *, migrate: bool = True) -> Services:
    """Database (migrated to the newest schema), file store and caches for ``settings``."""
    url = settings.effective_database_url
    if migrate:
        upgrade(url)
    engine = make_engine(url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from bot.health import rendered

    sessions = session_factory(engine)
    files = open_files(settings, sessions)
    return Services(
        hooks={"rendered": rendered},
        sessions=sessions,
        files=files,
        work_dir=settings.data_dir / "work",
        public_url=settings.public_url,
        bot_username=settings.bot_username,
        max_pixels=settings.max_pixels,
        max_upload_bytes=settings.max_upload_bytes,
        cache_dir=settings.cache_dir,
    )


def housekeeping(services: Services) -> tuple[int, int]:
    """Start-up tidying (worker thread): temporary files a killed import left, and stored files no row
    names (a crash between erasing rows and files). Returns (temporaries removed, orphans removed)."""
    from store.erasure import sweep_orphan_files

    temporaries = services.files.remove_stale_temporaries()
    orphans = sweep_orphan_files(services.sessions, services.files)
    if temporaries or orphans:
        log.info("housekeeping removed %d temporary and %d orphan files", temporaries, orphans)
    return temporaries, orphans


async def _post_init(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    await application.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
    # The menu in each other language Lightbox speaks, for Telegram apps set to it.
    for lang in LANGUAGES:
        if lang != "en":
            await application.bot.set_my_commands(
                [BotCommand(name, text) for name, text in commands(lang)], language_code=lang
            )


def build_application(
    services: Services,
    token: str,
    *,
    base_url: str | None = None,
    base_file_url: str | None = None,
    pace_interval: float = 1.0,
    concurrent_updates: bool | int = 8,
    persistence: BasePersistence[Any, Any, Any] | None = None,
) -> Application[Any, Any, Any, Any, Any, Any]:
    """A PTB Application with Lightbox's handlers, talking to Telegram (or a sandbox at ``base_url``).

    ``persistence`` (e.g. :class:`bot.persistence.DatabasePersistence`) keeps conversation state in the
    database, so another worker or a restarted one carries on. Replies sent and errors logged are counted
    for ``/metrics`` (:mod:`bot.health`).
    """
    from bot.health import CountingRateLimiter, install_error_counter

    install_error_counter()
    builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = (
        Application.builder()
        .token(token)
        .rate_limiter(CountingRateLimiter(PerChatRateLimiter(pace_interval)))
        .concurrent_updates(concurrent_updates)
        .post_init(_post_init)
    )
    if base_url:
        builder = builder.base_url(base_url)
    if base_file_url:
        builder = builder.base_file_url(base_file_url)
    if persistence is not None:
        builder = builder.persistence(persistence)
    application = builder.build()
    application.bot_data[SERVICES_KEY] = services
    register(application)
    return application


@contextlib.asynccontextmanager
async def running(
    application: Application[Any, Any, Any, Any, Any, Any], *, poll_interval: float = 0.0, timeout: int = 10
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """Start ``application`` by hand with long polling; stop it cleanly afterwards."""
    await application.initialize()
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=poll_interval, timeout=timeout, drop_pending_updates=False)
    try:
        yield application
    finally:
        if application.updater.running:
            await application.updater.stop()
        await application.stop()
        await application.shutdown()
