"""Lightbox imaging: DICOM in, pictures out. Pure functions: no Telegram, database or HTTP.

Public API (import from the submodules named; the most used are re-exported here, except
``render`` and ``encode``, which share their module's name: use ``imaging.render.render`` and
``imaging.encode.encode``)

Rendering (:mod:`imaging.render`)
    ``render_frame(src, frame=0, window=None, *, rotate=0, flip=None,
    invert=False, zoom=None, max_size=1280, overlay=None, max_pixels=...) -> np.ndarray``
        One frame to a ``uint8`` array, (rows, columns) grey or (rows, columns, 3) RGB. ``src`` is
        a path, a pydicom ``Dataset`` or an opened :class:`DicomImage`. ``frame`` is 0-based.
        ``max_size`` is the long side in pixels (0 = native). ``zoom`` is a normalised
        (x, y, w, h) region of the rotated and flipped picture.
    ``render(...) -> Rendered``: the same, plus what window was applied (``Rendered.voi``, an
        :class:`AppliedVoi` with kind ``stored``/``voi-lut``/``preset``/``explicit``/``auto``,
        center, width, explanation), the frame count and the :class:`View`.
    ``telegram_photo_bytes(src, frame=0, window=None, *, max_size=1280, **options) -> bytes``
        A JPEG for sendPhoto: width + height <= 10000, aspect <= 20 (padded), <= 10 MB, and
        normally under 1.5 MB (quality steps down only when needed).
    ``photo_bytes(pixels)``: the same rules for a picture rendered already (compositions).

Windows (:mod:`imaging.display`)
    ``WindowChoice()``: default (first stored window, else VOI LUT Sequence, else automatic);
    ``WindowChoice.stored(i)``, ``WindowChoice.preset("brain")`` (``CT_PRESETS``: brain, subdural,
    stroke, lung, mediastinum, abdomen, liver, bone), ``WindowChoice.explicit(center, width)``,
    ``WindowChoice.auto()``. ``stored_windows(ds)`` lists the stored pairs with explanations.
    Stages, in the standard's order: ``apply_modality_lut``, ``apply_voi`` (``apply_window`` with
    LINEAR / LINEAR_EXACT / SIGMOID, ``apply_voi_lut``, ``auto_window`` ignoring ``padding_mask``),
    ``apply_presentation`` (MONOCHROME1, Presentation LUT Shape), ``apply_palette``,
    ``ybr_to_rgb``, ``to_uint8`` (the window's nominal range onto 0..255).

Decoding (:mod:`imaging.decode`)
    ``open_image(src, max_pixels=...) -> DicomImage`` reads the header only and checks
    Rows x Columns x Frames x Samples against ``max_pixels`` before anything is allocated.
    ``decode_frame(image, index) -> Frame`` decodes one frame (never the whole object);
    ``iter_frames(image)`` yields them one at a time.

Errors (:mod:`imaging.errors`): every failure is a :class:`RenderError` whose ``str()`` is a plain
    sentence for the patient and whose ``reason`` is a stable word: ``NotDicom``, ``NoPixelData``,
    ``UnsupportedCompression``, ``TruncatedPixelData``, ``FrameOutOfRange``, ``ImageTooLarge``,
    ``CorruptImage``. (A missing file raises ``FileNotFoundError``; bad options ``ValueError``.)

Transforms (:mod:`imaging.transforms`): ``rotate``, ``flip``, ``invert``, ``crop``, ``fit``,
    ``telegram_safe``; ``View.to_output(x, y)`` maps a normalised point of the original frame onto
    the output picture. Overlays (annotations) are the last stage of ``render``: pass
    ``overlay=lambda pixels, view: ...``; it gets the finished picture and the ``View``.

Encoding (:mod:`imaging.encode`): ``encode(pixels, "jpeg" | "png" | "webp") -> bytes``,
    ``encode_within(pixels, budget)``.

Series (:mod:`imaging.series`): ``sort_instances(items, dataset_of=None)`` along the slice normal
    (fallback Instance Number), ``frame_order(ds)``, ``key_slice(count)``, ``evenly_spaced``,
    ``plane_of(ds)``; geometry in :mod:`imaging.geometry`.

Compositions (:mod:`imaging.compose`): ``montage(slices, count=9)``, ``side_by_side(left, right,
    captions)`` (one window for both), ``cine_gif(slices)`` (bounded frames and bytes). A slice
    is ``(source, frame)``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time names load lazily
    from imaging.decode import DicomImage, Frame, decode_frame, iter_frames, open_image
    from imaging.display import CT_PRESETS, AppliedVoi, WindowChoice, stored_windows
    from imaging.errors import (
        CorruptImage,
        FrameOutOfRange,
        ImageTooLarge,
        NoPixelData,
        NotDicom,
        RenderError,
        TruncatedPixelData,
        UnsupportedCompression,
    )
    from imaging.render import Rendered, photo_bytes, render_frame, telegram_photo_bytes
    from imaging.transforms import View

# Lazy, so ``import imaging.geometry`` (used by store/ for metadata) stays light.
_WHERE = {
    "DicomImage": "decode", "Frame": "decode", "decode_frame": "decode", "iter_frames": "decode",
    "open_image": "decode", "CT_PRESETS": "display", "AppliedVoi": "display", "WindowChoice": "display",
    "stored_windows": "display", "CorruptImage": "errors", "FrameOutOfRange": "errors",
    "ImageTooLarge": "errors", "NoPixelData": "errors", "NotDicom": "errors", "RenderError": "errors",
    "TruncatedPixelData": "errors", "UnsupportedCompression": "errors", "Rendered": "render",
    "photo_bytes": "render", "render_frame": "render",
    "telegram_photo_bytes": "render", "View": "transforms",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'imaging' has no attribute {name!r}")
    return getattr(import_module(f"imaging.{module}"), name)


__all__ = [
    "CT_PRESETS",
    "AppliedVoi",
    "CorruptImage",
    "DicomImage",
    "Frame",
    "FrameOutOfRange",
    "ImageTooLarge",
    "NoPixelData",
    "NotDicom",
    "RenderError",
    "Rendered",
    "TruncatedPixelData",
    "UnsupportedCompression",
    "View",
    "WindowChoice",
    "decode_frame",
    "iter_frames",
    "open_image",
    "photo_bytes",
    "render_frame",
    "stored_windows",
    "telegram_photo_bytes",
]
