"""The pieces under the workers, on SQLite and on the real PostgreSQL: jobs (claim, heartbeat, takeover),
the persistence (JSON rows that another Application reads), the PACS store's bounded cache against the real
Orthanc, and /readyz failing when the database goes away."""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from bot.health import database_check, dicomweb_check, folder_check, health_routes
from bot.persistence import DatabasePersistence
from bot.workers import JobRunner
from handlers.callbacks import View
from handlers.previews import Slice, preview_jpeg
from handlers.services import Services
from store import dicomweb, jobs
from store.db import make_engine, session_factory, upgrade
from store.filestore import FileStore
from store.models import Instance, Patient
from store.models_state import BotState
from store.pacs_store import FileCache, PacsFileStore, local_path
from tests import services

# ---------------------------------------------------------------- jobs


def test_a_job_is_claimed_by_one_worker_only(sessions: sessionmaker[Session]) -> None:
    job_id = jobs.enqueue(sessions, "import", {"folder": "/nowhere"}, chat_id=7, total=3)
    winners: list[jobs.ClaimedJob | None] = []
    barrier = threading.Barrier(6)

    def race(worker: str) -> None:
        barrier.wait()
        winners.append(jobs.claim(sessions, worker))

    threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [w for w in winners if w is not None]
    assert len(claimed) == 1 and claimed[0].id == job_id and claimed[0].payload == {"folder": "/nowhere"}
    state = jobs.job_state(sessions, job_id)
    assert state is not None and state.state == "running" and state.attempts == 1


def test_a_stale_job_is_taken_over_and_the_old_owner_is_told(sessions: sessionmaker[Session]) -> None:
    job_id = jobs.enqueue(sessions, "import", {})
    first = jobs.claim(sessions, "alive-then-dead")
    assert first is not None
    jobs.save_progress(sessions, job_id, "alive-then-dead", done=4, total=10, checkpoint={"next": 4})
    assert jobs.claim(sessions, "other", lease=timedelta(seconds=30)) is None  # heartbeat is fresh
    taken = jobs.claim(sessions, "other", lease=timedelta(seconds=-1))  # any heartbeat counts as stale
    assert taken is not None and taken.checkpoint == {"next": 4} and taken.attempts == 2
    with pytest.raises(jobs.JobLost):
        jobs.heartbeat(sessions, job_id, "alive-then-dead")
    with pytest.raises(jobs.JobLost):
        jobs.save_progress(sessions, job_id, "alive-then-dead", done=5, total=10, checkpoint={"next": 5})
    assert not jobs.finish(sessions, job_id, "alive-then-dead", result={"x": 1})
    assert jobs.finish(sessions, job_id, "other", result={"files": 10})
    final = jobs.job_state(sessions, job_id)
    assert final is not None and final.state == "done" and json.loads(final.result) == {"files": 10}
    assert jobs.claim(sessions, "third", lease=timedelta(seconds=-1)) is None  # done jobs stay done


def test_a_job_that_keeps_failing_is_given_up(sessions: sessionmaker[Session]) -> None:
    job_id = jobs.enqueue(sessions, "import", {})
    for attempt in range(jobs.MAX_ATTEMPTS):
        claimed = jobs.claim(sessions, f"w{attempt}", lease=timedelta(seconds=-1))
        assert claimed is not None and claimed.attempts == attempt + 1
    assert jobs.claim(sessions, "last", lease=timedelta(seconds=-1)) is None
    final = jobs.job_state(sessions, job_id)
    assert final is not None and final.state == "failed" and final.error == "too many attempts"


# ---------------------------------------------------------------- persistence


async def test_chat_data_written_by_one_persistence_is_read_by_another(sessions: sessionmaker[Session]) -> None:
    first, second = DatabasePersistence(sessions), DatabasePersistence(sessions)
    await first.update_chat_data(42, {"current_view": "v|abc|3|d000", "card_messages": {"17": "v|abc|3|d000"}})
    fresh: dict[str, object] = {}
    await second.refresh_chat_data(42, fresh)
    assert fresh == {"current_view": "v|abc|3|d000", "card_messages": {"17": "v|abc|3|d000"}}
    # The second one changes it; the first one sees the change on its next refresh.
    fresh["current_view"] = "v|def|0|d000"
    await second.update_chat_data(42, fresh)
    mine = {"current_view": "v|abc|3|d000", "card_messages": {"17": "v|abc|3|d000"}}
    await first.refresh_chat_data(42, mine)
    assert mine["current_view"] == "v|def|0|d000"
    # Stored as JSON text, never a pickle.
    with sessions() as session:
        raw = session.scalars(select(BotState.data).where(BotState.kind == "chat", BotState.key == "42")).one()
    assert json.loads(raw)["current_view"] == "v|def|0|d000"
    await first.drop_chat_data(42)  # e.g. /forget handled by the other worker
    await second.refresh_chat_data(42, fresh)
    assert fresh == {}
    assert await first.get_chat_data() == {}  # nothing is loaded at start-up


async def test_unsaved_local_changes_survive_a_refresh(sessions: sessionmaker[Session]) -> None:
    persistence = DatabasePersistence(sessions)
    await persistence.update_chat_data(5, {"a": 1})
    local = {"a": 2}  # changed by a handler, not yet written (polling mode writes every few seconds)
    await persistence.refresh_chat_data(5, local)
    assert local == {"a": 2}


async def test_user_data_callback_data_and_conversations_round_trip(sessions: sessionmaker[Session]) -> None:
    first, second = DatabasePersistence(sessions), DatabasePersistence(sessions)
    await first.update_user_data(9, {"language": "de"})
    user: dict[str, object] = {}
    await second.refresh_user_data(9, user)
    assert user == {"language": "de"}
    await first.update_callback_data(([("id1", 123.5, {"k": "v"})], {"q1": "id1"}))
    assert await second.get_callback_data() == ([("id1", 123.5, {"k": "v"})], {"q1": "id1"})
    await first.update_conversation("flow", (1, 2), "asking")
    await first.update_conversation("flow", (3, 4), 2)
    await first.update_conversation("flow", (3, 4), None)
    assert await second.get_conversations("flow") == {(1, 2): "asking"}


# ---------------------------------------------------------------- PACS store


def test_file_cache_keeps_the_recently_used_within_its_limit(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache", limit_bytes=3000)
    for key in ("a", "b", "c"):
        cache.put(key, key.encode() * 1000)
        os.utime(cache._path(key), (time.time() - 100 + ord(key), time.time() - 100 + ord(key)))
    assert cache.get("a") is not None  # "a" is now the most recently used
    cache.put("d", b"d" * 1000)
    assert cache.size() <= 3000
    assert cache.get("b") is None  # the least recently used went first
    assert cache.get("a") is not None and cache.get("c") is not None and cache.get("d") is not None
    assert cache.get("d").read_bytes() == b"d" * 1000  # type: ignore[union-attr]


def _ct(patient_id: str, study_uid: str, series_uid: str, number: int) -> bytes:
    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    ds.PatientID, ds.PatientName = patient_id, "Pacs^Store"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = number
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_pacs_instances_are_fetched_on_demand_into_a_bounded_cache(orthanc_url: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lightbox.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    pacs_id = f"LB-PS-{secrets.token_hex(4)}"
    study_uid, series_uid = generate_uid(), generate_uid()
    files = [_ct(pacs_id, study_uid, series_uid, n) for n in range(1, 5)]
    with httpx.Client(base_url=orthanc_url, timeout=30, trust_env=False) as client:
        for data in files:
            assert client.post("/instances", content=data).status_code == 200
    with sessions() as session, session.begin():
        patient = Patient()
        session.add(patient)
        session.flush()
        patient_row = patient.id
    one_file = len(files[0])
    store = PacsFileStore(tmp_path / "dicom", dicomweb.DicomWebSource(f"{orthanc_url}/dicom-web"), sessions,
                          cache_root=tmp_path / "pacs-cache", cache_limit_bytes=int(2.5 * one_file))
    # The studies are found through DICOMweb by a job any worker can run.
    job_id = jobs.enqueue(sessions, "pacs_sync", {"patient_id": patient_row, "pacs_patient_id": pacs_id})
    services = Services(sessions=sessions, files=store, work_dir=tmp_path / "work", cache_dir=None)
    runner = JobRunner(None, services, worker="w-test")  # type: ignore[arg-type]  # no chat: no bot needed
    claimed = jobs.claim(sessions, "w-test")
    assert claimed is not None
    asyncio.run(runner.run(claimed))
    synced = jobs.job_state(sessions, job_id)
    assert synced is not None and synced.state == "done" and json.loads(synced.result)["files"] == 4
    with sessions() as session:
        instances = list(session.scalars(select(Instance).order_by(Instance.instance_number)))
    assert len(instances) == 4 and all(i.remote_url and not i.storage_key for i in instances)
    for instance in instances:
        path = local_path(store, instance)
        assert str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) == instance.sop_instance_uid
        assert store.cache.size() <= store.cache.limit_bytes
    # Nothing about the worker's own copy went into the shared database.
    with sessions() as session:
        assert all(i.storage_key is None for i in session.scalars(select(Instance)))
    # Only the two most recent fit; the first is fetched again when asked for.
    assert store.cache.get(instances[0].sop_instance_uid) is None
    assert store.cache.get(instances[3].sop_instance_uid) is not None
    assert local_path(store, instances[0]).exists()
    # The chat preview renders a PACS-only instance (fetched into the cache on the way).
    picture = preview_jpeg(services, Slice(instances[1], 0), View(series="any", slice=0), "ns")
    assert picture[:2] == b"\xff\xd8" and len(picture) > 1000
    # A plain local store cannot give a PACS-only instance.
    with pytest.raises(dicomweb.UnknownInstance):
        local_path(FileStore(tmp_path / "plain"), instances[1])
    store.source.close()
    engine.dispose()


# ---------------------------------------------------------------- readiness


async def _get(app: Starlette, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://worker") as client:
        return await client.get(path)


async def test_readyz_fails_when_the_database_goes_down(tmp_path: Path, orthanc_url: str) -> None:
    if not services.find_postgres():
        pytest.skip("PostgreSQL is not installed")
    with services.start_postgres(tmp_path / "pg") as url:
        engine = make_engine(url)
        checks = {"database": database_check(session_factory(engine)), "store": folder_check(tmp_path / "dicom"),
                  "dicomweb": dicomweb_check(f"{orthanc_url}/dicom-web")}
        app = Starlette(routes=health_routes(checks, timeout=5.0))
        ready = await _get(app, "/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "store": "ok", "dicomweb": "ok"}
    down = await _get(app, "/readyz")  # the server is stopped now
    assert down.status_code == 503
    assert down.json()["checks"]["database"].startswith("failed")
    assert down.json()["checks"]["store"] == "ok"
    assert (await _get(app, "/healthz")).text == "ok"  # the process itself is fine
    engine.dispose()
    dead_pacs = Starlette(routes=health_routes({"dicomweb": dicomweb_check("http://127.0.0.1:9/dicom-web")}))
    assert (await _get(dead_pacs, "/readyz")).status_code == 503
