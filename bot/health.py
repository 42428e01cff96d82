"""Liveness, readiness and Prometheus metrics for a worker behind a load balancer.

- ``GET /healthz``: the process is up and its event loop answers (no dependency is touched).
- ``GET /readyz``: the database answers ``SELECT 1``, the image store is usable (the local folder is
  writable, or with ``LIGHTBOX_STORE=dicomweb`` the PACS answers a QIDO query); 503 with the failing part
  named otherwise, so the balancer stops sending this worker traffic.
- ``GET /metrics``: ``prometheus-client`` text: updates handled, replies sent, render time, imports,
  share-link opens, errors.

Counters are per process; Prometheus sums the workers. Nothing here carries patient data: labels are
method names and fixed words.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from telegram.ext import BaseRateLimiter

from bot.pacing import PACED_ENDPOINTS

UPDATES_HANDLED = Counter("lightbox_updates_handled", "Telegram updates processed by this worker")
UPDATES_DUPLICATE = Counter("lightbox_updates_duplicate", "Webhook updates dropped because they were seen before")
REPLIES_SENT = Counter("lightbox_replies_sent", "Messages sent or edited in chats", ["method"])
RENDER_SECONDS = Histogram("lightbox_render_seconds", "Time to render one chat preview",
                           buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
IMPORTS = Counter("lightbox_imports", "Import jobs finished", ["outcome"])
SHARE_OPENS = Counter("lightbox_share_link_opens", "Share-link viewer pages served")
ERRORS = Counter("lightbox_errors", "Errors logged", ["logger"])

ReadyCheck = Callable[[], Awaitable[None]]


# ---------------------------------------------------------------- counting


class CountingRateLimiter(BaseRateLimiter[int]):
    """Wraps the bot's rate limiter and counts each message that went out to a chat."""

    def __init__(self, inner: BaseRateLimiter[int]) -> None:
        self.inner = inner

    async def initialize(self) -> None:
        await self.inner.initialize()

    async def shutdown(self) -> None:
        await self.inner.shutdown()

    async def process_request(self, callback: Callable[..., Coroutine[Any, Any, bool | Any]],
                              args: Any, kwargs: dict[str, Any], endpoint: str, data: dict[str, Any],
                              rate_limit_args: int | None) -> bool | Any:
        result = await self.inner.process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
        if endpoint in PACED_ENDPOINTS:
            REPLIES_SENT.labels(endpoint).inc()
        return result


class ErrorCounter(logging.Handler):
    """Counts ERROR (and worse) log records per logger name: the router logs every unexpected error once."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        ERRORS.labels(record.name[:64]).inc()


def install_error_counter(logger: logging.Logger | None = None) -> None:
    """Count errors logged under ``logger`` (default: the root logger), once per process."""
    target = logger or logging.getLogger()
    if not any(isinstance(h, ErrorCounter) for h in target.handlers):
        target.addHandler(ErrorCounter())


class _Done:
    """An awaitable that is already finished (for hooks called from worker threads)."""

    def __await__(self) -> Any:
        return iter(())


def rendered(seconds: float) -> Awaitable[None]:
    """Services hook ``rendered``: records one preview's render time when called (from the rendering
    thread, where nothing can be awaited); the returned awaitable is already done."""
    RENDER_SECONDS.observe(seconds)
    return _Done()


_SHARE_PAGE = re.compile(r"^/s/[^/]+/?$")


class ShareOpenCounter:
    """ASGI middleware: counts share-link viewer pages answered with 200 (the opens that showed images)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or not _SHARE_PAGE.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 200:
                SHARE_OPENS.inc()
            await send(message)

        await self.app(scope, receive, counting_send)


# ---------------------------------------------------------------- readiness checks


def database_check(sessions: sessionmaker[Session]) -> ReadyCheck:
    """Ready when the database answers ``SELECT 1``."""

    def ping() -> None:
        with sessions() as session:
            session.execute(text("SELECT 1"))

    async def check() -> None:
        await asyncio.to_thread(ping)

    return check


def folder_check(folder: Path) -> ReadyCheck:
    """Ready when the local store folder exists (created if missing) and is writable."""

    def probe() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / ".ready-probe"
        marker.write_bytes(b"ok")
        marker.unlink()

    async def check() -> None:
        await asyncio.to_thread(probe)

    return check


def dicomweb_check(base_url: str, *, username: str = "", password: str = "", timeout: float = 3.0) -> ReadyCheck:
    """Ready when the PACS answers a one-result QIDO study search with 200 or 204."""
    import httpx

    auth = httpx.BasicAuth(username, password) if username else None

    async def check() -> None:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, auth=auth) as client:
            answer = await client.get(f"{base_url.rstrip('/')}/studies", params={"limit": "1"},
                                      headers={"Accept": "application/dicom+json"})
        if answer.status_code not in (200, 204):
            raise RuntimeError(f"PACS answered {answer.status_code}")

    return check


# ---------------------------------------------------------------- routes


def health_routes(checks: dict[str, ReadyCheck], *, timeout: float = 5.0) -> list[Route]:
    """``/healthz``, ``/readyz`` (running ``checks`` by name, each bounded by ``timeout``) and ``/metrics``."""

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        results: dict[str, str] = {}
        for name, check in checks.items():
            started = time.perf_counter()
            try:
                await asyncio.wait_for(check(), timeout)
                results[name] = "ok"
            except Exception as exc:  # any failure means not ready; its type is enough to say why
                results[name] = f"failed: {type(exc).__name__}"
            logging.getLogger("lightbox.health").debug("ready check %s took %.3f s", name,
                                                       time.perf_counter() - started)
        ready = all(v == "ok" for v in results.values())
        return JSONResponse({"ready": ready, "checks": results}, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
