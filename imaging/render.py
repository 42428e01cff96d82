"""One frame to one picture: the entry point the rest of Lightbox calls.

:func:`render_frame` decodes one frame, runs the display pipeline (:mod:`imaging.display`),
then the geometric transforms (:mod:`imaging.transforms`), then an optional overlay stage,
and returns a ``uint8`` array. :func:`telegram_photo_bytes` adds Telegram's photo rules and
JPEG encoding. Greyscale integer frames go through a lookup table built once per call over
every possible stored value, so a 9-megapixel radiograph costs one table lookup per pixel.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from imaging import display, transforms
from imaging.decode import DEFAULT_MAX_PIXELS, GARBLED, DicomImage, Frame, decode_frame, lenient_int, open_image
from imaging.display import AppliedVoi, WindowChoice
from imaging.encode import CHAT_BYTE_BUDGET, encode_within
from imaging.errors import CorruptImage, RenderError
from imaging.transforms import (
    CHAT_PREVIEW_SIZE,
    TELEGRAM_MAX_PHOTO_BYTES,
    Region,
    View,
    crop,
    fit,
    telegram_safe,
    validate_region,
)

Source = str | os.PathLike[str] | Dataset | DicomImage
# An overlay draws on the finished picture; ``View`` maps original-frame coordinates onto it.
Overlay = Callable[[np.ndarray, View], np.ndarray]


@dataclass
class Rendered:
    """A rendered picture and what was done to get it."""

    pixels: np.ndarray
    voi: AppliedVoi | None
    frame: int
    frames: int
    view: View


def as_image(src: Source, max_pixels: int = DEFAULT_MAX_PIXELS) -> DicomImage:
    """Open ``src`` unless it already is an opened :class:`DicomImage`."""
    return src if isinstance(src, DicomImage) else open_image(src, max_pixels=max_pixels)


def _little_endian(image: DicomImage) -> bool:
    return image.ds.original_encoding[1] is not False and image.transfer_syntax.is_little_endian


def resolve_auto_window(
    stored: np.ndarray, ds: Dataset, choice: WindowChoice, little_endian: bool = True
) -> WindowChoice:
    """Turn an automatic window (asked for, or the default when nothing is stored) into explicit
    numbers measured on ``stored`` (padding left out); other choices come back unchanged."""
    if not (
        choice.kind == "auto"
        or (choice.kind == "default" and not display.stored_windows(ds) and not ds.get("VOILUTSequence"))
    ):
        return choice
    mask = display.padding_mask(stored, ds)
    step = max(1, stored.size // 250_000)
    sample = stored.ravel()[::step]
    sample_mask = None if mask is None else mask.ravel()[::step]
    if stored.dtype.kind in "ui" and stored.dtype.itemsize <= 2 and not ds.get("ModalityLUTSequence"):
        center, width = _auto_window_by_counting(sample, sample_mask, ds, little_endian)
    else:
        values = display.apply_modality_lut(sample, ds, little_endian)
        center, width = display.auto_window(values, sample_mask)
    return WindowChoice(kind="explicit", name="auto", center=center, width=width, function="LINEAR_EXACT")


def _auto_window_by_counting(
    sample: np.ndarray, mask: np.ndarray | None, ds: Dataset, little_endian: bool
) -> tuple[float, float]:
    """:func:`display.auto_window` for 8/16-bit integers via a histogram instead of a sort (several
    times faster); rescale is monotonic, so percentiles of stored values map onto modality values."""
    if mask is not None and mask.any() and not mask.all():
        sample = sample[~mask]
    offset = 2 ** (8 * sample.dtype.itemsize - 1) if sample.dtype.kind == "i" else 0
    counts = np.bincount(sample.astype(np.int32) + offset if offset else sample)
    present = np.flatnonzero(counts)
    first, last = int(present[0]), int(present[-1])
    cumulative = np.cumsum(counts[first : last + 1])
    total = float(cumulative[-1])

    def at(q: float) -> int:
        # Same interpolation-free rank np.percentile's "lower" method uses.
        return first + int(np.searchsorted(cumulative, q / 100 * (total - 1), side="right"))

    stored_points = np.array(
        [first, last, at(display.AUTO_LOW_PERCENTILE), at(display.AUTO_HIGH_PERCENTILE)], dtype=np.int64
    ) - offset
    lo, hi, plo, phi = (float(v) for v in display.apply_modality_lut(stored_points, ds, little_endian))
    if hi < lo:  # a negative Rescale Slope turns the order round
        lo, hi, plo, phi = hi, lo, phi, plo
    return display.window_from_range(lo, hi, plo, phi)


def grey_to_uint8(
    stored: np.ndarray,
    ds: Dataset,
    photometric: str,
    choice: WindowChoice,
    little_endian: bool = True,
) -> tuple[np.ndarray, AppliedVoi]:
    """Greyscale stored values through modality LUT, VOI and presentation to 8 bits.

    For 8- and 16-bit integers the whole chain is computed once over every possible value and
    applied as a table; other types (32-bit, float) go through it pixel by pixel.
    """
    choice = resolve_auto_window(stored, ds, choice, little_endian)
    auto = choice.name == "auto"
    if stored.dtype.kind in "ui" and stored.dtype.itemsize <= 2:
        # The chain runs over every value Bits Stored allows (4096 for 12 bits), then one lookup
        # per pixel through a table indexed by the values' unsigned bit pattern.
        container = 8 * stored.dtype.itemsize
        bits = min(max(lenient_int(ds, "BitsStored", container), 1), container)
        signed = stored.dtype.kind == "i"
        low = -(2 ** (bits - 1)) if signed else 0
        domain = np.arange(low, low + 2**bits, dtype=np.int32).astype(stored.dtype)
        modality = display.apply_modality_lut(domain, ds, little_endian)
        unit, applied = display.apply_voi(modality, ds, choice, little_endian=little_endian)
        unsigned_type = np.uint8 if stored.dtype.itemsize == 1 else np.uint16
        lut8 = display.to_uint8(display.apply_presentation(unit, ds, photometric))
        # Values beyond Bits Stored (a writer's mistake) clamp to the ends, as dcmtk shows them.
        table = np.empty(2**container, dtype=np.uint8)
        if signed:
            half = 2 ** (container - 1)
            table[:half] = lut8[-1]
            table[half:] = lut8[0]
        else:
            table[:] = lut8[-1]
        table[domain.view(unsigned_type)] = lut8
        out = table[stored.view(unsigned_type)]
    else:
        modality = display.apply_modality_lut(stored, ds, little_endian)
        unit, applied = display.apply_voi(modality, ds, choice, little_endian=little_endian)
        out = display.to_uint8(display.apply_presentation(unit, ds, photometric))
    if auto:
        applied = AppliedVoi("auto", applied.center, applied.width)
    return out, applied


def palette_to_rgb(stored: np.ndarray, table8: np.ndarray, first: int) -> np.ndarray:
    """Stored palette indices to RGB through an (entries, 3) uint8 table.

    8-bit indices with a table starting at 0 go through Pillow's palette conversion (in C);
    others through one 1-D lookup per channel (much faster than a 2-D fancy index)."""
    if stored.dtype == np.uint8 and first == 0 and len(table8) >= 256:
        from PIL import Image

        picture = Image.fromarray(stored, mode="L").convert("P")
        picture.putpalette(table8[:256].tobytes())
        return np.asarray(picture.convert("RGB"))
    index = stored.astype(np.int32) - first if first or stored.dtype.kind == "i" else stored
    index = np.clip(index, 0, len(table8) - 1)
    out = np.empty((*stored.shape, 3), dtype=np.uint8)
    for channel in range(3):
        out[..., channel] = np.take(np.ascontiguousarray(table8[:, channel]), index)
    return out


def frame_to_uint8(
    frame: Frame, image: DicomImage, choice: WindowChoice | None = None
) -> tuple[np.ndarray, AppliedVoi | None]:
    """A decoded frame to an 8-bit grey or RGB picture (display pipeline only, no transforms)."""
    ds = display.frame_attributes(image.ds, frame.index)
    choice = choice or WindowChoice()
    pixels = frame.pixels
    little = _little_endian(image)
    photometric = frame.photometric
    if photometric == "PALETTE COLOR" and pixels.ndim == 2:
        try:
            table, first = display.palette_table(ds, little)
            return palette_to_rgb(pixels, display.to_uint8(table), first), None
        except (ValueError, KeyError, TypeError):
            photometric = "MONOCHROME2"  # a palette image without a usable palette: show its grey levels
    if pixels.ndim == 3:
        if pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]
        else:
            if pixels.shape[2] != 3:
                pixels = pixels[:, :, :3]
            bits = lenient_int(ds, "BitsStored", pixels.dtype.itemsize * 8)
            if pixels.dtype == np.uint8:
                if photometric in ("YBR_FULL", "YBR_FULL_422"):
                    return display.ybr_to_rgb_8bit(pixels), None
                return pixels, None
            if pixels.dtype.kind == "f":
                return display.to_uint8(np.clip(pixels, 0, 1)), None
            return display.to_uint8(display.colour_to_unit(pixels, photometric, bits)), None
    if pixels.ndim != 2:
        raise CorruptImage(f"decoded frame has shape {pixels.shape}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        photometric = "MONOCHROME2"
    return grey_to_uint8(pixels, ds, photometric, choice, little)


def render_frame(
    src: Source,
    frame: int = 0,
    window: WindowChoice | None = None,
    *,
    rotate: int = 0,
    flip: str | None = None,
    invert: bool = False,
    zoom: Region | None = None,
    max_size: int = CHAT_PREVIEW_SIZE,
    overlay: Overlay | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Render one frame to a ``uint8`` array (rows, columns) or (rows, columns, 3).

    See :func:`render` for the parameters; this returns only the pixels.
    """
    return render(
        src,
        frame,
        window,
        rotate=rotate,
        flip=flip,
        invert=invert,
        zoom=zoom,
        max_size=max_size,
        overlay=overlay,
        max_pixels=max_pixels,
    ).pixels


def render(
    src: Source,
    frame: int = 0,
    window: WindowChoice | None = None,
    *,
    rotate: int = 0,
    flip: str | None = None,
    invert: bool = False,
    zoom: Region | None = None,
    max_size: int = CHAT_PREVIEW_SIZE,
    overlay: Overlay | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Rendered:
    """Decode frame ``frame`` of ``src`` and make a picture of it.

    ``window``: a :class:`WindowChoice` (default: first stored window, else VOI LUT, else auto).
    ``rotate`` (degrees clockwise, a multiple of 90), ``flip`` (``"h"``/``"v"``, after the
    rotation), ``zoom`` (normalised x, y, w, h of the rotated picture), ``max_size`` (long side in
    pixels, 0 = native), ``invert`` (negative), ``overlay`` (drawn last, on the output).
    Raises a :class:`imaging.errors.RenderError` subclass for anything it cannot show.
    """
    if rotate % 90:
        raise ValueError("rotation must be a multiple of 90 degrees")
    if flip not in (None, "h", "v"):
        raise ValueError("flip must be 'h' or 'v'")
    view = View(rotate=rotate % 360, flip=flip, zoom=validate_region(zoom) if zoom else None)
    if max_size < 0:
        raise ValueError("max_size must be 0 (native) or more")
    image = as_image(src, max_pixels)
    decoded = decode_frame(image, frame)
    if window is not None and window.kind == "stored":
        try:
            count = display.window_count(display.frame_attributes(image.ds, frame))
        except GARBLED as exc:
            raise CorruptImage(f"{type(exc).__name__} reading the stored windows") from exc
        if window.index >= count:
            raise ValueError(f"this image stores {count} window(s); number {window.index + 1} was asked for")
    try:
        result = _display_and_transform(image, decoded, window, view, max_size, invert)
    except RenderError:
        raise
    except GARBLED as exc:
        # Garbled attributes (a broken VR, a LUT of the wrong length) must not crash the caller.
        raise CorruptImage(f"{type(exc).__name__} in the display pipeline") from exc
    if overlay is not None:
        result.pixels = overlay(result.pixels, view)
    return result


def _display_and_transform(
    image: DicomImage,
    decoded: Frame,
    window: WindowChoice | None,
    view: View,
    max_size: int,
    invert: bool,
) -> Rendered:
    frame = decoded.index
    region = view.source_region()
    choice = window or WindowChoice()
    if region is not None and decoded.pixels.ndim == 2 and decoded.photometric != "PALETTE COLOR":
        # The automatic window is measured on the whole frame, so zooming does not change it.
        frame_ds = display.frame_attributes(image.ds, frame)
        choice = resolve_auto_window(decoded.pixels, frame_ds, choice, _little_endian(image))
    if region is not None:
        # Crop the stored values first: the pipeline then only touches what is shown.
        decoded = Frame(crop(decoded.pixels, region), decoded.photometric, decoded.index)
    pixels, applied = frame_to_uint8(decoded, image, choice)
    pixels = transforms.rotate(pixels, view.rotate)
    if view.flip:
        pixels = transforms.flip(pixels, view.flip)
    pixels = fit(pixels, max_size)
    if invert:
        pixels = transforms.invert(pixels)
    if not pixels.flags.writeable:  # a view of the file's bytes: callers may draw on the picture
        pixels = pixels.copy()
    return Rendered(pixels=pixels, voi=applied, frame=frame, frames=image.frames, view=view)


def telegram_photo_bytes(
    src: Source,
    frame: int = 0,
    window: WindowChoice | None = None,
    *,
    max_size: int = CHAT_PREVIEW_SIZE,
    budget: int = CHAT_BYTE_BUDGET,
    **options: object,
) -> bytes:
    """A JPEG ready for sendPhoto: long side ``max_size``, w + h <= 10000, aspect <= 20, small.

    ``options`` are :func:`render_frame`'s keyword arguments (rotate, flip, invert, zoom, ...).
    """
    pixels = render_frame(src, frame, window, max_size=max_size, **options)  # type: ignore[arg-type]
    return photo_bytes(pixels, budget)


def photo_bytes(pixels: np.ndarray, budget: int = CHAT_BYTE_BUDGET) -> bytes:
    """Encode an already rendered picture for sendPhoto (Telegram rules enforced)."""
    safe = telegram_safe(pixels)
    data = encode_within(safe, min(budget, TELEGRAM_MAX_PHOTO_BYTES))
    while len(data) > TELEGRAM_MAX_PHOTO_BYTES:
        safe = fit(safe, int(max(safe.shape[:2]) * 0.7))
        data = encode_within(safe, TELEGRAM_MAX_PHOTO_BYTES)
    return data
