"""Share fixtures: a migrated SQLite database holding real DICOM (pydicom's CT and MR test files made into
series) imported through the real importer, a controllable clock, and the viewer app on that data."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from share.links import CreatedShare, create_share
from share.ratelimit import FailureLimiter
from share.web import create_app
from store.db import make_engine, session_factory, transaction
from store.filestore import FileStore
from store.importer import import_path
from store.models import Patient, PatientIdentifier, Series, Study
from tests.conftest import fresh_database
from tests.services import serve_in_thread


class Clock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def write_series(folder: Path, source: str, *, patient_id: str, name: str, study_uid: str, study_date: str,
                 body_part: str, description: str, series_number: int, count: int) -> str:
    """``count`` slices made from one real test file: own UIDs, positions 5 mm apart, shifted pixels."""
    series_uid = generate_uid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = pydicom.dcmread(get_testdata_file(source))
    pixels = original.pixel_array
    for k in range(count):
        ds = original.copy()
        ds.PatientID = patient_id
        ds.PatientName = name
        ds.PatientBirthDate = "19700101"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = study_date
        ds.StudyDescription = description
        ds.BodyPartExamined = body_part
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = f"{description} series {series_number}"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * k]
        # Each slice looks different: a bright bar moving down the picture.
        arr = pixels.copy()
        row = (k * arr.shape[0]) // max(1, count)
        arr[row:row + max(2, arr.shape[0] // 16), :] = arr.max()
        ds.PixelData = arr.astype(pixels.dtype).tobytes()
        ds.save_as(folder / f"{series_uid}-{k:03d}.dcm", enforce_file_format=True)
    return series_uid


@dataclass
class ShareWorld:
    """The test data: one patient's studies (main, a prior, an unrelated one) and another patient's."""

    sessions: sessionmaker[Session]
    files: FileStore
    clock: Clock
    patient_id: int = 0
    main_study: str = ""
    main_series: list[str] = field(default_factory=list)
    prior_study: str = ""
    other_part_study: str = ""
    stranger_study: str = ""
    app: Any = None

    def share(self, **kwargs: object) -> CreatedShare:
        """Create a link to the main study (options as :func:`share.links.create_share`)."""
        with transaction(self.sessions) as session:
            patient = session.get(Patient, self.patient_id)
            study = session.scalars(select(Study).where(Study.study_uid == self.main_study)).one()
            series_uids = kwargs.pop("series_uids", None)
            series = []
            if series_uids:
                series = list(session.scalars(select(Series).where(Series.series_uid.in_(series_uids))))
            assert patient is not None
            return create_share(session, patient=patient, study=study, series=series,
                                now=self.clock(), **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def dicom_folder(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """DICOM files on disk: patient P1 (head CT 12 slices + MR 3 slices, a head CT prior, a chest CT) and P2."""
    root = tmp_path_factory.mktemp("share-dicom")
    main, prior, chest, stranger = (generate_uid() for _ in range(4))
    info: dict[str, object] = {"root": root, "main": main, "prior": prior, "chest": chest, "stranger": stranger}
    common = {"patient_id": "P1", "name": "Doe^Jane"}
    info["main_series"] = [
        write_series(root, "CT_small.dcm", study_uid=main, study_date="20260220", body_part="HEAD",
                     description="CT head", series_number=1, count=12, **common),
        write_series(root, "MR_small.dcm", study_uid=main, study_date="20260220", body_part="HEAD",
                     description="CT head", series_number=2, count=3, **common),
    ]
    write_series(root, "CT_small.dcm", study_uid=prior, study_date="20240110", body_part="HEAD",
                 description="CT head", series_number=1, count=2, **common)
    write_series(root, "CT_small.dcm", study_uid=chest, study_date="20230505", body_part="CHEST",
                 description="CT chest", series_number=1, count=2, **common)
    write_series(root, "CT_small.dcm", study_uid=stranger, study_date="20250101", body_part="HEAD",
                 description="CT head", series_number=1, count=2, patient_id="P2", name="Roe^Richard")
    return info


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the world lives in: 'sqlite' unless a test parametrizes it (indirect=True)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def db_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh migrated database: an SQLite file, or a new database on the session's PostgreSQL."""
    with fresh_database(backend, request, tmp_path) as url:
        yield url


@pytest.fixture
def world(tmp_path: Path, db_url: str, dicom_folder: dict[str, object]) -> Iterator[ShareWorld]:
    """A migrated database (SQLite, or PostgreSQL when parametrized) and file store with
    :func:`dicom_folder` imported."""
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    files = FileStore(tmp_path / "dicom")
    report = import_path(sessions, files, Path(str(dicom_folder["root"])))
    assert report.instances_added == 12 + 3 + 2 + 2 + 2, report.to_dict()
    clock = Clock()
    w = ShareWorld(sessions=sessions, files=files, clock=clock)
    with transaction(sessions) as session:
        ident = session.scalars(select(PatientIdentifier).where(PatientIdentifier.value == "P1")).one()
        patient = session.get(Patient, ident.patient_id)
        assert patient is not None
        patient.display_label = "J. (knee pain)"
        w.patient_id = patient.id
    w.main_study = str(dicom_folder["main"])
    w.main_series = list(dicom_folder["main_series"])  # type: ignore[call-overload]
    w.prior_study = str(dicom_folder["prior"])
    w.other_part_study = str(dicom_folder["chest"])
    w.stranger_study = str(dicom_folder["stranger"])
    yield w
    engine.dispose()


@dataclass
class Notified:
    """What the app told the patient."""

    first_open: list[str] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)


@pytest.fixture
def notified() -> Notified:
    return Notified()


@pytest.fixture
def app(world: ShareWorld, notified: Notified):  # type: ignore[no-untyped-def]
    """The viewer app on the test world, with notifiers recording what they were told."""

    async def first(public_id: str) -> None:
        notified.first_open.append(public_id)

    world.app = create_app(
        world.sessions, world.files, public_url="http://testserver", secret_key=b"k" * 32,
        clock=world.clock, on_first_open=first, on_locked=notified.locked.append,
        limiter=FailureLimiter(max_failures=10, window=60), failure_floor=0.02,
    )
    return world.app


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """Real HTTP requests into the app (httpx over ASGI) from 10.0.0.1."""
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def served(app: Any) -> Iterator[str]:
    """The app on a free loopback port, in a thread, for one test."""
    with serve_in_thread(app) as url:
        yield url


def pixels_of(data: bytes) -> np.ndarray:
    """Decode an image response to an array."""
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))
