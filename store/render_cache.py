"""A bounded on-disk cache of rendered pictures, least recently used out.

Keys are opaque strings (the caller hashes what made the picture: instance, frame, view); values are
the encoded bytes. Each entry lives under a namespace (the patient's opaque public id), so erasing a
patient removes their cached pictures at once. Files are written atomically, so a crash never leaves a
half picture that a later read would serve. The cache holds nothing that is not in the store.
With encryption at rest (a :class:`store.crypto.Cipher`, by default from ``LIGHTBOX_ENCRYPTION_KEY``)
pictures are sealed on disk like the stored DICOM files; one that does not open counts as a miss.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from store.crypto import Cipher, DecryptionError, cipher_from_environment

_NAMESPACE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class RenderCache:
    """Encoded pictures under ``root``, at most ``limit_bytes`` in total."""

    def __init__(self, root: Path, limit_bytes: int = 512 * 1024 * 1024,
                 cipher: Cipher | str | None = "environment") -> None:
        self.root = Path(root)
        self.cipher: Cipher | None = cipher_from_environment() if cipher == "environment" else (
            cipher if isinstance(cipher, Cipher) else None)
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._approx_size: int | None = None

    def _folder(self, namespace: str) -> Path:
        if not _NAMESPACE.match(namespace):
            raise ValueError("a cache namespace is a short opaque id")
        return self.root / namespace

    def _path(self, key: str, namespace: str = "shared") -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self._folder(namespace) / digest[:2] / digest

    def _files(self) -> list[Path]:
        return [p for p in self.root.glob("*/*/*") if p.is_file() and not p.name.startswith(".tmp-")]

    def get(self, key: str, namespace: str = "shared") -> bytes | None:
        """The cached bytes for ``key``, or ``None``; a hit counts as a use."""
        path = self._path(key, namespace)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if self.cipher is not None:
            try:
                data = self.cipher.open(data)
            except DecryptionError:
                return None
        try:
            os.utime(path)
        except OSError:
            pass
        return data

    def put(self, key: str, data: bytes, namespace: str = "shared") -> None:
        """Store ``data`` under ``key``; a full disk or any write error just skips caching."""
        path = self._path(key, namespace)
        with self._lock:
            if self._approx_size is None:
                self._approx_size = self.size()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(self.cipher.seal(data) if self.cipher is not None else data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            return
        with self._lock:
            self._approx_size = (self._approx_size or 0) + len(data)
            if self._approx_size > self.limit_bytes:
                self._approx_size = self.evict()

    def size(self) -> int:
        """Bytes held now."""
        total = 0
        for path in self._files():
            try:
                total += path.stat().st_size
            except OSError:
                continue
        return total

    def evict(self) -> int:
        """Remove least recently used pictures until the cache is at 80% of its limit; returns the new size."""
        entries = []
        for path in self._files():
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        target = int(self.limit_bytes * 0.8)
        for _, size, path in sorted(entries):
            if total <= target:
                break
            path.unlink(missing_ok=True)
            total -= size
        return total

    def clear(self, namespace: str | None = None) -> None:
        """Delete every cached picture, or only those of ``namespace``."""
        if namespace is None:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            shutil.rmtree(self._folder(namespace), ignore_errors=True)
        with self._lock:
            self._approx_size = None
