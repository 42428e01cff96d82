"""The render cache returns what was put, stays within its limit, and drops the least recently used."""

from __future__ import annotations

import os
import time
from pathlib import Path

from store.render_cache import RenderCache


def test_round_trip_and_miss(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path / "c", limit_bytes=10_000)
    assert cache.get("a") is None
    cache.put("a", b"x" * 100)
    assert cache.get("a") == b"x" * 100
    assert not any("a" == p.name for p in (tmp_path / "c").rglob("*"))  # keys are hashed


def test_least_recently_used_goes_first(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path / "c", limit_bytes=1000)
    for name in "abc":
        cache.put(name, b"x" * 300)
        # mtime resolution: make the order unambiguous
        path = cache._path(name)
        past = time.time() - 100 + ord(name)
        os.utime(path, (past, past))
    cache.get("a")  # a is used again: now the newest
    cache.put("d", b"x" * 300)
    assert cache.size() <= 1000
    assert cache.get("a") is not None
    assert cache.get("d") is not None
    assert cache.get("b") is None


def test_a_write_error_only_skips_caching(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = RenderCache(blocker, limit_bytes=1000)
    cache.put("a", b"data")
    assert cache.get("a") is None
