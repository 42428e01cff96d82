"""The patient hears in the chat when a share link is first opened, and when it locks after wrong codes."""

from __future__ import annotations

from pathlib import Path

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
