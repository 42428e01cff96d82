"""Decoding one frame at a time, and a typed error for every kind of bad input."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from imaging.decode import decode_frame, open_image
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


def _file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path))


def test_decodes_one_frame_that_matches_pydicom() -> None:
    path = _file("emri_small.dcm")
    image = open_image(path)
    assert image.frames == 10
    frame = decode_frame(image, 7)
    expected = pydicom.dcmread(path).pixel_array[7]
    assert np.array_equal(frame.pixels, expected)


@pytest.mark.parametrize(
    "name", ["emri_small_RLE.dcm", "emri_small_big_endian.dcm", "emri_small_jpeg_2k_lossless.dcm",
             "emri_small_jpeg_ls_lossless.dcm"]
)
def test_every_encoding_of_a_series_decodes_to_the_same_values(name: str) -> None:
    reference = decode_frame(open_image(_file("emri_small.dcm")), 4).pixels
    assert np.array_equal(decode_frame(open_image(_file(name)), 4).pixels, reference)


def test_a_dataset_in_memory_decodes_like_its_file() -> None:
    path = _file("MR_small.dcm")
    from_file = decode_frame(open_image(path)).pixels
    from_ds = decode_frame(open_image(pydicom.dcmread(path))).pixels
    assert np.array_equal(from_file, from_ds)


def test_12_bit_jpeg_extended_falls_back_to_imagecodecs() -> None:
    # pydicom's permissive plugins cannot do 12-bit JPEG Extended; the lossless twin shows the truth.
    lossy = decode_frame(open_image(_file("JPGExtended.dcm"))).pixels.astype(float)
    lossless = decode_frame(open_image(_file("JPEG-LL.dcm"))).pixels.astype(float)
    assert lossy.shape == lossless.shape
    assert np.abs(lossy - lossless).mean() < 4.0
    assert np.corrcoef(lossy.ravel(), lossless.ravel())[0, 1] > 0.95


def test_not_dicom(tmp_path: Path) -> None:
    junk = tmp_path / "holiday.jpg"
    junk.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(NotDicom) as caught:
        open_image(junk)
    assert "not a medical image" in str(caught.value)


def test_empty_file_is_not_dicom(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(NotDicom):
        open_image(empty)


@pytest.mark.parametrize("name", ["rtplan.dcm", "test-SR.dcm"])
def test_no_pixel_data(name: str) -> None:
    with pytest.raises(NoPixelData):
        open_image(_file(name))


def test_pixel_data_shorter_than_the_header_says() -> None:
    with pytest.raises(TruncatedPixelData):
        open_image(_file("MR_truncated.dcm"))


def test_cut_off_file_inside_encapsulated_pixel_data() -> None:
    with pytest.raises(TruncatedPixelData):
        open_image(_file("emri_small_jpeg_2k_lossless_too_short.dcm"))


def test_file_cut_in_half(tmp_path: Path) -> None:
    data = _file("CT_small.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 2 + 1000])
    with pytest.raises(TruncatedPixelData):
        open_image(cut)


def _header_only(tmp_path: Path, rows: int, columns: int, frames: int) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = b"\0\0" * 16
    path = tmp_path / "absurd.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_absurd_dimensions_refused_before_allocating(tmp_path: Path) -> None:
    path = _header_only(tmp_path, 65535, 65535, 10000)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge) as caught:
            decode_frame(open_image(path))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.pixels == 65535 * 65535 * 10000
    assert peak < 20_000_000  # nothing near the claimed size was allocated


def test_pixel_limit_is_configurable() -> None:
    path = _file("CT_small.dcm")
    with pytest.raises(ImageTooLarge):
        open_image(path, max_pixels=128 * 128 - 1)
    assert open_image(path, max_pixels=128 * 128).rows == 128


def test_unknown_transfer_syntax(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_file("JPEG2000.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    path = tmp_path / "odd.dcm"
    ds.save_as(path)
    with pytest.raises(UnsupportedCompression):
        open_image(path)


def test_corrupt_jpeg_2000_codestream(tmp_path: Path) -> None:
    data = bytearray(_file("MR_small_jp2klossless.dcm").read_bytes())
    marker = data.index(b"\xff\x4f\xff\x51")  # SOC + SIZ of the codestream
    data[marker + 8 : marker + 60] = b"\xff" * 52  # wreck the image and tile sizes
    path = tmp_path / "broken.dcm"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptImage):
        decode_frame(open_image(path))


def test_frame_out_of_range() -> None:
    image = open_image(_file("emri_small.dcm"))
    with pytest.raises(FrameOutOfRange) as caught:
        decode_frame(image, 10)
    assert "10 picture" in str(caught.value)


def test_malformed_number_of_frames_read_leniently(tmp_path: Path) -> None:
    source = _file("MR_small.dcm")
    data = source.read_bytes()
    ds = pydicom.dcmread(source)
    ds.NumberOfFrames = "1"
    ds.save_as(tmp_path / "nf.dcm")
    raw = (tmp_path / "nf.dcm").read_bytes()
    # Patch the IS value '1 ' (padded) to '1A' on disk, as a careless writer would.
    tag = b"\x28\x00\x08\x00IS\x02\x001 "
    assert tag in raw and len(data) > 0
    (tmp_path / "nf.dcm").write_bytes(raw.replace(tag, b"\x28\x00\x08\x00IS\x02\x001A"))
    image = open_image(tmp_path / "nf.dcm")
    assert image.frames == 1
    assert decode_frame(image).pixels.shape == (64, 64)


def test_every_error_speaks_plainly() -> None:
    errors: list[RenderError] = [
        NotDicom(), NoPixelData(), UnsupportedCompression(), TruncatedPixelData(),
        FrameOutOfRange(3, 2), ImageTooLarge(10, 5), CorruptImage(),
    ]
    for error in errors:
        text = str(error)
        assert text.endswith(".") and len(text) < 140
        assert "Traceback" not in text and "pydicom" not in text.lower()
        assert error.reason and error.reason == error.reason.lower()


def test_a_thousand_frames_never_sit_in_memory(tmp_path: Path) -> None:
    source = pydicom.dcmread(_file("CT_small.dcm"))
    frame_bytes = len(source.PixelData)
    source.NumberOfFrames = 1000
    source.PixelData = source.PixelData * 1000
    path = tmp_path / "thousand.dcm"
    source.save_as(path)
    del source
    tracemalloc.start()
    try:
        image = open_image(path)
        frame = decode_frame(image, 999)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frame.pixels.shape == (128, 128)
    assert peak < 3 * frame_bytes + 1_000_000, peak


def test_missing_transfer_syntax_is_read_as_the_parser_finds_it(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_file("MR_small_implicit.dcm"))
    expected = ds.pixel_array
    del ds.file_meta.TransferSyntaxUID
    path = tmp_path / "no_ts.dcm"
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True)
    assert "TransferSyntaxUID" not in pydicom.dcmread(path, stop_before_pixels=True).file_meta
    image = open_image(path)
    assert image.transfer_syntax == "1.2.840.10008.1.2"
    assert np.array_equal(decode_frame(image).pixels, expected)


def test_headers_are_remembered_until_the_file_changes(tmp_path: Path) -> None:
    import os

    path = tmp_path / "ct.dcm"
    path.write_bytes(_file("CT_small.dcm").read_bytes())
    first = open_image(path)
    assert open_image(path) is first  # the same header, not parsed again
    assert open_image(path, max_pixels=10**6) is not first  # another limit is another check
    path.write_bytes(_file("MR_small.dcm").read_bytes())
    os.utime(path, ns=(first_ns := path.stat().st_mtime_ns + 10**9, first_ns))
    assert open_image(path).rows == 64  # MR_small, not the remembered CT_small
