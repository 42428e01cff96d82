"""The patient hears in the chat when a share link is first opened, and when it locks after wrong codes."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from bot.app import build_application, build_services, running
from bot.sandbox import BotApiSandbox, TelegramDriver
from bot.server import share_notifier
from bot.settings import Settings
from share.links import create_share
from store.models import ChatLink, Patient, Study


async def test_opened_and_locked_notices_reach_the_patients_chat(tmp_path: Path) -> None:
    services = build_services(Settings(data_dir=tmp_path / "data"))
    async with BotApiSandbox() as sandbox:
        driver = TelegramDriver(sandbox, timeout=10)
        ann = driver.user("Ann")
        with services.sessions() as session, session.begin():
            patient = Patient(name="Notice^Ann")
            session.add(patient)
            session.flush()
            session.add(ChatLink(telegram_user_id=ann.id, chat_id=ann.id, patient_id=patient.id))
            study = Study(patient_id=patient.id, study_uid="1.2.3.4", modalities="MR", body_part="knee")
            session.add(study)
            session.flush()
            link = create_share(session, patient=patient, study=study, recipient_label="Dr. Lee").link
            public_id = link.public_id
        app = build_application(services, sandbox.token, base_url=sandbox.base_url,
                                base_file_url=sandbox.base_file_url, pace_interval=0.01)
        async with running(app, timeout=1):
            await share_notifier(app, services.sessions)(public_id)
            opened = await ann.wait_for_reply()
            assert "MRI link for Dr. Lee was opened just now" in (opened.text or "")
            await share_notifier(app, services.sessions, "share_locked")(public_id)
            locked = await ann.wait_for_reply()
            assert "wrong code five times" in (locked.text or "") and "locked it" in (locked.text or "")
            # Nothing for a link that does not exist.
            await share_notifier(app, services.sessions)("0" * 32)
        assert len(ann.bot_messages) == 2


async def test_the_notice_speaks_the_telegram_apps_language_without_a_language_choice(tmp_path: Path) -> None:
    from store.linking import create_link_code

    services = build_services(Settings(data_dir=tmp_path / "data"))
    with services.sessions() as session, session.begin():
        patient = Patient(name="Notice^Lena")
        session.add(patient)
        session.flush()
        study = Study(patient_id=patient.id, study_uid="1.2.3.5", modalities="MR", body_part="knee")
        session.add(study)
        session.flush()
        public_id = create_share(session, patient=patient, study=study, recipient_label="Dr. Weber").link.public_id
        code = create_link_code(session, patient.id)
    async with BotApiSandbox() as sandbox:
        driver = TelegramDriver(sandbox, timeout=10)
        lena = driver.user("Lena", language_code="de")  # never uses /language
        app = build_application(services, sandbox.token, base_url=sandbox.base_url,
                                base_file_url=sandbox.base_file_url, pace_interval=0.01)
        async with running(app, timeout=1):
            await lena.command("start", code)
            linked = await lena.wait_for_reply()
            await share_notifier(app, services.sessions)(public_id)
            opened = await lena.wait_for_reply(after=linked)
            assert "Dr. Weber" in (opened.text or "") and "geöffnet" in (opened.text or ""), opened.text
    with services.sessions() as session:
        assert session.scalars(select(ChatLink)).one().language == ""  # the choice stays "follow the app"


def test_housekeeping_removes_orphans_but_not_files_with_rows(tmp_path: Path) -> None:
    import os
    import time

    from bot.app import housekeeping
    from store.models import Instance, Series

    services = build_services(Settings(data_dir=tmp_path / "data"))
    kept = services.files.put(b"DICM a file with a row")
    orphan = services.files.put(b"DICM a file nobody names")
    fresh_orphan = services.files.put(b"DICM an import's file whose row is not written yet")
    with services.sessions() as session, session.begin():
        patient = Patient(name="House^Keeping")
        session.add(patient)
        session.flush()
        study = Study(patient_id=patient.id, study_uid="7.7")
        study.series.append(Series(series_uid="7.7.1"))
        session.add(study)
        session.flush()
        session.add(Instance(series_id=study.series[0].id, sop_instance_uid="7.7.1.1", storage_key=kept.key))
    old = time.time() - 7200
    for key in (kept.key, orphan.key):
        os.utime(services.files.path(key), (old, old))
    assert housekeeping(services) == (0, 1)
    assert services.files.exists(kept.key)
    assert not services.files.exists(orphan.key)
    assert services.files.exists(fresh_orphan.key)  # too young: its import may still be running
