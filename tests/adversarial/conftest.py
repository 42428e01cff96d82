"""Adversarial fixtures: a store on SQLite, real DICOM built from pydicom's test files, and the running bot
and share viewer from the handlers and share suites (re-exported here so these tests use the same setup)."""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from store.db import make_engine, session_factory, upgrade
from store.filestore import FileStore
from store.models import Instance, Patient
from tests.handlers.conftest import Lightbox, lightbox, study  # noqa: F401  (fixtures used by these tests)
from tests.share.conftest import app, backend, client, db_url, dicom_folder, notified, world  # noqa: F401


@dataclass
class StoreEnv:
    """A migrated SQLite database and an (unencrypted) file store, both empty at the start."""

    sessions: sessionmaker[Session]
    files: FileStore
    root: Path

    def instance_count(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Instance)) or 0)

    def patient_count(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Patient)) or 0)

    def stored_files(self) -> list[str]:
        return self.files.keys()

    def assert_nothing_stored(self) -> None:
        assert self.instance_count() == 0
        assert self.patient_count() == 0
        assert self.stored_files() == []


@pytest.fixture
def store_env(tmp_path: Path) -> Iterator[StoreEnv]:
    url = f"sqlite:///{tmp_path / 'adversarial.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    yield StoreEnv(session_factory(engine), FileStore(tmp_path / "dicom", cipher=None), tmp_path)
    engine.dispose()


def sample_path(name: str) -> str:
    """Path of a pydicom test file."""
    path = get_testdata_file(name)
    assert isinstance(path, str), name
    return path


def real(name: str) -> Dataset:
    """A pydicom test file, read (warnings off: some are deliberately odd)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(sample_path(name))


def fresh(name: str, *, patient_id: str = "ADV-1", patient_name: str = "Adverse^Ada") -> Dataset:
    """A pydicom test file with new UIDs and the given patient, so imports never collide across tests."""
    ds = real(name)
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def to_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def zip_of(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return out.getvalue()
