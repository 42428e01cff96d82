"""Two ``lightbox run --webhook`` worker processes on one PostgreSQL, behind a round-robin balancer.

Real processes, a real database, the Bot API sandbox as Telegram: updates of one chat arrive alternately
at both workers and are answered in order and once each; a conversation started on one continues on the
other; a share link made through one opens through the other; a worker killed with SIGKILL mid-import
leaves the job to the other, which finishes it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
import pytest_asyncio
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.demo_data import DemoSeries, DemoStudy, build_demo_files
from bot.sandbox import BotApiSandbox, TelegramDriver
from bot.sandbox.driver import ChatUser
from store import jobs
from store.db import make_engine, session_factory
from store.filestore import FileStore
from store.importer import import_path
from store.linking import create_link_code, find_patient_by_identifier
from store.models import Instance
from store.models_state import ChatLease, InboundUpdate, Job
from tests.scale.cluster import HOOK_PATH, SECRET, Cluster, running_cluster

pytestmark = pytest.mark.asyncio(loop_scope="module")

# What the patient asks, and the glossary term that heads the bot's answer.
TERMS = {"FLAIR": "FLAIR", "T1": "T1-weighted", "T2": "T2-weighted", "contrast": "Contrast", "CT": "CT",
         "MRI": "MRI", "DWI": "Diffusion-weighted imaging", "sagittal": "Sagittal"}


class Env:
    def __init__(self, sandbox: BotApiSandbox, cluster: Cluster, sessions: sessionmaker[Session],
                 files: FileStore, tmp: Path) -> None:
        self.sandbox = sandbox
        self.cluster = cluster
        self.sessions = sessions
        self.files = files
        self.tmp = tmp
        self.driver = TelegramDriver(sandbox, timeout=30.0)

    def add_patient(self, patient_id: str, name: str, *, copies: int = 5) -> int:
        folder = self.tmp / f"files-{patient_id}"
        written = build_demo_files(folder, today=date(2026, 11, 28), studies=(
            DemoStudy("mr", 30, "MR", "MRI brain", "BRAIN", (DemoSeries("MR_small.dcm", "MRI brain series",
                                                                       copies=copies, spacing_mm=5.0),)),))
        for path in written:
            ds = pydicom.dcmread(path)
            ds.PatientID, ds.PatientName = patient_id, name
            ds.save_as(path, enforce_file_format=True)
        import_path(self.sessions, self.files, folder)
        with self.sessions() as session:
            patient = find_patient_by_identifier(session, patient_id)
            assert patient is not None
            return patient.id

    async def linked_user(self, first_name: str, patient_id: str) -> ChatUser:
        row = self.add_patient(patient_id, f"{first_name}^Test")
        with self.sessions() as session, session.begin():
            code = create_link_code(session, row)
        user = self.driver.user(first_name)
        await user.command("start", code)
        linked = await user.wait_for_reply()
        assert "linked" in (linked.text or "")
        return user

    def settled(self, chat_id: int) -> bool:
        """No update of the chat waiting and no worker holding it."""
        with self.sessions() as session:
            waiting = session.scalar(select(func.count()).select_from(InboundUpdate).where(
                InboundUpdate.chat_id == chat_id, InboundUpdate.done_at.is_(None)))
            held = session.get(ChatLease, chat_id)
            return waiting == 0 and held is None

    def processed_by(self, chat_id: int) -> dict[int, str]:
        with self.sessions() as session:
            rows = session.execute(select(InboundUpdate.update_id, InboundUpdate.worker)
                                   .where(InboundUpdate.chat_id == chat_id, InboundUpdate.done_at.is_not(None)))
            return {int(u): str(w) for u, w in rows}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(scale_db: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    tmp = tmp_path_factory.mktemp("scale")
    data_dir = tmp / "shared-data"  # one data folder for both workers: the shared file store of a deployment
    engine = make_engine(scale_db)
    sessions = session_factory(engine)
    files = FileStore(data_dir / "dicom")
    async with BotApiSandbox(webhook_retry_delay=0.2) as sandbox, \
            running_cluster(sandbox, scale_db, data_dir, workers=2, lease_seconds=3) as cluster:
        yield Env(sandbox, cluster, sessions, files, tmp)
        assert sandbox.spec_violations == []
    engine.dispose()


async def metric(client: httpx.AsyncClient, url: str, name: str) -> float:
    text = (await client.get(url + "/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(condition)
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_one_chat_alternating_between_workers_is_answered_in_order_once_each(env: Env) -> None:
    ann = await env.linked_user("Ann", "P-ORDER")
    before = len(ann.bot_messages)
    routed_before = len(env.cluster.routed)
    for term in TERMS:  # sent back to back: the balancer alternates them between the two workers
        await ann.command("explain", term)
    replies = await ann.wait_for_replies(len(TERMS))
    await asyncio.sleep(1.0)  # any duplicate reply would arrive now
    answers = ann.bot_messages[before:]
    assert len(answers) == len(TERMS), [a.text for a in answers]
    assert [(answer.text or "").splitlines()[0] for answer in answers] == list(TERMS.values())
    assert replies == answers[: len(replies)]
    routed = env.cluster.routed[routed_before:]
    assert {worker for _, worker in routed} == {0, 1}  # both workers received this chat's updates
    await wait_until(lambda: env.settled(ann.id), 10, "every update to be marked done")
    done = env.processed_by(ann.id)
    assert all(update_id in done for update_id, _ in routed)


async def test_a_repeated_update_to_both_workers_is_processed_once(env: Env) -> None:
    bea = await env.linked_user("Bea", "P-DUP")
    before = len(bea.bot_messages)
    update = {"update_id": 987_654_321, "message": {
        "message_id": 999_001, "date": int(time.time()), "text": "/explain FLAIR",
        "entities": [{"type": "bot_command", "offset": 0, "length": 8}],
        "chat": {"id": bea.id, "type": "private", "first_name": "Bea"},
        "from": {"id": bea.id, "is_bot": False, "first_name": "Bea"}}}
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with httpx.AsyncClient(trust_env=False) as client:
        answers = await asyncio.gather(*(client.post(w.url + HOOK_PATH, json=update, headers=headers)
                                         for w in env.cluster.workers for _ in range(2)))
        assert [a.status_code for a in answers] == [200] * 4
        assert (await client.post(env.cluster.workers[0].url + HOOK_PATH, json=update)).status_code == 403
    await bea.wait_for_replies(1)
    await asyncio.sleep(1.5)
    assert len(bea.bot_messages) - before == 1
    assert "FLAIR" in (bea.bot_messages[-1].text or "")


async def test_a_conversation_started_on_one_worker_continues_on_the_other(env: Env) -> None:
    cal = await env.linked_user("Cal", "P-CONV")
    env.cluster.pinned = 0
    try:
        await cal.say("show my last MRI")
        card = await cal.wait_for_reply()
        assert card.photo_bytes is not None
        # Once worker 0 has let go of the chat, worker 1 (a different process) takes the next message.
        await wait_until(lambda: env.settled(cal.id), 10, "worker 0 to finish with the chat")
        env.cluster.pinned = 1
        await cal.say("what is this image showing me?")
        described = await cal.wait_for_reply()
    finally:
        env.cluster.pinned = None
    assert "Open an image first" not in (described.text or "")  # chat_data's current view was there
    assert "MRI" in (described.text or "") or "magnet" in (described.text or "").lower()
    await wait_until(lambda: env.settled(cal.id), 10, "the describe update to be marked done")
    done = env.processed_by(cal.id)
    ids = sorted(done)
    assert len(ids) == 3  # /start, show, describe
    show_id, describe_id = ids[-2], ids[-1]
    assert done[show_id] != done[describe_id], "both messages were handled by the same worker"


async def test_a_share_link_made_through_one_worker_opens_through_the_other(env: Env) -> None:
    dee = await env.linked_user("Dee", "P-SHARE")
    await dee.say("share my last MRI with Dr. Lee for 2 days")
    shared = await dee.wait_for_reply()
    text = shared.text or ""
    match = re.search(r"http://127\.0\.0\.1:9(/s/[A-Za-z0-9_\-]+)", text)
    assert match, text
    path = match.group(1)
    await wait_until(lambda: env.settled(dee.id), 10, "the share update to be marked done")
    maker = max(env.processed_by(dee.id).items())[1]  # the worker that handled "share ..."
    maker_pid = int(maker.split(":")[1])
    other = next(w for w in env.cluster.workers if w.proc.pid != maker_pid)
    async with httpx.AsyncClient(trust_env=False, follow_redirects=True) as client:
        opens_before = await metric(client, other.url, "lightbox_share_link_opens_total")
        page = await client.get(other.url + path)
        assert page.status_code == 200
        code = re.search(r"<code>([^<]+)</code>", text)
        if code is not None:
            page = await client.post(other.url + path, data={"code": code.group(1)})
            assert page.status_code == 200
        assert "viewer" in page.text.lower() or "<canvas" in page.text.lower() or "<img" in page.text.lower()
        missing = await client.get(other.url + "/s/" + "A" * len(path[3:]))
        assert missing.status_code in (404, 410)
        assert await metric(client, other.url, "lightbox_share_link_opens_total") > opens_before
    notice = await dee.wait_for_reply(predicate=lambda m: "opened" in (m.text or "").lower())
    assert notice.text


async def test_health_ready_and_metrics_on_each_worker(env: Env) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        for worker in env.cluster.workers:
            assert (await client.get(worker.url + "/healthz")).text == "ok"
            ready = (await client.get(worker.url + "/readyz")).json()
            assert ready == {"ready": True, "checks": {"database": "ok", "store": "ok"}}
        handled = [await metric(client, w.url, "lightbox_updates_handled_total") for w in env.cluster.workers]
        sent = [await metric(client, w.url, "lightbox_replies_sent_total") for w in env.cluster.workers]
        assert all(h > 0 for h in handled), handled  # both workers processed updates in the tests above
        assert sum(sent) >= len(TERMS)
        eve = await env.linked_user("Eve", "P-METRIC")
        await eve.command("help")
        await eve.wait_for_reply()
        await wait_until(lambda: env.settled(eve.id), 10, "/help to be marked done")
        after = [await metric(client, w.url, "lightbox_updates_handled_total") for w in env.cluster.workers]
        assert sum(after) >= sum(handled) + 2  # /start and /help


def synthesize_series(folder: Path, count: int, patient_id: str) -> None:
    """``count`` real CT slices (pydicom's CT_small) as one new series of one new study."""
    folder.mkdir(parents=True)
    source = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    study_uid, series_uid = generate_uid(), generate_uid()
    for number in range(1, count + 1):
        ds = source.copy()
        ds.PatientID, ds.PatientName = patient_id, "Kill^Test"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        ds.ImagePositionPatient = [0.0, 0.0, float(number)]
        ds.save_as(folder / f"slice-{number:04d}.dcm", enforce_file_format=True)


async def test_a_worker_killed_mid_import_leaves_the_job_to_the_other(env: Env) -> None:
    fay = env.driver.user("Fay")
    files = 240
    folder = env.cluster.data_dir / "uploads" / "kill-test"
    await asyncio.to_thread(synthesize_series, folder, files, "P-KILL")
    job_id = jobs.enqueue(env.sessions, "import", {"folder": str(folder), "batch": 5}, chat_id=fay.id, total=files)

    def running_with_progress() -> Job | None:
        job = jobs.job_state(env.sessions, job_id)
        return job if job is not None and job.state == "running" and job.progress_done >= 10 else None

    job = await wait_until(running_with_progress, 60, "the import job to start")
    assert job.progress_done < files, "the import finished before it could be interrupted; use more files"
    owner_pid = int(job.owner.split(":")[1])
    victim = next(w for w in env.cluster.workers if w.proc.pid == owner_pid)
    victim.kill()
    done_at_kill = job.progress_done

    def finished() -> Job | None:
        found = jobs.job_state(env.sessions, job_id)
        return found if found is not None and found.state in {"done", "failed"} else None

    final = await wait_until(finished, 90, "the other worker to finish the job")
    assert final.state == "done", final.error
    assert final.owner != job.owner and final.attempts == 2
    assert final.progress_done == files
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in sorted(folder.iterdir())]
    with env.sessions() as session:
        count = session.scalar(select(func.count(Instance.id)).where(Instance.sop_instance_uid.in_(uids)))
    assert count == files  # every slice once: none lost, none doubled by the resumed import
    assert done_at_kill <= files
    # Progress was shown in the chat and the final word came from the surviving worker.
    await fay.wait_until(lambda: any("All done" in (m.text or "") for m in fay.bot_messages), timeout=30)
    progress = [m for m in fay.bot_messages if "Adding your images" in (m.text or "") or "All done" in (m.text or "")]
    assert len(progress) == 1  # one message, edited as the job went (by both workers)
