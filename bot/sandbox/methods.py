"""The Bot API methods the sandbox answers, with Telegram's own limits and error descriptions.

Parameters arrive already typed and checked against the spec (see :mod:`bot.sandbox.apispec`); this module adds
what the spec's types cannot say: caption and text lengths after entity parsing, callback_data size, media group
size, photo size and dimensions, HTML validity, "message is not modified", unknown chats and messages.
"""

from __future__ import annotations

import io
import mimetypes
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from bot.sandbox.apispec import Upload
from bot.sandbox.entities import ParseError, parse_text, utf16_len
from bot.sandbox.errors import ApiError, bad_request
from bot.sandbox.world import Content, SandboxMessage, StoredFile, World

MB = 1024 * 1024
PHOTO_MAX_BYTES = 10 * MB
PHOTO_MAX_SIDES = 10_000
PHOTO_MAX_RATIO = 20
DOCUMENT_MAX_BYTES = 50 * MB
DOWNLOAD_MAX_BYTES = 20 * MB
CAPTION_MAX = 1024
TEXT_MAX = 4096
CALLBACK_DATA_MAX_BYTES = 64
CALLBACK_ANSWER_TEXT_MAX = 200
MEDIA_GROUP_SIZES = range(2, 11)
INLINE_BUTTONS_MAX = 100
THUMBNAIL_SIDE = 90

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same as a "
    "current content and reply markup of the message"
)
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
CHAT_ACTIONS = frozenset({
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
})
BUTTON_ACTIONS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query", "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat", "copy_text", "callback_game", "pay",
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")


@dataclass
class WebhookConfig:
    """What setWebhook asked for; the server's deliverer reads it."""

    url: str = ""
    secret_token: str | None = None
    max_connections: int = 40
    allowed_updates: list[str] = field(default_factory=list)
    last_error_date: int | None = None
    last_error_message: str | None = None


DEFAULT_UPDATES = frozenset({"message", "edited_message", "callback_query", "channel_post", "edited_channel_post"})


def update_allowed(kind: str, allowed: list[str]) -> bool:
    """Telegram's allowed_updates: empty means every kind except a few opt-in ones."""
    return kind in allowed if allowed else kind in DEFAULT_UPDATES


class BotApi:
    """Method implementations over one :class:`World`."""

    def __init__(self, world: World, callback_answer_timeout: float = 15.0) -> None:
        self.world = world
        self.webhook = WebhookConfig()
        self.on_webhook_change: Callable[[], None] = lambda: None
        self.callback_answer_timeout = callback_answer_timeout
        self.poll_allowed_updates: list[str] = []
        self._poll_generation = 0
        self.closing = False
        self._photo_sizes: dict[str, list[StoredFile]] = {}
        self.handlers: dict[str, Callable[[dict[str, Any], dict[str, Upload]], Any]] = {
            "getMe": self.get_me,
            "setWebhook": self.set_webhook,
            "deleteWebhook": self.delete_webhook,
            "getWebhookInfo": self.get_webhook_info,
            "sendMessage": self.send_message,
            "sendPhoto": self.send_photo,
            "sendDocument": self.send_document,
            "sendAnimation": self.send_animation,
            "sendMediaGroup": self.send_media_group,
            "editMessageText": self.edit_message_text,
            "editMessageCaption": self.edit_message_caption,
            "editMessageMedia": self.edit_message_media,
            "editMessageReplyMarkup": self.edit_message_reply_markup,
            "answerCallbackQuery": self.answer_callback_query,
            "deleteMessage": self.delete_message,
            "sendChatAction": self.send_chat_action,
            "getFile": self.get_file,
            "setMyCommands": self.set_my_commands,
            "getMyCommands": self.get_my_commands,
            "deleteMyCommands": self.delete_my_commands,
            "setMyDescription": lambda p, u: True,
            "setMyShortDescription": lambda p, u: True,
            "setChatMenuButton": lambda p, u: True,
            "close": lambda p, u: True,
            "logOut": lambda p, u: True,
        }
        self.async_handlers: dict[str, Callable[[dict[str, Any], dict[str, Upload]], Awaitable[Any]]] = {
            "getUpdates": self.get_updates,
        }

    def supports(self, method: str) -> bool:
        return method in self.handlers or method in self.async_handlers

    async def call(self, method: str, params: dict[str, Any], uploads: dict[str, Upload]) -> Any:
        if method in self.async_handlers:
            return await self.async_handlers[method](params, uploads)
        if method in self.handlers:
            return self.handlers[method](params, uploads)
        raise ApiError(501, f"Not Implemented: the Lightbox sandbox does not model {method}")

    # --- bot and updates -----------------------------------------------------------------------------------
    def get_me(self, p: dict[str, Any], u: dict[str, Upload]) -> dict[str, Any]:
        return dict(self.world.bot_user)

    async def get_updates(self, p: dict[str, Any], u: dict[str, Upload]) -> list[dict[str, Any]]:
        if self.webhook.url:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        world = self.world
        offset = p.get("offset")
        limit = min(max(p.get("limit", 100), 1), 100)
        timeout = max(p.get("timeout", 0), 0)
        if "allowed_updates" in p:
            self.poll_allowed_updates = list(p["allowed_updates"])
        if offset is not None:
            if offset < 0:
                world.updates = world.updates[offset:]
            else:
                world.confirm_updates(offset)
        # A newer getUpdates ends an older one, as on Telegram (the older gets 409).
        self._poll_generation += 1
        mine = self._poll_generation
        world.changed()

        def ready() -> str | list[dict[str, Any]] | None:
            if self._poll_generation != mine:
                return "conflict"
            if self.closing:
                return "closed"
            pending = [x.to_api() for x in world.updates if update_allowed(x.kind, self.poll_allowed_updates)]
            return pending[:limit] or None

        answer = ready()
        if answer is None and timeout > 0:
            try:
                answer = await world.wait_for(ready, timeout)
            except TimeoutError:
                answer = None
        if answer == "conflict":
            raise ApiError(409, "Conflict: terminated by other getUpdates request; "
                                "make sure that only one bot instance is running")
        return answer if isinstance(answer, list) else []

    def set_webhook(self, p: dict[str, Any], u: dict[str, Upload]) -> bool:
        url = p["url"]
        if url == "":
            return self.delete_webhook(p, u)
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise bad_request("bad webhook: Webhook can be set up only on an HTTP(S) URL")
        if parts.hostname not in LOOPBACK_HOSTS:
            # The sandbox never reaches beyond this machine (Telegram itself would insist on HTTPS).
            raise bad_request("bad webhook: the sandbox delivers only to loopback addresses")
        secret = p.get("secret_token")
        if secret is not None and not _SECRET_TOKEN.fullmatch(secret):
            raise bad_request("secret token contains unallowed characters")
        max_connections = p.get("max_connections", 40)
        if not 1 <= max_connections <= 100:
            raise bad_request("bad webhook: max_connections must be 1-100")
        if p.get("drop_pending_updates"):
            self.world.updates.clear()
        self.webhook = WebhookConfig(url, secret, max_connections, list(p.get("allowed_updates", [])))
        self.on_webhook_change()
        return True

    def delete_webhook(self, p: dict[str, Any], u: dict[str, Upload]) -> bool:
        if p.get("drop_pending_updates"):
            self.world.updates.clear()
        self.webhook = WebhookConfig()
        self.on_webhook_change()
        return True

    def get_webhook_info(self, p: dict[str, Any], u: dict[str, Upload]) -> dict[str, Any]:
        hook = self.webhook
        info: dict[str, Any] = {
            "url": hook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.world.updates),
        }
        if hook.url:
            info["max_connections"] = hook.max_connections
            if hook.allowed_updates:
                info["allowed_updates"] = list(hook.allowed_updates)
        if hook.last_error_date is not None:
            info["last_error_date"] = hook.last_error_date
            info["last_error_message"] = hook.last_error_message or ""
        return info

    # --- shared checks ----------------------------------------------------------------------------------------
    def chat(self, chat_id: int | str) -> dict[str, Any]:
        """The chat ``chat_id`` names; 400 "chat not found" or 403 when the user blocked the bot."""
        world = self.world
        if isinstance(chat_id, str):
            if re.fullmatch(r"-?\d+", chat_id):
                chat_id = int(chat_id)
            else:
                name = chat_id.removeprefix("@").lower()
                found = [c for c in world.chats.values() if str(c.get("username", "")).lower() == name]
                if not found or found[0]["type"] == "private":
                    raise bad_request("chat not found")  # bots cannot message users by @username
                chat_id = found[0]["id"]
        assert isinstance(chat_id, int)
        chat = world.chats.get(chat_id)
        if chat is None:
            raise bad_request("chat not found")
        if chat_id in world.blocked_by:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _reply_target(self, chat_id: int, p: dict[str, Any]) -> SandboxMessage | None:
        reply = p.get("reply_parameters")
        if not reply:
            return None
        target_chat = reply.get("chat_id", chat_id)
        target = self.world.messages.get((int(target_chat), reply["message_id"]))
        if target is None or target.deleted:
            if reply.get("allow_sending_without_reply"):
                return None
            raise bad_request("message to be replied not found")
        return target

    @staticmethod
    def reply_keyboard(p: dict[str, Any]) -> dict[str, Any] | None:
        """A reply keyboard, its removal or a force-reply: shown to the user, never echoed in the Message."""
        markup = p.get("reply_markup")
        return dict(markup) if markup is not None and "inline_keyboard" not in markup else None

    @staticmethod
    def markup(p: dict[str, Any], inline_only: bool = False) -> dict[str, Any] | None:
        """The inline keyboard of reply_markup (None for other markups), checked for Telegram's rules."""
        markup = p.get("reply_markup")
        if markup is None:
            return None
        if "inline_keyboard" not in markup:
            if inline_only:
                raise bad_request("can't parse inline keyboard markup JSON object")
            return None
        count = 0
        for row in markup["inline_keyboard"]:
            for button in row:
                count += 1
                actions = [name for name in BUTTON_ACTIONS if name in button]
                if not actions:
                    raise bad_request("can't parse inline keyboard button: Text buttons are unallowed in the "
                                      "inline keyboard")
                if len(actions) > 1:
                    raise bad_request("can't parse inline keyboard button: button must have exactly one action")
                if button["text"] == "":
                    raise bad_request("BUTTON_TEXT_INVALID")
                if "callback_data" in button:
                    size = len(button["callback_data"].encode("utf-8"))
                    if not 1 <= size <= CALLBACK_DATA_MAX_BYTES:
                        raise bad_request("BUTTON_DATA_INVALID")
                if "url" in button and not re.match(r"(https?|tg)://", button["url"]):
                    raise bad_request("BUTTON_URL_INVALID")
        if count > INLINE_BUTTONS_MAX:
            raise bad_request("reply markup is too long")
        return {"inline_keyboard": [[dict(b) for b in row] for row in markup["inline_keyboard"]]}

    @staticmethod
    def formatted(source: str, parse_mode: str | None, entities: list[dict[str, Any]] | None,
                  limit: int, too_long: str) -> tuple[str, list[dict[str, Any]]]:
        """Text after entity parsing, checked against ``limit`` UTF-16 units."""
        try:
            parsed = parse_text(source, parse_mode)
        except ParseError as error:
            raise bad_request(f"can't parse entities: {error}") from error
        except ValueError as error:
            raise bad_request(str(error)) from error
        found = parsed.entities if parse_mode else list(entities or [])
        if utf16_len(parsed.text) > limit:
            raise bad_request(too_long)
        return parsed.text, found

    def caption(self, p: dict[str, Any], content: Content) -> None:
        """Fill ``content``'s caption from ``caption``/``parse_mode``/``caption_entities`` (max 1024)."""
        source = p.get("caption")
        if source is None or source == "":
            content.caption, content.caption_entities, content.source, content.parse_mode = None, [], None, None
            return
        text, entities = self.formatted(source, p.get("parse_mode"), p.get("caption_entities"), CAPTION_MAX,
                                        "message caption is too long")
        content.caption = text if text.strip() else None
        content.caption_entities = entities if content.caption else []
        content.source, content.parse_mode = source, p.get("parse_mode")

    def _new_bot_message(self, chat: dict[str, Any], content: Content, p: dict[str, Any], method: str,
                         media_group_id: str | None = None) -> SandboxMessage:
        world = self.world
        message = SandboxMessage(
            chat_id=chat["id"],
            message_id=world.new_message_id(chat["id"]),
            date=world.now(),
            from_bot=True,
            sender=dict(world.bot_user),
            chat=dict(chat),
            content=content,
            reply_to=self._reply_target(chat["id"], p),
            media_group_id=media_group_id,
            protect_content=bool(p.get("protect_content")),
            method=method,
        )
        return world.store_message(message)

    # --- files ------------------------------------------------------------------------------------------------
    def _file_bytes(self, value: Upload | str, uploads: dict[str, Upload], kind: str) -> Upload | StoredFile:
        """An upload (direct or attach://) or a stored file named by file_id."""
        if isinstance(value, Upload):
            return value
        if value.startswith("attach://"):
            found = uploads.get(value.removeprefix("attach://"))
            if found is None:
                raise bad_request(f"can't find attached file \"{value.removeprefix('attach://')}\"")
            return found
        if value.startswith(("http://", "https://")):
            raise bad_request("failed to get HTTP URL content")  # the sandbox has no network
        stored = self.world.files.get(value)
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if (stored.kind == "photo") != (kind == "photo"):
            raise bad_request(f"type of file mismatch: can't use file of type {stored.kind} as {kind}")
        return stored

    def photo(self, value: Upload | str, uploads: dict[str, Upload]) -> list[StoredFile]:
        """PhotoSizes for a photo, with Telegram's size, dimension and ratio limits (decoded with Pillow)."""
        source = self._file_bytes(value, uploads, "photo")
        if isinstance(source, StoredFile):
            return self._photo_sizes.get(source.file_id, [source])
        if len(source.data) > PHOTO_MAX_BYTES:
            raise bad_request("PHOTO_SAVE_FILE_INVALID")
        try:
            with Image.open(io.BytesIO(source.data)) as image:
                image.load()
                width, height = image.size
                thumbnail = _thumbnail(image) if max(width, height) > THUMBNAIL_SIDE else None
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
            raise bad_request("IMAGE_PROCESS_FAILED") from error
        if width + height > PHOTO_MAX_SIDES or max(width, height) > PHOTO_MAX_RATIO * min(width, height):
            raise bad_request("PHOTO_INVALID_DIMENSIONS")
        # Telegram recompresses photos; the sandbox keeps the bot's exact bytes as the largest size so tests
        # can compare them, and adds a small thumbnail like Telegram's "s" size.
        original = self.world.store_file(source.data, "photo", width=width, height=height,
                                         mime_type=source.content_type)
        sizes = [original]
        if thumbnail is not None:
            data, (tw, th) = thumbnail
            sizes.insert(0, self.world.store_file(data, "photo", width=tw, height=th, mime_type="image/jpeg"))
        for size in sizes:
            self._photo_sizes[size.file_id] = sizes
        return sizes

    def document(self, value: Upload | str, uploads: dict[str, Upload], kind: str = "document",
                 p: dict[str, Any] | None = None) -> StoredFile:
        source = self._file_bytes(value, uploads, kind)
        if isinstance(source, StoredFile):
            return source
        if len(source.data) > DOCUMENT_MAX_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        if not source.data:
            raise bad_request("file must be non-empty")
        guessed = mimetypes.guess_type(source.filename)[0]
        mime = guessed or source.content_type or "application/octet-stream"
        attrs: dict[str, Any] = {"file_name": source.filename, "mime_type": mime}
        if kind == "animation":
            attrs.update(_animation_attrs(source.data, p or {}))
        return self.world.store_file(source.data, kind, **attrs)

    # --- sending ---------------------------------------------------------------------------------------------
    def send_message(self, p: dict[str, Any], u: dict[str, Upload]) -> dict[str, Any]:
        chat = self.chat(p["chat_id"])
        text, entities = self.formatted(p["text"], p.get("parse_mode"), p.get("entities"), TEXT_MAX,
                                        "message is too long")
        if not text.strip():
            raise bad_request("message text is empty")
        content = Content(text=text, entities=entities, source=p["text"], parse_mode=p.get("parse_mode"),
                          reply_markup=self.markup(p), reply_keyboard=self.reply_keyboard(p))
        return self._new_bot_message(chat, content, p, "sendMessage").to_api()

    def send_photo(self, p: dict[str, Any], u: dict[str, Upload]) -> dict[str, Any]:
        chat = self.chat(p["chat_id"])
        content = Content(reply_markup=self.markup(p), reply_keyboard=self.reply_keyboard(p))
        self.caption(p, content)
        content.photo = self.photo(p["photo"], u)
        return self._new_bot_message(chat, content, p, "sendPhoto").to_api()

    def send_document(self, p: dict[str, Any], u: dict[str, Upload]) -> dict[str, Any]:
        chat = self.chat(p["chat_id"])
        content = Content(reply_markup=self.markup(p), reply_keyboard=self.reply_keyboard(p))
        self.caption(p, content)
        content.document = self.document(p["document"], u)
        return self._new_bot_message(chat, content, p, "sendDocument").to_api()

    def send_animation(self, p: dict[str, Any], u: dict[str, Upload]) -> dict[str, Any]:
        chat = self.chat(p["chat_id"])
        content = Content(reply_markup=self.markup(p), reply_keyboard=self.reply_keyboard(p))
        self.caption(p, content)
        content.animation = self.document(p["animation"], u, kind="animation", p=p)
        return self._new_bot_message(chat, content, p, "sendAnimation").to_api()

    def _media_content(self, media: dict[str, Any], u: dict[str, Upload]) -> Content:
        """Content for one InputMedia (photo, document or animation)."""
        content = Content()
        self.caption(media, content)
        kind = media["type"]
        if kind == "photo":
            content.photo = self.photo(media["media"], u)
        elif kind == "document":
            content.document = self.document(media["media"], u)
        elif kind == "animation":
            content.animation = self.document(media["media"], u, kind="animation", p=media)
        else:
            raise ApiError(501, f"Not Implemented: the Lightbox sandbox does not model {kind} media")
        return content

    def send_media_group(self, p: dict[str, Any], u: dict[str, Upload]) -> list[dict[str, Any]]:
        chat = self.chat(p["chat_id"])
        media = p["media"]
        if len(media) not in MEDIA_GROUP_SIZES:
            raise bad_request("wrong number of media in the group: there must be 2-10 items")
        kinds = {item["type"] for item in media}
        if len(kinds) > 1 and not kinds <= {"photo", "video"}:
            raise bad_request("documents and audio can't be mixed with other media types in a group")
        contents = [self._media_content(item, u) for item in media]
        group = self.world.new_media_group_id()
        return [self._new_bot_message(chat, c, p, "sendMediaGroup", group).to_api() for c in contents]

    # --- editing ---------------------------------------------------------------------------------------------
    def _target(self, p: dict[str, Any]) -> SandboxMessage:
        if "inline_message_id" in p:
            raise bad_request("MESSAGE_ID_INVALID")  # the bot sends no inline messages
        if "chat_id" not in p:
            raise bad_request("chat_id is empty")
        if "message_id" not in p:
            raise bad_request("message identifier is not specified")
        chat = self.chat(p["chat_id"])
        message = self.world.messages.get((chat["id"], p["message_id"]))
        if message is None or message.deleted:
            raise bad_request("message to edit not found")
        if not message.from_bot:
            raise bad_request("message can't be edited")
        return message

    def _commit_edit(self, message: SandboxMessage, content: Content) -> dict[str, Any]:
        old = message.content
        same = (
            content.text == old.text and content.entities == old.entities and content.caption == old.caption
            and content.caption_entities == old.caption_entities and content.reply_markup == old.reply_markup
            and content.photo == old.photo and content.document == old.document
            and content.animation == old.animation
        )
        if same:
            raise bad_request(NOT_MODIFIED)
        content.edit_date = self.world.now()
        message.history.append(old)
        message.content = content
        self.world.changed()
        return message.to_api()

    def edit_message_text(self, p: dict[str, Any], u: dict[str, Upload]) -> dict[str, Any]:
        message = self._target(p)
        if message.content.text is None:
            raise bad_request("there is no text in the message to edit")
        if "text" not in p:
            raise bad_request("text must be non-empty")
        text, entities = self.formatted(p["text"], p.get("parse_mode"), p.get("entities"), TEXT_MAX,
                                        "message is too long")
        if not text.strip():
            raise bad_request("message text is empty")
        # An edit without reply_markup removes the inline keyboard, as on Telegram.
        content = Content(text=text, entities=entities, source=p["text"], parse_mode=p.get("parse_mode"),
                          reply_markup=self.markup(p, inline_only=True))
        return self._commit_edit(message, content)

    def edit_message_caption(self, p: dict[str, Any], u: dict[str, Upload]) -> dict[str, Any]:
        message = self._target(p)
        old = message.content
        if not (old.photo or old.document or old.animation):
            raise bad_request("there is no caption in the message to edit")
        content = Content(photo=old.photo, document=old.document, animation=old.animation,
                          reply_markup=self.markup(p, inline_only=True))
        self.caption(p, content)
        return self._commit_edit(message, content)

    def edit_message_media(self, p: dict[str, Any], u: dict[str, Upload]) -> dict[str, Any]:
        message = self._target(p)
        old = message.content
        if not (old.photo or old.document or old.animation):
            raise bad_request("there is no media in the message to edit")
        content = self._media_content(p["media"], u)
        content.reply_markup = self.markup(p, inline_only=True)
        return self._commit_edit(message, content)

    def edit_message_reply_markup(self, p: dict[str, Any], u: dict[str, Upload]) -> dict[str, Any]:
        message = self._target(p)
        old = message.content
        content = Content(**{**old.__dict__, "reply_markup": self.markup(p, inline_only=True)})
        return self._commit_edit(message, content)

    def delete_message(self, p: dict[str, Any], u: dict[str, Upload]) -> bool:
        chat = self.chat(p["chat_id"])
        message = self.world.messages.get((chat["id"], p["message_id"]))
        if message is None or message.deleted:
            raise bad_request("message to delete not found")
        message.deleted = True
        self.world.changed()
        return True

    # --- callbacks, actions, files, commands --------------------------------------------------------------
    def answer_callback_query(self, p: dict[str, Any], u: dict[str, Upload]) -> bool:
        record = self.world.callbacks.get(p["callback_query_id"])
        if record is None or record.answered or time.monotonic() - record.created > self.callback_answer_timeout:
            raise bad_request(QUERY_TOO_OLD)
        text = p.get("text")
        if text is not None and utf16_len(text) > CALLBACK_ANSWER_TEXT_MAX:
            raise bad_request("MESSAGE_TOO_LONG")
        record.answered = True
        record.answer_text = text
        record.show_alert = bool(p.get("show_alert"))
        record.answer_url = p.get("url")
        self.world.changed()
        return True

    def send_chat_action(self, p: dict[str, Any], u: dict[str, Upload]) -> bool:
        chat = self.chat(p["chat_id"])
        if p["action"] not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self.world.chat_actions.append((chat["id"], p["action"]))
        return True

    def get_file(self, p: dict[str, Any], u: dict[str, Upload]) -> dict[str, Any]:
        stored = self.world.files.get(p["file_id"])
        if stored is None:
            raise bad_request("invalid file_id")
        if stored.file_size > DOWNLOAD_MAX_BYTES:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }

    @staticmethod
    def _commands_key(p: dict[str, Any]) -> str:
        scope = p.get("scope") or {"type": "default"}
        return f"{scope.get('type')}:{scope.get('chat_id', '')}:{scope.get('user_id', '')}:" \
               f"{p.get('language_code', '')}"

    def set_my_commands(self, p: dict[str, Any], u: dict[str, Upload]) -> bool:
        commands = p["commands"]
        if len(commands) > 100:
            raise bad_request("too many commands")
        for command in commands:
            if not _COMMAND_NAME.fullmatch(command["command"]):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(command["description"]) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.world.commands[self._commands_key(p)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    def get_my_commands(self, p: dict[str, Any], u: dict[str, Upload]) -> list[dict[str, str]]:
        return [dict(c) for c in self.world.commands.get(self._commands_key(p), [])]

    def delete_my_commands(self, p: dict[str, Any], u: dict[str, Upload]) -> bool:
        self.world.commands.pop(self._commands_key(p), None)
        return True


def _thumbnail(image: Image.Image) -> tuple[bytes, tuple[int, int]]:
    small = image.convert("RGB")
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=80)
    return out.getvalue(), small.size


def _animation_attrs(data: bytes, p: dict[str, Any]) -> dict[str, Any]:
    """Width, height and duration of an animation: from Pillow for GIFs, else from the request."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            frames = getattr(image, "n_frames", 1)
            duration_ms = image.info.get("duration", 0) * frames
            return {"width": image.width, "height": image.height, "duration": round(duration_ms / 1000)}
    except (UnidentifiedImageError, OSError, ValueError):
        return {"width": p.get("width", 0), "height": p.get("height", 0), "duration": p.get("duration", 0)}
