"""The demo's web chat page: one person talks to the bot through the Bot API sandbox, in a browser.

Routes (added to the share viewer's app, so they carry its strict security headers, CSP ``default-src 'self'``):

- ``GET /``: the page (``templates/chat.html``; script and styles from ``/chat/static``; no third-party origins).
- ``GET /api/messages?since=REV``: the chat as JSON; waits up to 10 s for something newer than ``REV``.
- ``POST /api/say`` ``{"text": ...}``: the person sends a text message.
- ``POST /api/tap`` ``{"message_id": N, "data": ...}``: the person taps an inline button that is on screen.
- ``POST /api/upload`` (multipart, field ``file``): the person sends a file as a document.
- ``GET /api/media/{message_id}/{version}``: the photo, clip or file a message shows.

Texts go to the page as Telegram shows them: plain text plus entities (bold, links, ...); the page builds DOM
nodes from them with ``textContent`` and never parses HTML, so nothing the bot or a file says can inject
markup. Posts must be JSON or carry ``X-Lightbox-Chat: 1`` and come from this origin, so another web page
cannot make the demo patient say or send anything.

The routes run on the sandbox's own event loop (one loop for sandbox, bot and web), so they read and change
the sandbox's memory directly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bot.sandbox import BotApiSandbox
from bot.sandbox.world import SandboxMessage, StoredFile

HERE = Path(__file__).resolve().parent
POLL_SECONDS = 10.0
MAX_TEXT = 4096
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # the Bot API's limit for a bot's downloads is lower (20 MB); the bot says so
_START_CODE = re.compile(r"^(/start)\s+\S+$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


class ChatView:
    """The web chat's view of one sandbox user's private chat with the bot."""

    def __init__(self, sandbox: BotApiSandbox, user_id: int) -> None:
        self.sandbox = sandbox
        self.user_id = user_id
        self.closing = False
        self.templates = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                                     autoescape=select_autoescape(default=True))

    # ------------------------------------------------------------ reading
    def messages(self) -> list[SandboxMessage]:
        return list(self.sandbox.world.chat_messages.get(self.user_id, []))

    def revision(self) -> int:
        """Grows whenever anything on screen changes: a message, an edit, a deletion, a button answer."""
        messages = self.messages()
        answered = sum(1 for c in self.sandbox.world.callbacks.values()
                       if c.answered and c.message.chat_id == self.user_id)
        return len(messages) + sum(m.version for m in messages) + sum(m.deleted for m in messages) + answered

    def notices(self) -> list[dict[str, Any]]:
        """Answers to button taps that carry a text (Telegram shows them as a toast or an alert)."""
        out = []
        for record in self.sandbox.world.callbacks.values():
            if record.message.chat_id == self.user_id and record.answered and record.answer_text:
                out.append({"id": record.query_id, "text": record.answer_text, "alert": record.show_alert})
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "rev": self.revision(),
            "messages": [message_json(m) for m in self.messages() if not m.deleted],
            "notices": self.notices(),
            "keyboard": reply_keyboard_json(self.messages()),
        }

    def find(self, message_id: int) -> SandboxMessage | None:
        return self.sandbox.world.messages.get((self.user_id, message_id))


def _media(message: SandboxMessage) -> tuple[str, StoredFile] | None:
    content = message.content
    if content.photo:
        return "photo", content.photo[-1]
    if content.animation is not None:
        return "animation", content.animation
    if content.document is not None:
        return "document", content.document
    return None


def message_json(message: SandboxMessage) -> dict[str, Any]:
    """One message as the page needs it: text and entities, media link, inline buttons."""
    content = message.content
    text = content.text
    if text is not None and not message.from_bot:
        text = _START_CODE.sub(r"\1 •••", text)  # the one-time link code is not shown again
    out: dict[str, Any] = {
        "id": message.message_id,
        "version": message.version,
        "from_bot": message.from_bot,
        "date": message.date,
        "text": text,
        "entities": content.entities if message.from_bot else [],
        "caption": content.caption,
        "caption_entities": content.caption_entities if message.from_bot else [],
        "edited": message.edited,
    }
    out["buttons"] = [
        [{key: button[key] for key in ("text", "callback_data", "url") if key in button} for button in row]
        for row in message.buttons
    ]
    media = _media(message)
    if media is not None:
        kind, stored = media
        mime = stored.mime_type or ("image/jpeg" if kind == "photo" else "application/octet-stream")
        if kind == "document" and mime.startswith("image/") and mime != "image/svg+xml":
            kind = "image_document"
        out["media"] = {
            "kind": kind,
            "url": f"/api/media/{message.message_id}/{message.version}",
            "name": stored.file_name or "",
            "mime": mime,
            "width": stored.width,
            "height": stored.height,
            "size": stored.file_size,
        }
    return out


def reply_keyboard_json(messages: list[SandboxMessage]) -> list[list[str]]:
    """The reply keyboard the bot's latest message with one left on screen (rows of button texts)."""
    for message in reversed(messages):
        if not message.from_bot or message.deleted:
            continue
        keyboard = message.reply_keyboard
        if keyboard is None:
            continue
        rows = keyboard.get("keyboard")
        if not rows:
            return []  # removed, or force-reply
        return [[b if isinstance(b, str) else str(b.get("text", "")) for b in row] for row in rows]
    return []


# ---------------------------------------------------------------- guarding the posts


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's cross-site request (browsers send Origin on POST)
    host = request.headers.get("host", "")
    return origin in {f"http://{host}", f"https://{host}"}


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> dict[str, Any] | JSONResponse:
    if not _same_origin(request):
        return _refuse(403, "This page can only be used from its own address.")
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return _refuse(415, "Send JSON.")
    try:
        body = await request.json()
    except ValueError:
        return _refuse(400, "That was not valid JSON.")
    if not isinstance(body, dict):
        return _refuse(400, "Send a JSON object.")
    return body


def close(view: ChatView) -> None:
    """Answer every waiting poll now (before the server stops), and any later one at once."""
    view.closing = True
    view.sandbox.world.changed()


def webchat_routes(sandbox: BotApiSandbox, user_id: int, view: ChatView | None = None) -> list[BaseRoute]:
    """The page, its API and its static files for the chat of sandbox user ``user_id``.

    Pass your own ``view`` to :func:`close` it when the server stops, so open long polls end at once.
    """
    view = view or ChatView(sandbox, user_id)

    async def page(request: Request) -> Response:
        user = sandbox.world.users.get(user_id, {})
        html = view.templates.get_template("chat.html").render(
            user_name=user.get("first_name", "you"), bot_name=sandbox.world.bot_user.get("first_name", "Bot"))
        return HTMLResponse(html)

    async def messages(request: Request) -> Response:
        try:
            since = int(request.query_params.get("since", "-1"))
        except ValueError:
            return _refuse(400, "since must be a number")
        try:
            wait = max(0.0, min(float(request.query_params.get("wait", POLL_SECONDS)), POLL_SECONDS))
        except ValueError:
            wait = POLL_SECONDS
        if view.revision() <= since and wait > 0 and not view.closing:
            try:
                await sandbox.world.wait_for(lambda: view.closing or view.revision() > since, wait)
            except TimeoutError:
                pass
        return JSONResponse(view.snapshot())

    async def say(request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return _refuse(400, "Type a message first.")
        if len(text) > MAX_TEXT:
            return _refuse(400, f"A message can be at most {MAX_TEXT} characters.")
        message = sandbox.user_message(user_id, text=text)
        return JSONResponse({"ok": True, "message_id": message.message_id})

    async def tap(request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        message_id, data = body.get("message_id"), body.get("data")
        if not isinstance(message_id, int) or not isinstance(data, str):
            return _refuse(400, "message_id (number) and data (text) are needed.")
        message = view.find(message_id)
        if message is None or message.deleted or not message.from_bot:
            return _refuse(404, "That message is gone.")
        if not any(b.get("callback_data") == data for row in message.buttons for b in row):
            return _refuse(409, "That button is no longer there.")
        record = sandbox.user_tap(user_id, message, data)
        return JSONResponse({"ok": True, "query_id": record.query_id})

    async def upload(request: Request) -> Response:
        if not _same_origin(request) or request.headers.get("x-lightbox-chat") != "1":
            return _refuse(403, "This page can only be used from its own address.")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_UPLOAD_BYTES + 64 * 1024:
            return _refuse(413, "That file is too large for the demo (50 MB at most).")
        try:
            async with request.form(max_files=1, max_fields=2, max_part_size=MAX_UPLOAD_BYTES) as form:
                item = form.get("file")
                if item is None or isinstance(item, str):
                    return _refuse(400, "Choose a file first.")
                data = await item.read(MAX_UPLOAD_BYTES + 1)
                name = _SAFE_NAME.sub("_", Path(item.filename or "upload").name)[:128] or "upload"
                mime = item.content_type or "application/octet-stream"
                caption = form.get("caption")
        except Exception:  # multipart parser errors: a broken or oversized form
            return _refuse(400, "That upload did not arrive whole. Please try again.")
        if len(data) > MAX_UPLOAD_BYTES:
            return _refuse(413, "That file is too large for the demo (50 MB at most).")
        if not data:
            return _refuse(400, "That file is empty.")
        message = sandbox.user_message(user_id, document=(name, data, mime),
                                       caption=caption if isinstance(caption, str) and caption else None)
        return JSONResponse({"ok": True, "message_id": message.message_id})

    async def media(request: Request) -> Response:
        # The version in the path only makes each edit's picture a new address; the current one is served.
        message = view.find(int(request.path_params["message_id"]))
        found = _media(message) if message is not None and not message.deleted else None
        if message is None or found is None:
            return _refuse(404, "No such picture.")
        kind, stored = found
        mime = stored.mime_type or ("image/jpeg" if kind == "photo" else "application/octet-stream")
        headers: dict[str, str] = {}
        if kind == "document" and not mime.startswith("image/"):
            name = _SAFE_NAME.sub("_", stored.file_name or "file")
            headers["content-disposition"] = f'attachment; filename="{name}"'
            mime = "application/octet-stream"
        return Response(stored.data, media_type=mime, headers=headers)

    return [
        Route("/", page, methods=["GET"]),
        Route("/api/messages", messages, methods=["GET"]),
        Route("/api/say", say, methods=["POST"]),
        Route("/api/tap", tap, methods=["POST"]),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/media/{message_id:int}/{version:int}", media, methods=["GET"]),
        Mount("/chat/static", app=StaticFiles(directory=str(HERE / "static")), name="chat-static"),
    ]
