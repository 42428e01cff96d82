"""The schema: migrations build exactly the models, on SQLite and PostgreSQL, and constraints hold."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from store.db import current_revision, make_engine
from store.models import Base, LinkCode, Patient, PatientIdentifier, Series, Study, StudyModality


def test_migrations_match_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
    assert current_revision(db_url) is not None


def test_sqlite_uses_wal_and_foreign_keys(tmp_path: object) -> None:
    from pathlib import Path

    from store.db import upgrade

    url = f"sqlite:///{Path(str(tmp_path)) / 'x.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_utc_datetimes_round_trip_and_cascade(sessions: sessionmaker[Session]) -> None:
    expires = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)
    with sessions() as s, s.begin():
        patient = Patient(name="Doe^Jane", identifiers=[PatientIdentifier(issuer="", value="P1")])
        s.add(patient)
        s.flush()
        study = Study(patient_id=patient.id, study_uid="1.2.3", study_date=date(2025, 3, 4), modalities="MR")
        study.series.append(Series(series_uid="1.2.3.1", modality="MR"))
        study.modality_rows.append(StudyModality(modality="MR", patient_id=patient.id, study_date=study.study_date))
        s.add(study)
        s.add(LinkCode(code_hash="a" * 64, patient_id=patient.id, expires_at=expires))
    with sessions() as s:
        code = s.scalars(select(LinkCode)).one()
        assert code.expires_at == expires
        assert code.expires_at.tzinfo is not None
        assert code.created_at > datetime.now(UTC) - timedelta(minutes=5)
    with sessions() as s, s.begin():
        s.delete(s.scalars(select(Patient)).one())
    with sessions() as s:
        assert s.scalars(select(Study)).all() == []
        assert s.scalars(select(Series)).all() == []
        assert s.scalars(select(LinkCode)).all() == []


def test_a_study_uid_belongs_to_one_patient(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        a, b = Patient(), Patient()
        s.add_all([a, b])
        s.flush()
        s.add(Study(patient_id=a.id, study_uid="9.9"))
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(Study(patient_id=b.id, study_uid="9.9"))
