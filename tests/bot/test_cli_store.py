"""``lightbox studies``, ``lightbox link-code`` and ``lightbox db upgrade`` as an operator runs them."""

from __future__ import annotations

import json
import secrets
import socket
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bot.cli import main
from bot.settings import Settings
from store.db import current_revision, make_engine, upgrade
from store.linking import patient_for_chat, redeem_link_code
from store.models import AccessEvent, LinkCode, Patient, PatientIdentifier, Series, Study, StudyModality


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(data))
    for name in ("LIGHTBOX_DATABASE_URL", "LIGHTBOX_BOT_USERNAME", "LIGHTBOX_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    return data


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _study(
    s: Session, patient: Patient, uid: str, when: date | None, modalities: str, body_part: str, desc: str
) -> None:
    codes = modalities.split("\\")
    study = Study(
        patient_id=patient.id,
        study_uid=uid,
        study_date=when,
        modalities=modalities,
        body_part=body_part,
        description=desc,
        series_count=len(codes),
        instance_count=10 * len(codes),
    )
    for i, code in enumerate(codes):
        study.series.append(Series(series_uid=f"{uid}.{i}", modality=code, body_part=body_part))
        study.modality_rows.append(StudyModality(modality=code, patient_id=patient.id, study_date=when))
    s.add(study)


@pytest.fixture
def seeded(env: Path) -> str:
    url = Settings.from_env().effective_database_url
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as s, s.begin():
        ann = Patient(identifiers=[PatientIdentifier(issuer="", value="P-100")])
        bob = Patient(identifiers=[PatientIdentifier(issuer="", value="P-200")])
        s.add_all([ann, bob])
        s.flush()
        _study(s, ann, "1.2.3.1", date(2023, 6, 1), "MR", "knee", "MRI KNEE LEFT")
        _study(s, ann, "1.2.3.2", date(2024, 1, 15), "CR", "chest", "CHEST PA")
        _study(s, ann, "1.2.3.3", date(2021, 9, 9), "DX", "knee", "KNEE 2 VIEWS")
        _study(s, ann, "1.2.3.4", None, "US", "abdomen", "")
        _study(s, ann, "1.2.3.5", date(2023, 2, 2), "CT\\PT", "chest", "PET-CT")
        _study(s, bob, "1.2.3.9", date(2025, 5, 5), "MR", "knee", "BOB MRI")
    engine.dispose()
    return url


def test_studies_json_lists_newest_first_with_the_promised_fields(
    seeded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "studies", "--patient-id", "P-100", "--json")
    assert status == 0, err
    studies = json.loads(out)
    assert [s["study_uid"] for s in studies] == ["1.2.3.2", "1.2.3.1", "1.2.3.5", "1.2.3.3", "1.2.3.4"]
    first = studies[0]
    for key in ("study_uid", "date", "modalities", "body_part", "description", "series_count", "instance_count"):
        assert key in first
    assert first["date"] == "2024-01-15"
    assert first["modalities"] == ["CR"]
    assert (first["body_part"], first["description"], first["series_count"], first["instance_count"]) == (
        "chest",
        "CHEST PA",
        1,
        10,
    )
    assert studies[2]["modalities"] == ["CT", "PT"]
    assert studies[-1]["date"] is None
    assert "1.2.3.9" not in out  # Bob's study


def test_studies_filters(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    def uids(*extra: str) -> list[str]:
        status, out, err = run(capsys, "studies", "--patient-id", "P-100", "--json", *extra)
        assert status == 0, err
        return [s["study_uid"] for s in json.loads(out)]

    assert uids("--modality", "XR") == ["1.2.3.2", "1.2.3.3"]
    assert uids("--modality", "MR") == ["1.2.3.1"]
    assert uids("--modality", "PT") == ["1.2.3.5"]
    assert uids("--body-part", "knee") == ["1.2.3.1", "1.2.3.3"]
    assert uids("--modality", "XR", "--body-part", "knee") == ["1.2.3.3"]
    assert uids("--latest") == ["1.2.3.2"]
    assert uids("--latest", "--modality", "XR", "--body-part", "knee") == ["1.2.3.3"]
    assert uids("--date", "2023") == ["1.2.3.1", "1.2.3.5"]
    assert uids("--modality", "MG") == []


def test_studies_text_output_and_friendly_failures(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "studies", "--patient-id", "P-100")
    assert status == 0
    lines = out.strip().splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("2024-01-15") and "CHEST PA" in lines[0] and "1.2.3.2" in lines[0]
    status, out, err = run(capsys, "studies", "--patient-id", "NOBODY")
    assert (status, out) == (1, "")
    assert err.strip() == "lightbox: no patient with that Patient ID in this Lightbox"
    status, out, err = run(capsys, "studies", "--patient-id", "P-100", "--date", "yesterday")
    assert status == 1 and "Traceback" not in err and err.count("\n") == 1
    status, out, err = run(capsys, "studies", "--patient-id", "P-100", "--modality", "M R!")
    assert status == 1 and "not a modality" in err
    status, out, err = run(capsys, "studies", "--patient-id", "P-100", "--modality", "MG", "--latest")
    assert (status, out.strip()) == (0, "no studies match")


def test_link_code_prints_a_code_that_links_once(
    seeded: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = run(capsys, "link-code", "--patient-id", "P-100")
    assert status == 0, err
    (plain_code,) = out.split()
    monkeypatch.setenv("LIGHTBOX_BOT_USERNAME", "@LightboxTestBot")
    status, out, err = run(capsys, "link-code", "--patient-id", "P-100")
    assert status == 0, err
    code, link = out.split()
    assert link == f"https://t.me/LightboxTestBot?start={code}"
    assert code != plain_code and 22 <= len(code) <= 64
    engine = make_engine(seeded)
    with Session(engine) as s, s.begin():
        assert len(s.scalars(select(LinkCode)).all()) == 2
        redeem_link_code(s, code, telegram_user_id=42, chat_id=42)
    with Session(engine) as s:
        patient = patient_for_chat(s, 42)
        assert patient is not None
        assert [i.value for i in patient.identifiers] == ["P-100"]
        events = s.scalars(select(AccessEvent).where(AccessEvent.patient_id == patient.id)).all()
        assert [(e.actor_kind, e.action) for e in events] == [("operator", "link"), ("operator", "link")]
        assert all(code not in e.detail for e in events)
    engine.dispose()
    status, out, err = run(capsys, "link-code", "--patient-id", "NOBODY")
    assert (status, out) == (1, "")
    assert "no patient" in err


def test_db_upgrade_on_a_fresh_sqlite_file(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "db", "upgrade")
    assert status == 0, err
    assert out.startswith("database is up to date (revision ")
    url = Settings.from_env().effective_database_url
    assert (env / "lightbox.sqlite3").is_file()
    assert current_revision(url) is not None
    assert current_revision(url) in out
    # Twice is fine.
    assert run(capsys, "db", "upgrade")[0] == 0
    status, _, err = run(capsys, "db")
    assert status == 2 and "db upgrade" in err


def test_db_upgrade_on_postgresql(
    env: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "cli_" + secrets.token_hex(5)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        monkeypatch.setenv("LIGHTBOX_DATABASE_URL", url)
        status, out, err = run(capsys, "db", "upgrade")
        assert status == 0, err
        revision = current_revision(url)
        assert revision is not None and revision in out
        status, _, err = run(capsys, "studies", "--patient-id", "P-1")
        assert status == 1 and "no patient" in err
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_an_unreachable_database_is_one_line(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("LIGHTBOX_DATABASE_URL", f"postgresql+psycopg://lb:s3cret@127.0.0.1:{port}/nothing")
    for argv in (("db", "upgrade"), ("studies", "--patient-id", "P"), ("link-code", "--patient-id", "P")):
        status, out, err = run(capsys, *argv)
        assert (status, out) == (1, "")
        assert err.startswith("lightbox: cannot open the database") and err.count("\n") == 1
        assert "s3cret" not in err and "Traceback" not in err


def test_import_then_studies_end_to_end(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ct = get_testdata_file("CT_small.dcm")
    mr = get_testdata_file("MR_small.dcm")
    assert ct is not None and mr is not None
    folder = env.parent / "cd"
    folder.mkdir()
    for path in (ct, mr):
        (folder / Path(path).name).write_bytes(Path(path).read_bytes())
    status, _, err = run(capsys, "import", str(folder))
    assert status == 0, err
    ds = pydicom.dcmread(ct)
    status, out, err = run(capsys, "studies", "--patient-id", str(ds.PatientID), "--json")
    assert status == 0, err
    (study,) = json.loads(out)
    assert study["study_uid"] == ds.StudyInstanceUID
    assert study["modalities"] == ["CT"]
    assert study["date"] == f"{ds.StudyDate[:4]}-{ds.StudyDate[4:6]}-{ds.StudyDate[6:]}"
    assert (study["series_count"], study["instance_count"]) == (1, 1)
