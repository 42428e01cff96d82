"""``LIGHTBOX_STORE=dicomweb``: the PACS is the image store; each worker keeps a bounded local cache.

:class:`PacsFileStore` is the local :class:`~store.filestore.FileStore` (uploads still land there) plus a
DICOMweb source. An instance recorded from the PACS (``remote_url`` set by :func:`store.dicomweb.sync_patient`)
is fetched with WADO-RS the first time this worker needs its pixels, checked to be that instance (SOP
Instance UID), and kept in a cache folder of at most ``limit_bytes``; the least recently used files go
first. Nothing about the cached copy is written to the database, because the copy is this worker's own:
another worker fetches (or has) its own, and a worker's cache can be wiped at any time.

:func:`local_path` is what renderers call: the local file of any instance, wherever it lives.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from store.dicomweb import DicomWebSource, PacsBadAnswer, UnknownInstance
from store.filestore import FileStore
from store.models import Instance, Series, Study


class FileCache:
    """Files under ``root`` named by key, at most ``limit_bytes`` in all, least recently used out.

    Use is the file's modification time (touched on every hit), so the order survives a restart.
    """

    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = Path(root)
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._size: int | None = None

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.dcm"

    def get(self, key: str) -> Path | None:
        """The cached file for ``key`` (marked as just used), or ``None``."""
        path = self._path(key)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def put(self, key: str, data: bytes) -> Path:
        """Keep ``data`` under ``key`` (atomically), then evict down to the limit."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".part") as handle:
            handle.write(data)
        os.replace(handle.name, path)
        with self._lock:
            self._size = (self._size if self._size is not None else self.size()) + len(data)
            if self._size > self.limit_bytes:
                self._size = self._evict(keep=path)
        return path

    def remove(self, key: str) -> bool:
        """Drop the cached copy of ``key`` (erasure); ``True`` if there was one."""
        path = self._path(key)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return False
        with self._lock:
            if self._size is not None:
                self._size = max(0, self._size - size)
        return True

    def size(self) -> int:
        """Bytes held now (walks the folder)."""
        return sum(p.stat().st_size for p in self.root.rglob("*.dcm")) if self.root.exists() else 0

    def _evict(self, keep: Path) -> int:
        entries = []
        for path in self.root.rglob("*.dcm"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.limit_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
        return total


class PacsFileStore(FileStore):
    """The local file store plus instances fetched on demand from a DICOMweb PACS into a bounded cache."""

    def __init__(self, root: Path, source: DicomWebSource, sessions: sessionmaker[Session], *,
                 cache_root: Path, cache_limit_bytes: int) -> None:
        super().__init__(root)
        self.source = source
        self.sessions = sessions
        self.cache = FileCache(cache_root, cache_limit_bytes)

    def _uids(self, instance: Instance) -> tuple[str, str]:
        with self.sessions() as session:
            row = session.execute(select(Study.study_uid, Series.series_uid).join(Series, Series.study_id == Study.id)
                                  .where(Series.id == instance.series_id)).first()
        if row is None:
            raise UnknownInstance("the instance was removed meanwhile")
        return str(row[0]), str(row[1])

    def fetch(self, instance: Instance) -> Path:
        """The cached file of a PACS instance: from the cache, or retrieved now (WADO-RS) and cached.

        With encryption at rest the cached file is sealed like every stored file: read it through
        :meth:`fetch_bytes` or :meth:`fetch_source`, never as a plain path.
        """
        if not instance.remote_url:
            raise UnknownInstance("the instance has no local file and no PACS copy")
        key = instance.sop_instance_uid
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        study_uid, series_uid = self._uids(instance)
        data = self.source.retrieve_instance(study_uid, series_uid, instance.sop_instance_uid)
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            sop_uid = str(ds.SOPInstanceUID)
        except Exception as exc:
            raise PacsBadAnswer("the PACS sent a DICOM file that cannot be read") from exc
        if sop_uid != instance.sop_instance_uid:
            raise PacsBadAnswer("the PACS sent a different instance than the one asked for")
        return self.cache.put(key, self.cipher.seal(data) if self.cipher is not None else data)

    def fetch_bytes(self, instance: Instance) -> bytes:
        """The plain DICOM bytes of a PACS instance (decrypted when the cache is sealed)."""
        stored = self.fetch(instance).read_bytes()
        return self._decode(stored)

    def fetch_source(self, instance: Instance) -> Path | Dataset:
        """What imaging reads for a PACS instance: the cached path, or with encryption the dataset in memory."""
        if self.cipher is None:
            return self.fetch(instance)
        return pydicom.dcmread(io.BytesIO(self.fetch_bytes(instance)), force=True)


def local_path(files: FileStore, instance: Instance) -> Path | Dataset:
    """The local file of ``instance``: in the file store, else fetched from the PACS when ``files`` is a
    :class:`PacsFileStore`. Raises :class:`~store.dicomweb.UnknownInstance` when there is neither, or a
    :class:`~store.dicomweb.DicomWebError` when the PACS cannot give it."""
    if instance.storage_key and files.exists(instance.storage_key):
        return files.image_source(instance.storage_key)  # a dataset in memory when encrypted at rest
    if isinstance(files, PacsFileStore) and instance.remote_url:
        return files.fetch_source(instance)
    raise UnknownInstance("the instance has no local file here")


def pacs_store(root: Path, sessions: sessionmaker[Session], *, url: str, username: str = "", password: str = "",
               cache_root: Path, cache_limit_bytes: int) -> PacsFileStore:
    """A :class:`PacsFileStore` for the DICOMweb root ``url`` (with HTTP basic credentials if given)."""
    auth = (username, password) if username else None
    return PacsFileStore(root, DicomWebSource(url, auth), sessions, cache_root=cache_root,
                         cache_limit_bytes=cache_limit_bytes)
