"""The font for words drawn on pictures (dates on comparisons, labels on marks and thumbnails).

DejaVu Sans (Debian ``fonts-dejavu-core``, installed by scripts/setup.sh) has Latin, Greek and Cyrillic
letters, so a Russian date can be drawn as words. Without it, Pillow's built-in font draws Latin letters
only; :func:`can_draw` says which, so callers can fall back (for example to an ISO date).
"""

from __future__ import annotations

import functools
from pathlib import Path

from PIL import ImageFont

DEJAVU_SANS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
)
# The last code point each font draws: Cyrillic ends at U+04FF; Pillow's own font at Latin Extended-B.
_DEJAVU_UP_TO = 0x4FF
_BUILT_IN_UP_TO = 0x24F


@functools.cache
def _font_file() -> Path | None:
    return next((path for path in DEJAVU_SANS if path.is_file()), None)


@functools.cache
def label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans at ``size`` pixels when installed, else Pillow's built-in font."""
    path = _font_file()
    if path is not None:
        try:
            return ImageFont.truetype(str(path), size)
        except OSError:  # a damaged font file: draw with the built-in one rather than fail the picture
            pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def can_draw(text: str) -> bool:
    """Whether :func:`label_font` has every letter of ``text``."""
    last = _DEJAVU_UP_TO if _font_file() is not None else _BUILT_IN_UP_TO
    return all(ord(ch) <= last for ch in text)
