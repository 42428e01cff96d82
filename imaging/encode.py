"""Encode 8-bit pictures: JPEG for chat, PNG where exact, WebP where small matters.

JPEG quality starts high and steps down only while the file is over its byte budget, so chat
previews stay small without turning blocky for ordinary images.
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image

Format = Literal["jpeg", "png", "webp"]
FORMATS: tuple[str, ...] = ("png", "jpeg", "webp")
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}

JPEG_QUALITIES = (88, 80, 70, 60, 50, 40)
# A chat preview aims well under Telegram's 10 MB: a phone loads it fast on a weak connection.
CHAT_BYTE_BUDGET = 1_500_000


def to_pil(image: np.ndarray) -> Image.Image:
    """A Pillow image from a uint8 (rows, columns) or (rows, columns, 3) array."""
    if image.dtype != np.uint8:
        raise ValueError("encode takes 8-bit pictures; render the frame first")
    return Image.fromarray(np.ascontiguousarray(image))


def encode(image: np.ndarray, fmt: str = "jpeg", *, quality: int | None = None) -> bytes:
    """Encode as ``"jpeg"`` (quality 88 unless given), ``"png"`` (lossless) or ``"webp"`` (quality 85)."""
    pil = to_pil(image)
    out = io.BytesIO()
    fmt = fmt.lower()
    if fmt in ("jpeg", "jpg"):
        pil.save(out, "JPEG", quality=quality or JPEG_QUALITIES[0], subsampling=0 if pil.mode == "L" else 2)
    elif fmt == "png":
        # Level 1 is several times faster than the default 6 and only a little bigger.
        pil.save(out, "PNG", compress_level=1)
    elif fmt == "webp":
        pil.save(out, "WEBP", quality=quality or 85, method=4)
    else:
        raise ValueError(f"unknown format {fmt!r}; choose png, jpeg or webp")
    return out.getvalue()


def encode_within(image: np.ndarray, budget: int = CHAT_BYTE_BUDGET) -> bytes:
    """JPEG at the highest quality in :data:`JPEG_QUALITIES` that fits ``budget`` bytes
    (the lowest quality if none does)."""
    data = b""
    for quality in JPEG_QUALITIES:
        data = encode(image, "jpeg", quality=quality)
        if len(data) <= budget:
            return data
    return data
