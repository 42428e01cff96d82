"""The demo patient: real full-size images, one made-up patient, several dates, seeded once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import func, select

from bot.app import build_services
from bot.demo import DEMO_USER_ID, demo_settings, new_link_code, seed_demo
from bot.demo_data import DEMO_PATIENT_ID, DEMO_STUDIES, build_demo_files, slice_normal
from bot.settings import Settings
from handlers.services import Services
from store.linking import redeem_link_code
from store.models import Instance, Patient, PatientIdentifier, Series, Study
from store.queries import find_studies, latest_study, previous_study

TODAY = date(2026, 11, 28)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, int]]:
    settings = demo_settings(Settings(), tmp_path_factory.mktemp("demo") / "data")
    services = build_services(settings)
    seed = seed_demo(services.sessions, services.files, services.work_dir, today=TODAY)
    assert seed.created
    yield services, seed.patient_id
    bind = services.sessions.kw.get("bind")
    if bind is not None:
        bind.dispose()


def test_demo_settings_never_use_the_operators_database(tmp_path: Path) -> None:
    real = Settings(database_url="postgresql+psycopg://u:p@db/lightbox", bot_token="1:x", data_dir=Path("real"))
    demo = demo_settings(real, tmp_path)
    assert demo.database_url == "" and demo.bot_token == ""
    assert demo.effective_database_url.startswith("sqlite:///") and str(tmp_path) in demo.effective_database_url


def test_one_patient_with_studies_on_several_dates(seeded: tuple[Services, int]) -> None:
    services, patient_id = seeded
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Patient)) == 1
        ids = list(session.scalars(select(PatientIdentifier.value).where(PatientIdentifier.patient_id == patient_id)))
        assert ids == [DEMO_PATIENT_ID]
        studies = find_studies(session, patient_id)
        assert len(studies) == len(DEMO_STUDIES) == 7
        dates = [s.study_date for s in studies if s.study_date is not None]
        assert len(dates) == 7 and dates == sorted(dates, reverse=True)
        assert dates[0] == TODAY - timedelta(days=14)
        assert dates[-1] == TODAY - timedelta(days=1095)
        assert len({d.year for d in dates}) >= 3
        modalities = {s.modalities for s in studies}
        assert {"MR", "CT", "CR", "US"} <= modalities
        parts = {s.body_part for s in studies}
        assert {"shoulder", "chest", "heart", "leg"} <= parts
        assert parts & {"abdomen", "liver"}  # "MRI abdomen (liver)" may be refined to the organ
        assert "brain" in parts or "head" in parts


def test_body_part_and_modality_queries_find_the_right_studies(seeded: tuple[Services, int]) -> None:
    services, patient_id = seeded
    with services.sessions() as session:
        last_mri = latest_study(session, patient_id, modality="MR")
        assert last_mri is not None and last_mri.body_part == "shoulder"
        assert last_mri.study_date == TODAY - timedelta(days=14)
        earlier = previous_study(session, patient_id, last_mri, modality="MR", body_part="shoulder")
        assert earlier is not None and earlier.study_date == TODAY - timedelta(days=425)
        chest = latest_study(session, patient_id, modality="CR", body_part="chest")
        assert chest is not None and chest.study_date == TODAY - timedelta(days=1095)
        assert "CR" in {s.modalities for s in find_studies(session, patient_id, body_part="chest")}
        brain = latest_study(session, patient_id, body_part="brain")
        assert brain is not None and brain.modalities == "CT"
        abdomen = latest_study(session, patient_id, body_part="abdomen")
        assert abdomen is not None and abdomen.modalities == "MR"


def test_real_full_size_pixels(seeded: tuple[Services, int]) -> None:
    services, patient_id = seeded
    with services.sessions() as session:
        rows = session.execute(
            select(Study.modalities, Study.body_part, Instance.rows, Instance.columns, Instance.number_of_frames,
                   Series.instance_count)
            .join(Series, Series.study_id == Study.id).join(Instance, Instance.series_id == Series.id)
            .where(Study.patient_id == patient_id)
        ).all()
    sizes = {(m, part): (r, c, frames, count) for m, part, r, c, frames, count in rows}
    assert sizes[("MR", "shoulder")][:2] == (1024, 1024)
    assert sizes[("CR", "chest")][:2] == (1955, 1841)
    ct = sizes.get(("CT", "brain")) or sizes[("CT", "head")]
    assert ct[:2] == (512, 512)
    assert sizes[("US", "heart")][2] == 120  # a real clip
    # never the 16 x 16 thumbnails of dicomdirtests
    assert all(r is not None and c is not None and r >= 480 and c >= 480 for r, c, _, _ in sizes.values())
    assert sizes[("MR", "shoulder")][3] in {20, 12}


def test_stored_files_are_relabelled_and_decode(seeded: tuple[Services, int]) -> None:
    services, patient_id = seeded
    source = pydicom.dcmread(get_testdata_file("MR2_J2KR.dcm"))  # type: ignore[arg-type]
    with services.sessions() as session:
        study = latest_study(session, patient_id, modality="MR")
        assert study is not None
        instance = session.scalars(
            select(Instance).join(Series).where(Series.study_id == study.id).order_by(Instance.instance_number)
        ).first()
        assert instance is not None and instance.storage_key is not None
        path = services.files.path(instance.storage_key)
    ds = pydicom.dcmread(path)
    assert str(ds.PatientName) == "Demo^Patient" and ds.PatientID == DEMO_PATIENT_ID
    assert ds.StudyDate == (TODAY - timedelta(days=14)).strftime("%Y%m%d")
    assert ds.StudyInstanceUID != source.StudyInstanceUID and ds.SOPInstanceUID != source.SOPInstanceUID
    assert ds.InstitutionName == "Lightbox Demo Clinic"
    assert "OperatorsName" not in ds and not any(t.is_private for t in ds.keys())
    # The pixels are the real slice's, untouched.
    assert np.array_equal(ds.pixel_array, source.pixel_array)


def test_synthesised_series_step_along_the_slice_normal(tmp_path: Path) -> None:
    files = build_demo_files(tmp_path, today=TODAY, studies=DEMO_STUDIES[:1])
    assert len(files) == 20
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    normal = slice_normal(datasets[0])
    assert normal is not None
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    steps = np.diff(positions @ normal)
    assert np.allclose(steps, 4.0, atol=1e-3)  # positions are written with 4 decimals
    assert [ds.InstanceNumber for ds in datasets] == list(range(1, 21))
    assert len({ds.SOPInstanceUID for ds in datasets}) == 20
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1


def test_seeding_again_changes_nothing(seeded: tuple[Services, int]) -> None:
    services, patient_id = seeded
    with services.sessions() as session:
        before = session.scalar(select(func.count()).select_from(Instance))
    again = seed_demo(services.sessions, services.files, services.work_dir, today=TODAY + timedelta(days=3))
    assert not again.created and again.patient_id == patient_id and again.studies == 7
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == before
        assert session.scalar(select(func.count()).select_from(Study)) == 7
    assert not any(services.work_dir.glob("demo-*"))  # the build folder is gone


def test_link_code_links_the_demo_chat(seeded: tuple[Services, int]) -> None:
    services, patient_id = seeded
    code = new_link_code(services.sessions, patient_id)
    with services.sessions() as session, session.begin():
        link = redeem_link_code(session, code, DEMO_USER_ID, DEMO_USER_ID)
        assert link.patient_id == patient_id
