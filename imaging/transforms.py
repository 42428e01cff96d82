"""Geometric transforms on 8-bit pictures, and the view that maps image points onto them.

All functions take and return ``uint8`` arrays shaped (rows, columns) or (rows, columns, 3).
Rotation is clockwise, as a viewer's "rotate right" button. Regions are normalised: x and y
from the top-left corner, width and height, each between 0 and 1.

:class:`View` records rotate, flip and zoom so a later stage (annotations) can map a point
given in normalised coordinates of the *original frame* onto the output picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# Telegram sendPhoto rules (Bot API): width + height <= 10000, aspect ratio <= 20, <= 10 MB.
TELEGRAM_MAX_SIDES_SUM = 10_000
TELEGRAM_MAX_ASPECT = 20.0
TELEGRAM_MAX_PHOTO_BYTES = 10 * 1024 * 1024
CHAT_PREVIEW_SIZE = 1280

Region = tuple[float, float, float, float]


def validate_region(region: Region) -> Region:
    """Check a normalised (x, y, w, h) region lies inside the picture and is not empty."""
    x, y, w, h = (float(v) for v in region)
    if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1):
        raise ValueError("zoom region must be X,Y,W,H between 0 and 1 with W and H above 0")
    if x + w > 1.0 + 1e-9 or y + h > 1.0 + 1e-9:
        raise ValueError("zoom region must stay inside the picture (X+W and Y+H at most 1)")
    return x, y, w, h


def rotate(image: np.ndarray, degrees: int) -> np.ndarray:
    """Rotate clockwise by 0, 90, 180 or 270 degrees."""
    if degrees % 90:
        raise ValueError("rotation must be a multiple of 90 degrees")
    turns = (degrees // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=-turns)) if turns else image


def flip(image: np.ndarray, direction: str) -> np.ndarray:
    """Mirror left-right (``"h"``) or top-bottom (``"v"``)."""
    if direction == "h":
        return np.ascontiguousarray(image[:, ::-1])
    if direction == "v":
        return np.ascontiguousarray(image[::-1])
    raise ValueError("flip must be 'h' or 'v'")


def invert(image: np.ndarray) -> np.ndarray:
    """Negative of an 8-bit picture."""
    return np.subtract(255, image, dtype=np.uint8)


def crop(image: np.ndarray, region: Region) -> np.ndarray:
    """Cut out a normalised region, at least one pixel each way."""
    x, y, w, h = validate_region(region)
    rows, cols = image.shape[:2]
    left, top = int(np.floor(x * cols)), int(np.floor(y * rows))
    right = max(left + 1, min(cols, int(np.ceil((x + w) * cols))))
    bottom = max(top + 1, min(rows, int(np.ceil((y + h) * rows))))
    return image[top:bottom, left:right]


def fit(image: np.ndarray, max_size: int) -> np.ndarray:
    """Scale so the long side is at most ``max_size`` (0 keeps the native size), keeping the aspect.

    Downscaling averages the source pixels under each output pixel (Pillow's BOX filter: fast,
    no aliasing); upscaling is never done here.
    """
    rows, cols = image.shape[:2]
    if max_size <= 0 or max(rows, cols) <= max_size:
        return image
    scale = max_size / max(rows, cols)
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    pil = Image.fromarray(image)
    return np.asarray(pil.resize(size, Image.Resampling.BOX))


def scale_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to exactly ``width`` x ``height`` (used by compositions)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    pil = Image.fromarray(image)
    return np.asarray(pil.resize((max(1, width), max(1, height)), Image.Resampling.BILINEAR))


def telegram_safe(image: np.ndarray) -> np.ndarray:
    """Make a picture acceptable to sendPhoto: width + height <= 10000 (scaled down) and an
    aspect ratio of at most 20 (padded with black, centred)."""
    rows, cols = image.shape[:2]
    if rows + cols > TELEGRAM_MAX_SIDES_SUM:
        scale = (TELEGRAM_MAX_SIDES_SUM - 2) / (rows + cols)
        image = scale_to(image, max(1, int(cols * scale)), max(1, int(rows * scale)))
        rows, cols = image.shape[:2]
    if max(rows, cols) / min(rows, cols) > TELEGRAM_MAX_ASPECT:
        new_rows = max(rows, int(np.ceil(cols / TELEGRAM_MAX_ASPECT)))
        new_cols = max(cols, int(np.ceil(rows / TELEGRAM_MAX_ASPECT)))
        padded = np.zeros((new_rows, new_cols, *image.shape[2:]), dtype=image.dtype)
        top, left = (new_rows - rows) // 2, (new_cols - cols) // 2
        padded[top : top + rows, left : left + cols] = image
        image = padded
    return image


@dataclass(frozen=True)
class View:
    """Rotate, flip and zoom as applied to one frame, to place overlays on the output.

    ``zoom`` is in the coordinates of the rotated and flipped picture (what the viewer sees).
    """

    rotate: int = 0
    flip: str | None = None
    zoom: Region | None = None

    def to_output(self, x: float, y: float) -> tuple[float, float]:
        """Map a normalised point of the original frame to normalised output coordinates
        (values outside 0..1 fall outside a zoomed view)."""
        for _ in range((self.rotate // 90) % 4):
            x, y = 1.0 - y, x  # clockwise quarter turn
        if self.flip == "h":
            x = 1.0 - x
        elif self.flip == "v":
            y = 1.0 - y
        if self.zoom is not None:
            zx, zy, zw, zh = self.zoom
            x, y = (x - zx) / zw, (y - zy) / zh
        return x, y

    def source_region(self) -> Region | None:
        """The zoom region expressed in normalised coordinates of the original frame."""
        if self.zoom is None:
            return None
        zx, zy, zw, zh = self.zoom
        # Undo the flip, then the rotation, for two opposite corners.
        corners = [(zx, zy), (zx + zw, zy + zh)]
        mapped = []
        for x, y in corners:
            if self.flip == "h":
                x = 1.0 - x
            elif self.flip == "v":
                y = 1.0 - y
            for _ in range((self.rotate // 90) % 4):
                x, y = y, 1.0 - x  # counter-clockwise quarter turn
            mapped.append((x, y))
        (x0, y0), (x1, y1) = mapped
        left, right = sorted((x0, x1))
        top, bottom = sorted((y0, y1))
        return max(0.0, left), max(0.0, top), min(1.0, right) - max(0.0, left), min(1.0, bottom) - max(0.0, top)
