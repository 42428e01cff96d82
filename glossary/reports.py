"""Reading the text of a report that comes with a study.

Three shapes are read: a DICOM Structured Report (its content tree, walked in order),
a DICOM Encapsulated PDF or CDA document (Encapsulated Document (0042,0011)), and a bare
PDF or plain-text file. The text is returned as is; :meth:`glossary.lookup.Glossary.find_terms`
then lists the glossary words in it. Person names, UIDs and image references in an SR are
left out: they are not part of what the report says.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from glossary.text import MAX_TEXT_CHARS, clean_text

log = logging.getLogger(__name__)

MAX_PDF_PAGES = 200
MAX_SR_DEPTH = 32
MAX_SR_ITEMS = 20_000

_SKIPPED_VALUE_TYPES = {"PNAME", "UIDREF", "IMAGE", "COMPOSITE", "WAVEFORM", "SCOORD", "SCOORD3D", "TCOORD"}


class ReportError(ValueError):
    """The file is not a report Lightbox can read; the message says why in plain words."""


@dataclass(frozen=True)
class Report:
    """The text of a report and where it came from."""

    kind: str  # "sr" | "pdf" | "cda" | "text"
    title: str
    text: str
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"kind": self.kind, "title": self.title, "text": self.text, "truncated": self.truncated}


def is_report(ds: Dataset) -> bool:
    """Whether ``ds`` holds report text: an SR (Content Sequence) or an encapsulated document."""
    return ("ContentSequence" in ds and "ValueType" in ds) or "EncapsulatedDocument" in ds


def _meaning(item: Dataset, keyword: str = "ConceptNameCodeSequence") -> str:
    seq = item.get(keyword)
    try:
        return str(seq[0].get("CodeMeaning", "")).strip() if seq else ""
    except (IndexError, AttributeError, TypeError):
        return ""


def _num(item: Dataset) -> str:
    seq = item.get("MeasuredValueSequence")
    if not seq:
        return ""
    value = seq[0].get("NumericValue", "")
    unit = _meaning(seq[0], "MeasurementUnitsCodeSequence")
    if not unit:
        units = seq[0].get("MeasurementUnitsCodeSequence")
        unit = str(units[0].get("CodeValue", "")) if units else ""
    unit = "" if unit in {"1", "no units"} else unit
    return f"{value} {unit}".strip()


def _item_value(item: Dataset) -> str:
    value_type = str(item.get("ValueType", "")).upper()
    if value_type == "TEXT":
        return str(item.get("TextValue", "")).strip()
    if value_type == "CODE":
        return _meaning(item, "ConceptCodeSequence")
    if value_type == "NUM":
        return _num(item)
    if value_type == "DATE":
        return str(item.get("Date", ""))
    if value_type == "TIME":
        return str(item.get("Time", ""))
    if value_type == "DATETIME":
        return str(item.get("DateTime", ""))
    return ""


def _sr_lines(items: Any, depth: int, budget: list[int]) -> Iterator[str]:
    """Lines of an SR content tree, depth first, in document order."""
    if depth > MAX_SR_DEPTH or not items:
        return
    for item in items:
        budget[0] -= 1
        if budget[0] < 0:
            return
        value_type = str(item.get("ValueType", "")).upper()
        # Observation context (who observed, in which mode) is bookkeeping, not what the report says.
        if value_type in _SKIPPED_VALUE_TYPES or str(item.get("RelationshipType", "")) == "HAS OBS CONTEXT":
            continue
        name = _meaning(item)
        if value_type == "CONTAINER":
            if name:
                yield f"{name}:"
        else:
            value = _item_value(item)
            if value:
                yield f"{name}: {value}" if name else value
        if "ContentSequence" in item:
            yield from _sr_lines(item.ContentSequence, depth + 1, budget)


def sr_report(ds: Dataset) -> Report:
    """The text of a DICOM Structured Report: every TEXT, CODE, NUM and date item, in order.

    Reads Concept Name Code Sequence (0040,A043), Value Type (0040,A040), Text Value (0040,A160),
    Concept Code Sequence (0040,A168), Measured Value Sequence (0040,A300), Content Sequence (0040,A730).
    """
    if "ContentSequence" not in ds:
        raise ReportError("This structured report has no content.")
    title = _meaning(ds) or str(ds.get("SeriesDescription", "")) or "Structured report"
    lines = list(_sr_lines(ds.ContentSequence, 0, [MAX_SR_ITEMS]))
    return _bounded("sr", title, "\n".join(lines))


def pdf_text(data: bytes, max_pages: int | None = None) -> tuple[str, bool]:
    """Text of a PDF (pypdf), page by page, and whether pages were left out. Raises ReportError."""
    max_pages = MAX_PDF_PAGES if max_pages is None else max_pages
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ReportError("This PDF is locked with a password, so its text cannot be read.")
        pages = reader.pages
        count = len(pages)
        parts = []
        for i in range(min(count, max_pages)):
            parts.append(pages[i].extract_text() or "")
    except ReportError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        log.info("pdf text extraction failed: %s", type(exc).__name__)
        raise ReportError("This PDF could not be read; it may be damaged.") from None
    return "\n".join(p.strip() for p in parts if p.strip()), count > max_pages


def encapsulated_report(ds: Dataset) -> Report:
    """The text of an Encapsulated PDF or CDA object (Encapsulated Document (0042,0011))."""
    data = ds.get("EncapsulatedDocument")
    if not data:
        raise ReportError("This document object holds no document.")
    data = bytes(data)
    mime = str(ds.get("MIMETypeOfEncapsulatedDocument", "")).lower()
    title = str(ds.get("DocumentTitle", "")).strip() or "Report"
    if mime == "application/pdf" or data.startswith(b"%PDF"):
        text, more = pdf_text(data.rstrip(b"\x00"))
        return _bounded("pdf", title, text, more)
    if "xml" in mime or mime.startswith("text/"):
        text = data.rstrip(b"\x00").decode("utf-8", "replace")
        return _bounded("cda" if "xml" in mime else "text", title, text)
    raise ReportError(f"This document is of a kind Lightbox cannot read ({mime or 'unknown type'}).")


def report_from_dataset(ds: Dataset) -> Report:
    """The report text of a DICOM object: SR or encapsulated document. Raises ReportError otherwise."""
    if "EncapsulatedDocument" in ds:
        return encapsulated_report(ds)
    if "ContentSequence" in ds:
        return sr_report(ds)
    if "PixelData" in ds or "Rows" in ds:
        raise ReportError("This DICOM file is an image, not a report. Try the report file that came with it.")
    raise ReportError("This DICOM file holds no report text.")


def report_from_bytes(data: bytes) -> Report:
    """The report in a file's bytes: DICOM (SR or encapsulated), a PDF, or plain text."""
    if not data or not data.strip():
        raise ReportError("The file is empty.")
    if data.startswith(b"%PDF"):
        text, more = pdf_text(data)
        return _bounded("pdf", "Report", text, more)
    if data[128:132] == b"DICM":
        try:
            ds = dcmread(io.BytesIO(data))
        except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError):
            raise ReportError("This DICOM file could not be read; it may be damaged.") from None
        return report_from_dataset(ds)
    if b"\x00" in data[:4096]:
        raise ReportError("This file is not a report Lightbox can read (DICOM, PDF or plain text).")
    return _bounded("text", "Report", data.decode("utf-8", "replace"))


def _bounded(kind: str, title: str, text: str, truncated: bool = False) -> Report:
    cleaned = clean_text(text, MAX_TEXT_CHARS)
    return Report(
        kind=kind,
        title=clean_text(title, 200).strip(),
        text=cleaned.strip(),
        truncated=truncated or len(text) > MAX_TEXT_CHARS,
    )
