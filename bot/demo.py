"""``lightbox demo``: a demo patient, the real bot against the local Bot API sandbox, and a web chat page.

Nothing leaves the machine: the sandbox plays Telegram on 127.0.0.1, the demo patient is seeded from pydicom's
real test images (:mod:`bot.demo_data`), and a person talks to the bot through the web chat page
(:mod:`bot.webchat`), which is served, with the share viewer, by one uvicorn server on the same event loop as
the bot and the sandbox (:mod:`bot.server`).

Seeding happens once per data folder: a restart finds the demo patient and leaves it as it is. Each start
issues a fresh one-time link code and sends ``/start <code>`` as the demo user, so the chat is linked.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.demo_data import DEMO_PATIENT_ID, build_demo_files
from bot.settings import Settings
from store.filestore import FileStore
from store.importer import import_path
from store.linking import create_link_code, find_patient_by_identifier
from store.models import Study

log = logging.getLogger("lightbox.demo")

DEMO_USER_ID = 424242
DEMO_USER_FIRST_NAME = "Demo"
DEFAULT_DEMO_DIR = Path("lightbox-demo")


class DemoSeedError(RuntimeError):
    """The demo patient could not be seeded; the message says why in one line."""


@dataclass(frozen=True)
class DemoSeed:
    """The demo patient in the store: its row id, how many studies, and whether this run created them."""

    patient_id: int
    studies: int
    created: bool


def demo_settings(settings: Settings, data_dir: Path | None) -> Settings:
    """The demo's own settings: its own data folder and SQLite file, never the operator's real database."""
    return replace(
        settings, data_dir=data_dir or DEFAULT_DEMO_DIR, database_url="", store="local", bot_token="", webhook_secret=""
    )


def _existing(sessions: sessionmaker[Session]) -> DemoSeed | None:
    with sessions() as session:
        patient = find_patient_by_identifier(session, DEMO_PATIENT_ID)
        if patient is None:
            return None
        count = session.scalar(select(func.count()).select_from(Study).where(Study.patient_id == patient.id)) or 0
        return DemoSeed(patient.id, int(count), False) if count else None


def seed_demo(
    sessions: sessionmaker[Session], files: FileStore, work_dir: Path, *, today: date | None = None
) -> DemoSeed:
    """Make sure the demo patient and their studies are in the store; idempotent.

    Builds the files in a temporary folder under ``work_dir``, imports them with
    :func:`store.importer.import_path` and removes the folder.
    """
    found = _existing(sessions)
    if found is not None:
        log.info("demo patient already seeded", extra={"patient": found.patient_id})
        return found
    work_dir.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix="demo-", dir=work_dir))
    try:
        build_demo_files(build, today=today)
        report = import_path(sessions, files, build, actor=("system", "demo"))
    finally:
        shutil.rmtree(build, ignore_errors=True)
    if report.conflicts or report.skipped or len(report.patients) != 1:
        raise DemoSeedError(
            f"the demo import was not clean ({len(report.conflicts)} conflicts, {len(report.skipped)} skipped files)"
        )
    found = _existing(sessions)
    if found is None:
        raise DemoSeedError("the demo patient is missing after import")
    log.info("demo patient seeded", extra={"patient": found.patient_id, "studies": found.studies})
    return DemoSeed(found.patient_id, found.studies, True)


def new_link_code(sessions: sessionmaker[Session], patient_id: int) -> str:
    """A fresh one-time code that links the demo chat to the demo patient."""
    with sessions() as session, session.begin():
        return create_link_code(session, patient_id)


@dataclass(frozen=True)
class DemoReady:
    """Where the running demo can be reached (handed to ``on_ready``)."""

    url: str  # the web chat page
    sandbox_url: str
    seed: DemoSeed


async def run_demo(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[DemoReady], None] | None = None,
    pace_interval: float = 1.0,
) -> None:
    """Seed, start the sandbox, the bot and the web server on this loop; run until ``stop`` is set."""
    from bot.app import build_application, build_services, running
    from bot.sandbox import BotApiSandbox
    from bot.server import WebServer, build_web_app, share_notifier
    from bot.webchat import ChatView, close, webchat_routes

    stop = stop or asyncio.Event()
    server = WebServer(host, port)
    server.bind()  # first, so a busy port fails before any work
    settings = replace(settings, public_url=server.url)
    services = build_services(settings)
    seed = await asyncio.to_thread(seed_demo, services.sessions, services.files, services.work_dir)
    sandbox = BotApiSandbox()
    await sandbox.start()
    try:
        application = build_application(
            services,
            sandbox.token,
            base_url=sandbox.base_url,
            base_file_url=sandbox.base_file_url,
            pace_interval=pace_interval,
        )
        sandbox.add_user(DEMO_USER_FIRST_NAME, user_id=DEMO_USER_ID, last_name="Patient")
        chat = ChatView(sandbox, DEMO_USER_ID)
        web = build_web_app(
            settings,
            services.sessions,
            services.files,
            extra_routes=webchat_routes(sandbox, DEMO_USER_ID, chat),
            on_first_open=share_notifier(application, services.sessions),
            on_locked=share_notifier(application, services.sessions, "share_locked"),
        )
        async with running(application, timeout=5), server.serving(web):
            code = await asyncio.to_thread(new_link_code, services.sessions, seed.patient_id)
            sandbox.user_message(DEMO_USER_ID, text=f"/start {code}")
            if on_ready is not None:
                on_ready(DemoReady(server.url + "/", sandbox.url, seed))
            await stop.wait()
            close(chat)
    finally:
        await sandbox.stop()
        bind = services.sessions.kw.get("bind")
        if bind is not None:
            bind.dispose()
