"""`lightbox pacs sync` records a patient's studies from the real Orthanc; then `lightbox studies` lists them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from bot.cli import main
from imaging.samples import sample_file


def test_pacs_sync_then_studies(orthanc_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.PatientID = "PACS-CLI-1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert httpx.post(f"{orthanc_url}/instances", content=out.getvalue(), timeout=30).status_code == 200
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LIGHTBOX_DICOMWEB_URL", f"{orthanc_url}/dicom-web")
    assert main(["pacs", "sync", "--patient-id", "PACS-CLI-1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["studies_found"] == 1 and result["instances_added"] == 1
    assert main(["studies", "--patient-id", "PACS-CLI-1", "--json"]) == 0
    studies = json.loads(capsys.readouterr().out)
    assert [s["study_uid"] for s in studies] == [ds.StudyInstanceUID]


def test_pacs_sync_without_a_pacs_address_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LIGHTBOX_DICOMWEB_URL", raising=False)
    assert main(["pacs", "sync", "--patient-id", "X"]) == 2
    assert "LIGHTBOX_DICOMWEB_URL" in capsys.readouterr().err


def test_an_unreachable_pacs_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from tests.services import free_port

    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LIGHTBOX_DICOMWEB_URL", f"http://127.0.0.1:{free_port()}/dicom-web")
    assert main(["pacs", "sync", "--patient-id", "X"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lightbox: the PACS did not answer") and "Traceback" not in err
