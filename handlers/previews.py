"""Pictures for the chat: the slices of a series, the key slice, and a cached, rendered preview.

Rendering is CPU work: callers run :func:`preview_jpeg` in a worker thread (``asyncio.to_thread``) so
one patient's big radiograph never stalls another patient's chat.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from sqlalchemy.orm import Session

from handlers import texts
from handlers.callbacks import WINDOW_CODES, View
from handlers.services import Services
from imaging.display import CT_PRESETS, WindowChoice
from imaging.errors import RenderError
from imaging.overlays import Mark, draw_grid, draw_marks
from imaging.render import photo_bytes, render
from imaging.transforms import scale_to
from store.dicomweb import DicomWebError, failure_kind
from store.filestore import FileStore
from store.models import Instance, Series
from store.pacs_store import local_path
from store.queries import instances_of_series

# Zoom quadrants of the card, in normalised (x, y, w, h) of the picture as shown.
ZOOM_REGIONS: dict[int, tuple[float, float, float, float]] = {
    1: (0.0, 0.0, 0.5, 0.5),
    2: (0.5, 0.0, 0.5, 0.5),
    3: (0.0, 0.5, 0.5, 0.5),
    4: (0.5, 0.5, 0.5, 0.5),
}
# SOP classes that hold no picture (reports, documents, presentation states).
NON_IMAGE_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.104.", "1.2.840.10008.5.1.4.1.1.11.")
PREVIEW_VERSION = "p2"  # bump when rendering changes, so cached previews are not reused


@dataclass(frozen=True)
class Slice:
    """One picture of a series: an instance and a frame of it."""

    instance: Instance
    frame: int


class ArchiveUnavailable(RenderError):
    """The picture's image is kept only in the hospital's archive (PACS), which could not give it now.
    A RenderError, so every place that shows a picture answers it with its patient-fit text; ``reason``
    (archive-down, archive-missing, archive-bad) names the label in handlers/labels.toml."""

    reason = "archive-down"

    def __init__(self, reason: str, patient_message: str, detail: str = "") -> None:
        super().__init__(detail)
        self.reason = reason
        self.patient_message = patient_message


def picture_source(files: FileStore, instance: Instance) -> Path | Dataset:
    """What imaging reads for ``instance``: its stored file, or its PACS copy fetched into this worker's
    cache (blocking: call it in a worker thread). A PACS that fails raises :class:`ArchiveUnavailable`."""
    try:
        return local_path(files, instance)
    except DicomWebError as exc:
        reason = f"archive-{failure_kind(exc)}"  # the label render.<reason> holds the words in every language
        english = str(texts.labels()[f"render.{reason}"]["en"])
        raise ArchiveUnavailable(reason, english, type(exc).__name__) from exc


def is_image(instance: Instance) -> bool:
    """Whether the instance has a picture to show (not a report, a PDF or a presentation state)."""
    if instance.rows is None or instance.columns is None:
        return False
    return not instance.sop_class_uid.startswith(NON_IMAGE_SOP_PREFIXES)


def series_slices(session: Session, patient_id: int, series: Series) -> list[Slice]:
    """Every picture of the series in slice order: each instance's frames, one after the other."""
    slices: list[Slice] = []
    for instance in instances_of_series(session, patient_id, series.id):
        if not is_image(instance) or not (instance.storage_key or instance.remote_url):
            continue
        for frame in range(max(1, instance.number_of_frames or 1)):
            slices.append(Slice(instance, frame))
    return slices


def picture_at(
    session: Session, patient_id: int, series_ref: str, slice_index: int
) -> tuple[Series, list[Slice], int] | None:
    """The patient's series, its pictures and the index of picture ``slice_index`` (-1: the key slice,
    past the end: the last); ``None`` when the series is not theirs or shows nothing."""
    from store.queries import get_series_for_patient

    series = get_series_for_patient(session, patient_id, series_ref)
    if series is None:
        return None
    slices = series_slices(session, patient_id, series)
    if not slices:
        return None
    index = key_slice(len(slices)) if slice_index < 0 else min(slice_index, len(slices) - 1)
    return series, slices, index


def key_slice(count: int) -> int:
    """The slice a card opens on: the middle of the stack."""
    return max(0, (count - 1) // 2) if count else 0


def best_series(session: Session, patient_id: int, series_list: list[Series]) -> Series | None:
    """The series to open a study on: the one with the most pictures (ties: the lower series number)."""
    ranked = [s for s in series_list if (s.frame_count or s.instance_count) and s.modality not in {"SR", "DOC", "PR"}]
    if not ranked:
        ranked = list(series_list)
    if not ranked:
        return None
    return max(ranked, key=lambda s: (max(s.frame_count, s.instance_count), -(s.series_number or 0)))


def window_choice(code: str) -> WindowChoice:
    """The imaging window for a card's window code."""
    name = WINDOW_CODES.get(code, "default")
    if name == "default":
        return WindowChoice()
    if name == "auto":
        return WindowChoice.auto()
    if name in CT_PRESETS:
        return WindowChoice.preset(name)
    return WindowChoice()


def preview_key(instance: Instance, frame: int, view: View, max_size: int) -> str:
    """Cache key: what the picture is made of (never a UID or a name in clear)."""
    raw = "|".join(
        [
            PREVIEW_VERSION,
            instance.content_hash or instance.public_id,
            str(frame),
            view.window,
            str(view.rotate),
            str(view.zoom),
            str(int(view.invert)),
            str(max_size),
        ]
    )
    return hashlib.sha256(raw.encode()).hexdigest()


MIN_PREVIEW_SIZE = 512  # small images (64 x 64 MR slices) are enlarged so a phone shows them usefully


def enlarge_small(pixels: np.ndarray, minimum: int = MIN_PREVIEW_SIZE) -> np.ndarray:
    """Scale a picture up so its long side is at least ``minimum`` pixels (never down)."""
    rows, cols = pixels.shape[:2]
    if max(rows, cols) >= minimum:
        return pixels
    factor = minimum / max(rows, cols)
    return scale_to(pixels, round(cols * factor), round(rows * factor))


def preview_jpeg(
    services: Services,
    piece: Slice,
    view: View,
    namespace: str,
    *,
    max_size: int = 1280,
    marks: Sequence[Mark] = (),
    grid: bool = False,
    region: tuple[float, float, float, float] | None = None,
) -> bytes:
    """The chat preview of one slice as JPEG bytes, cached under the patient's ``namespace`` (their public id,
    so erasing the patient clears it). ``marks`` are drawn after the transforms; ``grid`` adds a numbered
    3 x 3 picking grid; ``region`` zooms to a normalised region instead of the view's quadrant.
    Raises imaging's RenderError when it cannot."""
    cache = services.preview_cache()
    key = preview_key(piece.instance, piece.frame, view, max_size)
    if marks or grid or region:
        key = hashlib.sha256(f"{key}|{marks!r}|{grid}|{region!r}".encode()).hexdigest()

    if cache is not None:
        hit = cache.get(key, namespace)
        if hit is not None:
            return hit
    started = time.perf_counter()
    path = picture_source(services.files, piece.instance)  # a PACS instance is fetched into the worker's cache
    rendered = render(
        path,
        piece.frame,
        window_choice(view.window),
        rotate=90 * view.rotate,
        invert=view.invert,
        zoom=region or ZOOM_REGIONS.get(view.zoom),
        max_size=max_size,
        max_pixels=services.max_pixels,
    )
    pixels = enlarge_small(rendered.pixels)
    # Overlays go on last, at the size the patient sees, so small images still get crisp marks.
    pixels = draw_marks(pixels, rendered.view, marks)
    if grid:
        pixels = draw_grid(pixels)
    data = photo_bytes(pixels)
    observe = services.hooks.get("rendered")
    if observe is not None:
        observe(time.perf_counter() - started)  # records on call (bot.health.rendered); nothing to await here
    if cache is not None:
        cache.put(key, data, namespace)
    return data
