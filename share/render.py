"""Pictures for the viewer: one frame of one instance, windowed and sized as the screen asks.

The work is the imaging engine's (:func:`imaging.render.render`, :func:`imaging.encode.encode`); this
module picks sizes from a few buckets (so caches hit across screens), keeps the applied window for the
viewer's drag-to-window, and caches encoded pictures in a bounded LRU (:class:`ImageCache`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from imaging.display import CT_PRESETS, WindowChoice
from imaging.encode import encode
from imaging.render import render as render_picture

# Sizes the viewer asks for: a few buckets so that caches hit across phones and screens.
SIZE_BUCKETS = (128, 256, 384, 512, 768, 1024, 1536, 2048)
MAX_SIZE = SIZE_BUCKETS[-1]

# Presets offered in the viewer (CT, Hounsfield units): the imaging engine's.
PRESETS: dict[str, tuple[float, float]] = dict(CT_PRESETS)


@dataclass(frozen=True)
class RenderRequest:
    """What to draw: a frame (0-based), the longest side in pixels, and an optional window."""

    frame: int = 0
    size: int = 512
    center: float | None = None
    width: float | None = None
    preset: str = ""
    fmt: str = "jpeg"


def size_bucket(requested: int) -> int:
    """The smallest bucket at least ``requested`` pixels (the largest for anything bigger)."""
    for bucket in SIZE_BUCKETS:
        if requested <= bucket:
            return bucket
    return MAX_SIZE


@dataclass(frozen=True)
class Rendered:
    """An encoded picture and the window it was drawn with (``None`` for colour images)."""

    data: bytes
    center: float | None = None
    width: float | None = None


def window_choice(request: RenderRequest) -> WindowChoice:
    """The imaging engine's window for a request: preset, explicit numbers, or the file's own."""
    if request.preset:
        return WindowChoice.preset(request.preset)
    if request.center is not None and request.width is not None and request.width > 0:
        return WindowChoice.explicit(request.center, request.width)
    return WindowChoice()


def render(path: Path | Dataset, request: RenderRequest) -> Rendered:
    """Encoded picture (JPEG or PNG) of one frame of the DICOM file at ``path``, long side ``request.size``.

    Raises :class:`imaging.errors.RenderError` (or ``FileNotFoundError``) for what cannot be shown.
    """
    out = render_picture(path, request.frame, window_choice(request), max_size=min(request.size, MAX_SIZE))
    center = out.voi.center if out.voi is not None else None
    width = out.voi.width if out.voi is not None else None
    return Rendered(encode(out.pixels, request.fmt), center, width)


class ImageCache:
    """A bounded, thread-safe LRU of rendered pictures (by total bytes)."""

    def __init__(self, max_bytes: int = 128 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Any, ...], Rendered] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> Rendered | None:
        """The cached picture for ``key``, or ``None``."""
        with self._lock:
            data = self._items.get(key)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return data

    def put(self, key: tuple[Any, ...], picture: Rendered) -> None:
        """Keep ``picture`` for ``key``, dropping the least recently used pictures past the budget."""
        if len(picture.data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old.data)
            self._items[key] = picture
            self._bytes += len(picture.data)
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped.data)
