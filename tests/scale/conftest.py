"""A private PostgreSQL database for the scale tests (on the harness's server), migrated to the newest schema."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from store.db import upgrade


def fresh_database(server_url: str, prefix: str = "lightbox_scale") -> Iterator[str]:
    """Create a new database next to ``server_url``'s, migrate it, yield its URL, drop it afterwards."""
    url = make_url(server_url)
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    fresh = url.set(database=name).render_as_string(hide_password=False)
    upgrade(fresh)
    try:
        yield fresh
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def scale_db(postgres_url: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test module."""
    yield from fresh_database(postgres_url)
