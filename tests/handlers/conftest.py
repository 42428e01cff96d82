"""End-to-end fixtures: the real Lightbox Application on the Bot API sandbox, and patients built from real files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pydicom
import pytest

from bot.app import build_application, build_services, running
from bot.demo_data import DemoSeries, DemoStudy, build_demo_files
from bot.sandbox import BotApiSandbox, TelegramDriver
from bot.sandbox.driver import ChatUser
from bot.settings import Settings
from bot.workers import JobRunner
from handlers.services import Services
from store.importer import import_path
from store.linking import create_link_code, find_patient_by_identifier


@dataclass
class Lightbox:
    """A running bot: its services, the sandbox it talks to, and a driver to talk to it."""

    services: Services
    sandbox: BotApiSandbox
    driver: TelegramDriver
    tmp: Path

    def add_patient(self, patient_id: str, name: str, studies: list[DemoStudy], *, today: date | None = None
                    ) -> int:
        """Import ``studies`` (real files, re-labelled) as patient ``patient_id``; returns its row id."""
        folder = self.tmp / f"files-{patient_id}"
        written = build_demo_files(folder, today=today or date(2026, 11, 28), studies=tuple(studies))
        for path in written:
            ds = pydicom.dcmread(path)
            ds.PatientID = patient_id
            ds.PatientName = name
            ds.save_as(path, enforce_file_format=True)
        import_path(self.services.sessions, self.services.files, folder)
        with self.services.sessions() as session:
            patient = find_patient_by_identifier(session, patient_id)
            assert patient is not None
            return patient.id

    async def linked_user(self, patient_row_id: int, name: str, language_code: str | None = None) -> ChatUser:
        """A chat user (whose Telegram app speaks ``language_code``) who has linked their chat to
        ``patient_row_id`` with a fresh code."""
        user = self.driver.user(name) if language_code is None else self.driver.user(name, language_code=language_code)
        await user.command("start", self.link_code(patient_row_id))
        await user.wait_for_reply()
        return user

    def link_code(self, patient_row_id: int) -> str:
        with self.services.sessions() as session, session.begin():
            return create_link_code(session, patient_row_id)


def study(key: str, days_ago: int, modality: str, description: str, body_part: str, source: str,
          copies: int = 1) -> DemoStudy:
    return DemoStudy(key, days_ago, modality, description, body_part,
                     (DemoSeries(source, f"{description} series", copies=copies, spacing_mm=5.0),))


async def running_lightbox(tmp_path: Path, settings: Settings | None = None, *, jobs: bool = False,
                           progress_every: float = 0.2, timeout: float = 20.0) -> AsyncIterator[Lightbox]:
    """The real Application on a fresh sandbox; with ``jobs`` also a job runner beside it, as in
    ``lightbox run`` (uploads and cines then become database jobs)."""
    settings = settings or Settings(data_dir=tmp_path / "data", public_url="http://127.0.0.1:9")
    services = build_services(settings)
    services.background_jobs = jobs
    async with BotApiSandbox() as sandbox:
        app = build_application(services, sandbox.token, base_url=sandbox.base_url,
                                base_file_url=sandbox.base_file_url, pace_interval=0.01)
        async with running(app, timeout=1):
            runner = JobRunner(app, services, worker="w-test", poll_interval=0.1, progress_every=progress_every)
            if jobs:
                await runner.start()
            try:
                yield Lightbox(services, sandbox, TelegramDriver(sandbox, timeout=timeout), tmp_path)
            finally:
                if jobs:
                    await runner.stop()
        assert sandbox.spec_violations == []


@pytest.fixture
async def lightbox(tmp_path: Path) -> AsyncIterator[Lightbox]:
    async for box in running_lightbox(tmp_path):
        yield box
