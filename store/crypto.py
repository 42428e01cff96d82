"""Encryption at rest: AES-256-GCM for stored DICOM files and cached pictures.

Optional: with ``LIGHTBOX_ENCRYPTION_KEY`` set, :class:`store.filestore.FileStore` and
:class:`store.render_cache.RenderCache` seal what they write and open what they read, so the rest of
Lightbox never sees the difference. The key in the environment is any secret string; the AES key is
derived from it with HKDF-SHA256 (a label of its own, so other secrets derived from the same
variable, like the share viewer's, are unrelated).

A sealed file is ``MAGIC`` followed by records of up to :data:`RECORD_PLAIN` plain bytes each:
``nonce (12) | ciphertext | tag (16)``. Each record's associated data is its index and whether it is
the last, so records cannot be reordered, dropped or a file cut short without the tag failing.
The sealed size depends only on the plain size (:meth:`Cipher.sealed_size`), which the file store's
crash check (a complete file has the expected size) relies on.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"LBXENC1\n"
RECORD_PLAIN = 1 << 20
_NONCE = 12
_TAG = 16
_INFO = b"lightbox encryption at rest v1"


class DecryptionError(Exception):
    """A sealed file could not be opened: wrong key, or the file was altered or cut short."""


def derive_key(secret: str) -> bytes:
    """The 32-byte AES key for the secret string ``secret`` (HKDF-SHA256, fixed label)."""
    if not secret:
        raise ValueError("an empty encryption key")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode("utf-8"))


def _aad(index: int, last: bool) -> bytes:
    return MAGIC + struct.pack(">Q?", index, last)


class Cipher:
    """Seals and opens byte strings (and streams of chunks) with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("AES-256 needs a 32-byte key")
        self._aead = AESGCM(key)

    @classmethod
    def from_secret(cls, secret: str) -> Cipher:
        return cls(derive_key(secret))

    @staticmethod
    def sealed_size(plain_size: int) -> int:
        """Bytes on disk for ``plain_size`` plain bytes."""
        records = max(1, -(-plain_size // RECORD_PLAIN))
        return len(MAGIC) + plain_size + records * (_NONCE + _TAG)

    def _record(self, index: int, chunk: bytes, last: bool) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, chunk, _aad(index, last))

    def seal(self, data: bytes) -> bytes:
        """``data`` sealed into one file image."""
        return b"".join(self.seal_chunks([data]))

    def seal_chunks(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Sealed pieces for the plain ``chunks`` (any sizes), in order: write them one after another."""
        yield MAGIC
        pending = b""
        index = 0
        for chunk in chunks:
            pending += chunk
            while len(pending) > RECORD_PLAIN:  # keep one record back: only the end knows which is last
                yield self._record(index, pending[:RECORD_PLAIN], False)
                pending = pending[RECORD_PLAIN:]
                index += 1
        yield self._record(index, pending, True)

    def open(self, sealed: bytes) -> bytes:
        """The plain bytes of a sealed file image; :class:`DecryptionError` when it does not check out."""
        if not sealed.startswith(MAGIC):
            raise DecryptionError("not an encrypted Lightbox file")
        out = []
        pos = len(MAGIC)
        index = 0
        while True:
            end = min(len(sealed), pos + _NONCE + RECORD_PLAIN + _TAG)
            last = end == len(sealed)
            record = sealed[pos:end]
            if len(record) < _NONCE + _TAG:
                raise DecryptionError("an encrypted file was cut short")
            try:
                out.append(self._aead.decrypt(record[:_NONCE], record[_NONCE:], _aad(index, last)))
            except InvalidTag:
                raise DecryptionError("an encrypted file does not match its key (altered, cut short or another key)"
                                      ) from None
            if last:
                return b"".join(out)
            pos = end
            index += 1


def cipher_from_environment(environ: dict[str, str] | None = None) -> Cipher | None:
    """The cipher for ``LIGHTBOX_ENCRYPTION_KEY``, or ``None`` when it is not set (encryption off)."""
    secret = (environ if environ is not None else os.environ).get("LIGHTBOX_ENCRYPTION_KEY", "")
    return Cipher.from_secret(secret) if secret else None
