"""Log audit: the conversation end to end with logging configured as in production at DEBUG, then every log
line searched for the patients' names, ids, birth dates, share tokens, the bot token and message texts."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import httpx
import pytest

from bot.logs import configure_logging
from tests.adversarial.conftest import fresh, to_bytes
from tests.handlers.conftest import Lightbox, study
from tests.share.conftest import ShareWorld

MR = "MR_small.dcm"
CT = "CT_small.dcm"
NAME = ("Quixotic", "Zebediah")
PATIENT_ID = "PID-8841-XQ"
UPLOADER = ("Vandersloot", "Philippa")
UPLOAD_ID = "UPL-5521-ZW"
BIRTH = "19700101"
SAID = ["show my last MRI zanzibar", "share my last MRI with Dr. Okonkwo-Featherstone for 2 days",
        "what does flair mean marmalade"]


@pytest.fixture
def production_logs() -> Iterator[io.StringIO]:
    """The root logger as ``configure_logging("DEBUG")`` sets it up, writing into a buffer."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level,
             {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "telegram", "apscheduler",
                                                               "telegram.ext.Updater")})
    configure_logging("DEBUG")
    buffer = io.StringIO()
    for handler in root.handlers:
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


def leaks(log_text: str, secrets_: list[str]) -> list[str]:
    return [s for s in secrets_ if s and s.lower() in log_text.lower()]


async def test_no_health_information_or_secret_in_any_log_line(lightbox: Lightbox,
                                                               production_logs: io.StringIO) -> None:
    family, given = NAME
    mine = lightbox.add_patient(PATIENT_ID, f"{family}^{given}",
                                [study("mr", 2, "MR", "MRI brain", "BRAIN", MR, copies=4),
                                 study("ct", 40, "CT", "CT chest", "CHEST", CT)])
    code = lightbox.link_code(mine)
    zed = lightbox.driver.user(given, last_name=family)
    await zed.command("start", code)
    await zed.wait_for_reply()
    await zed.say(SAID[0])
    card = await zed.wait_for_reply()
    tap = await zed.tap(card, next(t for t in card.button_texts if t.startswith("Next")))
    await zed.wait_for_answer(tap)
    await zed.say(SAID[1])
    shared = await zed.wait_until(lambda: next((m for m in zed.bot_messages if "/s/" in (m.text or "")), None))
    token = re.search(r"/s/([A-Za-z0-9_-]{16,})", shared.text or "")
    assert token is not None
    await zed.say(SAID[2])
    await zed.wait_for_reply()
    await zed.command("start", "wrong-code-" + code[:5])
    await zed.wait_for_reply()
    tap = await zed.send_callback(card, "v|" + "f" * 32 + "|0|d000")  # a forged button
    await zed.wait_for_answer(tap)
    # Error paths log too: a stored file damaged on disk, and Telegram failing every retry of a reply.
    from sqlalchemy import select

    from store.models import Instance, Series, Study

    with lightbox.services.sessions() as session:
        ct_keys = session.scalars(select(Instance.storage_key).join(Series).join(Study).where(
            Study.patient_id == mine, Study.modalities == "CT")).all()
    for key in ct_keys:
        assert key is not None
        lightbox.services.files.path(key).write_bytes(b"DICM" * 100 + PATIENT_ID.encode())
    await zed.say("show my CT")
    await zed.wait_for_reply()
    lightbox.sandbox.trouble.server_error("sendMessage", times=20, chat_id=zed.id)
    await zed.say(SAID[2])
    await zed.wait_until(lambda: "sendMessage" in production_logs.getvalue() or "502" in production_logs.getvalue()
                         or "Bad Gateway" in production_logs.getvalue(), timeout=30)
    lightbox.sandbox.trouble.clear()
    await zed.command("export")
    await zed.wait_until(lambda: any((m.text or "").startswith("Done:") for m in zed.bot_messages))
    # Someone else uploads a file carrying their own name and id.
    ds = fresh(CT, patient_id=UPLOAD_ID, patient_name="^".join(UPLOADER))
    ds.PatientBirthDate = BIRTH
    phil = lightbox.driver.user(UPLOADER[1])
    await phil.send_document("my scan.dcm", to_bytes(ds))
    status = await phil.wait_for_reply()
    await phil.wait_until(lambda: "Done!" in (status.text or ""))
    await zed.command("forget")
    confirm = await zed.wait_until(lambda: next((m for m in zed.bot_messages if "Delete everything?" in (m.text or "")),
                                                None))
    tap = await zed.tap(confirm, "Yes, delete everything")
    await zed.wait_for_answer(tap)
    await zed.wait_until(lambda: any("I deleted" in (m.text or "") for m in zed.bot_messages))
    log_text = production_logs.getvalue()
    assert log_text.count("\n") >= 5, "the flows above must have logged something for the audit to mean anything"
    secrets_ = [family, given, PATIENT_ID, *UPLOADER, UPLOAD_ID, BIRTH, token.group(1), code,
                lightbox.sandbox.token, *SAID, "zanzibar", "marmalade", "Okonkwo"]
    assert leaks(log_text, secrets_) == []


async def test_no_token_or_name_in_the_viewers_log_lines(client: httpx.AsyncClient, world: ShareWorld,
                                                         production_logs: io.StringIO) -> None:
    created = world.share()
    assert (await client.get(f"/s/{created.token}")).status_code == 200
    manifest = (await client.get(f"/s/{created.token}/api/manifest")).json()
    series = manifest["studies"][0]["series"][0]
    sop = series["slices"][0]["sop"]
    for path in (f"/s/{created.token}/img/{manifest['studies'][0]['uid']}/{series['uid']}/{sop}/0",
                 f"/s/{created.token}x", f"/s/{created.token}/img/1.2.3/4.5.6/7.8.9/0", "/s/" + "B" * 40):
        await client.get(path)
    logging.getLogger("lightbox.audit-probe").warning("probe for /s/%s", created.token)  # the filter works
    log_text = production_logs.getvalue()
    assert "probe for /s/<token>" in log_text
    assert leaks(log_text, [created.token, "Doe", "Jane", "P1", "19700101", "Roe^Richard"]) == []
