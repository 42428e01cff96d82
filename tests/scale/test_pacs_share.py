"""Share links to studies kept only in the PACS (``LIGHTBOX_STORE=dicomweb``), on the real Orthanc.

The viewer fetches each instance on demand through :class:`store.pacs_store.PacsFileStore`: the page shows
an image, the ZIP holds the PACS's files, WADO-RS answers them; with the PACS stopped the answers say so
plainly (503 with a sentence, no traceback) and the viewer page itself still opens.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from share.context import ARCHIVE_DOWN
from share.links import create_share
from share.web import create_app
from store import dicomweb
from store.db import make_engine, session_factory
from store.models import Instance, Patient, Series, Study
from store.pacs_store import PacsFileStore
from tests import services


@pytest.fixture
def sessions(scale_db: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(scale_db)
    yield session_factory(engine)
    engine.dispose()


def _ct(patient_id: str, study_uid: str, series_uid: str, number: int) -> bytes:
    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    ds.PatientID, ds.PatientName = patient_id, "Pacs^Share"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = number
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _pacs_study(orthanc_url: str, sessions: sessionmaker[Session], count: int = 3) -> tuple[str, list[str]]:
    """Put a CT series in Orthanc, record it for a new patient through DICOMweb (no pixels move); returns the
    share token (original downloads allowed) and the SOP Instance UIDs in order."""
    pacs_id = f"LB-SH-{secrets.token_hex(4)}"
    study_uid, series_uid = generate_uid(), generate_uid()
    files = [_ct(pacs_id, study_uid, series_uid, n) for n in range(1, count + 1)]
    with httpx.Client(base_url=orthanc_url, timeout=30, trust_env=False) as client:
        for data in files:
            assert client.post("/instances", content=data).status_code == 200
    with sessions() as session, session.begin():
        patient = Patient(display_label="Sam's scans")
        session.add(patient)
        session.flush()
        patient_row = patient.id
    with dicomweb.DicomWebSource(f"{orthanc_url}/dicom-web") as source:
        found = dicomweb.sync_patient(sessions, source, patient_row, pacs_id)
    assert found.instances_added == count
    with sessions() as session, session.begin():
        study = session.scalars(select(Study).where(Study.study_uid == study_uid)).one()
        instances = list(session.scalars(select(Instance).join(Series).where(Series.study_id == study.id)
                                         .order_by(Instance.instance_number)))
        assert len(instances) == count and all(i.remote_url and not i.storage_key for i in instances)
        patient_obj = session.get(Patient, patient_row)
        assert patient_obj is not None
        created = create_share(session, patient=patient_obj, study=study, hours=24, download="original")
        return created.token, [i.sop_instance_uid for i in instances]


def _viewer(sessions: sessionmaker[Session], orthanc_url: str, root: Path) -> tuple[Starlette, PacsFileStore]:
    store = PacsFileStore(root / "dicom", dicomweb.DicomWebSource(f"{orthanc_url}/dicom-web"), sessions,
                          cache_root=root / "pacs-cache", cache_limit_bytes=50_000_000)
    return create_app(sessions, store, failure_floor=0.0), store


async def _open(client: httpx.AsyncClient, token: str) -> dict[str, object]:
    page = await client.get(f"/s/{token}")
    assert page.status_code == 200 and "Sam&#39;s scans" in page.text
    manifest = (await client.get(f"/s/{token}/api/manifest")).json()
    assert isinstance(manifest, dict)
    return manifest


def _parts(body: bytes, content_type: str) -> list[bytes]:
    return [data for _, data in dicomweb.parse_multipart_related(body, content_type)]


async def test_a_share_of_a_pacs_only_study_shows_downloads_and_answers_wado(
        orthanc_url: str, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    token, sops = _pacs_study(orthanc_url, sessions)
    app, store = _viewer(sessions, orthanc_url, tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://viewer") as client:
        manifest = await _open(client, token)
        study = manifest["studies"][0]  # type: ignore[index]
        series = study["series"][0]
        assert [s["sop"] for s in series["slices"]] == sops
        base = f"/s/{token}"
        # The image: fetched from the PACS into this worker's cache, rendered.
        picture = await client.get(f"{base}/img/{study['uid']}/{series['uid']}/{sops[1]}/0?size=256")
        assert picture.status_code == 200, picture.text
        assert picture.content[:2] == b"\xff\xd8" and len(picture.content) > 1000
        assert store.cache.get(sops[1]) is not None
        thumb = await client.get(f"{base}/thumb/{study['uid']}/{series['uid']}")
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        # The ZIP: the PACS's own files, every one.
        download = await client.get(f"{base}/download")
        assert download.status_code == 200, download.text
        with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
            dicoms = sorted(n for n in archive.namelist() if n.endswith(".dcm"))
            got = [str(pydicom.dcmread(io.BytesIO(archive.read(n))).SOPInstanceUID) for n in dicoms]
        assert got == sops
        # WADO-RS: the series as multipart DICOM, one instance's metadata, a rendered frame.
        wado = f"{base}/dicom-web/studies/{study['uid']}/series/{series['uid']}"
        answer = await client.get(wado)
        assert answer.status_code == 200, answer.text
        parts = _parts(answer.content, answer.headers["content-type"])
        assert sorted(str(pydicom.dcmread(io.BytesIO(p)).SOPInstanceUID) for p in parts) == sorted(sops)
        meta = await client.get(f"{wado}/instances/{sops[2]}/metadata")
        assert meta.status_code == 200 and meta.json()[0]["00080018"]["Value"] == [sops[2]]
        rendered = await client.get(f"{wado}/instances/{sops[0]}/rendered")
        assert rendered.status_code == 200 and rendered.content[:2] == b"\xff\xd8"
        # Scope still holds: an instance of another study is not reachable through this link.
        other_token, other_sops = _pacs_study(orthanc_url, sessions, count=2)
        stray = await client.get(f"{base}/img/{study['uid']}/{series['uid']}/{other_sops[0]}/0")
        assert stray.status_code == 404
        assert other_token != token
    store.source.close()


async def test_with_the_pacs_stopped_the_viewer_says_so_plainly(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    try:
        pacs = services.start_orthanc(tmp_path / "orthanc")
        pacs_url = pacs.__enter__()
    except services.ServiceError as exc:
        pytest.skip(str(exc))
    try:
        token, sops = _pacs_study(pacs_url, sessions)
    finally:
        pacs.__exit__(None, None, None)  # the PACS goes down; nothing was fetched yet
    app, store = _viewer(sessions, pacs_url, tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://viewer") as client:
        manifest = await _open(client, token)  # the page opens: what is in it comes from the database
        study = manifest["studies"][0]  # type: ignore[index]
        series = study["series"][0]
        base = f"/s/{token}"
        wado = f"{base}/dicom-web/studies/{study['uid']}/series/{series['uid']}"
        for url in (f"{base}/img/{study['uid']}/{series['uid']}/{sops[0]}/0",
                    f"{base}/thumb/{study['uid']}/{series['uid']}", f"{base}/download", wado, f"{wado}/metadata",
                    f"{wado}/instances/{sops[0]}/rendered"):
            answer = await client.get(url)
            assert answer.status_code == 503, (url, answer.status_code, answer.text)
            assert answer.json() == {"error": ARCHIVE_DOWN}
            assert "Traceback" not in answer.text
    assert store.cache.size() == 0
    store.source.close()


def _serve(app: Starlette) -> contextlib.AbstractContextManager[str]:
    """The viewer app on a free loopback port, in a thread."""
    return services.serve_in_thread(app)


@pytest.mark.chromium
def test_in_chromium_the_viewer_shows_a_pacs_image_and_says_when_it_cannot(
        chromium_browser: Any, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    try:
        pacs = services.start_orthanc(tmp_path / "orthanc")
        pacs_url = pacs.__enter__()
    except services.ServiceError as exc:
        pytest.skip(str(exc))
    stopped = False
    try:
        shown_token, _ = _pacs_study(pacs_url, sessions)
        later_token, _ = _pacs_study(pacs_url, sessions)
        app, store = _viewer(sessions, pacs_url, tmp_path)
        with _serve(app) as served:
            page = chromium_browser.new_page()
            answers: list[tuple[str, int]] = []
            page.on("response", lambda r: answers.append((r.url, r.status)) if "/img/" in r.url else None)
            try:
                assert page.goto(f"{served}/s/{shown_token}").status == 200
                page.wait_for_function("() => document.getElementById('image').naturalWidth > 0 && "
                                       "!!document.getElementById('stage').dataset.loaded", timeout=30_000)
                # Everything the first page got while the PACS was up came from it (neighbour prefetches
                # still in flight when it stops may fail: those are judged by the second page below).
                served_while_up = [status for url, status in answers if shown_token in url]
                pacs.__exit__(None, None, None)  # the PACS goes down
                stopped = True
                assert page.goto(f"{served}/s/{later_token}").status == 200  # the page itself still opens
                page.wait_for_function("() => document.getElementById('info').textContent.includes('could not')",
                                       timeout=30_000)
                assert page.inner_text("#info") == "This image could not be shown."
                assert page.evaluate("document.getElementById('image').naturalWidth") == 0
                later = [status for url, status in answers if later_token in url]
                assert later and set(later) == {503}, answers
                assert served_while_up and all(status == 200 for status in served_while_up)
            finally:
                page.close()
        store.source.close()
    finally:
        if not stopped:
            pacs.__exit__(None, None, None)
