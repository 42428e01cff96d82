"""``lightbox render`` end to end, in process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from bot.cli import main
from imaging.display import WindowChoice
from imaging.render import render_frame


def _file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path))


def test_one_input_one_output_file(tmp_path: Path) -> None:
    out = tmp_path / "ct.png"
    assert main(["render", str(_file("CT_small.dcm")), "--out", str(out), "--preset", "bone"]) == 0
    with Image.open(out) as png:
        written = np.asarray(png)
    expected = render_frame(_file("CT_small.dcm"), window=WindowChoice.preset("bone"), max_size=0)
    assert np.array_equal(written, expected)


def test_all_the_options(tmp_path: Path) -> None:
    out = tmp_path / "mr.jpg"
    status = main(["render", str(_file("emri_small.dcm")), "--out", str(out), "--frame", "3",
                   "--window=600,1200", "--rotate", "90", "--flip", "h", "--invert",
                   "--zoom", "0,0,0.5,1", "--max-size", "200"])
    assert status == 0
    with Image.open(out) as pic:
        assert pic.format == "JPEG"
        assert pic.size == (32, 64)  # half the width of the rotated 64x64 frame; never upscaled
        pixels = np.asarray(pic).astype(float)
    expected = render_frame(_file("emri_small.dcm"), 3, WindowChoice.explicit(600, 1200), rotate=90,
                            flip="h", invert=True, zoom=(0, 0, 0.5, 1), max_size=200)
    assert pixels.shape == expected.shape and np.abs(pixels - expected).mean() < 3


def test_several_inputs_go_to_a_folder_and_failures_are_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    inputs = [_file("CT_small.dcm"), _file("rtplan.dcm"), junk, _file("MR_truncated.dcm"), _file("MR_small.dcm")]
    out = tmp_path / "pictures"
    status = main(["render", *map(str, inputs), "--out", str(out), "--format", "webp"])
    assert status == 1
    assert sorted(p.name for p in out.iterdir()) == ["CT_small.webp", "MR_small.webp"]
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3
    assert "rtplan.dcm: no-pixel-data" in errors[0]
    assert "notes.txt: not-dicom" in errors[1]
    assert "MR_truncated.dcm: truncated-pixel-data" in errors[2]
    assert all("Traceback" not in line for line in errors)


def test_frame_out_of_range_and_pixel_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["render", str(_file("emri_small.dcm")), "--frame", "10", "--out", str(tmp_path / "x.png")]) == 1
    assert "frame-out-of-range" in capsys.readouterr().err
    monkeypatch.setenv("LIGHTBOX_MAX_PIXELS", "1000")
    assert main(["render", str(_file("CT_small.dcm")), "--out", str(tmp_path / "y.png")]) == 1
    assert "too-large" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()


def test_bad_options_are_one_friendly_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(_file("CT_small.dcm")), "--out", str(tmp_path / "x.png"), "--zoom", "1,2"]) == 1
    assert "--zoom must be 4 numbers" in capsys.readouterr().err
    assert main(["render", str(_file("CT_small.dcm")), "--out", str(tmp_path / "x.png"), "--window", "40"]) == 1
    assert "--window must be 2 numbers" in capsys.readouterr().err


def test_float_pixel_data_renders_with_an_automatic_window(tmp_path: Path) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.30", generate_uid(), "MR"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 8, 16, 1, "MONOCHROME2"
    ds.BitsAllocated = 32
    ramp = np.tile(np.linspace(-1.5, 2.5, 16, dtype=np.float32), (8, 1))
    ds.FloatPixelData = ramp.tobytes()
    path = tmp_path / "float.dcm"
    ds.save_as(path, enforce_file_format=True)
    out = render_frame(path, max_size=0)
    assert out.shape == (8, 16)
    assert out[0, 0] == 0 and out[0, -1] == 255 and np.all(np.diff(out[0].astype(int)) > 0)


def test_negative_window_center_without_equals(tmp_path: Path) -> None:
    out = tmp_path / "lung.png"
    assert main(["render", str(_file("CT_small.dcm")), "--window", "-600,1500", "--out", str(out)]) == 0
    with Image.open(out) as png:
        written = np.asarray(png)
    assert np.array_equal(written, render_frame(_file("CT_small.dcm"), window=WindowChoice.explicit(-600, 1500),
                                                max_size=0))
