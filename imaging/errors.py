"""Typed rendering errors, each with a message fit to show a patient.

Every failure of :mod:`imaging` is a :class:`RenderError`. ``str(error)`` and
``error.patient_message`` are short, plain sentences (no jargon, no tracebacks);
``error.reason`` is a stable machine word for logs, metrics and the CLI table.
"""

from __future__ import annotations


class RenderError(Exception):
    """An image could not be turned into a picture."""

    reason = "render-failed"
    patient_message = "This image could not be shown. Your doctor's clinic can send it again."

    def __init__(self, detail: str = "") -> None:
        # ``detail`` is technical (for logs); never contains patient data.
        super().__init__(detail or self.patient_message)
        self.detail = detail

    def __str__(self) -> str:
        return self.patient_message


class NotDicom(RenderError):
    """The bytes are not a DICOM file."""

    reason = "not-dicom"
    patient_message = "This file is not a medical image (DICOM) file."


class NoPixelData(RenderError):
    """The DICOM object has no image in it (a report, a plan, a structure set)."""

    reason = "no-pixel-data"
    patient_message = "This file has no picture in it. It may be a report or a plan instead of an image."


class UnsupportedCompression(RenderError):
    """The pixel data uses a compression (transfer syntax) no available decoder reads."""

    reason = "unsupported-compression"
    patient_message = "This image is packed in a format Lightbox cannot open yet."


class TruncatedPixelData(RenderError):
    """The file ends before all the pixels its header promises."""

    reason = "truncated-pixel-data"
    patient_message = "This image file is incomplete: part of it is missing. Try sending it again."


class FrameOutOfRange(RenderError):
    """A frame number past the end of a multi-frame image was asked for."""

    reason = "frame-out-of-range"

    def __init__(self, frame: int, frames: int) -> None:
        self.frame = frame
        self.frames = frames
        self.patient_message = f"This image has {frames} picture(s); picture {frame + 1} does not exist."
        super().__init__(f"frame {frame} asked, {frames} available")


class ImageTooLarge(RenderError):
    """The header claims more pixels than the configured limit allows (checked before allocating)."""

    reason = "too-large"

    def __init__(self, pixels: int, limit: int) -> None:
        self.pixels = pixels
        self.limit = limit
        super().__init__(f"{pixels} pixels claimed, limit {limit}")

    patient_message = "This image is larger than Lightbox is set up to show."


class CorruptImage(RenderError):
    """The pixel data is damaged (a broken codestream, impossible attributes)."""

    reason = "corrupt"
    patient_message = "This image is damaged and cannot be shown. The clinic may be able to send a fresh copy."
