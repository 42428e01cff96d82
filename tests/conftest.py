"""Session fixtures that start real services on loopback (see tests/services.py).

A service that is not installed skips the tests that need it with a loud reason, unless ``CI`` is
set, where it fails them: CI must prove every service.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# pydicom downloads any external test file whose checksum it does not know, retrying for tens of
# seconds per file; nothing here may reach the network, so every such download fails at once.
import pydicom.data.download as _pydicom_download
import pytest

from tests import services

_pydicom_download._SIMULATE_NETWORK_OUTAGE = True  # type: ignore[attr-defined]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the Chromium tests last: the session's sync Playwright keeps an event loop running in the main
    thread, after which pytest-asyncio cannot start one for an async test."""
    items.sort(key=lambda item: "chromium_browser" in getattr(item, "fixturenames", ()))


def require_service(found: object, what: str) -> None:
    """Skip (or fail under CI) when ``found`` is falsy."""
    if found:
        return
    message = f"SERVICE MISSING: {what} is not installed; these tests did not run"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set, so this is a failure)")
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLAlchemy URL of a fresh database on a real PostgreSQL server for this test session."""
    require_service(services.find_postgres(), "PostgreSQL (apt-get install postgresql)")
    with services.start_postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="session")
def orthanc_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real Orthanc with its DICOMweb plugin at ``/dicom-web``."""
    require_service(services.find_orthanc(), "Orthanc with DICOMweb (apt-get install orthanc orthanc-dicomweb)")
    with services.start_orthanc(tmp_path_factory.mktemp("orthanc")) as url:
        yield url


@pytest.fixture(scope="session")
def dcmj2pnm() -> str:
    """Path of dcmtk's ``dcmj2pnm``, the rendering reference."""
    path = services.find_dcmj2pnm()
    require_service(path, "dcmtk's dcmj2pnm (apt-get install dcmtk)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Any]:
    """A Playwright (sync API) ``Browser`` on Debian's headless Chromium."""
    path = services.find_chromium()
    require_service(path, "Chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=services.CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def new_postgres_database(server_url: str, prefix: str = "t") -> Iterator[str]:
    """A new, migrated database beside ``server_url``'s on the same PostgreSQL server; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from store.db import upgrade

    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def fresh_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database for one test: an SQLite file, or a new database on the session's PostgreSQL
    (dropped afterwards). ``backend`` is "sqlite" or "postgresql"."""
    from store.db import upgrade

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'lightbox.sqlite3'}"
        upgrade(url)
        yield url
        return
    with new_postgres_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty Lightbox data folder for one test."""
    folder = tmp_path / "lightbox-data"
    folder.mkdir()
    return folder
