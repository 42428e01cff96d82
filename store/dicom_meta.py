"""The attributes Lightbox indexes, read from a DICOM file's header (never its pixels).

One function per concern, each naming the DICOM attributes it reads. :func:`read_instance_meta`
parses only up to Pixel Data (``stop_before_pixels``) and defers large values, so indexing a CD
never decodes an image.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any, BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from imaging.geometry import plane_from_orientation, slice_location

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# Column sizes in store.models: longer values are cut so PostgreSQL accepts them.
_LIMITS = {
    "patient_id": 128, "issuer": 128, "patient_name": 512, "birth_date": 16, "sex": 16, "study_time": 16,
    "study_description": 256, "series_description": 256, "modality": 16, "contrast": 64,
    "pixel_spacing": 64, "transfer_syntax": 64, "sop_class_uid": 64, "body_part_examined": 64,
}  # fmt: skip


class NotDicomError(ValueError):
    """The bytes are not a DICOM file."""


class DamagedDicomError(ValueError):
    """A DICOM file that cannot be read or lacks the identifiers needed to file it."""


class DicomdirFileError(ValueError):
    """The file is a DICOMDIR (a CD's index), not an image or document."""


@dataclass(frozen=True)
class InstanceMeta:
    """Everything the store records about one DICOM object."""

    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    study_uid: str
    study_date: date | None
    study_time: str
    study_description: str
    series_uid: str
    modality: str
    series_number: int | None
    series_description: str
    body_part_examined: str
    contrast: str
    slice_thickness: float | None
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    plane: str
    slice_location: float | None
    frames: int
    rows: int | None
    columns: int | None
    pixel_spacing: str
    transfer_syntax: str


# Reading values straight from the raw bytes (no pydicom conversion) where that is exact: these VRs
# are plain ASCII, and text VRs are too when the character set is the default, Latin-1 or UTF-8.
_ASCII_VRS = frozenset({"UI", "CS", "DA", "TM", "DT", "IS", "DS", "AS"})
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT"})  # not PN: pydicom normalises its groups
_CODECS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO 2022 IR 6": "latin-1",
           "ISO 2022 IR 100": "latin-1", "ISO_IR 192": "utf-8"}  # fmt: skip
_SPECIFIC_CHARACTER_SET = 0x00080005


@cache
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:  # pragma: no cover - keywords here are all in the dictionary
        raise KeyError(keyword)
    return tag


def text_codec(ds: Dataset) -> str | None:
    """The Python codec for text values under Specific Character Set (0008,0005), ``None`` when it is one
    that needs pydicom's own decoding (ISO 2022 escapes, multi-byte sets)."""
    try:
        elem = ds.get_item(_SPECIFIC_CHARACTER_SET)
    except Exception:
        return None
    if elem is None:
        return "latin-1"
    raw = elem.value
    if isinstance(raw, bytes):
        value = raw.decode("latin-1").strip(" \x00")
    elif isinstance(raw, str):
        value = raw.strip()
    else:
        return None
    return _CODECS.get(value)


def _raw_text(ds: Dataset, tag: int, codec: str | None) -> str | None:
    """The value as text straight from its bytes; ``None`` when pydicom must convert it."""
    try:
        elem = ds.get_item(tag)
    except Exception:
        return None
    if elem is None:
        return ""
    if not isinstance(elem, RawDataElement) or not isinstance(elem.value, bytes):
        return None
    vr = elem.VR
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return None
    if vr in _ASCII_VRS:
        use = "latin-1"
    elif vr in _TEXT_VRS and codec is not None:
        use = codec
    else:
        return None
    try:
        decoded = elem.value.decode(use)
    except UnicodeDecodeError:
        return None
    return "\\".join(part.strip(" \x00") for part in decoded.split("\\")).strip()


def text(ds: Dataset, keyword: str, codec: str | None = None) -> str:
    """A string attribute as plain text ('' when absent); multi-valued ones joined with '\\'.

    ``codec`` is :func:`text_codec` of ``ds`` (computed when not given).
    """
    fast = _raw_text(ds, _tag(keyword), codec if codec is not None else text_codec(ds))
    if fast is not None:
        return fast
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed value: treat as absent rather than refuse the file
        return ""
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip().replace("\x00", "")


def _cut(field: str, value: str) -> str:
    return value[: _LIMITS[field]]


def integer(ds: Dataset, keyword: str) -> int | None:
    """An IS/US attribute as int, ``None`` when absent or unreadable."""
    fast = _raw_text(ds, _tag(keyword), None)
    if fast is not None:  # an IS value, straight from its bytes
        try:
            return int(float(fast.split("\\")[0])) if fast else None
        except ValueError:
            return None
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        if isinstance(value, pydicom.multival.MultiValue):
            value = value[0]
        return int(float(value))
    except Exception:
        return None


def number(ds: Dataset, keyword: str) -> float | None:
    """A DS/FD attribute as float, ``None`` when absent or unreadable."""
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        return float(value)
    except Exception:
        return None


def dicom_date(value: str) -> date | None:
    """A DA value (YYYYMMDD, or the old YYYY.MM.DD) as a date, ``None`` when absent or invalid."""
    digits = value.replace(".", "").strip()
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _floats(value: Any, count: int) -> list[float] | None:
    try:
        numbers = [float(v) for v in value]
    except Exception:
        return None
    return numbers if len(numbers) == count else None


def _functional_group_value(ds: Dataset, sequence: str, keyword: str) -> Any:
    """A value from the Shared, else the first Per-frame, Functional Groups (enhanced multi-frame objects)."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        with contextlib.suppress(Exception):  # a malformed sequence counts as absent
            item = ds.get(groups)
            if item:
                inner = item[0].get(sequence)
                if inner and keyword in inner[0]:
                    return inner[0].get(keyword)
    return None


def orientation(ds: Dataset) -> list[float] | None:
    """Image Orientation (Patient) (0020,0037), from the functional groups for enhanced objects."""
    value = ds.get("ImageOrientationPatient")
    if value is None:
        value = _functional_group_value(ds, "PlaneOrientationSequence", "ImageOrientationPatient")
    return None if value is None else _floats(value, 6)


def position(ds: Dataset) -> list[float] | None:
    """Image Position (Patient) (0020,0032) of the (first) frame."""
    value = ds.get("ImagePositionPatient")
    if value is None:
        value = _functional_group_value(ds, "PlanePositionSequence", "ImagePositionPatient")
    return None if value is None else _floats(value, 3)


def pixel_spacing(ds: Dataset) -> str:
    """Pixel Spacing (0028,0030) as 'row\\column' mm, from the functional groups when needed; '' when absent."""
    value = ds.get("PixelSpacing")
    if value is None:
        value = _functional_group_value(ds, "PixelMeasuresSequence", "PixelSpacing")
    if value is None or _floats(value, 2) is None:
        return ""
    return "\\".join(str(v).strip() for v in value)  # as written (DS keeps full precision)


def slice_thickness(ds: Dataset) -> float | None:
    """Slice Thickness (0018,0050), from the functional groups for enhanced objects."""
    value = number(ds, "SliceThickness")
    if value is None:
        raw = _functional_group_value(ds, "PixelMeasuresSequence", "SliceThickness")
        try:
            value = None if raw is None else float(raw)
        except (TypeError, ValueError):
            value = None
    return value


def is_uid(value: str) -> bool:
    """Whether ``value`` is a syntactically valid UID (digits and dots, at most 64 characters)."""
    return 0 < len(value) <= 64 and bool(_UID.match(value))


def read_dataset(source: bytes | BinaryIO) -> Dataset:
    """The header of a DICOM file, up to Pixel Data; large values deferred when reading a stream.

    Files without the 128-byte preamble and 'DICM' (seen on old CDs) are read when they start like a
    dataset. Raises :class:`NotDicomError` or :class:`DamagedDicomError`.
    """
    if isinstance(source, bytes | bytearray):
        head = bytes(source[:132])
        stream: BinaryIO = io.BytesIO(source)
        defer: int | None = None
    else:
        stream = source
        head = stream.read(132)
        stream.seek(0)
        defer = 64 * 1024
    if not head:
        raise NotDicomError("empty file")
    force = False
    if head[128:132] != b"DICM":
        # No preamble: accept only what starts with a group 0002 or 0008 element (little or big endian).
        if head[:2] not in (b"\x02\x00", b"\x08\x00", b"\x00\x08"):
            raise NotDicomError("not a DICOM file")
        force = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(stream, stop_before_pixels=True, defer_size=defer, force=force)
    except InvalidDicomError as exc:
        raise NotDicomError("not a DICOM file") from exc
    except Exception as exc:
        raise DamagedDicomError("damaged DICOM file") from exc


def transfer_syntax(ds: Dataset) -> str:
    """Transfer Syntax UID (0002,0010) from the file meta, '' when the file has none."""
    meta = getattr(ds, "file_meta", None)
    return text(meta, "TransferSyntaxUID") if meta is not None else ""


def is_dicomdir(ds: Dataset) -> bool:
    """Whether the dataset is a DICOMDIR (Media Storage SOP Class 1.2.840.10008.1.3.10 or a record list)."""
    meta = getattr(ds, "file_meta", None)
    sop_class = text(meta, "MediaStorageSOPClassUID") if meta is not None else ""
    return sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds


def instance_meta(ds: Dataset) -> InstanceMeta:
    """The indexed attributes of one dataset; raises :class:`DamagedDicomError` without the identifiers.

    Reads the Patient, General Study, General Series, SOP Common, Image Plane and Image Pixel modules.
    """
    if is_dicomdir(ds):
        raise DicomdirFileError("DICOMDIR")
    codec = text_codec(ds)
    study_uid = text(ds, "StudyInstanceUID", codec)
    series_uid = text(ds, "SeriesInstanceUID", codec)
    sop_uid = text(ds, "SOPInstanceUID", codec)
    if not sop_uid:
        meta = getattr(ds, "file_meta", None)
        sop_uid = text(meta, "MediaStorageSOPInstanceUID") if meta is not None else ""
    if not (is_uid(study_uid) and is_uid(series_uid) and is_uid(sop_uid)):
        raise DamagedDicomError("missing or invalid Study, Series or SOP Instance UID")
    sop_class = text(ds, "SOPClassUID", codec)
    if not sop_class:
        meta = getattr(ds, "file_meta", None)
        sop_class = text(meta, "MediaStorageSOPClassUID") if meta is not None else ""
    iop = orientation(ds)
    ipp = position(ds)
    frames = integer(ds, "NumberOfFrames")
    return InstanceMeta(
        patient_id=_cut("patient_id", text(ds, "PatientID", codec)),
        issuer=_cut("issuer", text(ds, "IssuerOfPatientID", codec)),
        patient_name=_cut("patient_name", text(ds, "PatientName", codec)),
        birth_date=_cut("birth_date", text(ds, "PatientBirthDate", codec)),
        sex=_cut("sex", text(ds, "PatientSex", codec)),
        study_uid=study_uid,
        study_date=dicom_date(text(ds, "StudyDate", codec)) or dicom_date(text(ds, "SeriesDate", codec)),
        study_time=_cut("study_time", text(ds, "StudyTime", codec)),
        study_description=_cut("study_description", text(ds, "StudyDescription", codec)),
        series_uid=series_uid,
        modality=_cut("modality", text(ds, "Modality", codec).upper()),
        series_number=integer(ds, "SeriesNumber"),
        series_description=_cut("series_description", text(ds, "SeriesDescription", codec)),
        body_part_examined=_cut("body_part_examined", text(ds, "BodyPartExamined", codec)),
        contrast=_cut("contrast", text(ds, "ContrastBolusAgent", codec)),
        slice_thickness=slice_thickness(ds),
        sop_instance_uid=sop_uid,
        sop_class_uid=_cut("sop_class_uid", sop_class),
        instance_number=integer(ds, "InstanceNumber"),
        plane=plane_from_orientation(iop),
        slice_location=slice_location(iop, ipp),
        frames=frames if frames and frames > 0 else 1,
        rows=integer(ds, "Rows"),
        columns=integer(ds, "Columns"),
        pixel_spacing=_cut("pixel_spacing", pixel_spacing(ds)),
        transfer_syntax=_cut("transfer_syntax", transfer_syntax(ds)),
    )


_PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) Pixel Data, little endian
_EXPLICIT_LONG_VRS = (b"OB", b"OW", b"OF", b"OD", b"UN", b"OV", b"OL")


def pixel_data_cut_short(data: bytes) -> bool:
    """Whether a little-endian file ends before the end its Pixel Data (7FE0,0010) length declares.

    A copy cut short (an interrupted download, a bad CD) would otherwise be stored and only fail
    when shown. Encapsulated (undefined length) pixel data, big endian files and files where the
    element cannot be found unambiguously are not judged here (the renderer checks those).
    """
    at = data.find(_PIXEL_TAG)  # the first: pixel bytes after it may hold the same four bytes
    if at < 0 or at + 8 > len(data):
        return False
    if data[at + 4:at + 6] in _EXPLICIT_LONG_VRS and data[at + 6:at + 8] == b"\x00\x00":
        if at + 12 > len(data):
            return True
        length, start = int.from_bytes(data[at + 8:at + 12], "little"), at + 12
    else:
        length, start = int.from_bytes(data[at + 4:at + 8], "little"), at + 8
    return length != 0xFFFFFFFF and start + length > len(data)


def read_instance_meta(source: bytes | BinaryIO) -> InstanceMeta:
    """Header-only read of ``source`` and its indexed attributes (see :func:`instance_meta`).

    Raises :class:`DamagedDicomError` for a file cut short in its pixel data (bytes sources).
    """
    ds = read_dataset(source)
    big_endian = transfer_syntax(ds) == "1.2.840.10008.1.2.2"
    if isinstance(source, bytes | bytearray) and not big_endian and pixel_data_cut_short(bytes(source)):
        raise DamagedDicomError("the file is cut short")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return instance_meta(ds)
    except (DamagedDicomError, DicomdirFileError):
        raise
    except Exception as exc:  # a value pydicom cannot convert: the file is damaged
        raise DamagedDicomError("damaged DICOM file") from exc


def referenced_file_ids(dicomdir: Dataset) -> list[Sequence[str]]:
    """Referenced File ID (0004,1500) of every record in a DICOMDIR, as path components."""
    found: list[Sequence[str]] = []
    for record in dicomdir.get("DirectoryRecordSequence", []):
        value = record.get("ReferencedFileID")
        if value is None:
            continue
        if isinstance(value, str):
            parts: list[str] = [p for p in value.replace("/", "\\").split("\\") if p]
        else:
            parts = [str(v) for v in value]
        if parts:
            found.append(parts)
    return found
