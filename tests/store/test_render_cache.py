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
    assert cache.get("a", namespace="other") is None
    assert not any(p.name == "a" for p in (tmp_path / "c").rglob("*"))  # keys are hashed


def test_least_recently_used_goes_first(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path / "c", limit_bytes=1000)
    for name in "abc":
        cache.put(name, b"x" * 300)
        past = time.time() - 100 + ord(name)
        os.utime(cache._path(name), (past, past))
    cache.get("a")  # a is used again: now the newest
    cache.put("d", b"x" * 300)
    assert cache.size() <= 1000
    assert cache.get("a") is not None
    assert cache.get("d") is not None
    assert cache.get("b") is None


def test_a_namespace_is_cleared_alone(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path / "c")
    cache.put("k", b"one", namespace="p1")
    cache.put("k", b"two", namespace="p2")
    cache.clear("p1")
    assert cache.get("k", namespace="p1") is None
    assert cache.get("k", namespace="p2") == b"two"


def test_a_write_error_only_skips_caching(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = RenderCache(blocker, limit_bytes=1000)
    cache.put("a", b"data")
    assert cache.get("a") is None
