"""Databases for the scale tests: a private PostgreSQL database per module, and SQLite/PostgreSQL sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from store.db import make_engine, session_factory
from tests.conftest import fresh_database, new_postgres_database


@pytest.fixture(scope="module")
def scale_db(postgres_url: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test module."""
    with new_postgres_database(postgres_url, "lightbox_scale") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Sessions on a fresh migrated database: SQLite, then the real PostgreSQL."""
    with fresh_database(request.param, request, tmp_path) as url:
        engine = make_engine(url)
        yield session_factory(engine)
        engine.dispose()
