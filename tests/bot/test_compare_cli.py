"""``lightbox compare`` on real files: two CT studies of one patient built from pydicom's CT_small.dcm with
different dates (imported with ``lightbox import``), and the cases where nothing is comparable."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import select

from bot.cli import main
from bot.settings import Settings
from store.db import make_engine, session_factory
from store.models import AccessEvent


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(data))
    for name in ("LIGHTBOX_DATABASE_URL", "LIGHTBOX_BOT_USERNAME", "LIGHTBOX_LOG_LEVEL", "LIGHTBOX_ENCRYPTION_KEY"):
        monkeypatch.delenv(name, raising=False)
    return data


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def write_study(folder: Path, source: str, *, patient_id: str, study_date: str, body_part: str, count: int,
                mark_value: int) -> str:
    """``count`` slices of one real file, 5 mm apart, with a bright bar of ``mark_value`` on the slice at z=10."""
    study_uid, series_uid = generate_uid(), generate_uid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = pydicom.dcmread(str(get_testdata_file(source)))
    plain = original.pixel_array.copy()
    for k in range(count):
        ds = copy.deepcopy(original)
        ds.PatientID = patient_id
        ds.PatientName = "Doe^Jane"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = study_date
        ds.BodyPartExamined = body_part
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 1
        ds.SeriesDescription = "axial"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * k]
        pixels = plain.copy()
        if 5.0 * k == 10.0:
            pixels[:, :16] = mark_value  # a bright band down the left edge of the slice at z = 10 mm only
        ds.PixelData = pixels.astype(plain.dtype).tobytes()
        ds.save_as(folder / f"{series_uid}-{k:03d}.dcm", enforce_file_format=True)
    return study_uid


def test_compare_writes_two_pictures_side_by_side_with_paired_slices(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "cd"
    folder.mkdir()
    # Earlier: 4 slices at z = 0..15; later: 7 slices at z = 0..30. Later slice 3 (z=10) pairs with earlier slice 3.
    write_study(folder, "CT_small.dcm", patient_id="CMP-1", study_date="20240110", body_part="HEAD", count=4,
                mark_value=4000)
    write_study(folder, "CT_small.dcm", patient_id="CMP-1", study_date="20250310", body_part="HEAD", count=7,
                mark_value=4000)
    status, _, err = run(capsys, "import", str(folder))
    assert status == 0, err

    out = tmp_path / "pair.png"
    status, printed, err = run(capsys, "compare", "--patient-id", "CMP-1", "--modality", "CT", "--body-part", "HEAD",
                               "--slice", "3", "--max-size", "256", "--out", str(out))
    assert status == 0, err
    assert "10 January 2024 (slice 3 of 4)" in printed and "10 March 2025 (slice 3 of 7)" in printed
    assert "14 months apart" in printed
    picture = np.asarray(Image.open(out).convert("L"))
    # Two 128x128 CT_small slices (never enlarged), an 8-pixel gap, and a caption band above: two pictures wide.
    height, width = picture.shape
    assert width == 128 + 8 + 128 and height > 128
    body = picture[height - 128:]
    left, right = body[:, :128], body[:, 136:]
    # Both halves are the paired slice with the bright band (same window on both, so the same brightness).
    assert left[:, :12].mean() > 240 and right[:, :12].mean() > 240
    assert abs(float(left.mean()) - float(right.mean())) < 2.0
    # Captions were drawn in the band above each picture.
    assert picture[: height - 128, :128].max() > 128 and picture[: height - 128, 136:].max() > 128

    # A slice without the band on the later side pairs with a slice without it on the earlier side.
    status, printed, _ = run(capsys, "compare", "--patient-id", "CMP-1", "--slice", "7", "--max-size", "256",
                             "--out", str(out))
    assert status == 0 and "(slice 4 of 4)" in printed and "(slice 7 of 7)" in printed
    picture = np.asarray(Image.open(out).convert("L"))
    assert picture[picture.shape[0] - 128:, :12].mean() < 200

    # The comparison is in the patient's access log as the operator's view of both studies.
    url = Settings.from_env().effective_database_url
    engine = make_engine(url)
    with session_factory(engine)() as session:
        events = list(session.scalars(select(AccessEvent).where(AccessEvent.detail == "comparison")))
        assert len(events) == 4 and {e.actor_kind for e in events} == {"operator"}
    engine.dispose()


def test_nothing_comparable_is_one_plain_line(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "cd"
    folder.mkdir()
    write_study(folder, "CT_small.dcm", patient_id="CMP-2", study_date="20240110", body_part="HEAD", count=2,
                mark_value=0)
    write_study(folder, "MR_small.dcm", patient_id="CMP-2", study_date="20250310", body_part="HEAD", count=2,
                mark_value=0)
    status, _, err = run(capsys, "import", str(folder))
    assert status == 0, err
    out = tmp_path / "none.png"

    status, printed, err = run(capsys, "compare", "--patient-id", "CMP-2", "--body-part", "HEAD", "--out", str(out))
    assert status == 1 and printed == ""
    assert "is a CT scan, and the newer one is an MRI" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()

    status, _, err = run(capsys, "compare", "--patient-id", "CMP-2", "--modality", "PT", "--out", str(out))
    assert status == 1 and "couldn't find a scan like that" in err and not out.exists()

    status, _, err = run(capsys, "compare", "--patient-id", "NOBODY", "--out", str(out))
    assert status == 1 and "no patient" in err and len(err.strip().splitlines()) == 1
