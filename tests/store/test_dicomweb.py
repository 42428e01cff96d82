"""The DICOMweb source against the real Orthanc: QIDO sync, WADO fetch and cache, and bounded failures."""

from __future__ import annotations

import io
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from store import audit, dicomweb, queries
from store.dicomweb import DicomWebSource
from store.filestore import FileStore
from store.models import Instance, Patient, PatientIdentifier, Series, Study, StudyModality


def _dataset(
    name: str,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    *,
    position_z: float | None = None,
    number: int = 1,
    study_date: str = "20240105",
    body_part: str = "",
    description: str = "",
) -> bytes:
    path = get_testdata_file(name)
    assert path is not None
    ds = pydicom.dcmread(path)
    ds.PatientID = patient_id
    ds.PatientName = "Sync^Test"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = number
    ds.StudyDate = study_date
    if body_part:
        ds.BodyPartExamined = body_part
    if description:
        ds.StudyDescription = description
    if position_z is not None:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, position_z]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture
def pacs(orthanc_url: str) -> Iterator[dict[str, object]]:
    """One PACS patient with an axial CT series of three slices (numbered against their order) and an
    MR study; another PACS patient with a CT. Patient IDs are fresh per test (Orthanc is shared)."""
    tag = secrets.token_hex(4)
    ours, other = f"LB-{tag}", f"LB-{tag}-OTHER"
    ct_study, ct_series = generate_uid(), generate_uid()
    mr_study, mr_series = generate_uid(), generate_uid()
    files: dict[str, bytes] = {}
    for number, z in ((1, 20.0), (2, -5.0), (3, 7.5)):
        files[f"ct{number}"] = _dataset(
            "CT_small.dcm", ours, ct_study, ct_series, position_z=z, number=number,
            study_date="20230301", body_part="CHEST", description="CT THORAX",
        )  # fmt: skip
    files["mr"] = _dataset("MR_small.dcm", ours, mr_study, mr_series, study_date="20240105", description="MRI KNEE")
    files["other"] = _dataset("CT_small.dcm", other, generate_uid(), generate_uid(), study_date="20250101")
    with httpx.Client(base_url=orthanc_url, timeout=30) as client:
        for data in files.values():
            response = client.post("/instances", content=data)
            assert response.status_code == 200, response.text
    yield {
        "dicomweb": f"{orthanc_url}/dicom-web",
        "ours": ours,
        "other": other,
        "ct_study": ct_study,
        "ct_series": ct_series,
        "mr_study": mr_study,
        "files": files,
    }


def _new_patient(sessions: sessionmaker[Session]) -> int:
    with sessions() as s, s.begin():
        patient = Patient()
        s.add(patient)
        s.flush()
        return patient.id


def test_sync_records_the_patients_studies_without_pixels(
    sessions: sessionmaker[Session], pacs: dict[str, object], tmp_path: Path
) -> None:
    patient_id = _new_patient(sessions)
    with DicomWebSource(str(pacs["dicomweb"]), timeout=10) as source:
        report = dicomweb.sync_patient(sessions, source, patient_id, str(pacs["ours"]))
        assert (report.studies_found, report.studies_added, report.series_added, report.instances_added) == (2, 2, 2, 4)
        assert report.skipped == []
        again = dicomweb.sync_patient(sessions, source, patient_id, str(pacs["ours"]))
        assert (again.studies_added, again.studies_updated, again.instances_added) == (0, 2, 0)
    with sessions() as s:
        studies = queries.list_studies(s, patient_id)
        assert [st.study_uid for st in studies] == [pacs["mr_study"], pacs["ct_study"]]
        ct = studies[1]
        assert (ct.study_date, ct.modalities, ct.source, ct.series_count, ct.instance_count) == (
            date(2023, 3, 1), "CT", "dicomweb", 1, 3,
        )  # fmt: skip
        assert ct.body_part == "chest"
        assert ct.description == "CT THORAX"
        latest_ct = queries.latest_study(s, patient_id, modality="CT")
        assert latest_ct is not None and latest_ct.id == ct.id
        assert queries.latest_study(s, patient_id, modality="MR").study_uid == pacs["mr_study"]  # type: ignore[union-attr]
        series = queries.series_of_study(s, patient_id, ct.id)
        assert [(x.series_uid, x.modality, x.plane, x.instance_count) for x in series] == [
            (pacs["ct_series"], "CT", "axial", 3)
        ]
        instances = queries.instances_of_series(s, patient_id, series[0].id)
        # Slice order from the geometry, not the instance numbers (1 at z=20, 2 at z=-5, 3 at z=7.5).
        assert [i.instance_number for i in instances] == [2, 3, 1]
        assert [i.slice_location for i in instances] == [-5.0, 7.5, 20.0]
        assert all(i.storage_key is None and i.remote_url.startswith(str(pacs["dicomweb"])) for i in instances)
        assert all(i.remote_url.endswith(i.sop_instance_uid) for i in instances)
        # The other PACS patient's study was not taken; the identifier was linked.
        assert s.scalar(select(func.count()).select_from(Study)) == 2
        ident = s.scalars(select(PatientIdentifier).where(PatientIdentifier.patient_id == patient_id)).one()
        assert (ident.issuer, ident.value) == ("", pacs["ours"])
        assert s.scalar(select(func.count()).select_from(StudyModality)) == 2
        assert s.get(Patient, patient_id).name == "Sync^Test"  # type: ignore[union-attr]
        events = audit.recent_activity(s, patient_id)
        assert [(e.actor_kind, e.action) for e in events] == [("system", "sync"), ("system", "sync")]
        assert events[1].detail == "2 new of 2 studies at the PACS"
    assert not any(tmp_path.rglob("*.dcm"))


def test_results_are_read_page_by_page(sessions: sessionmaker[Session], pacs: dict[str, object]) -> None:
    patient_id = _new_patient(sessions)
    # Pages of two: the three CT slices take two pages of instances.
    with DicomWebSource(str(pacs["dicomweb"]), page_size=2) as source:
        assert len(source.search_instances(str(pacs["ct_study"]), str(pacs["ct_series"]))) == 3
        report = dicomweb.sync_patient(sessions, source, patient_id, str(pacs["ours"]))
    assert (report.studies_added, report.instances_added) == (2, 4)
    # A PACS that ignores offset (repeats its first page) does not loop for ever.
    page = [{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}, "00100020": {"vr": "LO", "Value": ["P1"]}}]
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.params.get("offset"))
        return httpx.Response(200, json=page)

    with DicomWebSource("http://pacs.invalid/dicom-web", page_size=1, transport=httpx.MockTransport(handler)) as src:
        assert [s.study_uid for s in src.search_studies("P1")] == ["1.2.3"]
    assert calls == ["0", "1"]


def test_fetch_downloads_once_and_caches_in_the_file_store(
    sessions: sessionmaker[Session], pacs: dict[str, object], tmp_path: Path
) -> None:
    patient_id = _new_patient(sessions)
    store = FileStore(tmp_path / "dicom")
    with DicomWebSource(str(pacs["dicomweb"])) as source:
        dicomweb.sync_patient(sessions, source, patient_id, str(pacs["ours"]))
        with sessions() as s:
            ct = queries.get_study_for_patient(s, patient_id, str(pacs["ct_study"]))
            assert ct is not None
            first = queries.instances_of_series(s, patient_id, queries.series_of_study(s, patient_id, ct.id)[0].id)[0]
        path = dicomweb.fetch_instance(sessions, source, store, patient_id, first.id)
    data = path.read_bytes()
    fetched = pydicom.dcmread(path)
    assert fetched.SOPInstanceUID == first.sop_instance_uid
    assert data in {v for v in pacs["files"].values()}  # type: ignore[attr-defined]
    with sessions() as s:
        row = s.get(Instance, first.id)
        assert row is not None and row.storage_key is not None
        assert row.content_hash == row.storage_key and len(row.content_hash) == 64
        assert row.size_bytes == len(data)
        assert row.transfer_syntax_uid == fetched.file_meta.TransferSyntaxUID
    # Cached: a PACS that is gone does not matter any more.
    with DicomWebSource(f"http://127.0.0.1:{_closed_port()}/dicom-web", timeout=1) as dead:
        assert dicomweb.fetch_instance(sessions, dead, store, patient_id, first.id) == path


def test_fetch_refuses_another_patients_instance(
    sessions: sessionmaker[Session], pacs: dict[str, object], tmp_path: Path
) -> None:
    patient_id = _new_patient(sessions)
    stranger = _new_patient(sessions)
    with DicomWebSource(str(pacs["dicomweb"])) as source:
        dicomweb.sync_patient(sessions, source, patient_id, str(pacs["ours"]))
        with sessions() as s:
            some_instance = s.scalars(select(Instance.id)).first()
        assert some_instance is not None
        with pytest.raises(dicomweb.UnknownInstance):
            dicomweb.fetch_instance(sessions, source, FileStore(tmp_path), stranger, some_instance)
        # Syncing the same PACS Patient ID for someone else is refused, and the store is unchanged.
        with pytest.raises(dicomweb.IdentifierConflict):
            dicomweb.sync_patient(sessions, source, stranger, str(pacs["ours"]))
        with pytest.raises(ValueError):
            dicomweb.sync_patient(sessions, source, 10**9, str(pacs["other"]))
    with sessions() as s:
        assert queries.list_studies(s, stranger) == []
        assert s.scalars(select(PatientIdentifier).where(PatientIdentifier.value == pacs["other"])).all() == []


def test_a_study_held_for_another_patient_is_skipped_not_moved(
    sessions: sessionmaker[Session], pacs: dict[str, object]
) -> None:
    owner = _new_patient(sessions)
    with sessions() as s, s.begin():
        s.add(Study(patient_id=owner, study_uid=str(pacs["mr_study"]), modalities="MR"))
    patient_id = _new_patient(sessions)
    with DicomWebSource(str(pacs["dicomweb"])) as source:
        report = dicomweb.sync_patient(sessions, source, patient_id, str(pacs["ours"]))
    assert report.studies_added == 1
    assert report.skipped == ["a study the store already holds for another patient"]
    with sessions() as s:
        assert [st.study_uid for st in queries.list_studies(s, patient_id)] == [pacs["ct_study"]]
        assert [st.study_uid for st in queries.list_studies(s, owner)] == [pacs["mr_study"]]
        assert s.scalar(select(func.count()).select_from(Series).join(Study).where(Study.patient_id == owner)) == 0


def test_wildcard_patient_ids_are_refused(pacs: dict[str, object]) -> None:
    with DicomWebSource(str(pacs["dicomweb"])) as source:
        for bad in ("*", "LB-*", "LB-?", "", "  ", "a\\b", "x" * 65):
            with pytest.raises(dicomweb.InvalidPatientId):
                source.search_studies(bad)
        assert [s.patient_id for s in source.search_studies(str(pacs["other"]))] == [pacs["other"]]
        assert source.search_studies("LB-NOBODY-" + secrets.token_hex(4)) == []


# ---------------------------------------------------------------- faults


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_pacs_fails_fast_with_a_typed_error() -> None:
    started = time.monotonic()
    with DicomWebSource(f"http://127.0.0.1:{_closed_port()}/dicom-web", timeout=2) as source:
        with pytest.raises(dicomweb.PacsUnreachable) as caught:
            source.search_studies("P1")
    assert time.monotonic() - started < 3
    assert "can't reach" in dicomweb.friendly_message(caught.value)


@pytest.fixture
def slow_server() -> Iterator[tuple[int, list[str]]]:
    """A server that accepts and then answers nothing ('silent') or drips a body byte by byte ('drip')."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    mode = ["silent"]
    stop = threading.Event()
    connections: list[socket.socket] = []

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            connections.append(conn)
            if mode[0] == "drip":
                threading.Thread(target=drip, args=(conn,), daemon=True).start()

    def drip(conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 100000\r\n\r\n")
            while not stop.is_set():
                conn.sendall(b" ")
                time.sleep(0.2)
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1]), mode
    stop.set()
    thread.join()
    for conn in connections:
        conn.close()
    listener.close()


def test_silent_pacs_times_out_within_the_bound(slow_server: tuple[int, list[str]]) -> None:
    port, _ = slow_server
    started = time.monotonic()
    with DicomWebSource(f"http://127.0.0.1:{port}/dicom-web", timeout=1) as source:
        with pytest.raises(dicomweb.PacsTimeout) as caught:
            source.search_studies("P1")
    assert time.monotonic() - started < 4
    assert "too long" in dicomweb.friendly_message(caught.value)


def test_dripping_pacs_hits_the_overall_deadline(slow_server: tuple[int, list[str]]) -> None:
    port, mode = slow_server
    mode[0] = "drip"
    started = time.monotonic()
    with DicomWebSource(f"http://127.0.0.1:{port}/dicom-web", timeout=1, deadline=1.5) as source:
        with pytest.raises(dicomweb.PacsTimeout):
            source.search_studies("P1")
    elapsed = time.monotonic() - started
    # Each byte came within the per-read timeout; only the overall deadline stopped it.
    assert 1.4 < elapsed < 4


def _mock_source(handler: httpx.MockTransport) -> DicomWebSource:
    return DicomWebSource("http://pacs.invalid/dicom-web", transport=handler)


def test_error_statuses_and_bad_answers_are_typed() -> None:
    cases: list[tuple[httpx.Response, type[dicomweb.DicomWebError]]] = [
        (httpx.Response(401), dicomweb.PacsAccessDenied),
        (httpx.Response(403), dicomweb.PacsAccessDenied),
        (httpx.Response(404), dicomweb.PacsNotFound),
        (httpx.Response(503), dicomweb.PacsBadAnswer),
        (httpx.Response(200, content=b"<html>login</html>"), dicomweb.PacsBadAnswer),
        (httpx.Response(200, json={"not": "a list"}), dicomweb.PacsBadAnswer),
    ]
    for response, error in cases:
        with _mock_source(httpx.MockTransport(lambda request, r=response: r)) as source:
            with pytest.raises(error) as caught:
                source.search_studies("P1")
        message = dicomweb.friendly_message(caught.value)
        assert message and "Traceback" not in message
    # A PACS that matches loosely must not hand over another patient's study.
    loose = [{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}, "00100020": {"vr": "LO", "Value": ["P10"]}}]
    with _mock_source(httpx.MockTransport(lambda request: httpx.Response(200, json=loose))) as source:
        assert source.search_studies("P1") == []
    # Path injection through a UID from the PACS is refused.
    evil = [{"0020000D": {"vr": "UI", "Value": ["../../x"]}, "00100020": {"vr": "LO", "Value": ["P1"]}}]
    with _mock_source(httpx.MockTransport(lambda request: httpx.Response(200, json=evil))) as source:
        with pytest.raises(dicomweb.PacsBadAnswer):
            source.search_studies("P1")


def test_retrieve_checks_it_got_one_dicom_part() -> None:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    dicom = Path(path).read_bytes()

    def multipart(*parts: bytes) -> httpx.Response:
        body = b"".join(b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n" for p in parts) + b"--XyZ--"
        return httpx.Response(200, content=body, headers={"content-type": 'multipart/related; boundary="XyZ"'})

    responses = {
        "one": multipart(dicom),
        "two": multipart(dicom, dicom),
        "junk": multipart(b"not dicom at all"),
        "plain": httpx.Response(200, content=dicom, headers={"content-type": "application/dicom"}),
        "html": httpx.Response(200, content=b"<html/>", headers={"content-type": "text/html"}),
    }
    for name, response in responses.items():
        with _mock_source(httpx.MockTransport(lambda request, r=response: r)) as source:
            if name in {"one", "plain"}:
                assert source.retrieve_instance("1.2", "1.2.3", "1.2.3.4") == dicom
            else:
                with pytest.raises(dicomweb.PacsBadAnswer):
                    source.retrieve_instance("1.2", "1.2.3", "1.2.3.4")


def test_multipart_parser() -> None:
    body = (
        b"preamble\r\n--b1 \r\nContent-Type: application/dicom\r\nContent-Length: 5\r\n\r\nAB\r\nC"
        b"\r\n--b1\r\n\r\nno headers\r\n--b1--\r\nepilogue"
    )
    parts = dicomweb.parse_multipart_related(body, "multipart/related; type=application/dicom; boundary=b1")
    assert parts == [({"content-type": "application/dicom", "content-length": "5"}, b"AB\r\nC"), ({}, b"no headers")]
    with pytest.raises(dicomweb.PacsBadAnswer):
        dicomweb.parse_multipart_related(b"--b1\r\nX: y\r\n\r\nunterminated", "multipart/related; boundary=b1")
    with pytest.raises(dicomweb.PacsBadAnswer):
        dicomweb.parse_multipart_related(b"anything", "multipart/related")


def test_friendly_messages_cover_every_error() -> None:
    errors = [
        cls for cls in vars(dicomweb).values() if isinstance(cls, type) and issubclass(cls, dicomweb.DicomWebError)
    ]
    assert len(errors) == 9
    messages = {dicomweb.friendly_message(cls("x")) for cls in errors if cls is not dicomweb.DicomWebError}
    assert len(messages) == 8
    assert dicomweb.friendly_message(RuntimeError("boom")).startswith("Something went wrong")


async def test_async_wrappers_do_not_block_the_event_loop(
    sessions: sessionmaker[Session], slow_server: tuple[int, list[str]]
) -> None:
    import asyncio

    port, _ = slow_server
    patient_id = _new_patient(sessions)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    task = asyncio.create_task(ticker())
    with DicomWebSource(f"http://127.0.0.1:{port}/dicom-web", timeout=1) as source:
        with pytest.raises(dicomweb.PacsTimeout):
            await dicomweb.sync_patient_async(sessions, source, patient_id, "P1")
    task.cancel()
    assert ticks >= 10  # the loop kept running other work while the PACS stayed silent
