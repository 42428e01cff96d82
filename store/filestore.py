"""The on-disk DICOM file store: opaque, content-addressed names, atomic writes.

Keys are the SHA-256 of the stored bytes (64 hex digits), kept at ``<root>/<k[0:2]>/<k[2:4]>/<k>``.
A key says nothing about the patient, and content addressing makes writes idempotent: storing the
same bytes twice (a re-run import, two imports of one CD at once) ends with one file, and an import
killed after writing a file but before recording it finds the file already there when run again.

Every write goes to a temporary file in the destination folder, is fsynced, renamed into place and
the folder fsynced, so a crash or a full disk never leaves a half-written file under a key. Bulk
imports use :meth:`FileStore.deferred_sync` instead (group commit): files are written and renamed
without their own fsyncs and made durable together by one ``syncfs`` before any database row names
them; a file cut short by a crash before that sync is detected by its size and rewritten. All file
access goes through :class:`FileStore`: with a :class:`store.crypto.Cipher` (by default from
``LIGHTBOX_ENCRYPTION_KEY``) files are sealed with AES-GCM on disk; :meth:`FileStore.read`,
:meth:`FileStore.open` and :meth:`FileStore.image_source` give the plain bytes back. Files written
before encryption was switched on stay readable.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import io
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from store.crypto import MAGIC, Cipher, DecryptionError, cipher_from_environment

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_KEY = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_TMP_PREFIX = ".tmp-"


class FileStoreError(Exception):
    """The file store cannot do what was asked; the message is fit to show an operator."""


class StoreFullError(FileStoreError):
    """The disk (or quota) holding the store is full; nothing partial was left behind."""


class UnknownKeyError(FileStoreError, KeyError):
    """No stored file has this key (or the key is not one this store hands out)."""


@dataclass(frozen=True)
class StoredObject:
    """What :meth:`FileStore.put` stored: its opaque key, content hash and size in bytes."""

    key: str
    sha256: str
    size: int


def _store_error(exc: OSError) -> FileStoreError:
    if exc.errno in _FULL_ERRNOS:
        return StoreFullError("The image store's disk is full; free some space and try again.")
    return FileStoreError(f"Could not write to the image store ({exc.strerror or exc}).")


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def _syncfs(root: Path) -> bool:
    """``syncfs(2)`` on the filesystem holding ``root``: True when done, False where unavailable."""
    libc = _libc()
    if libc is None or not hasattr(libc, "syncfs") or not hasattr(os, "O_DIRECTORY"):
        return False
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)
    return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore:
    """DICOM files under ``root`` by opaque key. Safe for several processes at once."""

    def __init__(self, root: Path, cipher: Cipher | str | None = "environment") -> None:
        self.root = Path(root)
        # "environment": encrypt when LIGHTBOX_ENCRYPTION_KEY is set (every process of one deployment
        # sees the same variable, so the bot, the viewer and the CLI agree without wiring).
        self.cipher: Cipher | None = cipher_from_environment() if cipher == "environment" else (
            cipher if isinstance(cipher, Cipher) else None)
        # Deferred syncs are per thread: one thread's group commit never delays another's put.
        self._local = threading.local()
        self._folders: set[Path] = set()

    @property
    def _defer_depth(self) -> int:
        return int(getattr(self._local, "depth", 0))

    @_defer_depth.setter
    def _defer_depth(self, value: int) -> None:
        self._local.depth = value

    @property
    def _pending(self) -> list[Path]:
        pending: list[Path] | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = []
        return pending

    @_pending.setter
    def _pending(self, value: list[Path]) -> None:
        self._local.pending = value

    # -- naming -------------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """Where the file for ``key`` lives (it may not exist). Rejects anything that is not a key."""
        if not isinstance(key, str) or not _KEY.match(key):
            raise UnknownKeyError("not a file store key")
        return self.root / key[:2] / key[2:4] / key

    def exists(self, key: str) -> bool:
        """Whether a complete file is stored under ``key``."""
        try:
            return self.path(key).is_file()
        except UnknownKeyError:
            return False

    # -- writing ------------------------------------------------------------------------------

    def put(self, data: bytes | BinaryIO) -> StoredObject:
        """Store ``data`` (bytes or a readable binary stream) and return its key.

        Durable on return (file and folder fsynced), except inside :meth:`deferred_sync`, where it is
        durable once :meth:`sync` returns. Raises :class:`StoreFullError` when the disk fills up; the
        temporary file is removed first.
        """
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                return self._put_bytes(bytes(data))
            return self._put_stream(data)
        except OSError as exc:
            raise _store_error(exc) from exc

    @contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Group commit: puts inside (in this thread) skip their own fsyncs; :meth:`sync` (also run on
        exit) makes them durable in one go. Callers record a file in the database only after :meth:`sync`
        returned."""
        self._defer_depth += 1
        try:
            yield
        finally:
            self._defer_depth -= 1
            if self._defer_depth == 0:
                self.sync()

    def sync(self) -> None:
        """Make every put since the last sync durable (one ``syncfs`` of the store's filesystem)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            if not _syncfs(self.root):
                for path in pending:  # no syncfs here: the slow, portable way
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                for folder in {p.parent for p in pending}:
                    _fsync_dir(folder)
        except OSError as exc:
            raise _store_error(exc) from exc

    def _make_folder(self, folder: Path) -> None:
        # 65,536 fan-out folders: remember the ones made, to spare a system call per file.
        if folder not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)

    def _disk_size(self, size: int) -> int:
        return self.cipher.sealed_size(size) if self.cipher is not None else size

    def _complete(self, final: Path, size: int) -> bool:
        """Whether ``final`` holds a whole file (a crash before a sync can leave a short one)."""
        try:
            return final.stat().st_size == self._disk_size(size)
        except FileNotFoundError:
            return False

    def _put_bytes(self, data: bytes) -> StoredObject:
        digest = hashlib.sha256(data).hexdigest()
        stored = StoredObject(digest, digest, len(data))
        final = self.path(digest)
        if self._complete(final, len(data)):
            return stored
        self._make_folder(final.parent)
        self._write_atomically(final, [data])
        return stored

    def _put_stream(self, stream: BinaryIO) -> StoredObject:
        # The key is only known at the end: write to a temporary file in a staging folder inside the
        # store (same filesystem, so the final rename stays atomic).
        staging = self.root / "tmp"
        staging.mkdir(parents=True, exist_ok=True)
        tmp = staging / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        hasher = hashlib.sha256()
        size = 0

        def chunks() -> Iterator[bytes]:
            nonlocal size
            while chunk := stream.read(_CHUNK):
                hasher.update(chunk)
                size += len(chunk)
                yield chunk

        try:
            with open(tmp, "xb") as out:
                for piece in self._encode(chunks()):
                    out.write(piece)
                out.flush()
                if not self._defer_depth:
                    os.fsync(out.fileno())
            digest = hasher.hexdigest()
            final = self.path(digest)
            if self._complete(final, size):
                tmp.unlink()
                return StoredObject(digest, digest, size)
            self._make_folder(final.parent)
            os.replace(tmp, final)
            self._made_durable_or_pending(final)
            return StoredObject(digest, digest, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _write_atomically(self, final: Path, chunks: list[bytes]) -> None:
        tmp = final.parent / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            try:
                out = open(tmp, "xb")
            except FileNotFoundError:  # the folder went away since it was made
                self._folders.discard(final.parent)
                self._make_folder(final.parent)
                out = open(tmp, "xb")
            with out:
                for piece in self._encode(iter(chunks)):
                    out.write(piece)
                out.flush()
                if not self._defer_depth:
                    os.fsync(out.fileno())
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._made_durable_or_pending(final)

    def _made_durable_or_pending(self, final: Path) -> None:
        if self._defer_depth:
            self._pending.append(final)
        else:
            _fsync_dir(final.parent)

    def _encode(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Bytes as written to disk: sealed with the cipher when there is one."""
        return self.cipher.seal_chunks(chunks) if self.cipher is not None else chunks

    def _decode(self, stored: bytes) -> bytes:
        """Bytes as read back from disk; the inverse of :meth:`_encode`."""
        if self.cipher is None or not stored.startswith(MAGIC):
            return stored  # encryption off, or a file stored before it was switched on
        try:
            return self.cipher.open(stored)
        except DecryptionError as exc:
            raise FileStoreError("A stored file cannot be decrypted (wrong LIGHTBOX_ENCRYPTION_KEY?).") from exc

    @property
    def encrypted(self) -> bool:
        """Whether files are sealed on disk (then :meth:`path` is only for size, age and deletion)."""
        return self.cipher is not None

    # -- reading and deleting -----------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """The stored file for ``key``, opened for binary reading (the caller closes it).

        Streams straight from disk; with encryption at rest, the plain bytes from memory.
        """
        if self.cipher is not None:
            return io.BytesIO(self.read(key))
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError:
            raise UnknownKeyError("no stored file with this key") from None

    def read(self, key: str) -> bytes:
        """The whole stored file for ``key``."""
        try:
            return self._decode(self.path(key).read_bytes())
        except FileNotFoundError:
            raise UnknownKeyError("no stored file with this key") from None

    def image_source(self, key: str) -> Path | Dataset:
        """What to hand to :mod:`imaging` (or ``pydicom.dcmread``) for ``key``.

        The file's path when it is stored in the clear (imaging reads lazily and caches headers by
        path); with encryption at rest, the decrypted dataset, parsed in memory: plain bytes never
        touch the disk.
        """
        if self.cipher is None:
            path = self.path(key)
            if not path.is_file():
                raise UnknownKeyError("no stored file with this key")
            return path
        import pydicom

        return pydicom.dcmread(io.BytesIO(self.read(key)), force=True)

    def delete(self, key: str) -> None:
        """Remove the file for ``key``; a key with no file is not an error."""
        path = self.path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def keys(self) -> list[str]:
        """Every key with a stored file (for audits and clean-up of files no row points at)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.glob("??/??/*") if _KEY.match(p.name) and p.is_file())

    def remove_stale_temporaries(self, older_than_s: float = 3600.0) -> int:
        """Delete temporary files a killed writer left behind; returns how many were removed.

        Only files older than ``older_than_s`` go, so a write in progress elsewhere is not disturbed.
        """
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for tmp in [*self.root.glob(f"??/??/{_TMP_PREFIX}*"), *self.root.glob(f"tmp/{_TMP_PREFIX}*")]:
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
        return removed
