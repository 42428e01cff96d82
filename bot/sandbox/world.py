"""What the sandbox remembers: users, chats, messages (with their edit history), files and updates.

Everything lives in memory and is touched only from the event loop the sandbox runs on, so no locks are needed;
waiters (long polling, webhook delivery, the test driver) sleep on one :class:`asyncio.Event` that
:meth:`World.changed` sets (and replaces) on every change, then re-check what they wait for.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

BOT_FIRST_NAME = "Lightbox"
BOT_USERNAME = "lightbox_sandbox_bot"


@dataclass
class StoredFile:
    """A file on the sandbox's "Telegram servers": bytes plus what Telegram reports about it."""

    file_id: str
    file_unique_id: str
    data: bytes
    kind: str  # photo, document, animation
    file_name: str | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None
    duration: int | None = None
    file_path: str = ""

    @property
    def file_size(self) -> int:
        return len(self.data)

    def photo_size(self) -> dict[str, Any]:
        """This file as a PhotoSize object."""
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "width": self.width or 0,
            "height": self.height or 0,
            "file_size": self.file_size,
        }

    def document(self) -> dict[str, Any]:
        """This file as a Document object."""
        out: dict[str, Any] = {"file_id": self.file_id, "file_unique_id": self.file_unique_id}
        if self.file_name:
            out["file_name"] = self.file_name
        if self.mime_type:
            out["mime_type"] = self.mime_type
        out["file_size"] = self.file_size
        return out

    def animation(self) -> dict[str, Any]:
        """This file as an Animation object."""
        out = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "width": self.width or 0,
            "height": self.height or 0,
            "duration": self.duration or 0,
        }
        out.update({k: v for k, v in self.document().items() if k in {"file_name", "mime_type", "file_size"}})
        return out


@dataclass
class Content:
    """One version of a message: what a user would see at one moment."""

    text: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    caption: str | None = None
    caption_entities: list[dict[str, Any]] = field(default_factory=list)
    source: str | None = None  # text or caption exactly as the bot sent it (HTML before parsing)
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None  # inline keyboards only: Message.reply_markup
    reply_keyboard: dict[str, Any] | None = None  # ReplyKeyboardMarkup/Remove or ForceReply: not echoed back
    photo: list[StoredFile] | None = None  # sizes, smallest first
    document: StoredFile | None = None
    animation: StoredFile | None = None
    edit_date: int | None = None


@dataclass
class SandboxMessage:
    """A message in a chat, sent by a user (through the driver) or by the bot (through the API)."""

    chat_id: int
    message_id: int
    date: int
    from_bot: bool
    sender: dict[str, Any]
    chat: dict[str, Any]
    content: Content
    history: list[Content] = field(default_factory=list)  # earlier versions, oldest first
    reply_to: SandboxMessage | None = None
    media_group_id: str | None = None
    protect_content: bool = False
    deleted: bool = False
    method: str = ""  # the Bot API method that created it (bot messages)

    # --- what a test reads -------------------------------------------------------------------------------
    @property
    def text(self) -> str | None:
        return self.content.text

    @property
    def caption(self) -> str | None:
        return self.content.caption

    @property
    def source(self) -> str | None:
        """The text or caption as the bot sent it (HTML markup included)."""
        return self.content.source

    @property
    def reply_markup(self) -> dict[str, Any] | None:
        return self.content.reply_markup

    @property
    def reply_keyboard(self) -> dict[str, Any] | None:
        """A reply keyboard (or its removal, or force-reply) the message showed the user."""
        return self.content.reply_keyboard

    @property
    def buttons(self) -> list[list[dict[str, Any]]]:
        """The inline keyboard's rows of buttons (empty without one)."""
        markup = self.content.reply_markup or {}
        return [list(row) for row in markup.get("inline_keyboard", [])]

    @property
    def button_texts(self) -> list[str]:
        return [button["text"] for row in self.buttons for button in row]

    def button(self, label: str) -> dict[str, Any]:
        """The inline button whose text or callback_data is ``label`` (exact match first, then substring)."""
        flat = [button for row in self.buttons for button in row]
        for button in flat:
            if label in (button.get("text"), button.get("callback_data")):
                return button
        for button in flat:
            if label.lower() in str(button.get("text", "")).lower():
                return button
        raise LookupError(f"no button {label!r} on message {self.message_id}; buttons: {self.button_texts}")

    @property
    def photo_bytes(self) -> bytes | None:
        """Bytes of the largest photo size, as the bot uploaded them."""
        return self.content.photo[-1].data if self.content.photo else None

    @property
    def document_bytes(self) -> bytes | None:
        return self.content.document.data if self.content.document else None

    @property
    def document_name(self) -> str | None:
        return self.content.document.file_name if self.content.document else None

    @property
    def media_bytes(self) -> bytes | None:
        """Bytes of whatever media the message shows (photo, document or animation)."""
        if self.content.photo:
            return self.content.photo[-1].data
        media = self.content.document or self.content.animation
        return media.data if media else None

    @property
    def edited(self) -> bool:
        return bool(self.history)

    @property
    def version(self) -> int:
        """0 for the original, +1 per edit."""
        return len(self.history)

    # --- as the Bot API shows it ---------------------------------------------------------------------------
    def to_api(self, with_reply: bool = True) -> dict[str, Any]:
        """This message as a Bot API Message object."""
        c = self.content
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "from": dict(self.sender),
            "chat": dict(self.chat),
            "date": self.date,
        }
        if c.edit_date is not None:
            out["edit_date"] = c.edit_date
        if self.media_group_id:
            out["media_group_id"] = self.media_group_id
        if self.protect_content:
            out["has_protected_content"] = True
        if with_reply and self.reply_to is not None and not self.reply_to.deleted:
            out["reply_to_message"] = self.reply_to.to_api(with_reply=False)
        if c.text is not None:
            out["text"] = c.text
            if c.entities:
                out["entities"] = copy.deepcopy(c.entities)
        if c.photo:
            out["photo"] = [size.photo_size() for size in c.photo]
        if c.animation is not None:
            out["animation"] = c.animation.animation()
            out["document"] = c.animation.document()  # Telegram sends both for backward compatibility
        elif c.document is not None:
            out["document"] = c.document.document()
        if c.caption is not None:
            out["caption"] = c.caption
            if c.caption_entities:
                out["caption_entities"] = copy.deepcopy(c.caption_entities)
        if c.reply_markup is not None:
            out["reply_markup"] = copy.deepcopy(c.reply_markup)
        return out


@dataclass
class CallbackRecord:
    """A button tap: the CallbackQuery the bot received and how it answered."""

    query_id: str
    user: dict[str, Any]
    message: SandboxMessage
    data: str
    created: float
    answered: bool = False
    answer_text: str | None = None
    show_alert: bool = False
    answer_url: str | None = None


@dataclass
class Update:
    update_id: int
    kind: str  # message, edited_message, callback_query
    payload: dict[str, Any]

    def to_api(self) -> dict[str, Any]:
        return {"update_id": self.update_id, self.kind: self.payload}


@dataclass
class ApiCall:
    """One request the bot made, as the sandbox saw it (for tests: what was asked, and what was answered)."""

    method: str
    chat_id: int | None
    status: int
    description: str | None
    started: float
    finished: float = 0.0


class World:
    """The sandbox's memory. All mutation happens on the loop; :meth:`changed` wakes every waiter."""

    def __init__(self, bot_id: int) -> None:
        self.bot_id = bot_id
        self.bot_user: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": BOT_FIRST_NAME,
            "username": BOT_USERNAME,
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.users: dict[int, dict[str, Any]] = {}
        self.chats: dict[int, dict[str, Any]] = {}
        self.blocked_by: set[int] = set()
        self.messages: dict[tuple[int, int], SandboxMessage] = {}
        self.chat_messages: dict[int, list[SandboxMessage]] = {}
        self._next_message_id: dict[int, itertools.count[int]] = {}
        self.files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._file_counter = itertools.count(1)
        self.updates: list[Update] = []  # not yet confirmed by getUpdates' offset or webhook delivery
        self._update_ids = itertools.count(1)
        self.callbacks: dict[str, CallbackRecord] = {}
        self._callback_ids = itertools.count(1)
        self.commands: dict[str, list[dict[str, str]]] = {}
        self.chat_actions: list[tuple[int, str]] = []
        self.calls: list[ApiCall] = []
        self._media_groups = itertools.count(1)
        self._changed: asyncio.Event | None = None

    # --- waking waiters ----------------------------------------------------------------------------------
    def changed(self) -> None:
        """Wake everyone waiting for news (long polls, webhook sender, test driver)."""
        event, self._changed = self._changed, None
        if event is not None:
            event.set()

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float) -> T:
        """Wait until ``predicate()`` returns something truthy and return it; TimeoutError after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = predicate()
            if found:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            if self._changed is None:
                self._changed = asyncio.Event()
            await asyncio.wait_for(self._changed.wait(), remaining)

    # --- people and chats ----------------------------------------------------------------------------------
    def add_user(self, user_id: int, first_name: str, last_name: str | None, username: str | None,
                 language_code: str | None) -> dict[str, Any]:
        """Create (or refresh) a user and the private chat they have with the bot."""
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        self.users[user_id] = user
        chat: dict[str, Any] = {"id": user_id, "type": "private", "first_name": first_name}
        if last_name:
            chat["last_name"] = last_name
        if username:
            chat["username"] = username
        self.chats[user_id] = chat
        self.chat_messages.setdefault(user_id, [])
        return user

    def new_message_id(self, chat_id: int) -> int:
        counter = self._next_message_id.setdefault(chat_id, itertools.count(1))
        return next(counter)

    def store_message(self, message: SandboxMessage) -> SandboxMessage:
        self.messages[(message.chat_id, message.message_id)] = message
        self.chat_messages.setdefault(message.chat_id, []).append(message)
        self.changed()
        return message

    def new_media_group_id(self) -> str:
        return f"mg{next(self._media_groups)}"

    # --- files ------------------------------------------------------------------------------------------------
    def store_file(self, data: bytes, kind: str, **attrs: Any) -> StoredFile:
        """Keep uploaded bytes under a fresh file_id, as Telegram would after an upload."""
        number = next(self._file_counter)
        digest = hashlib.sha256(data).hexdigest()[:16]
        folder = {"photo": "photos", "document": "documents", "animation": "animations"}.get(kind, "documents")
        extension = _extension(attrs.get("file_name"), attrs.get("mime_type"), kind)
        stored = StoredFile(
            file_id=f"{kind[:3].upper()}-{number:06d}-{digest}",
            file_unique_id=f"U{digest}",
            data=data,
            kind=kind,
            file_path=f"{folder}/file_{number}{extension}",
            **attrs,
        )
        self.files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def file_by_path(self, path: str) -> StoredFile | None:
        return self._files_by_path.get(path)

    # --- updates ------------------------------------------------------------------------------------------------
    def push_update(self, kind: str, payload: dict[str, Any]) -> Update:
        update = Update(next(self._update_ids), kind, payload)
        self.updates.append(update)
        self.changed()
        return update

    def confirm_updates(self, below: int) -> None:
        """Forget updates with ``update_id < below`` (getUpdates' offset confirms them)."""
        self.updates = [u for u in self.updates if u.update_id >= below]

    def new_callback_id(self) -> str:
        return f"{self.bot_id}{next(self._callback_ids):08d}"

    def now(self) -> int:
        return int(time.time())


def _extension(file_name: str | None, mime_type: str | None, kind: str) -> str:
    if file_name and "." in file_name:
        suffix = "." + file_name.rsplit(".", 1)[1].lower()
        if suffix.replace(".", "").isalnum() and len(suffix) <= 8:
            return suffix
    if mime_type == "image/png":
        return ".png"
    if mime_type in {"image/jpeg", None} and kind == "photo":
        return ".jpg"
    if mime_type == "image/gif":
        return ".gif"
    return ""
