"""Bad input at the door: every kind of wrong upload gets the exact sentence the patient reads, and nothing
half-made is left in the store (no rows, no files) unless the input really held images to keep.

``summary_text`` and the ``upload_failed`` template are what the chat shows (tests/adversarial/test_chat
drives a few of these through the real bot to prove the wiring); here each case checks the words.
"""

from __future__ import annotations

import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from handlers import texts
from handlers.uploads import short_name, summary_text
from imaging.errors import (
    CorruptImage,
    FrameOutOfRange,
    ImageTooLarge,
    RenderError,
    TruncatedPixelData,
    UnsupportedCompression,
)
from imaging.render import render
from store.importer import ImportProblem, import_bytes, import_path
from store.models import Instance, Patient
from tests.adversarial.conftest import StoreEnv, fresh, real, sample_path, to_bytes, zip_of

NOT_IMAGES = "I couldn't find any medical images in this file."


def failed(exc: ImportProblem) -> str:
    return texts.render("upload_failed", reason=str(exc))


def summary(store_env: StoreEnv, data: bytes, filename: str) -> str:
    return summary_text(import_bytes(store_env.sessions, store_env.files, data, filename=filename))


# ------------------------------------------------------------------ not DICOM at all

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(200) + b"\xff\xd9"
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(120)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
WORD = b"PK\x03\x04" + bytes(26)  # a .docx starts like a ZIP and is a broken one here


@pytest.mark.parametrize(("data", "filename"), [(PDF, "report.pdf"), (JPEG, "photo.jpg"), (HEIC, "IMG_0001.heic"),
                                                (PNG, "screenshot.png")],
                         ids=["pdf", "jpeg", "heic", "png"])
def test_non_dicom_file_is_named_as_such_and_nothing_is_kept(store_env: StoreEnv, data: bytes, filename: str
                                                             ) -> None:
    text = summary(store_env, data, filename)
    assert text.startswith(NOT_IMAGES)
    assert "I skipped 1 file that was not medical images (not a DICOM file)." in text
    store_env.assert_nothing_stored()


@pytest.mark.parametrize("filename", ["scan.dcm", "cd.zip"])
def test_zero_byte_upload_says_empty(store_env: StoreEnv, filename: str) -> None:
    with pytest.raises(ImportProblem) as caught:
        import_bytes(store_env.sessions, store_env.files, b"", filename=filename)
    assert failed(caught.value) == "Sorry, I couldn't import this file: This file is empty (0 bytes)."
    store_env.assert_nothing_stored()


def test_zip_with_no_entries_says_no_images(store_env: StoreEnv) -> None:
    assert summary(store_env, zip_of([]), "cd.zip") == NOT_IMAGES
    store_env.assert_nothing_stored()


def test_broken_zip_is_refused_clearly(store_env: StoreEnv) -> None:
    with pytest.raises(ImportProblem) as caught:
        import_bytes(store_env.sessions, store_env.files, WORD, filename="cd.zip")
    assert failed(caught.value).startswith("Sorry, I couldn't import this file: ")
    assert "archive" in str(caught.value).lower() or "zip" in str(caught.value).lower()
    store_env.assert_nothing_stored()


# ------------------------------------------------------------------ damaged DICOM

def test_truncated_dicom_is_skipped_as_cut_short(store_env: StoreEnv) -> None:
    whole = to_bytes(fresh("MR_small.dcm"))
    text = summary(store_env, whole[: len(whole) // 2], "scan.dcm")
    assert text.startswith(NOT_IMAGES)
    assert "(damaged DICOM file (the file is cut short))" in text
    store_env.assert_nothing_stored()


def test_dicom_cut_inside_its_header_is_skipped(store_env: StoreEnv) -> None:
    text = summary(store_env, to_bytes(fresh("MR_small.dcm"))[:300], "scan.dcm")
    assert "I skipped 1 file that was not medical images (damaged DICOM file" in text
    store_env.assert_nothing_stored()


def test_pixel_data_shorter_than_declared_says_incomplete() -> None:
    ds = fresh("MR_small.dcm")
    ds.PixelData = ds.PixelData[:100]
    with pytest.raises(TruncatedPixelData) as caught:
        render(ds, 0)
    assert caught.value.patient_message == "This image file is incomplete: part of it is missing. Try sending it again."


def test_header_claiming_gigabytes_is_refused_before_allocating() -> None:
    ds = fresh("MR_small.dcm")
    ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, 1000
    with pytest.raises(ImageTooLarge) as caught:
        render(ds, 0)
    assert caught.value.patient_message == "This image is larger than Lightbox is set up to show."


def test_unknown_compression_says_format_not_supported(store_env: StoreEnv) -> None:
    ds = fresh("MR_small.dcm")
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID("1.2.826.0.1.3680043.99.1.2")  # nobody's syntax
    data = to_bytes(ds)
    report = import_bytes(store_env.sessions, store_env.files, data, filename="odd.dcm")
    assert report.instances_added == 1  # kept as sent: it is the patient's file, only we cannot show it
    with pytest.raises(UnsupportedCompression) as caught:
        render(ds, 0)
    assert caught.value.patient_message == "This image is packed in a format Lightbox cannot open yet."


def test_corrupt_jpeg2000_says_damaged() -> None:
    ds = fresh("JPEG2000.dcm")
    frame = bytearray(ds.PixelData)
    frame[200:900] = bytes(700)
    ds.PixelData = bytes(frame)
    with pytest.raises(RenderError) as caught:
        render(ds, 0)
    assert isinstance(caught.value, CorruptImage | TruncatedPixelData)
    assert caught.value.patient_message in (CorruptImage.patient_message, TruncatedPixelData.patient_message)


# ------------------------------------------------------------------ archives that attack the host

def test_zip_bomb_is_not_opened(store_env: StoreEnv) -> None:
    bomb = zip_of([("CD/IMG0001.dcm", bytes(300 * 1024 * 1024))])
    assert len(bomb) < 1024 * 1024
    with pytest.raises(ImportProblem) as caught:
        import_bytes(store_env.sessions, store_env.files, bomb, filename="cd.zip")
    assert failed(caught.value) == ("Sorry, I couldn't import this file: This archive unpacks to far more than "
                                    "its size, so it was not opened.")
    store_env.assert_nothing_stored()


@pytest.mark.parametrize("member", ["../../etc/cron.d/evil.dcm", "/etc/passwd.dcm", "CD/../../../x.dcm",
                                    "C:\\Windows\\evil.dcm"],
                         ids=["dotdot", "absolute", "nested-dotdot", "windows-drive"])
def test_zip_entries_escaping_the_folder_are_refused(store_env: StoreEnv, member: str, tmp_path: Path) -> None:
    data = zip_of([(member, to_bytes(fresh("MR_small.dcm")))])
    text = summary(store_env, data, "cd.zip")
    assert text == (NOT_IMAGES + "\n\nI skipped 1 file that was not medical images "
                    "(unsafe name inside the archive (refused)).")
    store_env.assert_nothing_stored()
    assert not (tmp_path.parent / "etc").exists()


def test_dicomdir_naming_files_outside_the_medium_is_refused(store_env: StoreEnv, tmp_path: Path) -> None:
    outside = tmp_path / "secret.dcm"
    outside.write_bytes(to_bytes(fresh("CT_small.dcm", patient_id="SOMEONE-ELSE")))
    medium = tmp_path / "cd"
    medium.mkdir()
    dicomdir = pydicom.dcmread(sample_path("DICOMDIR"))
    for record in dicomdir.DirectoryRecordSequence:
        if "ReferencedFileID" in record:
            record.ReferencedFileID = ["..", "secret.dcm"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # '..' is not a valid CS value: that is the point
        dicomdir.save_as(medium / "DICOMDIR", enforce_file_format=False)
    report = import_path(store_env.sessions, store_env.files, medium / "DICOMDIR")
    assert report.instances_added == 0
    assert report.skipped and {s.reason for s in report.skipped} == {"the DICOMDIR points outside the disc (refused)"}
    (medium / "link.dcm").symlink_to(outside)  # a symlink out of the folder is refused too
    report = import_path(store_env.sessions, store_env.files, medium)
    assert report.instances_added == 0
    assert "a link to a file outside the folder (refused)" in {s.reason for s in report.skipped}
    store_env.assert_nothing_stored()


# ------------------------------------------------------------------ confusing but valid content

def test_same_uid_different_content_keeps_the_first(store_env: StoreEnv) -> None:
    first = fresh("CT_small.dcm")
    original = to_bytes(first)
    import_bytes(store_env.sessions, store_env.files, original, filename="a.dcm")
    forged = first.copy()
    forged.PixelData = bytes(reversed(first.PixelData))
    text = summary(store_env, to_bytes(forged), "b.dcm")
    assert "1 picture had the same label as one I already had but different content. I kept the one I had and " \
           "did not overwrite it." in text
    with store_env.sessions() as session:
        key = session.scalars(select(Instance.storage_key)).one()
    assert key is not None and store_env.files.read(key) == original
    assert store_env.instance_count() == 1


def test_several_patients_in_one_upload_are_kept_apart(store_env: StoreEnv) -> None:
    a = fresh("MR_small.dcm", patient_id="ADV-A", patient_name="Apple^Anna")
    b = fresh("CT_small.dcm", patient_id="ADV-B", patient_name="Berry^Ben")
    report = import_bytes(store_env.sessions, store_env.files, zip_of([("a.dcm", to_bytes(a)),
                                                                         ("b.dcm", to_bytes(b))]), filename="cd.zip")
    assert report.instances_added == 2
    assert len(report.patients) == 2
    with store_env.sessions() as session:
        names = sorted(p.name for p in session.scalars(select(Patient)))
    assert names == ["Apple^Anna", "Berry^Ben"]
    assert sorted(short_name(n) for n in names) == ["Anna A.", "Ben B."]


@pytest.mark.parametrize(("charset", "name", "shown"), [
    ("ISO_IR 192", "Müller^Jürgen", "Jürgen M."),
    ("ISO_IR 144", "Иванов^Иван", "Иван И."),
    ("\\ISO 2022 IR 87", "山田^太郎", "太郎 山."),
    ("ISO_IR 100", "Ørsted^Søren", "Søren Ø."),
], ids=["utf8", "cyrillic", "japanese", "latin1"])
def test_non_ascii_names_are_read_in_their_character_set(store_env: StoreEnv, charset: str, name: str,
                                                         shown: str) -> None:
    ds = fresh("MR_small.dcm", patient_name=name)
    ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    data = to_bytes(ds)
    assert name.encode("utf-8") not in data or charset == "ISO_IR 192"  # really encoded in that set
    import_bytes(store_env.sessions, store_env.files, data, filename="scan.dcm")
    with store_env.sessions() as session:
        stored = session.scalars(select(Patient.name)).one()
    assert stored == name
    assert short_name(stored) == shown


# ------------------------------------------------------------------ photometric oddities render right

def test_monochrome1_shows_inverted() -> None:
    normal = fresh("CT_small.dcm")
    inverted = fresh("CT_small.dcm")
    inverted.PhotometricInterpretation = "MONOCHROME1"
    a = render(normal, 0).pixels.astype(int)
    b = render(inverted, 0).pixels.astype(int)
    assert a.std() > 10
    assert np.abs((255 - a) - b).max() <= 1


def test_signed_16_bit_padding_is_shown_black() -> None:
    ds = fresh("CT_small.dcm")
    assert ds.PixelRepresentation == 1 and ds.BitsAllocated == 16
    arr = ds.pixel_array.copy()
    arr[:16, :] = -2000  # a corner of padding, far below the body
    ds.PixelData = arr.astype(np.int16).tobytes()
    ds.PixelPaddingValue = -2000
    picture = render(ds, 0).pixels
    assert picture[:16, :].max() == 0
    assert picture[32:, :].std() > 10  # the rest is a real picture, not stretched into grey by the padding


def test_palette_colour_image_renders_in_colour() -> None:
    ds = pydicom.dcmread(sample_path("OT-PAL-8-face.dcm"), force=True)
    picture = render(ds, 0).pixels
    assert picture.ndim == 3 and picture.shape[2] == 3
    assert np.abs(picture[..., 0].astype(int) - picture[..., 2].astype(int)).mean() > 5


def test_ybr_image_renders_as_rgb() -> None:
    ds = real("SC_ybr_full_uncompressed.dcm")
    expected = ds.pixel_array  # pydicom converts YBR_FULL to RGB itself (its own reference implementation)
    assert ds.PhotometricInterpretation == "YBR_FULL"
    picture = render(ds, 0).pixels
    assert picture.shape == expected.shape
    assert np.abs(picture.astype(int) - expected.astype(int)).max() <= 3


def test_thousand_frame_object_renders_last_frame_and_refuses_past_it(tmp_path: Path) -> None:
    ds = fresh("MR_small.dcm")
    frame = ds.pixel_array
    frames = np.stack([np.roll(frame, k % 64, axis=0) for k in range(1000)])
    ds.NumberOfFrames = 1000
    ds.PixelData = frames.astype(frame.dtype).tobytes()
    path = tmp_path / "cine.dcm"
    ds.save_as(path, enforce_file_format=True)
    last = render(path, 999).pixels
    first = render(path, 0).pixels
    assert last.shape == first.shape and not np.array_equal(last, first)
    with pytest.raises(FrameOutOfRange) as caught:
        render(path, 1000)
    assert caught.value.patient_message == "This image has 1000 picture(s); picture 1001 does not exist."


def test_a_damaged_file_in_a_zip_does_not_spoil_the_rest(store_env: StoreEnv) -> None:
    good = to_bytes(fresh("CT_small.dcm"))
    data = zip_of([("a.dcm", good), ("b.dcm", good[:600]), ("c.txt", b"hello")], zipfile.ZIP_STORED)
    text = summary(store_env, data, "cd.zip")
    assert text.startswith("<b>Done!</b> I added 1 picture.")
    assert "I skipped 2 files that were not medical images." in text
    assert store_env.instance_count() == 1 and len(store_env.stored_files()) == 1


def test_demo_folder_copy_is_independent(tmp_path: Path) -> None:
    # Guard for the tests above: the pydicom test files are never modified in place.
    original = Path(sample_path("CT_small.dcm")).read_bytes()
    shutil.copy(sample_path("CT_small.dcm"), tmp_path / "copy.dcm")
    ds = fresh("CT_small.dcm")
    ds.PatientName = "Changed^Only^Here"
    assert Path(sample_path("CT_small.dcm")).read_bytes() == original
    assert generate_uid() != generate_uid()
