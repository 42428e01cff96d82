"""The Bot API sandbox: a local HTTP server that speaks the Bot API subset Lightbox uses.

A real python-telegram-bot ``Application`` talks to it over HTTP through ``base_url(sandbox.base_url)`` and
``base_file_url(sandbox.base_file_url)``; nothing inside PTB is patched. Every request is checked against
Telegram's own machine-readable spec (``spec/bot-api.json``) and Telegram's limits, and refused the way
Telegram refuses it; every result is checked against the spec too, and any stray is recorded in
:attr:`BotApiSandbox.spec_violations` (tests assert it stays empty).

The server runs *inside the caller's event loop* (uvicorn's ``Server.serve`` as a task), not in a thread: the
PTB Application, the sandbox and the test driver then share one loop, so the sandbox's memory needs no locks,
the driver can simply ``await`` what the bot sends, and pytest-asyncio tests need nothing special. The cost is
that a blocking call in the test or bot stalls the sandbox too, which is exactly what the bot must never do
anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from telegram.ext import ApplicationBuilder

from bot.sandbox.apispec import SpecError, Upload, check_object, check_result, coerce_params, load_spec
from bot.sandbox.entities import command_entities
from bot.sandbox.errors import ApiError, bad_request
from bot.sandbox.methods import BotApi, update_allowed
from bot.sandbox.trouble import Pace, Trouble
from bot.sandbox.world import ApiCall, CallbackRecord, Content, SandboxMessage, World

log = logging.getLogger(__name__)

DEFAULT_TOKEN = "123456789:SANDBOX-lightbox-token"  # noqa: S105 - a fake token for the local sandbox
MAX_REQUEST_PART = 60 * 1024 * 1024


@dataclass
class WebhookAttempt:
    """One POST of an update to the bot's webhook."""

    update_id: int
    status: int | None
    error: str | None
    secret_sent: bool


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the sandbox lives inside someone else's program and loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class BotApiSandbox:
    """A Bot API look-alike on 127.0.0.1. Use ``async with BotApiSandbox() as sandbox:``.

    Arrange trouble with :attr:`trouble` (429, errors, slow answers, dropped connections) and Telegram's flood
    limits with :attr:`pace`; read what happened in :attr:`world` (messages, files, calls). Tests normally talk
    to it through :class:`bot.sandbox.driver.TelegramDriver`.
    """

    def __init__(self, token: str = DEFAULT_TOKEN, *, callback_answer_timeout: float = 15.0,
                 webhook_retry_delay: float = 0.5, routes: Sequence[BaseRoute] = ()) -> None:
        bot_id, _, secret = token.partition(":")
        if not bot_id.isdigit() or not secret:
            raise ValueError("a bot token looks like '<digits>:<secret>'")
        self.token = token
        self.spec = load_spec()
        self.world = World(int(bot_id))
        self.api = BotApi(self.world, callback_answer_timeout=callback_answer_timeout)
        self.api.on_webhook_change = self.world.changed
        self.trouble = Trouble()
        self.pace = Pace()
        self.spec_violations: list[str] = []
        self.webhook_attempts: list[WebhookAttempt] = []
        self.webhook_retry_delay = webhook_retry_delay
        self.app = Starlette(routes=[
            Route("/bot{token}/{method}", self._bot_api, methods=["GET", "POST"]),
            Route("/file/bot{token}/{path:path}", self._file, methods=["GET"]),
            *routes,  # e.g. the demo's web chat page, served by the same server
        ])
        self._server: _EmbeddedServer | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._port = 0
        self._user_ids = iter(range(1_000_001, 2_000_000_000))

    # --- addresses ---------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if not self._port:
            raise RuntimeError("the sandbox is not running; await start() first")
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """For ``Application.builder().base_url(...)``."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``Application.builder().base_file_url(...)``."""
        return f"{self.url}/file/bot"

    def configure(self, builder: ApplicationBuilder) -> ApplicationBuilder:
        """Point a PTB ``ApplicationBuilder`` at this sandbox (token, base_url, base_file_url)."""
        return builder.token(self.token).base_url(self.base_url).base_file_url(self.base_file_url)

    # --- life cycle ----------------------------------------------------------------------------------------------
    async def start(self, port: int = 0) -> BotApiSandbox:
        """Serve on 127.0.0.1 (a free port unless ``port`` is given) in the running loop."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, lifespan="off", log_level="warning", access_log=False, http="h11",
                                timeout_graceful_shutdown=2)
        self._server = _EmbeddedServer(config)
        self._serve_task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._serve_task.done():
                self._serve_task.result()
                raise RuntimeError("the sandbox server stopped while starting")
            await asyncio.sleep(0.005)
        self._webhook_task = asyncio.create_task(self._deliver_webhooks())
        log.info("bot api sandbox listening", extra={"port": self._port})
        return self

    async def stop(self) -> None:
        """Answer pending long polls, stop webhook delivery and the server."""
        self.api.closing = True
        self.world.changed()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            await self._serve_task
        self._server = None

    async def __aenter__(self) -> BotApiSandbox:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # --- the Bot API ---------------------------------------------------------------------------------------------
    async def _bot_api(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401)
        shape = self.spec.method(request.path_params["method"])
        if shape is None:
            # Telegram answers an unknown method with 404 "Not Found" (not 400).
            self._record(request.path_params["method"], None, 404, "Not Found", time.monotonic())
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404)
        method = shape.name
        started = time.monotonic()
        try:
            raw, uploads, from_form = await self._read_params(request)
        except ApiError as error:
            self._record(method, None, error.status, error.description, started)
            return JSONResponse(error.to_api(), status_code=error.status)
        chat_id = _chat_id_of(raw)
        planned = self.trouble.plan(method, chat_id)
        if planned.delay:
            await asyncio.sleep(planned.delay)
        if planned.drop_before:
            self._record(method, chat_id, 0, "connection dropped before processing", started)
            return self._drop(request)
        try:
            if planned.error is not None:
                raise planned.error
            try:
                params = coerce_params(self.spec, shape, raw, from_form)
            except SpecError as error:
                raise bad_request(str(error)) from error
            self.pace.check(method, chat_id)
            result = await self.api.call(method, params, uploads)
        except ApiError as error:
            self._record(method, chat_id, error.status, error.description, started)
            return JSONResponse(error.to_api(), status_code=error.status)
        for problem in check_result(shape, result, self.spec):
            self.spec_violations.append(f"{method}: {problem}")
            log.error("sandbox result strays from the spec", extra={"method": method})
        if planned.drop_after:
            self._record(method, chat_id, 0, "connection dropped after processing", started)
            return self._drop(request)
        self._record(method, chat_id, 200, None, started)
        return JSONResponse({"ok": True, "result": result})

    async def _read_params(self, request: Request) -> tuple[dict[str, Any], dict[str, Upload], bool]:
        """Fields from the query string and a JSON, urlencoded or multipart body; uploads by part name."""
        raw: dict[str, Any] = dict(request.query_params)
        uploads: dict[str, Upload] = {}
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "POST" and content_type == "application/json":
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError as error:
                raise bad_request("can't parse JSON object") from error
            if not isinstance(body, dict):
                raise bad_request("can't parse JSON object")
            raw.update(body)
            return raw, uploads, False
        if request.method == "POST" and content_type in {"application/x-www-form-urlencoded",
                                                          "multipart/form-data"}:
            async with request.form(max_files=1000, max_fields=1000, max_part_size=MAX_REQUEST_PART) as form:
                for name, value in form.multi_items():
                    if isinstance(value, str):
                        raw[name] = value
                    else:
                        data = await value.read()
                        upload = Upload(value.filename or name, value.content_type or "", data)
                        uploads[name] = upload
                        raw[name] = upload
        return raw, uploads, True

    def _drop(self, request: Request) -> Response:
        """Abort the TCP connection this request came on, so the bot gets no answer at all."""
        client = request.scope.get("client")
        server = self._server
        if server is not None and client is not None:
            for connection in list(server.server_state.connections):
                if getattr(connection, "client", None) == tuple(client):
                    transport = getattr(connection, "transport", None)
                    if transport is not None:
                        transport.abort()
                        return Response(status_code=500)  # never reaches the bot: the connection is gone
        raise RuntimeError("the sandbox could not find the connection to drop")

    def _record(self, method: str, chat_id: int | None, status: int, description: str | None,
                started: float) -> None:
        self.world.calls.append(ApiCall(method, chat_id, status, description, started, time.monotonic()))
        self.world.changed()

    async def _file(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401)
        stored = self.world.file_by_path(request.path_params["path"])
        if stored is None:
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404)
        return Response(stored.data, media_type=stored.mime_type or "application/octet-stream")

    # --- webhook delivery ---------------------------------------------------------------------------------------
    async def _deliver_webhooks(self) -> None:
        """POST pending updates, in order, to the webhook URL with the secret-token header."""
        world = self.world
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0), trust_env=False) as client:
            while not self.api.closing:
                hook = self.api.webhook

                def due(hook_url: str = hook.url) -> bool:
                    if self.api.closing or self.api.webhook.url != hook_url:
                        return True
                    return bool(hook_url) and any(
                        update_allowed(u.kind, self.api.webhook.allowed_updates) for u in world.updates)

                if not due():
                    with contextlib.suppress(TimeoutError):
                        await world.wait_for(due, timeout=5.0)
                    continue
                if not hook.url or self.api.closing:
                    continue
                update = next(u for u in world.updates if update_allowed(u.kind, hook.allowed_updates))
                body = update.to_api()
                for problem in check_object("Update", body, self.spec):
                    self.spec_violations.append(f"webhook update: {problem}")
                headers = {}
                if hook.secret_token:
                    headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
                try:
                    response = await client.post(hook.url, json=body, headers=headers)
                except httpx.HTTPError as error:
                    self._webhook_failed(update.update_id, None, f"Connection failed: {type(error).__name__}",
                                         bool(headers))
                    await asyncio.sleep(self.webhook_retry_delay)
                    continue
                if 200 <= response.status_code < 300:
                    self.webhook_attempts.append(WebhookAttempt(update.update_id, response.status_code, None,
                                                                bool(headers)))
                    world.updates = [u for u in world.updates if u.update_id != update.update_id]
                    world.changed()
                else:
                    self._webhook_failed(update.update_id, response.status_code,
                                         f"Wrong response from the webhook: {response.status_code} "
                                         f"{_phrase(response.status_code)}", bool(headers))
                    await asyncio.sleep(self.webhook_retry_delay)

    def _webhook_failed(self, update_id: int, status: int | None, message: str, secret_sent: bool) -> None:
        self.webhook_attempts.append(WebhookAttempt(update_id, status, message, secret_sent))
        self.api.webhook.last_error_date = self.world.now()
        self.api.webhook.last_error_message = message
        self.world.changed()

    # --- what users do (the driver's primitives) ------------------------------------------------------------
    def add_user(self, first_name: str = "Alex", *, user_id: int | None = None, last_name: str | None = None,
                 username: str | None = None, language_code: str | None = "en") -> dict[str, Any]:
        """A Telegram user with a private chat with the bot."""
        if user_id is None:
            user_id = next(self._user_ids)
            while user_id in self.world.users:
                user_id = next(self._user_ids)
        return self.world.add_user(user_id, first_name, last_name, username, language_code)

    def user_message(self, user_id: int, *, text: str | None = None, document: tuple[str, bytes, str] | None = None,
                     photo: bytes | None = None, caption: str | None = None,
                     reply_to: SandboxMessage | None = None) -> SandboxMessage:
        """A message from a user to the bot, queued as an update (``document`` is (file_name, bytes, mime))."""
        world = self.world
        user = world.users[user_id]
        content = Content()
        if text is not None:
            content.text = text
            content.entities = command_entities(text)
        if caption is not None:
            content.caption = caption
            content.caption_entities = command_entities(caption)
        if document is not None:
            name, data, mime = document
            content.document = world.store_file(data, "document", file_name=name, mime_type=mime)
        if photo is not None:
            content.photo = self.api.photo(Upload("photo.jpg", "image/jpeg", photo), {})
        message = SandboxMessage(
            chat_id=user_id,
            message_id=world.new_message_id(user_id),
            date=world.now(),
            from_bot=False,
            sender=dict(user),
            chat=dict(world.chats[user_id]),
            content=content,
            reply_to=reply_to,
        )
        world.store_message(message)
        world.push_update("message", message.to_api())
        return message

    def user_tap(self, user_id: int, message: SandboxMessage, callback_data: str) -> CallbackRecord:
        """A tap on an inline button (or forged callback data): queues a callback_query update."""
        world = self.world
        record = CallbackRecord(
            query_id=world.new_callback_id(),
            user=dict(world.users[user_id]),
            message=message,
            data=callback_data,
            created=time.monotonic(),
        )
        world.callbacks[record.query_id] = record
        world.push_update("callback_query", {
            "id": record.query_id,
            "from": dict(record.user),
            "message": message.to_api(),
            "chat_instance": f"ci{message.chat_id}",
            "data": callback_data,
        })
        return record

    def block(self, user_id: int, blocked: bool = True) -> None:
        """The user blocks (or unblocks) the bot: sends to them get 403 Forbidden."""
        if blocked:
            self.world.blocked_by.add(user_id)
        else:
            self.world.blocked_by.discard(user_id)

    # --- what tests read -------------------------------------------------------------------------------------------
    def calls(self, method: str | None = None, status: int | None = None) -> list[ApiCall]:
        """The bot's requests so far, optionally one method's and/or with one answer status."""
        return [c for c in self.world.calls
                if (method is None or c.method == method) and (status is None or c.status == status)]


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _chat_id_of(raw: dict[str, Any]) -> int | None:
    value = raw.get("chat_id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
    return None
