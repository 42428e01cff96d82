"""Studies kept only in the hospital's PACS (LIGHTBOX_STORE=dicomweb) work everywhere a stored one does:
comparison and the timeline (the commands: tests/bot/test_cli_pacs.py); when the PACS cannot give a
picture, the chat says so plainly."""

from __future__ import annotations

import io
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import select

from bot.settings import Settings
from store.dicomweb import DicomWebSource, sync_patient
from store.models import Instance, Patient
from store.pacs_store import PacsFileStore
from tests.handlers.conftest import Lightbox, running_lightbox
from tests.services import free_port

DATES = ("20240110", "20260220")


def _ct(pacs_id: str, study_uid: str, series_uid: str, study_date: str, number: int) -> bytes:
    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    ds.PatientID, ds.PatientName = pacs_id, "Pacs^Only"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate = ds.SeriesDate = study_date
    ds.BodyPartExamined, ds.StudyDescription, ds.SeriesDescription = "HEAD", "CT head", "Axial head"
    ds.SeriesNumber = 1
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [0.0, 0.0, 5.0 * number]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def put_in_pacs(orthanc_url: str) -> str:
    """Two head CTs two years apart for a new PACS patient; returns the PACS Patient ID."""
    pacs_id = f"LB-PO-{secrets.token_hex(4)}"
    with httpx.Client(base_url=orthanc_url, timeout=30, trust_env=False) as client:
        for study_date in DATES:
            study_uid, series_uid = generate_uid(), generate_uid()
            for number in range(1, 6):
                answer = client.post("/instances", content=_ct(pacs_id, study_uid, series_uid, study_date, number))
                assert answer.status_code == 200
    return pacs_id


def sync_new_patient(box: Lightbox, pacs_id: str) -> int:
    files = box.services.files
    assert isinstance(files, PacsFileStore)
    with box.services.sessions() as session, session.begin():
        patient = Patient()
        session.add(patient)
        session.flush()
        row = patient.id
    assert sync_patient(box.services.sessions, files.source, row, pacs_id).instances_added == 10
    with box.services.sessions() as session:
        instances = session.scalars(select(Instance)).all()
        assert instances and all(i.remote_url and not i.storage_key for i in instances)
    return row


@pytest.fixture
async def pacs_box(tmp_path: Path, orthanc_url: str) -> AsyncIterator[Lightbox]:
    settings = Settings(data_dir=tmp_path / "data", public_url="http://127.0.0.1:9", store="dicomweb",
                        dicomweb_url=f"{orthanc_url}/dicom-web")
    async for box in running_lightbox(tmp_path, settings, timeout=60.0):
        yield box


async def test_compare_and_timeline_show_pacs_only_studies(pacs_box: Lightbox, orthanc_url: str) -> None:
    patient = sync_new_patient(pacs_box, put_in_pacs(orthanc_url))
    ada = await pacs_box.linked_user(patient, "Ada")
    await ada.command("compare")
    pair = await ada.wait_for_reply()
    assert pair.method == "sendPhoto", pair.text
    assert "10 January 2024" in (pair.caption or "") and "20 February 2026" in (pair.caption or "")
    assert pair.photo_bytes is not None
    with Image.open(io.BytesIO(pair.photo_bytes)) as picture:
        assert picture.width > picture.height  # two pictures side by side
    await ada.command("timeline")
    timeline = await ada.wait_for_reply(after=pair)
    assert timeline.method == "sendPhoto", timeline.text


async def test_when_the_pacs_cannot_be_reached_the_card_says_so(pacs_box: Lightbox, orthanc_url: str) -> None:
    patient = sync_new_patient(pacs_box, put_in_pacs(orthanc_url))
    files = pacs_box.services.files
    assert isinstance(files, PacsFileStore)
    files.source = DicomWebSource(f"http://127.0.0.1:{free_port()}/dicom-web")  # nothing listens there
    bo = await pacs_box.linked_user(patient, "Bo")
    await bo.command("last")
    answer = await bo.wait_for_reply()
    shown = answer.text or answer.caption or ""
    assert "image archive can't be reached right now" in shown, shown
    assert "went wrong" not in shown.lower()
    lena = await pacs_box.linked_user(patient, "Lena", language_code="de")
    await lena.command("last")
    answer = await lena.wait_for_reply()
    assert "Bildarchiv des Krankenhauses ist gerade nicht erreichbar" in (answer.text or answer.caption or "")
