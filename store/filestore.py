"""The on-disk DICOM file store: opaque, content-addressed names, atomic writes.

Keys are the SHA-256 of the stored bytes (64 hex digits), kept at ``<root>/<k[0:2]>/<k[2:4]>/<k>``.
A key says nothing about the patient, and content addressing makes writes idempotent: storing the
same bytes twice (a re-run import, two imports of one CD at once) ends with one file, and an import
killed after writing a file but before recording it finds the file already there when run again.

Every write goes to a temporary file in the destination folder, is fsynced, renamed into place and
the folder fsynced, so a crash or a full disk never leaves a half-written file under a key. All file
access goes through :class:`FileStore` so encryption at rest (issue 10) can be slotted in here.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore:
    """DICOM files under ``root`` by opaque key. Safe for several processes at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

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

        Raises :class:`StoreFullError` when the disk fills up; the temporary file is removed first.
        """
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                return self._put_bytes(bytes(data))
            return self._put_stream(data)
        except OSError as exc:
            if exc.errno in _FULL_ERRNOS:
                raise StoreFullError("The image store's disk is full; free some space and try again.") from exc
            raise FileStoreError(f"Could not write to the image store ({exc.strerror or exc}).") from exc

    def _put_bytes(self, data: bytes) -> StoredObject:
        digest = hashlib.sha256(data).hexdigest()
        stored = StoredObject(digest, digest, len(data))
        final = self.path(digest)
        if final.is_file():
            return stored
        final.parent.mkdir(parents=True, exist_ok=True)
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
        try:
            with open(tmp, "xb") as out:
                while chunk := stream.read(_CHUNK):
                    hasher.update(chunk)
                    size += len(chunk)
                    out.write(self._encode(chunk))
                out.flush()
                os.fsync(out.fileno())
            digest = hasher.hexdigest()
            final = self.path(digest)
            if final.is_file():
                tmp.unlink()
                return StoredObject(digest, digest, size)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            return StoredObject(digest, digest, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _write_atomically(self, final: Path, chunks: list[bytes]) -> None:
        tmp = final.parent / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            with open(tmp, "xb") as out:
                for chunk in chunks:
                    out.write(self._encode(chunk))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _fsync_dir(final.parent)

    def _encode(self, chunk: bytes) -> bytes:
        """Bytes as written to disk; the place for encryption at rest (identity for now)."""
        return chunk

    def _decode(self, chunk: bytes) -> bytes:
        """Bytes as read back from disk; the inverse of :meth:`_encode`."""
        return chunk

    # -- reading and deleting -----------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """The stored file for ``key``, opened for binary reading (the caller closes it).

        Streams straight from disk; with encryption at rest this becomes a decrypting reader.
        """
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
