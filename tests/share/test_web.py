"""The share rules over real HTTP against the viewer app: expiry, revocation, scope, limits, codes, headers."""

from __future__ import annotations

import io
import zipfile

import httpx
import numpy as np
import pydicom
import pytest
from sqlalchemy import select, text

from share.links import MAX_CODE_ATTEMPTS, ShareError, hash_token, revoke_share
from store.db import transaction
from store.models import AccessEvent, ShareLink
from tests.share.conftest import Notified, ShareWorld, pixels_of

# Every rule holds on both databases the project supports.
pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)

REQUIRED_HEADERS = {
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in REQUIRED_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.url)
    assert "noindex" in response.headers["x-robots-tag"]
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp


def events(world: ShareWorld, action: str | None = None) -> list[AccessEvent]:
    if world.app is not None:
        world.app.state.viewer.flush_events()  # image views are written in batches
    with world.sessions() as session:
        query = select(AccessEvent).where(AccessEvent.actor_kind == "share")
        if action:
            query = query.where(AccessEvent.action == action)
        return list(session.scalars(query.order_by(AccessEvent.id)))


async def open_viewer(client: httpx.AsyncClient, token: str) -> dict:
    page = await client.get(f"/s/{token}")
    assert page.status_code == 200, page.text
    manifest = await client.get(f"/s/{token}/api/manifest")
    assert manifest.status_code == 200
    return manifest.json()


def slice_url(token: str, study: dict, series: dict, index: int) -> str:
    item = series["slices"][index]
    return f"/s/{token}/img/{study['uid']}/{series['uid']}/{item['sop']}/{item['frame']}"


async def test_token_is_long_random_and_only_its_hash_is_stored(world: ShareWorld) -> None:
    created = world.share()
    assert len(created.token) >= 22 and created.token.replace("-", "").replace("_", "").isalnum()
    assert created.link.token_hash == hash_token(created.token)
    with world.sessions() as session:
        dumped = "\n".join(str(row) for row in session.execute(text("SELECT * FROM share_link")).all())
        events_dump = "\n".join(str(row) for row in session.execute(text("SELECT * FROM access_event")).all())
    assert created.token not in dumped and created.token not in events_dump
    assert created.link.token_hash in dumped
    assert world.share().token != created.token


async def test_lifetime_rules(world: ShareWorld) -> None:
    created = world.share()
    assert (created.link.expires_at - world.clock()).total_seconds() == 72 * 3600
    for bad in (0.5, 721, -1):
        with pytest.raises(ShareError):
            world.share(hours=bad)
    assert (world.share(hours=1).link.expires_at - world.clock()).total_seconds() == 3600
    assert (world.share(hours=720).link.expires_at - world.clock()).days == 30


async def test_open_shows_label_not_name_counts_view_and_tells_patient_once(
    client: httpx.AsyncClient, world: ShareWorld, notified: Notified
) -> None:
    created = world.share(recipient_label="Dr. Lee")
    page = await client.get(f"/s/{created.token}")
    assert page.status_code == 200
    assert_security_headers(page)
    assert "J. (knee pain)" in page.text and "Dr. Lee" in page.text
    assert "Doe" not in page.text and "Jane" not in page.text
    assert "<script>" not in page.text  # no inline script: CSP forbids it
    assert notified.first_open == [created.link.public_id]
    again = await client.get(f"/s/{created.token}")  # same viewing session: no new view
    assert again.status_code == 200
    assert notified.first_open == [created.link.public_id]
    with world.sessions() as session:
        link = session.get(ShareLink, created.link.id)
        assert link is not None and link.view_count == 1 and link.first_opened_at == world.clock()
    opens = events(world, "share_open")
    assert len(opens) == 1 and opens[0].actor_ref == created.link.public_id


async def test_manifest_and_images_follow_slice_order_and_write_events(
    client: httpx.AsyncClient, world: ShareWorld
) -> None:
    created = world.share()
    manifest = await open_viewer(client, created.token)
    assert [s["uid"] for s in manifest["studies"]] == [world.main_study]
    study = manifest["studies"][0]
    assert [s["uid"] for s in study["series"]] == world.main_series
    ct = study["series"][0]
    assert len(ct["slices"]) == 12
    assert ct["slices"][0]["spacing"] is not None and ct["slices"][0]["rows"] == 128
    first = await client.get(slice_url(created.token, study, ct, 0))
    last = await client.get(slice_url(created.token, study, ct, 11))
    assert first.status_code == last.status_code == 200
    assert first.headers["content-type"] == "image/jpeg"
    assert_security_headers(first)
    a, b = pixels_of(first.content), pixels_of(last.content)
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 2
    # The bar drawn into slice k sits at row k*128/12: slice order is geometry order.
    assert a[:8].mean() > a[100:108].mean() and b[-16:-8].mean() > b[:8].mean()
    views = events(world, "share_view")
    assert len(views) == 2 and all(v.instance_id for v in views)
    small = await client.get(slice_url(created.token, study, ct, 5) + "?size=100")
    assert max(pixels_of(small.content).shape[:2]) == 128
    windowed = await client.get(slice_url(created.token, study, ct, 5) + "?preset=bone")
    assert windowed.status_code == 200 and float(windowed.headers["x-window-width"]) == 1800
    thumb = await client.get(f"/s/{created.token}/thumb/{study['uid']}/{ct['uid']}")
    assert thumb.status_code == 200 and max(pixels_of(thumb.content).shape[:2]) == 128


async def test_images_need_a_viewing_session(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = world.share()
    manifest = await open_viewer(client, created.token)
    study = manifest["studies"][0]
    url = slice_url(created.token, study, study["series"][0], 0)
    client.cookies.clear()
    response = await client.get(url)
    assert response.status_code == 403


async def test_expiry_by_the_clock(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = world.share(hours=2)
    manifest = await open_viewer(client, created.token)
    study = manifest["studies"][0]
    url = slice_url(created.token, study, study["series"][0], 0)
    world.clock.advance(hours=1, minutes=59)
    assert (await client.get(url)).status_code == 200
    world.clock.advance(minutes=1)
    for path in (f"/s/{created.token}", url, f"/s/{created.token}/api/manifest"):
        gone = await client.get(path)
        assert gone.status_code == 410, path
        assert_security_headers(gone)
    page = await client.get(f"/s/{created.token}")
    assert "no longer works" in page.text and "ask the patient for a new one" in page.text


async def test_revocation_takes_effect_on_next_request(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = world.share()
    manifest = await open_viewer(client, created.token)
    study = manifest["studies"][0]
    url = slice_url(created.token, study, study["series"][0], 3)
    assert (await client.get(url)).status_code == 200
    with transaction(world.sessions) as session:
        revoke_share(session, created.link.public_id, patient_id=world.patient_id, now=world.clock())
    assert (await client.get(url)).status_code == 410
    assert (await client.get(f"/s/{created.token}")).status_code == 410
    with transaction(world.sessions) as session, pytest.raises(ShareError):
        revoke_share(session, created.link.public_id, patient_id=world.patient_id + 999)


async def test_unknown_token_gets_404_page(client: httpx.AsyncClient, world: ShareWorld) -> None:
    world.share()
    response = await client.get("/s/" + "A" * 32)
    assert response.status_code == 404
    assert_security_headers(response)
    assert "does not work" in response.text
    other = await client.get("/nothing-here")
    assert other.status_code == 404
    assert_security_headers(other)
    static = await client.get("/static/viewer.js")
    assert static.status_code == 200
    assert_security_headers(static)


async def test_scope_escapes_get_404(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = world.share(series_uids=[world.main_series[0]])
    manifest = await open_viewer(client, created.token)
    study = manifest["studies"][0]
    assert [s["uid"] for s in study["series"]] == [world.main_series[0]]
    ct = study["series"][0]
    sop = ct["slices"][0]["sop"]
    t = created.token
    attempts = [
        f"/s/{t}/img/{world.stranger_study}/{ct['uid']}/{sop}/0",  # another patient's study
        f"/s/{t}/img/{world.prior_study}/{ct['uid']}/{sop}/0",  # own prior, not shared
        f"/s/{t}/img/{world.main_study}/{world.main_series[1]}/{sop}/0",  # series not chosen
        f"/s/{t}/img/{world.main_study}/{ct['uid']}/1.2.3.4/0",  # unknown instance
        f"/s/{t}/img/{world.main_study}/{ct['uid']}/{sop}/5",  # frame out of range
        f"/s/{t}/thumb/{world.other_part_study}/{ct['uid']}",
        f"/s/{t}/dicom-web/studies/{world.stranger_study}/series",
    ]
    for path in attempts:
        response = await client.get(path)
        assert response.status_code == 404, path
    # The MR series of the same study exists but is not in the link's scope.
    with world.sessions() as session:
        mr_sop = session.execute(
            text("SELECT sop_instance_uid FROM instance JOIN series ON series.id = instance.series_id "
                 "WHERE series.series_uid = :uid"), {"uid": world.main_series[1]}
        ).scalars().first()
    response = await client.get(f"/s/{t}/img/{world.main_study}/{world.main_series[1]}/{mr_sop}/0")
    assert response.status_code == 404


async def test_priors_are_same_body_part_and_earlier_only(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = world.share(include_priors=True)
    manifest = await open_viewer(client, created.token)
    uids = [s["uid"] for s in manifest["studies"]]
    assert uids == [world.main_study, world.prior_study]
    assert manifest["studies"][1]["prior"] is True
    prior = manifest["studies"][1]
    ok = await client.get(slice_url(created.token, prior, prior["series"][0], 0))
    assert ok.status_code == 200
    bad = await client.get(
        f"/s/{created.token}/img/{world.other_part_study}/{prior['series'][0]['uid']}/"
        f"{prior['series'][0]['slices'][0]['sop']}/0"
    )
    assert bad.status_code == 404


async def test_failed_lookups_are_rate_limited_per_address(app, world: ShareWorld) -> None:  # type: ignore[no-untyped-def]
    created = world.share()
    bad = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.9.9.9", 1)),
                            base_url="http://testserver")
    good = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.1.1.1", 1)),
                             base_url="http://testserver")
    async with bad, good:
        for n in range(10):
            assert (await bad.get(f"/s/guess{n:030d}")).status_code == 404
        limited = await bad.get(f"/s/{created.token}")  # even a real token: this address is cut off
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert_security_headers(limited)
        assert (await good.get(f"/s/{created.token}")).status_code == 200


async def test_access_code_attempts_and_lock(
    client: httpx.AsyncClient, world: ShareWorld, notified: Notified
) -> None:
    created = world.share(access_code=True)
    assert created.access_code is not None and len(created.access_code) == 6
    assert created.access_code not in created.link.access_code_hash
    form = await client.get(f"/s/{created.token}")
    assert form.status_code == 200 and 'name="code"' in form.text
    assert (await client.get(f"/s/{created.token}/api/manifest")).status_code == 403
    wrong = "000000" if created.access_code != "000000" else "111111"
    reply = await client.post(f"/s/{created.token}", data={"code": wrong})
    assert reply.status_code == 403 and f"{MAX_CODE_ATTEMPTS - 1} tries left" in reply.text
    right = await client.post(f"/s/{created.token}", data={"code": created.access_code})
    assert right.status_code == 303 and right.headers["location"] == f"/s/{created.token}"
    assert (await client.get(f"/s/{created.token}/api/manifest")).status_code == 200
    assert notified.first_open == [created.link.public_id]

    locked = world.share(access_code="24681357")
    client.cookies.clear()
    for attempt in range(MAX_CODE_ATTEMPTS):
        reply = await client.post(f"/s/{locked.token}", data={"code": "99999999"})
        assert reply.status_code == (403 if attempt < MAX_CODE_ATTEMPTS - 1 else 410)
    assert notified.locked == [locked.link.public_id]
    # Locked means locked, even with the right code.
    assert (await client.post(f"/s/{locked.token}", data={"code": "24681357"})).status_code == 410
    assert (await client.get(f"/s/{locked.token}")).status_code == 410
    with world.sessions() as session:
        row = session.get(ShareLink, locked.link.id)
        assert row is not None and row.locked_at is not None and row.failed_code_attempts == MAX_CODE_ATTEMPTS


async def test_view_limit_counts_viewing_sessions(app, world: ShareWorld) -> None:  # type: ignore[no-untyped-def]
    created = world.share(max_views=2)
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(f"10.2.0.{i}", 1)),
                                 base_url="http://testserver") for i in range(3)]
    first, second, third = clients
    try:
        manifest = await open_viewer(first, created.token)
        await open_viewer(second, created.token)
        assert (await third.get(f"/s/{created.token}")).status_code == 410
        # Sessions already open keep working.
        study = manifest["studies"][0]
        assert (await first.get(slice_url(created.token, study, study["series"][0], 1))).status_code == 200
        assert (await first.get(f"/s/{created.token}")).status_code == 200
    finally:
        for c in clients:
            await c.aclose()


async def test_download_follows_the_patients_choice(client: httpx.AsyncClient, world: ShareWorld) -> None:
    none = world.share()
    await open_viewer(client, none.token)
    assert (await client.get(f"/s/{none.token}/download")).status_code == 403

    original = world.share(download="original")
    await open_viewer(client, original.token)
    response = await client.get(f"/s/{original.token}/download")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert_security_headers(response)
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = [n for n in archive.namelist() if n.endswith(".dcm")]
    assert len(names) == 15
    with world.sessions() as session:
        keys = set(session.execute(text("SELECT content_hash FROM instance")).scalars())
    import hashlib

    assert {hashlib.sha256(archive.read(n)).hexdigest() for n in names} <= keys
    assert len(events(world, "download")) == 1

    deid = world.share(download="deidentified")
    await open_viewer(client, deid.token)
    response = await client.get(f"/s/{deid.token}/download")
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    dcm = [n for n in archive.namelist() if n.endswith(".dcm")]
    assert len(dcm) == 15 and "README.txt" in archive.namelist()
    studies = set()
    for name in dcm:
        ds = pydicom.dcmread(io.BytesIO(archive.read(name)))
        assert "Doe" not in str(ds.get("PatientName", "")) and ds.get("PatientID") != "P1"
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.StudyInstanceUID != world.main_study
        studies.add(ds.StudyInstanceUID)
        assert b"Doe^Jane" not in archive.read(name)
    assert len(studies) == 1  # remapped consistently


async def test_parallel_opens_cannot_exceed_the_view_limit(app, world: ShareWorld) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    created = world.share(max_views=3)
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(f"10.3.0.{i}", 1)),
                                 base_url="http://testserver") for i in range(10)]
    try:
        replies = await asyncio.gather(*(c.get(f"/s/{created.token}") for c in clients))
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(r.status_code for r in replies) == [200] * 3 + [410] * 7
    with world.sessions() as session:
        link = session.get(ShareLink, created.link.id)
        assert link is not None and link.view_count == 3


async def test_parallel_wrong_codes_lock_the_link(app, world: ShareWorld, notified: Notified) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    created = world.share(access_code="11223344")
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(f"10.4.0.{i}", 1)),
                                 base_url="http://testserver") for i in range(8)]
    try:
        await asyncio.gather(*(c.post(f"/s/{created.token}", data={"code": "99999999"}) for c in clients))
        assert (await clients[0].post(f"/s/{created.token}", data={"code": "11223344"})).status_code == 410
    finally:
        for c in clients:
            await c.aclose()
    with world.sessions() as session:
        link = session.get(ShareLink, created.link.id)
        assert link is not None and link.locked_at is not None and link.failed_code_attempts >= MAX_CODE_ATTEMPTS
    assert notified.locked == [created.link.public_id]


async def test_bad_requests_and_broken_files_get_clear_answers(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = world.share()
    manifest = await open_viewer(client, created.token)
    study = manifest["studies"][0]
    ct = study["series"][0]
    url = slice_url(created.token, study, ct, 4)
    for query, status in (("?size=abc", 400), ("?wc=x&ww=10", 400), ("?preset=nope", 400), ("?format=gif", 400),
                          ("?size=100000", 200), ("?wc=40&ww=80&format=png", 200)):
        response = await client.get(url + query)
        assert response.status_code == status, query
        assert_security_headers(response)
    png = await client.get(url + "?wc=40&ww=80&format=png")
    assert png.headers["content-type"] == "image/png" and float(png.headers["x-window-center"]) == 40
    # A file damaged on disk: a friendly 422, never a traceback or a 500.
    with world.sessions() as session:
        key = session.execute(
            text("SELECT storage_key FROM instance WHERE sop_instance_uid = :sop"), {"sop": ct["slices"][9]["sop"]}
        ).scalar_one()
    path = world.files.path(key)
    path.chmod(0o644)
    path.write_bytes(b"DICM but not really" * 10)
    broken = await client.get(slice_url(created.token, study, ct, 9))
    assert broken.status_code == 422 and "cannot be shown" in broken.json()["error"]


async def test_https_deployments_also_send_hsts(world: ShareWorld, client: httpx.AsyncClient) -> None:
    from share.web import create_app

    created = world.share()
    plain = await client.get(f"/s/{created.token}")
    assert "strict-transport-security" not in plain.headers
    secure_app = create_app(world.sessions, world.files, public_url="https://viewer.example", clock=world.clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=secure_app),
                                 base_url="https://viewer.example") as secure:
        page = await secure.get(f"/s/{created.token}")
    assert page.status_code == 200 and page.headers["strict-transport-security"].startswith("max-age=")
    assert "secure" in page.headers["set-cookie"].lower()
    assert_security_headers(page)
