"""``lightbox import``: a fresh data folder, JSON and human output without names, friendly failures."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.cli import main
from store.db import make_engine, session_factory
from store.models import Instance
from tests.store.test_importer import CD_INSTANCES, CD_STUDIES, CT_HEAD_STUDY, copy_cd, zip_folder


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, data_dir: Path, db_url: str) -> Path:
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LIGHTBOX_DATABASE_URL", db_url)
    monkeypatch.setenv("LIGHTBOX_LOG_LEVEL", "WARNING")
    return data_dir


def test_import_json(env: Path, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cd = copy_cd(tmp_path / "cd")
    archive = zip_folder(cd.parent, tmp_path / "cd.zip")
    assert main(["import", str(archive), "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["counts"]["instances_added"] == CD_INSTANCES
    assert data["several_patients"] is True
    assert len(data["studies"]) == CD_STUDIES
    head = next(s for s in data["studies"] if s["study_uid"] == CT_HEAD_STUDY)
    assert (head["date"], head["modalities"], head["body_part"]) == ("1995-09-03", ["CT"], "brain")
    assert (head["series_count"], head["instance_count"]) == (1, 4)
    assert data["skipped"] == [{"file": "DICOMDIR", "reason": "a DICOMDIR (the disc's index), not an image"}]
    assert "Doe" not in out + err and "77654033" not in out + err
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == CD_INSTANCES
    engine.dispose()
    # Files are in the data folder's DICOM store.
    assert len([p for p in (env / "dicom").rglob("*") if p.is_file()]) == CD_INSTANCES

    assert main(["import", str(cd), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["counts"]["instances_added"], again["counts"]["instances_present"]) == (0, CD_INSTANCES)


def test_import_human_summary(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cd = copy_cd(tmp_path / "cd")
    (cd.parent / "notes.txt").write_text("not an image")
    assert main(["import", str(cd.parent), "--patient-id", "77654033"]) == 0
    out, err = capsys.readouterr()
    assert f"Imported {CD_INSTANCES} new images" in out
    assert "more than one person" in out
    assert "1995-09-03  CT, brain" in out
    assert "notes.txt: not a DICOM file" in out
    assert "Doe" not in out + err


def test_import_failures_are_one_friendly_line(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.strip() == f"lightbox: nothing to import at {tmp_path / 'missing'}"
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    assert main(["import", str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lightbox: broken.zip is not a complete ZIP archive") and "Traceback" not in err
    bomb = tmp_path / "big.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.bin", bytes(3 * 1024 * 1024))
    assert main(["import", str(bomb), "--max-unpacked-mb", "1"]) == 1
    assert "more than the 1 MB allowed" in capsys.readouterr().err
    text = tmp_path / "letter.txt"
    text.write_text("Dear doctor")
    assert main(["import", str(text), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["skipped"] == [{"file": "letter.txt", "reason": "not a DICOM file"}]
