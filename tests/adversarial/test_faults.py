"""Faults: Telegram on a bad day, a full disk, a killed import, busy and dropped databases, a PACS that goes
away and comes back. Each checks what the patient or operator is told, and that nothing was lost, doubled
or left half-made."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from bot.sandbox import BotApiSandbox
from handlers import texts
from store.filestore import FileStore
from store.importer import ImportProblem, StorageFull, import_path
from store.models import Instance
from tests.adversarial.conftest import StoreEnv, fresh, to_bytes
from tests.handlers.conftest import Lightbox, study

CT = "CT_small.dcm"
MR = "MR_small.dcm"


def consistent(sessions: Any, files: FileStore) -> tuple[int, int]:
    """Every row names a stored file and every stored file is named by a row; returns (rows, files)."""
    with sessions() as session:
        keys = [k for k in session.scalars(select(Instance.storage_key)) if k]
    stored = files.keys()
    assert sorted(set(keys)) == stored, "rows without files, or orphan files"
    return len(keys), len(stored)


# ------------------------------------------------------------------ Telegram on a bad day

TROUBLE: dict[str, Callable[[BotApiSandbox], object]] = {
    "429-on-first-reply": lambda s: s.trouble.rate_limit("sendMessage", retry_after=1),
    "502-on-getFile": lambda s: s.trouble.server_error("getFile", times=2),
    "dropped-getFile": lambda s: s.trouble.drop("getFile"),
    "slow-summary-edit": lambda s: s.trouble.slow("editMessageText", seconds=2.0),
    "dropped-after-summary-edit": lambda s: s.trouble.drop("editMessageText", after_processing=True),
    "503-twice-on-summary-edit": lambda s: s.trouble.server_error("editMessageText", status=503, times=2),
}


@pytest.mark.parametrize("trouble", list(TROUBLE), ids=list(TROUBLE))
async def test_telegram_trouble_mid_upload_loses_and_doubles_nothing(lightbox: Lightbox, trouble: str) -> None:
    TROUBLE[trouble](lightbox.sandbox)
    uma = lightbox.driver.user("Uma")
    other = lightbox.driver.user("Otis")
    await uma.send_document("scan.dcm", to_bytes(fresh(CT, patient_id="TT-1", patient_name="Trouble^Uma")))
    await other.command("help")  # another chat, while Uma's upload is in trouble
    help_reply = await other.wait_for_reply()
    assert "/last" in (help_reply.text or "") or "/studies" in (help_reply.text or "")
    status = await uma.wait_for_reply(timeout=30)
    await uma.wait_until(lambda: "Done!" in (status.text or ""), timeout=30)
    assert status.text is not None and status.text.startswith("<b>Done!</b>".replace("<b>", "").replace("</b>", ""))
    assert "I added 1 picture" in status.text
    assert len(uma.bot_messages) == 1  # one status message, edited in place: no lost and no doubled reply
    assert len(other.bot_messages) == 1
    with lightbox.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 1


# ------------------------------------------------------------------ a full disk

def full_after(count: int) -> Callable[..., Any]:
    """A FileStore._encode that fails with ENOSPC once ``count`` files were written."""
    written = {"n": 0}
    original = FileStore._encode

    def encode(self: FileStore, chunks: Any) -> Any:
        if written["n"] >= count:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written["n"] += 1
        return original(self, chunks)

    return encode


def test_disk_full_during_import_says_so_and_leaves_the_store_consistent(store_env: StoreEnv, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cd"
    folder.mkdir()
    for k in range(12):
        fresh(MR, patient_id="FULL-1", patient_name="Full^Fran").save_as(folder / f"{k:02d}.dcm",
                                                                          enforce_file_format=True)
    monkeypatch.setattr(FileStore, "_encode", full_after(5))
    with pytest.raises(StorageFull) as caught:
        import_path(store_env.sessions, store_env.files, folder)
    saved = caught.value.report.instances_added
    assert str(caught.value) == (f"The storage is full. {saved} new images were saved before it filled up; "
                                 "import again once there is space, and nothing will be saved twice.")
    assert texts.render("upload_failed", reason=str(caught.value)).startswith(
        "Sorry, I couldn't import this file: The storage is full.")
    rows, _ = consistent(store_env.sessions, store_env.files)
    assert rows == saved <= 5
    assert not list(store_env.files.root.rglob(".tmp-*"))  # no half-written file
    monkeypatch.undo()
    again = import_path(store_env.sessions, store_env.files, folder)
    assert (again.instances_added, again.instances_present) == (12 - saved, saved)
    assert consistent(store_env.sessions, store_env.files) == (12, 12)


async def test_disk_full_for_the_render_cache_still_shows_the_picture(lightbox: Lightbox,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import store.render_cache as render_cache

    mine = lightbox.add_patient("FULL-C", "Cache^Cleo", [study("mr", 2, "MR", "MRI brain", "BRAIN", MR, copies=3)])

    def no_space(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(render_cache.tempfile, "mkstemp", no_space)
    cleo = lightbox.driver.user("Cleo")
    await cleo.command("start", lightbox.link_code(mine))
    await cleo.wait_for_reply()
    await cleo.command("last")
    card = await cleo.wait_for_reply()
    assert card.photo_bytes is not None and "MRI of the brain" in (card.caption or "")
    cache = lightbox.services.cache_dir
    assert cache is not None
    assert [p for p in cache.rglob("*") if p.is_file()] == []


# ------------------------------------------------------------------ a killed import

def test_sigkill_mid_import_then_rerun_leaves_no_orphans(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "LIGHTBOX_DATA_DIR": str(data_dir), "LIGHTBOX_LOG_LEVEL": "WARNING"}
    env.pop("LIGHTBOX_ENCRYPTION_KEY", None)
    env.pop("LIGHTBOX_DATABASE_URL", None)
    folder = tmp_path / "cd"
    folder.mkdir()
    base = fresh(CT, patient_id="KILL-1", patient_name="Killed^Kit")
    for k in range(400):
        ds = base.copy()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"{k:04d}.dcm", enforce_file_format=True)
    cli = [sys.executable, "-m", "bot.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    store_dir = data_dir / "dicom"
    proc = subprocess.Popen([*cli, "import", str(folder)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(store_dir.glob("??/??/*"))) < 20:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored_at_kill = len(list(store_dir.glob("??/??/*")))
    assert 0 < stored_at_kill < 400, "the kill must land mid-import"
    again = subprocess.run([*cli, "import", str(folder)], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    from store.db import make_engine, session_factory

    engine = make_engine(f"sqlite:///{data_dir / 'lightbox.sqlite3'}")
    try:
        assert consistent(session_factory(engine), FileStore(store_dir, cipher=None)) == (400, 400)
        # A write cut by the kill may leave one temporary file (opaque name, no row, never read): the import
        # command removes such files once they are an hour old (here: at once).
        assert FileStore(store_dir, cipher=None).remove_stale_temporaries(older_than_s=0) <= 1
        assert list(store_dir.rglob(".tmp-*")) == []
    finally:
        engine.dispose()


# ------------------------------------------------------------------ busy SQLite

def test_concurrent_writers_on_sqlite_all_land(store_env: StoreEnv, tmp_path: Path) -> None:
    folders = []
    for w in range(6):
        folder = tmp_path / f"w{w}"
        folder.mkdir()
        for k in range(15):
            fresh(MR if k % 2 else CT, patient_id=f"BUSY-{w}", patient_name=f"Busy^W{w}").save_as(
                folder / f"{k}.dcm", enforce_file_format=True)
        folders.append(folder)
    errors: list[BaseException] = []

    def run(folder: Path) -> None:
        try:
            # Each writer has its own engine, like separate processes on one database file.
            from store.db import make_engine, session_factory

            engine = make_engine(str(store_env.sessions.kw["bind"].url))
            try:
                import_path(session_factory(engine), store_env.files, folder)
            finally:
                engine.dispose()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] or all(isinstance(e, ImportProblem) for e in errors)
    assert errors == []
    assert consistent(store_env.sessions, store_env.files) == (90, 90)
