"""With a job runner beside the bot (``lightbox run``), "Play" on a long series is a database job.

The job re-checks that the series is the chat's patient's, shows its progress in one chat message, and
sends the animation (protected per the chat's setting) when done; the view is access-logged.
"""

from __future__ import annotations

import io
import json
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
from handlers.callbacks import View
from handlers.chat import asker_sync
from handlers.cine import enqueue_cine
from handlers.texts import label
from imaging.compose import CINE_MAX_FRAMES
from store.dicomweb import sync_patient
from store.models import AccessEvent, Instance, Patient, Series, Study
from store.models_state import Job
from store.pacs_store import PacsFileStore
from tests.handlers.conftest import Lightbox, running_lightbox, study

CT = "CT_small.dcm"
SLICES = 90  # more than a GIF holds: the job picks CINE_MAX_FRAMES of them


@pytest.fixture
async def with_jobs(tmp_path: Path) -> AsyncIterator[Lightbox]:
    async for box in _bot_with_jobs(tmp_path, Settings(data_dir=tmp_path / "data", public_url="http://127.0.0.1:9")):
        yield box


async def _bot_with_jobs(tmp_path: Path, settings: Settings) -> AsyncIterator[Lightbox]:
    async for box in running_lightbox(tmp_path, settings, jobs=True, progress_every=0.0, timeout=60.0):
        yield box


def _frames(data: bytes, frame_ms: int = 100) -> int:
    """How many frames the loop plays (Pillow merges identical neighbours into one longer frame)."""
    total = 0
    with Image.open(io.BytesIO(data)) as gif:
        for index in range(int(getattr(gif, "n_frames", 1))):
            gif.seek(index)
            total += int(gif.info.get("duration", 0))
    return total // frame_ms


async def test_play_on_a_long_series_runs_as_a_job_with_progress(with_jobs: Lightbox) -> None:
    mine = with_jobs.add_patient("P-CJ", "Cine^Job", [study("ct", 2, "CT", "CT head", "HEAD", CT, copies=SLICES)])
    cy = await with_jobs.linked_user(mine, "Cy")
    await cy.command("last")
    card = await cy.wait_for_reply()
    tap = await cy.tap(card, "Play ▶")
    await cy.wait_for_answer(tap)
    status = await cy.wait_for_reply(after=card)
    assert status.method == "sendMessage" and "Making the animation" in (status.text or "")
    animation = await cy.wait_for_reply(after=status)
    assert animation.method == "sendAnimation"
    assert animation.protect_content is True
    assert f"all {SLICES} pictures" in (animation.caption or "")
    data = animation.content.animation.data if animation.content.animation else b""
    assert data[:6] in (b"GIF89a", b"GIF87a") and _frames(data) == CINE_MAX_FRAMES
    # One message showed the progress, and says at the end that it is done.
    await cy.wait_until(lambda: status.text == label("cine.done"))
    shown = [old.text or "" for old in status.history]
    assert any(f"of {CINE_MAX_FRAMES + 1} pictures ready" in text for text in shown), shown
    assert [m for m in cy.bot_messages if m.method == "sendAnimation"] == [animation]
    with with_jobs.services.sessions() as session:
        job = session.scalars(select(Job)).one()
        assert (job.kind, job.state, job.progress_message_id) == ("chat_cine", "done", status.message_id)
        assert job.progress_done == job.progress_total == CINE_MAX_FRAMES + 1
        views = session.scalars(select(AccessEvent).where(AccessEvent.patient_id == mine,
                                                          AccessEvent.detail == "cine")).all()
        assert len(views) == 1 and views[0].action == "view"
    # The GIF does not linger in the worker's work folder.
    assert not any(p.is_file() for p in (with_jobs.services.work_dir / "cine").rglob("*"))


async def test_the_job_honours_the_chats_protection_setting(with_jobs: Lightbox) -> None:
    mine = with_jobs.add_patient("P-CP", "Cine^Free", [study("ct", 2, "CT", "CT head", "HEAD", CT, copies=8)])
    pat = await with_jobs.linked_user(mine, "Pat")
    await pat.command("privacy")
    notice = await pat.wait_for_reply()
    tap = await pat.tap(notice, "Let me save previews")
    await pat.wait_for_answer(tap)
    await pat.wait_for_reply(after=notice)
    await pat.command("last")
    card = await pat.wait_for_reply()
    tap = await pat.tap(card, "Play ▶")
    await pat.wait_for_answer(tap)
    await pat.wait_until(lambda: any(m.method == "sendAnimation" for m in pat.bot_messages))
    animation = next(m for m in pat.bot_messages if m.method == "sendAnimation")
    assert animation.protect_content is False
    assert "all 8 pictures" in (animation.caption or "")


async def test_the_job_refuses_a_series_that_is_not_the_chats_patients(with_jobs: Lightbox) -> None:
    mine = with_jobs.add_patient("P-CM", "Mine^Me", [study("ct", 2, "CT", "CT head", "HEAD", CT, copies=3)])
    theirs = with_jobs.add_patient("P-CT", "Their^Them", [study("ct2", 3, "CT", "CT chest", "CHEST", CT, copies=3)])
    me = await with_jobs.linked_user(mine, "Me")
    await me.say("hello")
    note = await me.wait_for_reply()
    with with_jobs.services.sessions() as session:
        other = session.scalars(select(Series).join(Study).where(Study.patient_id == theirs)).one()
        asker = asker_sync(session, me.id, me.id)
    assert asker.patient_id == mine
    # A job naming somebody else's series (as a forged or stale button would): nothing is sent.
    job_id = enqueue_cine(with_jobs.services, asker, View(other.public_id), note.message_id)
    await me.wait_until(lambda: note.text == label("cine.not_yours"))
    assert not any(m.method == "sendAnimation" for m in me.bot_messages)
    with with_jobs.services.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == "done" and json.loads(job.result) == {"problem": "not_yours"}
        assert session.scalars(select(AccessEvent).where(AccessEvent.detail == "cine")).all() == []


@pytest.fixture
async def pacs_jobs(tmp_path: Path, orthanc_url: str) -> AsyncIterator[Lightbox]:
    settings = Settings(data_dir=tmp_path / "data", public_url="http://127.0.0.1:9", store="dicomweb",
                        dicomweb_url=f"{orthanc_url}/dicom-web")
    async for box in _bot_with_jobs(tmp_path, settings):
        yield box


def _ct(patient_id: str, study_uid: str, series_uid: str, number: int) -> bytes:
    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    ds.PatientID, ds.PatientName = patient_id, "Pacs^Cine"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [0.0, 0.0, 5.0 * number]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


async def test_a_cine_job_gathers_a_pacs_only_series_from_the_pacs(pacs_jobs: Lightbox, orthanc_url: str) -> None:
    files = pacs_jobs.services.files
    assert isinstance(files, PacsFileStore)
    pacs_id = f"LB-CJ-{secrets.token_hex(4)}"
    study_uid, series_uid = generate_uid(), generate_uid()
    async with httpx.AsyncClient(base_url=orthanc_url, timeout=30, trust_env=False) as client:
        for number in range(1, 13):
            answer = await client.post("/instances", content=_ct(pacs_id, study_uid, series_uid, number))
            assert answer.status_code == 200
    with pacs_jobs.services.sessions() as session, session.begin():
        patient = Patient()
        session.add(patient)
        session.flush()
        patient_row = patient.id
    assert sync_patient(pacs_jobs.services.sessions, files.source, patient_row, pacs_id).instances_added == 12
    with pacs_jobs.services.sessions() as session:
        assert all(i.remote_url and not i.storage_key for i in session.scalars(select(Instance)))
    ada = await pacs_jobs.linked_user(patient_row, "Ada")
    await ada.command("last")
    card = await ada.wait_for_reply()
    tap = await ada.tap(card, "Play ▶")
    await ada.wait_for_answer(tap)
    await ada.wait_until(lambda: any(m.method == "sendAnimation" for m in ada.bot_messages))
    animation = next(m for m in ada.bot_messages if m.method == "sendAnimation")
    assert "all 12 pictures" in (animation.caption or "")
    data = animation.content.animation.data if animation.content.animation else b""
    assert data[:6] in (b"GIF89a", b"GIF87a") and _frames(data) == 12
    with pacs_jobs.services.sessions() as session:
        sops = list(session.scalars(select(Instance.sop_instance_uid)))
    assert all(files.cache.get(sop) is not None for sop in sops)  # fetched into this worker's cache
