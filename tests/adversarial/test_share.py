"""Attacks on share links and the webhook: every wrong token gets the same plain page, guessing is slowed
and finds nothing, and only Telegram (knowing the secret) can post updates."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from starlette.applications import Starlette
from telegram.ext import ApplicationBuilder

from bot.server import SECRET_HEADER, webhook_route
from share.links import revoke_share
from store.db import transaction
from store.models import AccessEvent
from tests.share.conftest import ShareWorld

GONE = "no longer works"
UNKNOWN = "does not work"


async def open_viewer(client: httpx.AsyncClient, token: str) -> dict:
    page = await client.get(f"/s/{token}")
    assert page.status_code == 200
    manifest = await client.get(f"/s/{token}/api/manifest")
    assert manifest.status_code == 200
    return manifest.json()


def views(world: ShareWorld) -> int:
    with world.sessions() as session:
        return session.query(AccessEvent).filter(AccessEvent.action.in_(["share_open", "share_view"])).count()


async def test_expired_link_says_it_no_longer_works(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = world.share(hours=1)
    world.clock.advance(hours=1, seconds=1)
    page = await client.get(f"/s/{created.token}")
    assert page.status_code == 410
    assert GONE in page.text and "ask the patient for a new one" in page.text
    assert views(world) == 0


async def test_revoked_link_stops_at_once_even_mid_session(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = world.share()
    manifest = await open_viewer(client, created.token)
    assert manifest["studies"]
    with transaction(world.sessions) as session:
        revoke_share(session, created.link.public_id, patient_id=world.patient_id, now=world.clock())
    for path in (f"/s/{created.token}", f"/s/{created.token}/api/manifest"):
        response = await client.get(path)
        assert response.status_code == 410, path
    assert GONE in (await client.get(f"/s/{created.token}")).text


async def test_tampered_and_truncated_tokens_are_unknown(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = world.share()
    token = created.token
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (flipped, token[:-4], token[:16], token + "x", token.upper() if token.upper() != token else token[1:],
                "%00" + token, token.replace(token[0], "/", 1)):
        response = await client.get(f"/s/{bad}")
        assert response.status_code == 404, bad
        assert UNKNOWN in response.text
        assert token not in response.text
    assert views(world) == 0


async def test_a_burst_of_ten_thousand_guesses_finds_nothing_and_is_slowed(app: Any, world: ShareWorld) -> None:
    created = world.share()
    attacker = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.66.6.6", 1)),
                                 base_url="http://testserver")
    patient = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.1.2.3", 1)),
                                base_url="http://testserver")
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    async with attacker, patient:
        async def guess(n: int) -> None:
            response = await attacker.get(f"/s/{n:043d}")
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        for start in range(0, 10_000, 500):
            await asyncio.gather(*(guess(n) for n in range(start, start + 500)))
        limited = await attacker.get(f"/s/{created.token}")  # even the real token: this address is cut off
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert (await patient.get(f"/s/{created.token}")).status_code == 200
    assert 200 not in statuses and 410 not in statuses
    assert sum(statuses.values()) == 10_000
    # The limiter allows 10 failures a minute, even to parallel guesses: every later one got a 429 without
    # touching the database.
    assert statuses == {404: 10, 429: 9_990}
    assert time.perf_counter() - started < 60


async def test_another_patients_study_in_the_url_is_not_found(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = world.share()
    manifest = await open_viewer(client, created.token)
    series = manifest["studies"][0]["series"][0]
    sop = series["slices"][0]["sop"]
    for path in (f"/s/{created.token}/img/{world.stranger_study}/{series['uid']}/{sop}/0",
                 f"/s/{created.token}/dicom-web/studies/{world.stranger_study}/metadata",
                 f"/s/{created.token}/download"):
        response = await client.get(path)
        assert response.status_code in (403, 404), path
        assert b"Roe" not in response.content and b"P2" not in response.content


async def test_webhook_without_or_with_a_wrong_secret_is_refused() -> None:
    application = ApplicationBuilder().token("123456:TEST-token-not-real").updater(None).build()
    app = Starlette(routes=[webhook_route("/telegram/hook", application, "the-right-secret")])
    update = {"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"},
                                          "from": {"id": 5, "is_bot": False, "first_name": "X"}, "text": "hi"}}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        missing = await client.post("/telegram/hook", json=update)
        wrong = await client.post("/telegram/hook", json=update, headers={SECRET_HEADER: "the-wrong-secret"})
        prefix = await client.post("/telegram/hook", json=update, headers={SECRET_HEADER: "the-right"})
        assert (missing.status_code, wrong.status_code, prefix.status_code) == (403, 403, 403)
        assert missing.json() == {"error": "forbidden"}
        assert application.update_queue.qsize() == 0
        right = await client.post("/telegram/hook", json=update, headers={SECRET_HEADER: "the-right-secret"})
        assert right.status_code == 200
        assert application.update_queue.qsize() == 1
        junk = await client.post("/telegram/hook", content=b"{not json", headers={SECRET_HEADER: "the-right-secret"})
        assert junk.status_code == 400
        assert application.update_queue.qsize() == 1
