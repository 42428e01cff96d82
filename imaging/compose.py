"""Compositions: a montage of slices, a side-by-side pair, a cine GIF.

Every composition renders its frames one at a time and pastes or appends each at once, so a
long series never sits decoded in memory. A slice is given as ``(source, frame)``.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from imaging.decode import DEFAULT_MAX_PIXELS, DicomImage, open_image
from imaging.display import WindowChoice
from imaging.fonts import label_font
from imaging.render import Source, render
from imaging.series import evenly_spaced
from imaging.transforms import scale_to

Slice = tuple[Source, int]

# A cine for the chat: Telegram animations are at most 50 MB; we aim far lower.
CINE_MAX_BYTES = 8 * 1024 * 1024
CINE_MAX_FRAMES = 60


def _label(canvas: Image.Image, xy: tuple[int, int], text: str, size: int, max_width: int | None = None) -> None:
    """Draw white text with a dark outline, readable on any image; smaller (down to 8 px) until it fits
    ``max_width``, so a long date is not cut off at the picture's edge."""
    draw = ImageDraw.Draw(canvas)
    fill = 255 if canvas.mode == "L" else (255, 255, 255)
    stroke = 0 if canvas.mode == "L" else (0, 0, 0)
    font = label_font(size)
    while max_width is not None and size > 8 and draw.textlength(text, font=font) > max_width:
        size -= 1
        font = label_font(size)
    draw.text(xy, text, fill=fill, font=font, stroke_width=max(1, size // 8), stroke_fill=stroke)


def _opener(max_pixels: int = DEFAULT_MAX_PIXELS) -> Callable[[Source], Source]:
    """Open each file once per composition: a cine of a 120-frame object parses its header once."""
    opened: dict[str, DicomImage] = {}

    def open_once(source: Source) -> Source:
        if isinstance(source, str | os.PathLike):
            key = os.fspath(source)
            if key not in opened:
                opened[key] = open_image(source, max_pixels=max_pixels)
            return opened[key]
        return source

    return open_once


def _as_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def _fill(image: np.ndarray, size: int) -> np.ndarray:
    """Scale (up or down) so the long side is ``size``, keeping the aspect ratio."""
    rows, cols = image.shape[:2]
    scale = size / max(rows, cols)
    return scale_to(image, max(1, round(cols * scale)), max(1, round(rows * scale)))


def montage(
    slices: Sequence[Slice],
    count: int = 9,
    *,
    window: WindowChoice | None = None,
    tile_size: int = 256,
    columns: int | None = None,
    numbers: bool = True,
) -> np.ndarray:
    """A contact sheet of ``count`` evenly spaced slices, each labelled with its slice number
    (1-based position in ``slices``). Slices should already be sorted (see :mod:`imaging.series`)."""
    chosen = evenly_spaced(len(slices), count)
    if not chosen:
        raise ValueError("a montage needs at least one slice")
    columns = columns or math.ceil(math.sqrt(len(chosen)))
    rows = math.ceil(len(chosen) / columns)
    sheet = Image.new("RGB", (columns * tile_size, rows * tile_size))
    open_once = _opener()
    for n, index in enumerate(chosen):
        source, frame = slices[index]
        source = open_once(source)
        tile = _as_rgb(_fill(render(source, frame, window, max_size=tile_size).pixels, tile_size))
        top = (n // columns) * tile_size + (tile_size - tile.shape[0]) // 2
        left = (n % columns) * tile_size + (tile_size - tile.shape[1]) // 2
        sheet.paste(Image.fromarray(tile), (left, top))
        if numbers:
            _label(sheet, ((n % columns) * tile_size + 4, (n // columns) * tile_size + 2), str(index + 1),
                   max(10, tile_size // 12))
    return np.asarray(sheet)



def labelled_sheet(
    items: Sequence[tuple[Slice, str]],
    *,
    tile_size: int = 256,
    columns: int | None = None,
    window: WindowChoice | None = None,
) -> np.ndarray:
    """A contact sheet with one tile per ``(slice, label)`` (e.g. a study's key slice and its date),
    in the order given; for a timeline of studies."""
    if not items:
        raise ValueError("a sheet needs at least one picture")
    columns = columns or min(4, len(items))
    rows = math.ceil(len(items) / columns)
    label_size = max(10, tile_size // 14)
    sheet = Image.new("RGB", (columns * tile_size, rows * tile_size))
    for n, ((source, frame), label) in enumerate(items):
        tile = _as_rgb(_fill(render(source, frame, window, max_size=tile_size).pixels, tile_size))
        top = (n // columns) * tile_size + (tile_size - tile.shape[0]) // 2
        left = (n % columns) * tile_size + (tile_size - tile.shape[1]) // 2
        sheet.paste(Image.fromarray(tile), (left, top))
        _label(sheet, ((n % columns) * tile_size + 4, (n // columns) * tile_size + 2), label, label_size,
               max_width=tile_size - 8)
    return np.asarray(sheet)


def side_by_side(
    left: Slice,
    right: Slice,
    captions: tuple[str, str] = ("", ""),
    *,
    window: WindowChoice | None = None,
    max_size: int = 640,
    gap: int = 8,
) -> np.ndarray:
    """Two slices next to each other with captions (e.g. the study dates), shown with the same
    window: the left one's window (stored, preset, explicit or automatic) is used for both."""
    first = render(left[0], left[1], window, max_size=max_size)
    shared = window
    if first.voi is not None and first.voi.center is not None and first.voi.width is not None:
        function = "LINEAR_EXACT" if first.voi.kind == "auto" else "LINEAR"
        shared = WindowChoice.explicit(first.voi.center, first.voi.width, function)  # type: ignore[arg-type]
    second = render(right[0], right[1], shared, max_size=max_size)
    a, b = _as_rgb(first.pixels), _as_rgb(second.pixels)
    caption_height = max(16, max_size // 20) + 8
    height = max(a.shape[0], b.shape[0]) + caption_height
    canvas = Image.new("RGB", (a.shape[1] + gap + b.shape[1], height))
    canvas.paste(Image.fromarray(a), (0, caption_height))
    canvas.paste(Image.fromarray(b), (a.shape[1] + gap, caption_height))
    size = caption_height - 8
    _label(canvas, (4, 2), captions[0], size, max_width=a.shape[1] - 8)
    _label(canvas, (a.shape[1] + gap + 4, 2), captions[1], size, max_width=b.shape[1] - 8)
    return np.asarray(canvas)


def cine_gif(
    slices: Sequence[Slice],
    *,
    window: WindowChoice | None = None,
    max_size: int = 384,
    max_frames: int = CINE_MAX_FRAMES,
    max_bytes: int = CINE_MAX_BYTES,
    frame_ms: int = 100,
) -> bytes:
    """An animated GIF scrolling through the slices, bounded in frames and in bytes.

    At most ``max_frames`` evenly spaced slices; if the GIF is over ``max_bytes`` it is made
    again at a smaller size. Each slice is rendered, quantised and kept only as 8-bit palette data.
    """
    chosen = evenly_spaced(len(slices), max_frames)
    if not chosen:
        raise ValueError("a cine needs at least one slice")
    size = max_size
    open_once = _opener()
    while True:
        frames: list[Image.Image] = []
        shared = window
        for index in chosen:
            source, frame = slices[index]
            source = open_once(source)
            result = render(source, frame, shared, max_size=size)
            if shared is None and result.voi is not None and result.voi.center is not None:
                # One window for the whole clip, or the brightness would flicker.
                function = "LINEAR_EXACT" if result.voi.kind == "auto" else "LINEAR"
                shared = WindowChoice.explicit(result.voi.center, result.voi.width or 1.0, function)  # type: ignore[arg-type]
            picture = Image.fromarray(result.pixels)
            frames.append(picture.convert("L") if picture.mode == "L" else picture.quantize(colors=255))
        out = io.BytesIO()
        frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
        data = out.getvalue()
        if len(data) <= max_bytes or size <= 64:
            return data
        size = int(size * 0.7)

