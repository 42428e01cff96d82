"""Faults in the services Lightbox leans on: PostgreSQL dropping connections mid-import, and the PACS
(a real Orthanc) stopped mid-query and restarted at the same address."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import make_url

from handlers import texts
from store.db import make_engine, session_factory, upgrade
from store.dicomweb import DicomWebSource, PacsUnreachable, friendly_message
from store.filestore import FileStore
from store.importer import DatabaseBusy, import_path
from store.models import Instance
from tests import services
from tests.adversarial.conftest import fresh, to_bytes
from tests.conftest import require_service

CT = "CT_small.dcm"


# ------------------------------------------------------------------ PostgreSQL drops the connection

@pytest.fixture
def pg_db(postgres_url: str) -> Iterator[tuple[str, Any]]:
    admin_engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = "adv_" + secrets.token_hex(6)
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    try:
        yield url, admin_engine
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


def drop_connection_on_insert(engine: Any, admin: Any, times: int) -> dict[str, int]:
    """Terminate the backend of the connection about to insert an instance row, ``times`` times."""
    state = {"left": times, "dropped": 0}

    @event.listens_for(engine, "before_cursor_execute")
    def kill(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if state["left"] > 0 and statement.lstrip().upper().startswith("INSERT INTO INSTANCE"):
            state["left"] -= 1
            state["dropped"] += 1
            pid = conn.connection.dbapi_connection.info.backend_pid
            with admin.connect() as admin_conn:
                admin_conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    return state


def files_in(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(count):
        fresh(CT, patient_id="PG-1", patient_name="Dropped^Dora").save_as(folder / f"{k}.dcm",
                                                                           enforce_file_format=True)
    return folder


def test_postgres_dropped_once_is_retried_and_nothing_is_lost(pg_db: tuple[str, Any], tmp_path: Path) -> None:
    url, admin = pg_db
    engine = make_engine(url)
    state = drop_connection_on_insert(engine, admin, times=1)
    files = FileStore(tmp_path / "dicom", cipher=None)
    report = import_path(session_factory(engine), files, files_in(tmp_path, 5))
    assert state["dropped"] == 1
    assert report.instances_added == 5
    with session_factory(engine)() as session:
        keys = sorted(k for k in session.scalars(select(Instance.storage_key)) if k)
    assert keys == files.keys() and len(keys) == 5
    engine.dispose()


def test_postgres_gone_for_good_gets_a_clear_message(pg_db: tuple[str, Any], tmp_path: Path) -> None:
    url, admin = pg_db
    engine = make_engine(url)
    drop_connection_on_insert(engine, admin, times=1000)
    files = FileStore(tmp_path / "dicom", cipher=None)
    with pytest.raises(DatabaseBusy) as caught:
        import_path(session_factory(engine), files, files_in(tmp_path, 3))
    assert texts.render("upload_failed", reason=str(caught.value)) == (
        "Sorry, I couldn't import this file: The image database is busy right now; please try again in a minute.")
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 0
    engine.dispose()


# ------------------------------------------------------------------ the PACS goes away and comes back

class Proxy:
    """A TCP forwarder on a fixed loopback port: the PACS's address, whichever Orthanc serves it.

    ``stop()`` closes the listening socket (connections are refused, as with a stopped server);
    ``cut_after`` bytes makes it hang up mid-answer.
    """

    def __init__(self) -> None:
        self.port = services.free_port()
        self.target: tuple[str, int] | None = None
        self.cut_after: int | None = None
        self._server: socket.socket | None = None

    def start(self, target_url: str) -> None:
        parsed = httpx.URL(target_url)
        self.target = (parsed.host, parsed.port or 80)
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        assert self.target is not None
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        def pump(src: socket.socket, dst: socket.socket, answers: bool) -> None:
            sent = 0
            try:
                while data := src.recv(65536):
                    budget = self.cut_after if answers else None  # read each time: kept-alive connections too
                    if budget is not None and sent + len(data) > budget:
                        dst.sendall(data[: max(0, budget - sent)])
                        break
                    dst.sendall(data)
                    sent += len(data)
            except OSError:
                pass
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

        threading.Thread(target=pump, args=(client, upstream, False), daemon=True).start()
        pump(upstream, client, True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def test_pacs_stopped_mid_query_then_restarted_works_again_without_restarting(tmp_path: Path) -> None:
    require_service(services.find_orthanc(), "Orthanc with DICOMweb (apt-get install orthanc orthanc-dicomweb)")
    orthanc_dir = tmp_path / "orthanc"
    ds = fresh(CT, patient_id="PACS-77", patient_name="Pacs^Pat")
    proxy = Proxy()
    with services.start_orthanc(orthanc_dir) as first_url:
        assert httpx.post(f"{first_url}/instances", content=to_bytes(ds), timeout=30).status_code == 200
        proxy.start(first_url)
        source = DicomWebSource(proxy.url + "/dicom-web", timeout=5.0)
        assert [s.study_uid for s in source.search_studies("PACS-77")] == [ds.StudyInstanceUID]
        proxy.cut_after = 300  # the PACS goes down in the middle of an answer
        with pytest.raises(PacsUnreachable) as cut:
            source.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert friendly_message(cut.value) == ("I can't reach the hospital's image server right now. "
                                               "Please try again later.")
        proxy.cut_after = None
    proxy.stop()  # Orthanc is stopped: nothing answers at the PACS address
    with pytest.raises(PacsUnreachable) as down:
        source.search_studies("PACS-77")
    assert friendly_message(down.value) == friendly_message(cut.value)
    with services.start_orthanc(orthanc_dir) as second_url:  # restarted (same data, same address via the proxy)
        proxy.start(second_url)
        try:
            assert [s.study_uid for s in source.search_studies("PACS-77")] == [ds.StudyInstanceUID]
            data = source.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
            assert ds.SOPInstanceUID.encode() in data
        finally:
            proxy.stop()
            source.close()
