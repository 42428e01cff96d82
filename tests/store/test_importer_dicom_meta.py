"""The header reader: values read straight from raw bytes equal pydicom's own conversion, on every
real file we have (pydicom's test files and pydicom-data); the indexed attributes of known files."""

from __future__ import annotations

import io
import warnings
from datetime import date
from pathlib import Path

import pydicom
import pydicom.data
import pytest

from store.dicom_meta import (
    DamagedDicomError,
    DicomdirFileError,
    NotDicomError,
    dicom_date,
    read_dataset,
    read_instance_meta,
    text,
    text_codec,
)

KEYWORDS = [
    "PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
    "StudyDate", "StudyTime", "StudyDescription", "SeriesInstanceUID", "Modality", "SeriesDescription",
    "BodyPartExamined", "ContrastBolusAgent", "SOPInstanceUID", "SOPClassUID", "SeriesDate", "SeriesNumber",
    "InstanceNumber", "SpecificCharacterSet", "ImageType",
]  # fmt: skip


def _all_files() -> list[Path]:
    test_files = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
    roots = [test_files, test_files.parent / "charset_files"]
    try:
        import data_store

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:  # pragma: no cover
        pass
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file() and p.stat().st_size < 20_000_000)


def _pydicom_text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v).strip() for v in value).strip()
    return str(value).strip().replace("\x00", "")


def test_raw_text_equals_pydicom_conversion_on_every_real_file() -> None:
    compared = 0
    for path in _all_files():
        try:
            fast_ds = read_dataset(path.read_bytes())
        except (NotDicomError, DamagedDicomError):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slow_ds = pydicom.dcmread(io.BytesIO(path.read_bytes()), stop_before_pixels=True, force=True)
            codec = text_codec(fast_ds)
            for keyword in KEYWORDS:
                try:
                    expected = _pydicom_text(slow_ds, keyword)
                except Exception:
                    continue  # pydicom itself cannot convert it; text() then reports ''
                assert text(fast_ds, keyword, codec) == expected, (path.name, keyword)
                compared += 1
    assert compared > 2000


def test_latin1_and_utf8_read_from_raw_bytes() -> None:
    latin = read_dataset(Path(pydicom.data.get_charset_files("chrFren.dcm")[0]).read_bytes())
    assert text_codec(latin) == "latin-1"
    assert text(latin, "PatientName") == "Buc^Jérôme"
    utf8 = read_dataset(Path(pydicom.data.get_charset_files("chrRuss.dcm")[0]).read_bytes())
    assert text_codec(utf8) is None or text(utf8, "PatientName") == str(pydicom.dcmread(
        pydicom.data.get_charset_files("chrRuss.dcm")[0]).PatientName)


def test_non_latin_character_sets_fall_back_to_pydicom() -> None:
    path = Path(pydicom.data.get_charset_files("chrH31.dcm")[0])
    ds = read_dataset(path.read_bytes())
    assert text_codec(ds) is None
    assert text(ds, "PatientName") == str(pydicom.dcmread(path).PatientName)


def test_known_files() -> None:
    mr = read_instance_meta(Path(pydicom.data.get_testdata_file("MR_small.dcm")).read_bytes())
    assert (mr.modality, mr.rows, mr.columns, mr.frames, mr.plane) == ("MR", 64, 64, 1, "axial")
    assert mr.study_date == date(2004, 8, 26)
    assert mr.pixel_spacing == "0.3125\\0.3125"
    assert mr.transfer_syntax == "1.2.840.10008.1.2.1"
    multi = read_instance_meta(Path(pydicom.data.get_testdata_file("SC_rgb_rle_2frame.dcm")).read_bytes())
    assert multi.frames == 2
    sr = read_instance_meta(Path(pydicom.data.get_testdata_file("reportsi.dcm")).read_bytes())
    assert (sr.modality, sr.rows, sr.plane, sr.slice_location) == ("SR", None, "unknown", None)
    with pytest.raises(DicomdirFileError):
        read_instance_meta(Path(pydicom.data.get_testdata_file("DICOMDIR")).read_bytes())
    with pytest.raises(NotDicomError):
        read_instance_meta(b"%PDF-1.4 not dicom")
    with pytest.raises(NotDicomError):
        read_instance_meta(b"")


def test_dates() -> None:
    assert dicom_date("20240229") == date(2024, 2, 29)
    assert dicom_date("2024.02.29") == date(2024, 2, 29)
    assert dicom_date("20230229") is None
    assert dicom_date("") is None
    assert dicom_date("2024") is None
