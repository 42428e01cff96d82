"""Overlays drawn on a finished picture: the patient's marks and notes, and a picking grid.

Marks are stored in normalised coordinates of the original frame (0..1 across its columns and rows), so
they stay on the same spot under zoom, rotation and resizing: :class:`imaging.transforms.View` maps them
onto the output, and they are drawn after every geometric transform, at a size that suits the output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from imaging.fonts import label_font
from imaging.transforms import View

MARK_COLOUR = (255, 196, 0)
OUTLINE = (0, 0, 0)


@dataclass(frozen=True)
class Mark:
    """One annotation: ``marker`` (a point), ``arrow`` (from x2,y2 to x,y), ``circle`` (centre x,y through x2,y2)
    or ``note`` (a label at x,y); coordinates normalised to the original frame."""

    kind: str
    x: float
    y: float
    x2: float | None = None
    y2: float | None = None
    label: str = ""


def _rgb(pixels: np.ndarray) -> Image.Image:
    image = Image.fromarray(pixels)
    return image.convert("RGB") if image.mode != "RGB" else image


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int) -> None:
    font = label_font(size)
    x, y = xy
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            if dx or dy:
                draw.text((x + dx, y + dy), text, fill=OUTLINE, font=font)
    draw.text((x, y), text, fill=MARK_COLOUR, font=font)


def draw_marks(pixels: np.ndarray, view: View, marks: Sequence[Mark]) -> np.ndarray:
    """``pixels`` (the rendered output of ``view``) with ``marks`` drawn on; marks outside the view are skipped."""
    if not marks:
        return pixels
    image = _rgb(pixels)
    width, height = image.size
    scale = max(2, round(min(width, height) / 60))
    draw = ImageDraw.Draw(image)

    def at(x: float, y: float) -> tuple[float, float]:
        ox, oy = view.to_output(x, y)
        return ox * width, oy * height

    for mark in marks:
        px, py = at(mark.x, mark.y)
        inside = -0.05 * width <= px <= 1.05 * width and -0.05 * height <= py <= 1.05 * height
        if not inside:
            continue
        if mark.kind == "circle" and mark.x2 is not None and mark.y2 is not None:
            ex, ey = at(mark.x2, mark.y2)
            radius = max(scale * 2, math.hypot(ex - px, ey - py))
            box = (px - radius, py - radius, px + radius, py + radius)
            draw.ellipse(box, outline=OUTLINE, width=scale + 2)
            draw.ellipse(box, outline=MARK_COLOUR, width=scale)
        elif mark.kind == "arrow" and mark.x2 is not None and mark.y2 is not None:
            sx, sy = at(mark.x2, mark.y2)
            draw.line((sx, sy, px, py), fill=OUTLINE, width=scale + 2)
            draw.line((sx, sy, px, py), fill=MARK_COLOUR, width=scale)
            angle = math.atan2(py - sy, px - sx)
            head = scale * 5
            for side in (-0.45, 0.45):
                hx = px - head * math.cos(angle + side)
                hy = py - head * math.sin(angle + side)
                draw.line((px, py, hx, hy), fill=MARK_COLOUR, width=scale)
        elif mark.kind in {"marker", "note"}:
            r = scale * 3
            draw.ellipse((px - r, py - r, px + r, py + r), outline=OUTLINE, width=scale + 2)
            draw.ellipse((px - r, py - r, px + r, py + r), outline=MARK_COLOUR, width=scale)
            draw.line((px - r * 2, py, px - r, py), fill=MARK_COLOUR, width=scale)
            draw.line((px + r, py, px + r * 2, py), fill=MARK_COLOUR, width=scale)
        if mark.label:
            _text(draw, (px + scale * 4, py + scale * 2), mark.label[:40], max(12, scale * 6))
    return np.asarray(image)


def draw_grid(pixels: np.ndarray, rows: int = 3, columns: int = 3) -> np.ndarray:
    """``pixels`` with a ``rows`` x ``columns`` grid and numbered cells (1 at top left), for picking a region."""
    image = _rgb(pixels)
    width, height = image.size
    draw = ImageDraw.Draw(image)
    line = max(1, round(min(width, height) / 250))
    for i in range(1, columns):
        x = width * i / columns
        draw.line((x, 0, x, height), fill=OUTLINE, width=line + 2)
        draw.line((x, 0, x, height), fill=MARK_COLOUR, width=line)
    for j in range(1, rows):
        y = height * j / rows
        draw.line((0, y, width, y), fill=OUTLINE, width=line + 2)
        draw.line((0, y, width, y), fill=MARK_COLOUR, width=line)
    size = max(14, round(min(width, height) / (rows * 5)))
    for j in range(rows):
        for i in range(columns):
            _text(draw, (width * i / columns + size / 3, height * j / rows + size / 4), str(j * columns + i + 1), size)
    return np.asarray(image)


def grid_cell(cell: int, rows: int = 3, columns: int = 3) -> tuple[float, float, float, float]:
    """Normalised (x, y, w, h) of grid cell ``cell`` (1 at top left, row by row)."""
    if not 1 <= cell <= rows * columns:
        raise ValueError("no such grid cell")
    row, column = divmod(cell - 1, columns)
    return column / columns, row / rows, 1 / columns, 1 / rows
