"""The file store: opaque content-addressed keys, atomic writes, a full disk leaves nothing behind."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
from pathlib import Path

import pydicom.data
import pytest

from store import filestore as filestore_module
from store.filestore import FileStore, StoreFullError, UnknownKeyError


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def dicom_bytes() -> bytes:
    return Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes()


def test_put_read_roundtrip_with_opaque_key(tmp_path: Path, dicom_bytes: bytes) -> None:
    store = FileStore(tmp_path / "dicom")
    stored = store.put(dicom_bytes)
    assert stored.sha256 == hashlib.sha256(dicom_bytes).hexdigest()
    assert stored.key == stored.sha256
    assert stored.size == len(dicom_bytes)
    assert store.exists(stored.key)
    assert store.read(stored.key) == dicom_bytes
    with store.open(stored.key) as handle:
        assert handle.read() == dicom_bytes
    path = store.path(stored.key)
    assert path.is_relative_to(tmp_path / "dicom")
    # The path says nothing about the patient (CT_small's name is CompressedSamples^CT1).
    assert "CompressedSamples" not in str(path) and "CT1" not in str(path)
    assert _all_files(tmp_path / "dicom") == [path]


def test_stream_and_bytes_give_the_same_single_file(tmp_path: Path, dicom_bytes: bytes) -> None:
    store = FileStore(tmp_path / "dicom")
    a = store.put(dicom_bytes)
    b = store.put(io.BytesIO(dicom_bytes))
    c = store.put(dicom_bytes)
    assert a == b == c
    assert len(_all_files(tmp_path / "dicom")) == 1
    fresh = FileStore(tmp_path / "other")
    d = fresh.put(io.BytesIO(dicom_bytes))
    assert d == a and fresh.read(d.key) == dicom_bytes
    assert [p.name for p in _all_files(tmp_path / "other")] == [d.key]


def test_keys_are_validated(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "dicom")
    for bad in ["../../etc/passwd", "ab", "A" * 64, "", "/" + "a" * 63]:
        with pytest.raises(UnknownKeyError):
            store.path(bad)
        assert not store.exists(bad)
    with pytest.raises(UnknownKeyError):
        store.read("0" * 64)
    with pytest.raises(UnknownKeyError):
        store.open("0" * 64)


def test_delete(tmp_path: Path, dicom_bytes: bytes) -> None:
    store = FileStore(tmp_path / "dicom")
    stored = store.put(dicom_bytes)
    assert store.keys() == [stored.key]
    store.delete(stored.key)
    assert not store.exists(stored.key)
    assert store.keys() == []
    store.delete(stored.key)  # deleting again is not an error


@pytest.mark.parametrize("as_stream", [False, True])
@pytest.mark.parametrize("failing", ["fsync", "write"])
def test_disk_full_leaves_no_partial_file(
    tmp_path: Path, dicom_bytes: bytes, monkeypatch: pytest.MonkeyPatch, as_stream: bool, failing: str
) -> None:
    store = FileStore(tmp_path / "dicom")
    kept = store.put(b"an earlier file")

    def no_space(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing == "fsync":
        monkeypatch.setattr(filestore_module.os, "fsync", no_space)
    else:
        real_open = open

        class FullFile(io.FileIO):
            def write(self, _data: object) -> int:  # type: ignore[override]
                raise OSError(errno.ENOSPC, "No space left on device")

        def fake_open(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
            if "x" in mode:
                return FullFile(file, "xb")  # type: ignore[arg-type]
            return real_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr(filestore_module, "open", fake_open, raising=False)
    with pytest.raises(StoreFullError, match="full"):
        store.put(io.BytesIO(dicom_bytes) if as_stream else dicom_bytes)
    monkeypatch.undo()
    key = hashlib.sha256(dicom_bytes).hexdigest()
    assert not store.exists(key)
    assert _all_files(tmp_path / "dicom") == [store.path(kept.key)]
    # With space again the same put succeeds.
    assert store.put(dicom_bytes).key == key


def test_other_os_errors_are_typed(tmp_path: Path, dicom_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path / "dicom")

    def denied(*_args: object) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(filestore_module.os, "replace", denied)
    with pytest.raises(filestore_module.FileStoreError) as info:
        store.put(dicom_bytes)
    assert not isinstance(info.value, StoreFullError)
    monkeypatch.undo()
    assert _all_files(tmp_path / "dicom") == []


def test_concurrent_puts_of_the_same_bytes_end_with_one_file(tmp_path: Path, dicom_bytes: bytes) -> None:
    store = FileStore(tmp_path / "dicom")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                assert store.put(dicom_bytes).size == len(dicom_bytes)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    files = _all_files(tmp_path / "dicom")
    assert [f.name for f in files] == [hashlib.sha256(dicom_bytes).hexdigest()]
    assert files[0].read_bytes() == dicom_bytes


def test_stale_temporaries_are_cleaned(tmp_path: Path, dicom_bytes: bytes) -> None:
    store = FileStore(tmp_path / "dicom")
    stored = store.put(dicom_bytes)
    leftover = store.path(stored.key).parent / ".tmp-deadbeef"
    leftover.write_bytes(b"half")
    os.utime(leftover, (1, 1))
    fresh = store.path(stored.key).parent / ".tmp-fresh"
    fresh.write_bytes(b"in progress")
    assert store.remove_stale_temporaries() == 1
    assert not leftover.exists() and fresh.exists()
    assert store.keys() == [stored.key]


def test_group_commit_defers_fsyncs_until_sync(
    tmp_path: Path, dicom_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path / "dicom")
    fsyncs: list[str] = []
    syncfs_calls: list[Path] = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        filestore_module.os, "fsync", lambda fd: (fsyncs.append(threading.current_thread().name), real_fsync(fd))
    )
    monkeypatch.setattr(filestore_module, "_syncfs", lambda root: syncfs_calls.append(root) or True)
    other_thread_fsyncs: list[str] = []
    with store.deferred_sync():
        keys = [store.put(dicom_bytes + bytes([i])).key for i in range(5)]
        assert fsyncs == [] and syncfs_calls == []
        # Another thread's put is not part of this group commit: it is durable on return.
        worker = threading.Thread(target=lambda: store.put(b"from another thread"), name="other")
        worker.start()
        worker.join()
        other_thread_fsyncs = [name for name in fsyncs if name == "other"]
        store.sync()
        assert syncfs_calls == [tmp_path / "dicom"]
        store.sync()  # nothing new: no second syncfs
        assert len(syncfs_calls) == 1
    assert other_thread_fsyncs == ["other", "other"]  # file and folder
    assert all(store.exists(k) for k in keys)


def test_a_short_file_under_a_key_is_rewritten(tmp_path: Path, dicom_bytes: bytes) -> None:
    store = FileStore(tmp_path / "dicom")
    stored = store.put(dicom_bytes)
    store.path(stored.key).write_bytes(dicom_bytes[:10])  # what a crash before a sync may leave
    assert store.put(dicom_bytes) == stored
    assert store.read(stored.key) == dicom_bytes
