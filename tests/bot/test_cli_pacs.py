"""`lightbox pacs sync` records a patient's studies from the real Orthanc; then `lightbox studies` lists them,
and `lightbox compare` and `lightbox serve` read the studies kept only in the PACS."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from bot.cli import main
from imaging.samples import sample_file
from store.pacs_store import PacsFileStore
from tests.handlers.test_pacs_only import put_in_pacs


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


def test_compare_and_serve_read_pacs_only_studies(tmp_path: Path, orthanc_url: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LIGHTBOX_STORE", "dicomweb")
    monkeypatch.setenv("LIGHTBOX_DICOMWEB_URL", f"{orthanc_url}/dicom-web")
    pacs_id = put_in_pacs(orthanc_url)
    assert main(["pacs", "sync", "--patient-id", pacs_id]) == 0
    out = tmp_path / "pair.png"
    assert main(["compare", "--patient-id", pacs_id, "--out", str(out)]) == 0, capsys.readouterr().err
    with Image.open(out) as picture:
        assert picture.width > picture.height
    assert "10 January 2024" in capsys.readouterr().out

    from bot.commands.serve import build_viewer
    from bot.settings import Settings

    viewer = build_viewer(Settings.from_env())
    assert isinstance(viewer.state.viewer.files, PacsFileStore)

    # The comparison fetched PACS copies into the local cache; forgetting the patient erases them too.
    cached = [p for p in (tmp_path / "data" / "pacs-cache").rglob("*") if p.is_file()]
    assert len(cached) >= 2
    assert main(["forget", "--patient-id", pacs_id, "--yes"]) == 0
    assert not any(p.exists() for p in cached)
