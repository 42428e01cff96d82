"""Import under bad input and faults: zip-slip, ZIP bombs, broken archives, a full disk, a kill half-way,
two imports of one CD at once. Each runs on SQLite and the real PostgreSQL."""

from __future__ import annotations

import errno
import io
import threading
import zipfile
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from store import filestore as filestore_module
from store import importer as importer_module
from store.db import make_engine, session_factory
from store.filestore import FileStore
from store.importer import (
    ArchiveTooLarge,
    DamagedArchive,
    EmptyUpload,
    ImportLimits,
    ImportProblem,
    ImportReport,
    SourceNotFound,
    StorageFull,
    import_bytes,
    import_path,
)
from store.models import Instance, Patient, PatientIdentifier, Series, Study
from tests.store.test_importer import (
    CD_INSTANCES,
    CD_SERIES,
    CD_STUDIES,
    assert_consistent,
    cd_files,
    copy_cd,
    dicom_bytes,
    store_state,
    zip_bytes,
    zip_folder,
)


@pytest.fixture
def filestore(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store" / "dicom")


@pytest.fixture
def cd(tmp_path: Path) -> Path:
    return copy_cd(tmp_path / "cd")


def _count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*")] if root.exists() else []


# ---------------------------------------------------------------- ZIP safety


def test_zip_slip_entries_are_refused(
    sessions: sessionmaker[Session], filestore: FileStore, tmp_path: Path
) -> None:
    evil = {
        "../evil.dcm": dicom_bytes(PatientID="EVIL1"),
        "/etc/abs.dcm": dicom_bytes(PatientID="EVIL2"),
        "cd/../../climb.dcm": dicom_bytes(PatientID="EVIL3"),
        "C:/windows.dcm": dicom_bytes(PatientID="EVIL4"),
        "..\\backslash.dcm": dicom_bytes(PatientID="EVIL5"),
    }
    good = dicom_bytes(PatientID="GOOD")
    archive = zip_bytes({**evil, "DICOM/IM0001": good})
    work = tmp_path / "work"
    work.mkdir()
    report = import_bytes(sessions, filestore, archive, filename="cd.zip")
    assert report.instances_added == 1
    assert {s.file: s.reason for s in report.skipped} == {
        name: "unsafe name inside the archive (refused)" for name in evil
    }
    with sessions() as s:
        assert [i.value for i in s.scalars(select(PatientIdentifier))] == ["GOOD"]
    # Nothing was written anywhere near the store or the working folder, under any of those names.
    written = {p.name for p in tmp_path.rglob("*")}
    assert not written & {"evil.dcm", "abs.dcm", "climb.dcm", "windows.dcm", "backslash.dcm"}
    assert len(filestore.keys()) == 1


def test_zip_bomb_is_stopped_by_the_ratio_limit(
    sessions: sessionmaker[Session], filestore: FileStore, tmp_path: Path
) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("DICOM/IM0001", dicom_bytes())
        with archive.open("DICOM/IM0002", "w") as member:
            chunk = bytes(1 << 20)
            for _ in range(64):  # 64 MB of zeros, about 64 KB packed
                member.write(chunk)
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(ArchiveTooLarge, match="unpacks to far more than its size"):
        import_path(sessions, filestore, bomb)
    with pytest.raises(ArchiveTooLarge):
        import_bytes(sessions, filestore, bomb.read_bytes())
    assert _count(sessions, Instance) == 0 and filestore.keys() == []
    # A looser ratio lets the same archive through: the DICOM member imported, the zeros skipped.
    report = import_path(sessions, filestore, bomb, limits=ImportLimits(max_ratio=10_000))
    assert report.instances_added == 1
    assert [s.reason for s in report.skipped] == ["not a DICOM file"]


def test_total_unpacked_size_limit(
    sessions: sessionmaker[Session], filestore: FileStore, tmp_path: Path, cd: Path
) -> None:
    archive = zip_folder(cd.parent, tmp_path / "cd.zip")
    with pytest.raises(ArchiveTooLarge, match="MB allowed") as info:
        import_path(sessions, filestore, archive, limits=ImportLimits(max_total_bytes=100_000))
    assert isinstance(info.value, ImportProblem)
    assert _count(sessions, Instance) == 0
    too_many = ImportLimits(max_members=5)
    with pytest.raises(ArchiveTooLarge, match="more than the 5 allowed"):
        import_path(sessions, filestore, archive, limits=too_many)


def test_empty_and_damaged_archives_get_clear_messages(
    sessions: sessionmaker[Session], filestore: FileStore, tmp_path: Path, cd: Path
) -> None:
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    with pytest.raises(EmptyUpload, match="empty"):
        import_path(sessions, filestore, empty)
    with pytest.raises(EmptyUpload):
        import_bytes(sessions, filestore, b"")
    whole = zip_folder(cd.parent, tmp_path / "cd.zip").read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DamagedArchive, match="damaged or cut short"):
        import_path(sessions, filestore, truncated)
    with pytest.raises(DamagedArchive):
        import_bytes(sessions, filestore, b"PK\x03\x04 this is not really an archive")
    # A member whose bytes are corrupt (CRC mismatch) is skipped; the rest import.
    good = bytearray(zip_bytes({"a.dcm": dicom_bytes(), "b.dcm": dicom_bytes()}))
    stored = zipfile.ZipFile(io.BytesIO(bytes(good))).getinfo("a.dcm")
    body = stored.header_offset + 30 + len(stored.filename) + 10
    good[body] ^= 0xFF
    report = import_bytes(sessions, filestore, bytes(good))
    assert report.instances_added == 1
    assert [(s.file, s.reason) for s in report.skipped] == [("a.dcm", "damaged file in the archive")]
    with pytest.raises(SourceNotFound):
        import_path(sessions, filestore, tmp_path / "no-such-thing")
    assert _count(sessions, Patient) == 1


# ---------------------------------------------------------------- disk full


def _disk_fills_after(monkeypatch: pytest.MonkeyPatch, files: int) -> None:
    """Writes of new files fail with ENOSPC (half-way through the data) once ``files`` were written."""
    real_open = open
    written = {"n": 0}

    class FillingFile(io.FileIO):
        def write(self, data: Any) -> int:
            if written["n"] >= files:
                super().write(bytes(data)[: len(data) // 2])  # part of it lands on disk, then no space
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

        def close(self) -> None:
            if not self.closed and written["n"] < files:
                written["n"] += 1
            super().close()

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "x" in mode:
            return FillingFile(file, "xb")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(filestore_module, "open", fake_open, raising=False)


def test_disk_full_mid_import_leaves_nothing_half_written(
    sessions: sessionmaker[Session], filestore: FileStore, cd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer_module, "_BATCH", 5)
    _disk_fills_after(monkeypatch, 12)
    with pytest.raises(StorageFull, match="storage is full") as info:
        import_path(sessions, filestore, cd)
    monkeypatch.undo()
    partial: ImportReport = info.value.report
    assert partial.instances_added == 12
    assert _count(sessions, Instance) == 12
    assert_consistent(sessions, filestore)  # every row points at a complete file
    assert _temporaries(filestore.root) == []
    assert len(filestore.keys()) == 12

    # Space again: the same import completes, nothing twice.
    report = import_path(sessions, filestore, cd)
    assert (report.instances_added, report.instances_present) == (CD_INSTANCES - 12, 12)
    assert _count(sessions, Instance) == CD_INSTANCES
    assert len(filestore.keys()) == CD_INSTANCES
    assert_consistent(sessions, filestore)


def test_disk_full_when_making_a_batch_durable(
    sessions: sessionmaker[Session], filestore: FileStore, cd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer_module, "_BATCH", 10)
    real_syncfs = filestore_module._syncfs
    syncs = {"n": 0}

    def failing_second_sync(root: Path) -> bool:
        syncs["n"] += 1
        if syncs["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_syncfs(root)

    monkeypatch.setattr(filestore_module, "_syncfs", failing_second_sync)
    with pytest.raises(StorageFull):
        import_path(sessions, filestore, cd)
    monkeypatch.undo()
    # The first batch is recorded; the second never got rows, since its files were not known durable.
    assert _count(sessions, Instance) == 10
    assert_consistent(sessions, filestore)
    report = import_path(sessions, filestore, cd)
    assert report.instances_added == CD_INSTANCES - 10
    assert_consistent(sessions, filestore)
    with sessions() as s:
        keys = set(s.scalars(select(Instance.storage_key)))
    assert keys == set(filestore.keys())


def test_a_file_cut_short_before_a_sync_is_rewritten(
    sessions: sessionmaker[Session], filestore: FileStore, cd: Path
) -> None:
    """After a crash before the group sync, a stored file may be short; the next import repairs it."""
    first = cd_files(cd.parent)[0]
    stored = filestore.put(first.read_bytes())
    filestore.path(stored.key).write_bytes(first.read_bytes()[:100])  # what a crash could leave
    report = import_path(sessions, filestore, cd)
    assert report.instances_added == CD_INSTANCES
    assert filestore.read(stored.key) == first.read_bytes()
    assert_consistent(sessions, filestore)


# ---------------------------------------------------------------- killed half-way


def test_resume_after_a_kill_half_way(
    sessions: sessionmaker[Session], filestore: FileStore, tmp_path: Path, cd: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The reference: the same CD imported in one go into a second, fresh store.
    reference_store = FileStore(tmp_path / "reference")
    monkeypatch.setattr(importer_module, "_BATCH", 4)
    real_record = importer_module._record_batch
    batches = {"n": 0}

    def killed_on_third_batch(*args: Any, **kwargs: Any) -> Any:
        batches["n"] += 1
        if batches["n"] == 3:
            raise SystemExit("killed")  # the process dies: files of this batch are on disk, rows are not
        return real_record(*args, **kwargs)

    monkeypatch.setattr(importer_module, "_record_batch", killed_on_third_batch)
    with pytest.raises(SystemExit):
        import_path(sessions, filestore, cd)
    monkeypatch.setattr(importer_module, "_record_batch", real_record)
    assert _count(sessions, Instance) == 8
    assert len(filestore.keys()) == 12  # four files written without rows
    assert_consistent(sessions, filestore)

    report = import_path(sessions, filestore, cd)
    assert (report.instances_added, report.instances_present) == (CD_INSTANCES - 8, 8)
    state = store_state(sessions, filestore)
    assert set(state["files"]) == {i[2] for i in state["instances"]}  # no file without its row
    assert len(state["instances"]) == CD_INSTANCES
    assert_consistent(sessions, filestore)
    # The same as an import that was never interrupted (compared on a second database below).
    assert len(state["studies"]) == CD_STUDIES and len(state["series"]) == CD_SERIES
    with sessions() as s:
        counts = sorted((st.study_uid, st.series_count, st.instance_count) for st in s.scalars(select(Study)))
    assert sum(c[2] for c in counts) == CD_INSTANCES
    ref_engine = make_engine(f"sqlite:///{tmp_path / 'reference.sqlite3'}")
    from store.db import upgrade

    upgrade(f"sqlite:///{tmp_path / 'reference.sqlite3'}")
    reference = session_factory(ref_engine)
    import_path(reference, reference_store, cd)
    assert store_state(reference, reference_store) == state
    ref_engine.dispose()


# ---------------------------------------------------------------- two imports at once


def test_two_imports_of_the_same_cd_at_once(
    db_url: str, tmp_path: Path, cd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer_module, "_BATCH", 3)  # many small transactions, so the two interleave
    filestore = FileStore(tmp_path / "store")
    archive = zip_folder(cd.parent, tmp_path / "cd.zip")
    reports: list[ImportReport] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(source: Path) -> None:
        engine = make_engine(db_url)  # one engine each, as two processes would have
        try:
            barrier.wait()
            reports.append(import_path(session_factory(engine), FileStore(tmp_path / "store"), source))
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run, args=(src,)) for src in (archive, cd.parent)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.instances_added for r in reports) == CD_INSTANCES
    assert sum(r.instances_present for r in reports) == CD_INSTANCES
    assert all(r.conflicts == [] for r in reports)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    try:
        assert _count(sessions, Instance) == CD_INSTANCES
        assert _count(sessions, Study) == CD_STUDIES
        assert _count(sessions, Series) == CD_SERIES
        assert _count(sessions, Patient) == 2
        assert len(filestore.keys()) == CD_INSTANCES
        assert _temporaries(filestore.root) == []
        assert_consistent(sessions, filestore)
        assert {p.name for p in cd_files(cd.parent)}  # the source is untouched
    finally:
        engine.dispose()


def test_two_processes_racing_on_one_patient(db_url: str, tmp_path: Path) -> None:
    """Many tiny imports of one new patient from several threads: exactly one patient row."""
    files = [dicom_bytes(PatientID="RACE", PatientName="Race^Rita") for _ in range(12)]
    errors: list[BaseException] = []

    def run(chunk: list[bytes]) -> None:
        engine = make_engine(db_url)
        try:
            sessions = session_factory(engine)
            for data in chunk:
                import_bytes(sessions, FileStore(tmp_path / "store"), data)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run, args=(files[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = make_engine(db_url)
    try:
        sessions = session_factory(engine)
        assert _count(sessions, Patient) == 1
        assert _count(sessions, Instance) == 12
        with sessions() as s:
            uids = {pydicom.dcmread(io.BytesIO(d)).SOPInstanceUID for d in files}
            assert set(s.scalars(select(Instance.sop_instance_uid))) == uids
    finally:
        engine.dispose()
