"""With a job runner beside the bot (``lightbox run``), an upload is a database job any worker can run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from imaging.samples import sample_file
from store.models import ChatLink
from store.models_state import Job
from tests.handlers.conftest import Lightbox, running_lightbox
from tests.handlers.test_uploads import cd_zip


@pytest.fixture
async def with_jobs(tmp_path: Path) -> AsyncIterator[Lightbox]:
    async for box in running_lightbox(tmp_path, jobs=True, timeout=30.0):
        yield box


async def test_a_cd_upload_runs_as_a_job_and_still_asks_which_person(with_jobs: Lightbox) -> None:
    kim = with_jobs.driver.user("Kim")
    await kim.send_document("cd.zip", cd_zip())
    status = await kim.wait_for_reply()
    await kim.wait_until(lambda: "Which are yours" in (status.text or ""))
    with with_jobs.services.sessions() as session:
        job = session.scalars(select(Job)).one()
        assert (job.kind, job.state) == ("chat_import", "done")
    tap = await kim.tap(status, "I am Jan C.")
    await kim.wait_for_answer(tap)
    await kim.wait_until(lambda: "kept" in (status.text or ""))
    with with_jobs.services.sessions() as session:
        assert session.scalars(select(ChatLink.telegram_user_id)).all() == [kim.id]
    # The uploaded file does not linger in the work folder once the job is done.
    assert not any(p.is_file() for p in (with_jobs.services.work_dir / "uploads").rglob("*"))


async def test_a_single_file_job_links_and_summarises(with_jobs: Lightbox) -> None:
    lou = with_jobs.driver.user("Lou")
    await lou.send_document("scan.dcm", sample_file("MR_small.dcm").read_bytes())
    status = await lou.wait_for_reply()
    await lou.wait_until(lambda: "Done!" in (status.text or ""))
    assert "I added 1 picture" in (status.text or "")
