"""Privacy: erasure leaves no byte of the patient anywhere, /export hands the patient their data, and
encryption at rest keeps pixels and names off the disk."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from sqlalchemy import select, text

from store.crypto import Cipher
from store.db import make_engine, session_factory, upgrade
from store.filestore import FileStore
from store.importer import import_path
from store.models import Base, Instance, Patient
from store.render_cache import RenderCache
from tests.adversarial.conftest import fresh
from tests.handlers.conftest import Lightbox, study

MR = "MR_small.dcm"
CT = "CT_small.dcm"


def patient_marks(patient_id: str, name: str, birth: str = "19700101") -> list[bytes]:
    """Byte strings that would betray the patient: name (DICOM and UTF-16 forms), id, birth date."""
    family, given = name.split("^")
    return [name.encode(), family.encode(), given.encode(), patient_id.encode(), family.encode("utf-16-le"),
            birth.encode()]


def files_holding(root: Path, marks: list[bytes]) -> list[tuple[str, bytes]]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [(str(path.relative_to(root)), mark) for mark in marks if mark in data]
    return found


def rows_holding(sessions: Any, marks: list[bytes]) -> list[tuple[str, bytes]]:
    found = []
    with sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                blob = repr(tuple(row)).encode()
                found += [(table.name, mark) for mark in marks if mark in blob]
    return found


async def test_forget_in_the_chat_leaves_no_byte_of_the_patient(lightbox: Lightbox) -> None:
    marks = patient_marks("FORGET-7731", "Zzyzx^Quilla")
    mine = lightbox.add_patient("FORGET-7731", "Zzyzx^Quilla",
                                [study("mr", 2, "MR", "MRI brain", "BRAIN", MR, copies=3)])
    keep = lightbox.add_patient("KEEP-1", "Keeper^Kay", [study("ct", 2, "CT", "CT chest", "CHEST", CT)])
    data_dir = lightbox.tmp / "data"
    assert files_holding(data_dir, marks[:4])  # the test can see the patient before erasure
    qu = lightbox.driver.user("Quilla")
    await qu.command("start", lightbox.link_code(mine))
    await qu.wait_for_reply()
    await qu.command("last")
    await qu.wait_for_reply()
    await qu.say("share this with Dr. Lee for 2 days")
    await qu.wait_until(lambda: any("QR code" in (m.caption or "") for m in qu.bot_messages))
    await qu.command("forget")
    confirm = await qu.wait_until(lambda: next((m for m in qu.bot_messages if "Delete everything?" in (m.text or "")),
                                               None))
    tap = await qu.tap(confirm, "Yes, delete everything")
    await qu.wait_for_answer(tap)
    done = await qu.wait_for_reply(after=confirm)
    assert "I deleted 1 study" in (done.text or "")
    with lightbox.services.sessions() as session:
        session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    assert rows_holding(lightbox.services.sessions, marks) == []
    assert files_holding(data_dir, marks[:4]) == []
    with lightbox.services.sessions() as session:
        assert session.get(Patient, keep) is not None
        assert session.get(Patient, mine) is None


def test_lightbox_forget_command_erases_and_prints_counts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "LIGHTBOX_DATA_DIR": str(data_dir), "LIGHTBOX_LOG_LEVEL": "WARNING"}
    env.pop("LIGHTBOX_ENCRYPTION_KEY", None)
    env.pop("LIGHTBOX_DATABASE_URL", None)
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(3):
        fresh(MR, patient_id="CLI-4242", patient_name="Vexley^Orrin").save_as(folder / f"{k}.dcm",
                                                                              enforce_file_format=True)
    fresh(CT, patient_id="CLI-KEEP", patient_name="Stay^Sam").save_as(folder / "keep.dcm", enforce_file_format=True)
    cli = [sys.executable, "-m", "bot.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run([*cli, "import", str(folder)], env=env, check=True, capture_output=True)
    dry = subprocess.run([*cli, "forget", "--patient-id", "CLI-4242"], env=env, capture_output=True, text=True)
    assert (dry.returncode, dry.stdout) == (0, "would delete 3 studies, 3 images, 0 share links; run again with "
                                                "--yes to delete\n")
    done = subprocess.run([*cli, "forget", "--patient-id", "CLI-4242", "--yes"], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("deleted 3 studies, 3 images, 3 files, 0 share links, 0 notes, 1 access log entry\n")
    again = subprocess.run([*cli, "forget", "--patient-id", "CLI-4242", "--yes"], env=env, capture_output=True,
                           text=True)
    assert again.returncode == 1
    assert "no patient with that Patient ID" in again.stderr and "Traceback" not in again.stderr
    engine = make_engine(f"sqlite:///{data_dir / 'lightbox.sqlite3'}")
    with engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    assert rows_holding(session_factory(engine), patient_marks("CLI-4242", "Vexley^Orrin")) == []
    assert files_holding(data_dir, patient_marks("CLI-4242", "Vexley^Orrin")[:4]) == []
    assert rows_holding(session_factory(engine), [b"CLI-KEEP"])  # the other patient is untouched
    engine.dispose()


def test_encrypted_store_and_cache_hold_no_pixels_or_names_in_clear(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    upgrade(url)
    sessions = session_factory(make_engine(url))
    cipher = Cipher.from_secret("correct horse battery staple")
    files = FileStore(tmp_path / "dicom", cipher=cipher)
    folder = tmp_path / "in"
    folder.mkdir()
    ds = fresh(CT, patient_id="ENC-9", patient_name="Cryptic^Cassandra")
    ds.save_as(folder / "a.dcm", enforce_file_format=True)
    plain = (folder / "a.dcm").read_bytes()
    report = import_path(sessions, files, folder)
    assert report.instances_added == 1
    pixel_run = bytes(ds.PixelData[4000:4064])
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "dicom").rglob("*") if p.is_file())
    assert len(on_disk) == Cipher.sealed_size(len(plain))
    for secret in (b"Cryptic", b"Cassandra", b"ENC-9", pixel_run, b"DICM"):
        assert secret not in on_disk
    with sessions() as session:
        key = session.scalars(select(Instance.storage_key)).one()
    assert key is not None
    assert files.read(key) == plain
    with files.open(key) as fh:
        assert fh.read() == plain
    source = files.image_source(key)  # what renderers get: the dataset, decrypted in memory
    assert isinstance(source, pydicom.Dataset)
    assert np.array_equal(source.pixel_array, ds.pixel_array)
    # The same bytes again are recognised as already stored (content addressing still works).
    assert import_path(sessions, files, folder).instances_present == 1
    # The render cache seals pictures too, and a wrong key reads as a miss, never as garbage.
    cache = RenderCache(tmp_path / "cache", cipher=cipher)
    picture = b"\xff\xd8\xff" + bytes(range(256)) * 8
    cache.put("k", picture, namespace="abc")
    assert cache.get("k", namespace="abc") == picture
    cached = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert bytes(range(256)) not in cached
    assert RenderCache(tmp_path / "cache", cipher=Cipher.from_secret("another key")).get("k", namespace="abc") is None
    # A store opened with the wrong key says so plainly instead of handing out garbage.
    wrong = FileStore(tmp_path / "dicom", cipher=Cipher.from_secret("another key"))
    with pytest.raises(Exception, match="cannot be decrypted"):
        wrong.read(key)


async def test_encrypted_deployment_serves_previews_end_to_end(lightbox: Lightbox, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    cipher = Cipher.from_secret("end to end key")
    lightbox.services.files.cipher = cipher
    monkeypatch.setenv("LIGHTBOX_ENCRYPTION_KEY", "end to end key")  # the render cache reads it
    mine = lightbox.add_patient("ENC-E2E", "Sealed^Selma", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR, copies=3)])
    dicom_dir = lightbox.tmp / "data" / "dicom"
    stored = [p for p in dicom_dir.rglob("*") if p.is_file()]
    assert stored and all(p.read_bytes().startswith(b"LBXENC1\n") for p in stored)
    selma = lightbox.driver.user("Selma")
    await selma.command("start", lightbox.link_code(mine))
    await selma.wait_for_reply()
    await selma.command("last")
    card = await selma.wait_for_reply()
    assert card.photo_bytes is not None and "MRI of the brain" in (card.caption or "")
    cache = lightbox.services.cache_dir
    assert cache is not None
    cached = [p for p in cache.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert cached and all(p.read_bytes().startswith(b"LBXENC1\n") for p in cached)
    assert all(card.photo_bytes[:64] not in p.read_bytes() for p in cached)


async def test_export_sends_original_dicom_zip_parts_and_access_log(lightbox: Lightbox,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers import export

    mine = lightbox.add_patient("EXP-1", "Export^Eve", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR, copies=6),
                                                         study("ct", 9, "CT", "CT chest", "CHEST", CT, copies=2)])
    lightbox.add_patient("EXP-2", "Other^Otto", [study("ct", 2, "CT", "CT chest", "CHEST", CT)])
    with lightbox.services.sessions() as session:
        originals = {lightbox.services.files.read(k) for k in session.scalars(
            select(Instance.storage_key).join(Instance.series).where(Instance.storage_key.is_not(None))) if k}
    monkeypatch.setattr(export, "MAX_DOCUMENT_BYTES", 30_000 + 64 * 1024)  # force several parts
    eve = lightbox.driver.user("Eve")
    await eve.command("start", lightbox.link_code(mine))
    await eve.wait_for_reply()
    await eve.command("last")
    await eve.wait_for_reply()
    await eve.command("export")
    done = await eve.wait_until(lambda: next((m for m in eve.bot_messages if (m.text or "").startswith("Done:")),
                                             None))
    zips = [m for m in eve.bot_messages if (m.document_name or "").endswith(".zip")]
    assert len(zips) >= 2
    assert [m.document_name for m in zips] == [f"lightbox-images-part{n}of{len(zips)}.zip"
                                               for n in range(1, len(zips) + 1)]
    assert done.text == f"Done: 8 image files in {len(zips)} ZIP files, and your access log."
    exported = []
    for message in zips:
        assert message.protect_content is False
        assert len(message.document_bytes or b"") <= export.MAX_DOCUMENT_BYTES
        with zipfile.ZipFile(io.BytesIO(message.document_bytes or b"")) as archive:
            exported += [archive.read(name) for name in archive.namelist()]
    assert len(exported) == 8
    assert set(exported) <= originals
    names = {str(pydicom.dcmread(io.BytesIO(d)).PatientName) for d in exported}
    assert names == {"Export^Eve"}  # nothing of the other patient
    log = next(m for m in eve.bot_messages if m.document_name == "lightbox-access-log.csv")
    rows = list(csv.reader(io.StringIO((log.document_bytes or b"").decode("utf-8-sig"))))
    assert rows[0] == ["when (UTC)", "who", "what", "study", "detail"]
    assert [r[2] for r in rows[1:]].count("view") >= 1 and rows[-1][2] == "export"


async def test_share_viewer_serves_plain_images_and_files_from_an_encrypted_store(
        tmp_path: Path, dicom_folder: dict[str, object]) -> None:
    import httpx

    from share.links import create_share
    from share.web import create_app
    from store.models import Study
    from tests.share.test_dicomweb import parse_multipart

    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    upgrade(url)
    sessions = session_factory(make_engine(url))
    files = FileStore(tmp_path / "dicom", cipher=Cipher.from_secret("viewer key"))
    import_path(sessions, files, Path(str(dicom_folder["root"])))
    main_study = str(dicom_folder["main"])
    with sessions() as session, session.begin():
        study_row = session.scalars(select(Study).where(Study.study_uid == main_study)).one()
        patient = session.get(Patient, study_row.patient_id)
        assert patient is not None
        token = create_share(session, patient=patient, study=study_row, download="original").token
        originals = {files.read(k) for k in session.scalars(
            select(Instance.storage_key).join(Instance.series).where(Instance.series.has(study_id=study_row.id)))
            if k}
    app = create_app(sessions, files, public_url="http://testserver", secret_key=b"k" * 32)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.0.0.9", 1)),
                                 base_url="http://testserver") as client:
        assert (await client.get(f"/s/{token}")).status_code == 200
        manifest = (await client.get(f"/s/{token}/api/manifest")).json()
        series = manifest["studies"][0]["series"][0]
        item = series["slices"][0]
        picture = await client.get(f"/s/{token}/img/{main_study}/{series['uid']}/{item['sop']}/{item['frame']}")
        assert picture.status_code == 200 and picture.headers["content-type"].startswith("image/")
        archive = await client.get(f"/s/{token}/download")
        assert archive.status_code == 200
        with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
            zipped = {z.read(n) for n in z.namelist() if n.endswith(".dcm")}
        assert zipped == originals  # the original files, decrypted, not the sealed bytes on disk
        wado = await client.get(f"/s/{token}/dicom-web/studies/{main_study}",
                                headers={"Accept": 'multipart/related; type="application/dicom"'})
        assert wado.status_code == 200
        assert set(parse_multipart(wado)) == originals
