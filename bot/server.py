"""One asyncio loop for everything: uvicorn serving a Starlette app (share viewer, webhook, web chat) and PTB.

``lightbox run`` and ``lightbox demo`` both start python-telegram-bot by hand (initialize, start, then polling
or a webhook) instead of ``run_polling``/``run_webhook``, which would own the loop; uvicorn runs as a task on
the same loop (:class:`WebServer`, with its signal handling switched off), so one Ctrl-C or SIGTERM stops both
cleanly (:func:`run_until_signal`).

Webhook mode: the route lives on the viewer's Starlette app, at the path of the ``--webhook`` URL. Telegram
sends ``X-Telegram-Bot-Api-Secret-Token`` with the secret given to ``setWebhook``; a request without the right
one gets 403 and never reaches the bot. Accepted updates are recorded in the database and processed in order
per chat by whichever worker holds the chat (:class:`bot.workers.ChatOrderedInbox`), so several workers can
sit behind one load balancer.
Conversation state is kept through :class:`bot.persistence.DatabasePersistence`; long work runs as jobs
(:class:`bot.workers.JobRunner`); ``/healthz``, ``/readyz`` and ``/metrics`` come from :mod:`bot.health`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from telegram import Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import Application

from bot.settings import Settings
from bot.workers import ChatOrderedInbox, JobRunner, new_worker_id
from store.filestore import FileStore
from store.models import ChatLink, ShareLink, Study

log = logging.getLogger("lightbox.server")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name, not a secret
DEFAULT_WEBHOOK_PATH = "/telegram/webhook"
MAX_UPDATE_BYTES = 1024 * 1024

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: this program installs one handler for bot and web."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """uvicorn on ``host:port`` as a task of the running loop. ``bind()`` early, then ``async with serving(app)``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._socket: socket.socket | None = None

    def bind(self) -> None:
        """Take the port now (``port=0`` picks a free one), so a busy port fails before any other work."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        self._socket = sock

    @property
    def url(self) -> str:
        """``http://host:port`` (after :meth:`bind`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in {"0.0.0.0", "[::]"}:  # noqa: S104 - only naming the address a browser should use
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    @contextlib.asynccontextmanager
    async def serving(self, app: Starlette) -> AsyncIterator[WebServer]:
        """Serve ``app`` while the block runs; stop gracefully (2 s at most for open requests) afterwards."""
        if self._socket is None:
            self.bind()
        assert self._socket is not None
        config = uvicorn.Config(
            app, lifespan="on", log_config=None, access_log=False, server_header=False, timeout_graceful_shutdown=2
        )
        server = _QuietServer(config)
        task = asyncio.create_task(server.serve(sockets=[self._socket]))
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the web server stopped while starting")
            await asyncio.sleep(0.01)
        try:
            yield self
        finally:
            server.should_exit = True
            await task
            self._socket.close()
            self._socket = None


def build_web_app(
    settings: Settings,
    sessions: sessionmaker[Session],
    files: FileStore,
    *,
    extra_routes: list[BaseRoute] | None = None,
    on_first_open: Callable[[str], Awaitable[None]] | None = None,
    on_locked: Callable[[str], Awaitable[None]] | None = None,
    with_health: bool = False,
) -> Starlette:
    """The share viewer (with its security headers on every route) plus ``extra_routes``.

    ``with_health`` puts ``/healthz``, ``/readyz`` and ``/metrics`` (:mod:`bot.health`) in front and counts
    share-link opens.
    """
    from bot.commands.serve import viewer_secret
    from share.web import create_app

    app = create_app(
        sessions,
        files,
        public_url=settings.public_url,
        secret_key=viewer_secret(settings),
        on_first_open=on_first_open,
        on_locked=on_locked,
        extra_routes=list(extra_routes or []),
    )
    if with_health:
        from bot.health import ShareOpenCounter, health_routes

        app.router.routes[0:0] = health_routes(ready_checks(settings, sessions))
        app.add_middleware(ShareOpenCounter)
    return app


def ready_checks(settings: Settings, sessions: sessionmaker[Session]) -> dict[str, Callable[[], Awaitable[None]]]:
    """What ``/readyz`` checks: the database, and the image store (the folder, or the PACS with dicomweb)."""
    from bot.health import database_check, dicomweb_check, folder_check

    checks = {"database": database_check(sessions), "store": folder_check(settings.dicom_dir)}
    if settings.store == "dicomweb":
        checks["dicomweb"] = dicomweb_check(
            settings.dicomweb_url, username=settings.dicomweb_username, password=settings.dicomweb_password
        )
    return checks


def share_notifier(
    application: AnyApplication, sessions: sessionmaker[Session], template: str = "share_opened"
) -> Callable[[str], Awaitable[None]]:
    """Tell the patient in their chat when a share link of theirs is opened for the first time (or, with
    ``template="share_locked"``, locked after too many wrong access codes)."""
    from handlers import texts

    def chats_and_texts(public_id: str) -> list[tuple[int, str]]:
        """Each chat of the link's patient, with the notice in that chat's language."""
        with sessions() as session:
            link = session.scalars(select(ShareLink).where(ShareLink.public_id == public_id)).first()
            if link is None:
                return []
            study = session.get(Study, link.study_id)
            out = []
            for chat in session.scalars(select(ChatLink).where(ChatLink.patient_id == link.patient_id)):
                with texts.speaking(chat.language or chat.app_language):
                    what = texts.mid_sentence(texts.modality_word(study.modalities if study is not None else ""))
                    out.append((chat.chat_id, texts.render(template, what=what, recipient=link.recipient_label)))
            return out

    async def notify(public_id: str) -> None:
        for chat_id, text in await asyncio.to_thread(chats_and_texts, public_id):
            try:
                await application.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML)
            except TelegramError as exc:
                log.warning("share-opened notice not sent", extra={"share": public_id, "error": type(exc).__name__})

    return notify


# ---------------------------------------------------------------- webhook


def webhook_path(webhook_url: str) -> str:
    """The path the webhook route listens on: the ``--webhook`` URL's path (a default when it has none)."""
    path = urlsplit(webhook_url).path.rstrip("/")
    return path or DEFAULT_WEBHOOK_PATH


def webhook_route(path: str, application: AnyApplication, secret: str, inbox: ChatOrderedInbox | None = None) -> Route:
    """POST ``path``: an update from Telegram, accepted only with the right secret-token header.

    With ``inbox`` the update is recorded in the database and processed in order per chat by whichever
    worker holds that chat (:mod:`bot.workers`); without, it goes to this process's update queue.
    """
    expected = secret.encode()

    async def receive(request: Request) -> Response:
        sent = request.headers.get(SECRET_HEADER, "").encode()
        if not sent or not hmac.compare_digest(sent, expected):
            log.warning("webhook call refused: wrong or missing secret token")
            return JSONResponse({"error": "forbidden"}, status_code=403)
        body = await request.body()
        if len(body) > MAX_UPDATE_BYTES:
            return JSONResponse({"error": "too large"}, status_code=413)
        try:
            data = json.loads(body)
            update = Update.de_json(data, application.bot)
        except (ValueError, TypeError, KeyError):
            return JSONResponse({"error": "not an update"}, status_code=400)
        if inbox is not None:
            await inbox.accept(update, data)
        else:
            await application.update_queue.put(update)
        return Response(status_code=200)

    return Route(path, receive, methods=["POST"])


def check_webhook_url(webhook_url: str) -> None:
    """Raise ValueError unless ``webhook_url`` is an absolute http(s) URL."""
    parts = urlsplit(webhook_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("the webhook URL must look like https://host/path")


@dataclass(frozen=True)
class BotReady:
    """Where the running bot's web app listens (handed to ``on_ready``)."""

    url: str
    webhook_path: str | None


async def run_bot(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    webhook_url: str | None = None,
    base_url: str | None = None,
    base_file_url: str | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[BotReady], None] | None = None,
) -> None:
    """``lightbox run``: the bot (long polling, or webhook at ``webhook_url``) and the viewer until ``stop``.

    ``base_url``/``base_file_url`` point PTB at another Bot API server (the sandbox in tests).
    """
    from bot.app import build_application, build_services, housekeeping, running
    from bot.persistence import DatabasePersistence

    if not settings.bot_token:
        raise ValueError("LIGHTBOX_BOT_TOKEN is not set")
    if base_url is None and settings.bot_api_url:
        base_url = settings.bot_api_url
        if base_file_url is None and base_url.endswith("/bot"):
            base_file_url = base_url[: -len("/bot")] + "/file/bot"
    stop = stop or asyncio.Event()
    server = WebServer(host, port)
    server.bind()
    services = build_services(settings)
    tidy = asyncio.create_task(asyncio.to_thread(housekeeping, services))
    application = build_application(
        services,
        settings.bot_token,
        base_url=base_url,
        base_file_url=base_file_url,
        persistence=DatabasePersistence(services.sessions),
    )
    notifier = share_notifier(application, services.sessions)
    lock_notifier = share_notifier(application, services.sessions, "share_locked")
    worker = new_worker_id()
    jobs = JobRunner(application, services, worker=worker, lease_seconds=settings.lease_seconds)
    services.background_jobs = True  # uploads become jobs any worker can run and take over
    try:
        if webhook_url is None:
            web = build_web_app(
                settings,
                services.sessions,
                services.files,
                on_first_open=notifier,
                on_locked=lock_notifier,
                with_health=True,
            )
            async with running(application), server.serving(web):
                await jobs.start()
                log.info("bot running with long polling")
                if on_ready is not None:
                    on_ready(BotReady(server.url, None))
                try:
                    await stop.wait()
                finally:
                    await jobs.stop()
            return
        secret = settings.webhook_secret
        if not secret:
            # One process can still check Telegram's calls; several workers need the same LIGHTBOX_WEBHOOK_SECRET.
            secret = secrets.token_urlsafe(32)
            log.warning("LIGHTBOX_WEBHOOK_SECRET is not set; using a random secret for this process")
        path = webhook_path(webhook_url)
        inbox = ChatOrderedInbox(application, services.sessions, worker=worker, lease_seconds=settings.lease_seconds)
        web = build_web_app(
            settings,
            services.sessions,
            services.files,
            on_first_open=notifier,
            on_locked=lock_notifier,
            extra_routes=[webhook_route(path, application, secret, inbox)],
            with_health=True,
        )
        await application.initialize()
        await application.start()
        await inbox.start()
        await jobs.start()
        try:
            async with server.serving(web):
                await application.bot.set_webhook(
                    webhook_url, secret_token=secret, allowed_updates=["message", "edited_message", "callback_query"]
                )
                log.info("bot running with a webhook")
                if on_ready is not None:
                    on_ready(BotReady(server.url, path))
                await stop.wait()
        finally:
            await jobs.stop()
            await inbox.stop()
            await application.stop()
            await application.shutdown()
    finally:
        with contextlib.suppress(Exception):
            await tidy  # housekeeping is best effort; its errors must not hide the real one
        bind = services.sessions.kw.get("bind")
        if bind is not None:
            bind.dispose()


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` on a fresh loop; SIGINT and SIGTERM set ``stop`` so it can shut down cleanly."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await main(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    asyncio.run(runner())
