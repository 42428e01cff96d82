"""Telegram's formatting: HTML parse mode to plain text plus MessageEntity objects, and bot commands.

Telegram parses ``parse_mode="HTML"`` strictly: only its own tags, properly nested and closed, and ``<``
never bare. Anything else is refused with "can't parse entities". Lengths and offsets count UTF-16 code
units, as Telegram's do.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>]+))?)*)\s*(/?)>")
_ATTR = re.compile(r"([a-zA-Z-]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+))?")
_ENTITY = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|lt|gt|amp|quot);")
_COMMAND = re.compile(r"(?<![\w/])/[a-zA-Z0-9_]{1,32}(?:@[a-zA-Z0-9_]{3,64})?(?![\w/])")

_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
_KNOWN_TAGS = {*_SIMPLE_TAGS, "a", "span", "tg-emoji", "blockquote", "tg-time"}


class ParseError(ValueError):
    """HTML Telegram would refuse; the message follows Telegram's "can't parse entities: ..." wording."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _Open:
    tag: str
    entity: dict[str, Any] | None
    start: int


@dataclass
class Parsed:
    """Text as the user sees it and the entities Telegram found in it."""

    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)


def _attributes(raw: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for name, value in _ATTR.findall(raw):
        value = value[1:-1] if value[:1] in {'"', "'"} else value
        attrs[name.lower()] = html.unescape(value)
    return attrs


def _entity_for(tag: str, attrs: dict[str, str], offset: int) -> dict[str, Any] | None:
    """The MessageEntity a start tag opens (length filled in at its end tag)."""
    if tag in _SIMPLE_TAGS:
        return {"type": _SIMPLE_TAGS[tag], "offset": offset, "length": 0}
    if tag == "a":
        href = attrs.get("href", "")
        if href.startswith("tg://user?id="):
            return None  # a text_mention needs a full User; the sandbox keeps the text only
        return {"type": "text_link", "offset": offset, "length": 0, "url": href} if href else None
    if tag == "span":
        if attrs.get("class") != "tg-spoiler":
            raise ParseError('Tag "span" must have class "tg-spoiler"')
        return {"type": "spoiler", "offset": offset, "length": 0}
    if tag == "tg-emoji":
        if "emoji-id" not in attrs:
            raise ParseError('Tag "tg-emoji" must have attribute "emoji-id"')
        return {"type": "custom_emoji", "offset": offset, "length": 0, "custom_emoji_id": attrs["emoji-id"]}
    if tag == "blockquote":
        kind = "expandable_blockquote" if "expandable" in attrs else "blockquote"
        return {"type": kind, "offset": offset, "length": 0}
    return None  # tg-time: kept as plain text


def parse_html(source: str) -> Parsed:
    """Parse Telegram HTML; raise :class:`ParseError` where Telegram would answer "can't parse entities"."""
    out: list[str] = []
    offset = 0  # UTF-16 units emitted so far
    stack: list[_Open] = []
    entities: list[dict[str, Any]] = []
    opened_order: dict[int, int] = {}
    pos = 0
    byte_offset = 0

    def emit(text: str) -> None:
        nonlocal offset
        out.append(text)
        offset += utf16_len(text)

    while pos < len(source):
        char = source[pos]
        if char == "<":
            match = _TAG.match(source, pos)
            if match is None:
                raise ParseError(f"Unexpected end tag or bare \"<\" at byte offset {byte_offset}")
            closing, tag, raw_attrs, _self_close = match.groups()
            tag = tag.lower()
            if tag not in _KNOWN_TAGS:
                kind = "end" if closing else "start"
                raise ParseError(f'Unsupported {kind} tag "{tag}" at byte offset {byte_offset}')
            if closing:
                if not stack or stack[-1].tag != tag:
                    raise ParseError(f'Unmatched end tag at byte offset {byte_offset}, expected "</'
                                     f'{stack[-1].tag if stack else ""}>", found "</{tag}>"')
                opened = stack.pop()
                if opened.entity is not None and offset > opened.start:
                    opened.entity["length"] = offset - opened.start
                    entities.append(opened.entity)
            else:
                attrs = _attributes(raw_attrs)
                entity = _entity_for(tag, attrs, offset)
                if tag == "code" and stack and stack[-1].tag == "pre" and stack[-1].entity is not None:
                    # <pre><code class="language-x"> is one pre entity with a language, as on Telegram.
                    language = attrs.get("class", "")
                    if language.startswith("language-"):
                        stack[-1].entity["language"] = language.removeprefix("language-")
                    entity = None
                if entity is not None:
                    opened_order[id(entity)] = len(opened_order)
                stack.append(_Open(tag, entity, offset))
            byte_offset += len(match.group(0).encode())
            pos = match.end()
            continue
        if char == "&":
            match = _ENTITY.match(source, pos)
            if match is not None:
                emit(html.unescape(match.group(0)))
                byte_offset += len(match.group(0).encode())
                pos = match.end()
                continue
        emit(char)
        byte_offset += len(char.encode())
        pos += 1
    if stack:
        raise ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"], opened_order[id(e)]))
    return Parsed("".join(out), entities)


def parse_text(source: str, parse_mode: str | None) -> Parsed:
    """Plain text and entities for a message text or caption sent with ``parse_mode``.

    HTML is parsed fully. Markdown and MarkdownV2 are accepted and kept verbatim (the bot speaks HTML; the
    sandbox does not model Markdown). Any other mode is refused as Telegram does.
    """
    if parse_mode is None or parse_mode == "":
        return Parsed(source)
    mode = parse_mode.lower()
    if mode == "html":
        return parse_html(source)
    if mode in {"markdown", "markdownv2"}:
        return Parsed(source)
    raise ValueError(f"unsupported parse_mode: {parse_mode}")


def command_entities(text: str) -> list[dict[str, Any]]:
    """The ``bot_command`` entities Telegram marks in what a user types ("/start abc" -> one at offset 0)."""
    entities = []
    for match in _COMMAND.finditer(text):
        start = utf16_len(text[: match.start()])
        entities.append({"type": "bot_command", "offset": start, "length": utf16_len(match.group(0))})
    return entities
