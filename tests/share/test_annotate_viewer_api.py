"""The annotation API of the viewer over real HTTP (httpx into the app): who may write, what, where."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from share.links import create_annotation_link
from share.marks import WRITES_PER_MINUTE
from store.db import transaction
from store.models import AccessEvent, Annotation, Instance, Patient, Study
from tests.share.conftest import ShareWorld

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


async def _open(client: httpx.AsyncClient, token: str) -> tuple[dict[str, Any], str]:
    page = await client.get(f"/s/{token}")
    assert page.status_code == 200
    found = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
    manifest = (await client.get(f"/s/{token}/api/manifest")).json()
    return manifest, found.group(1) if found else ""


def _mark(manifest: dict[str, Any], **over: Any) -> dict[str, Any]:
    study = manifest["studies"][0]
    series = study["series"][0]
    one = series["slices"][3]
    body = {"study": study["uid"], "series": series["uid"], "sop": one["sop"], "frame": 0, "kind": "arrow",
            "x": 0.25, "y": 0.5, "x2": 0.75, "y2": 0.125, "text": "sore here"}
    body.update(over)
    return body


def _own_link(world: ShareWorld) -> Any:
    with transaction(world.sessions) as session:
        patient = session.get(Patient, world.patient_id)
        study = session.scalars(select(Study).where(Study.study_uid == world.main_study)).one()
        assert patient is not None
        return create_annotation_link(session, patient=patient, study=study, now=world.clock())


async def test_patients_own_link_saves_lists_and_deletes_marks(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = _own_link(world)
    manifest, csrf = await _open(client, created.token)
    assert manifest["can_annotate"] is True and csrf
    headers = {"X-CSRF-Token": csrf}
    body = _mark(manifest)
    saved = await client.post(f"/s/{created.token}/api/annotations", json=body, headers=headers)
    assert saved.status_code == 201, saved.text
    mark = saved.json()
    assert mark["kind"] == "arrow" and mark["mine"] is True
    circle = await client.post(f"/s/{created.token}/api/annotations", headers=headers,
                               json=_mark(manifest, kind="circle", x=0.1, y=0.1, x2=0.3, y2=0.2, text=""))
    text = await client.post(f"/s/{created.token}/api/annotations", headers=headers,
                             json=_mark(manifest, kind="note", x=0.9, y=0.9, x2=None, y2=None, text="  new   pain "))
    assert circle.status_code == 201 and text.status_code == 201

    with transaction(world.sessions) as session:
        rows = {r.kind: r for r in session.scalars(select(Annotation).where(Annotation.patient_id == world.patient_id))}
        assert set(rows) == {"arrow", "circle", "note"}
        arrow = rows["arrow"]
        assert (arrow.x, arrow.y, arrow.x2, arrow.y2) == (0.25, 0.5, 0.75, 0.125)
        assert arrow.author == f"share:{created.link.public_id}"
        assert rows["note"].text == "new pain" and rows["note"].x2 is None
        instance = session.get(Instance, arrow.instance_id)
        assert instance is not None and instance.sop_instance_uid == body["sop"]
        events = list(session.scalars(select(AccessEvent).where(AccessEvent.action == "annotate")))
        assert len(events) == 3 and {e.actor_ref for e in events} == {created.link.public_id}
        assert all(e.instance_id == arrow.instance_id for e in events)

    # Listed in the manifest, on its slice, for this link and for the specialist's link.
    again = (await client.get(f"/s/{created.token}/api/manifest")).json()
    notes = again["studies"][0]["series"][0]["slices"][3]["notes"]
    assert {n["kind"] for n in notes} == {"arrow", "circle", "note"}
    specialist = world.share()
    theirs, their_csrf = await _open(client, specialist.token)
    assert their_csrf == "" and theirs["can_annotate"] is False
    shown = theirs["studies"][0]["series"][0]["slices"][3]["notes"]
    assert {n["kind"] for n in shown} == {"arrow", "circle", "note"} and not any(n["mine"] for n in shown)

    deleted = await client.delete(f"/s/{created.token}/api/annotations/{mark['id']}", headers=headers)
    assert deleted.status_code == 204
    assert (await client.delete(f"/s/{created.token}/api/annotations/{mark['id']}", headers=headers)).status_code == 404
    with transaction(world.sessions) as session:
        assert session.scalars(select(Annotation).where(Annotation.public_id == mark["id"])).first() is None
        details = [e.detail for e in session.scalars(select(AccessEvent).where(AccessEvent.action == "annotate"))]
        assert "delete arrow" in details


async def test_only_can_annotate_links_write(client: httpx.AsyncClient, world: ShareWorld) -> None:
    look_only = world.share()
    manifest, csrf = await _open(client, look_only.token)
    assert csrf == ""
    # Even with a correctly made token for its session, a look-only link cannot write.
    from share.context import SESSION_COOKIE
    from share.marks import csrf_token

    cookie = next(c.value for c in client.cookies.jar if c.name == SESSION_COOKIE and look_only.token in c.path)
    forged = csrf_token(b"k" * 32, str(cookie))
    refused = await client.post(f"/s/{look_only.token}/api/annotations", json=_mark(manifest),
                                headers={"X-CSRF-Token": forged})
    assert refused.status_code == 403
    with transaction(world.sessions) as session:
        assert session.scalars(select(Annotation)).first() is None


async def test_csrf_origin_and_session_rules(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = _own_link(world)
    manifest, csrf = await _open(client, created.token)
    url = f"/s/{created.token}/api/annotations"
    assert (await client.post(url, json=_mark(manifest))).status_code == 403  # no token
    assert (await client.post(url, json=_mark(manifest), headers={"X-CSRF-Token": "0" * 40})).status_code == 403
    cross = await client.post(url, json=_mark(manifest),
                              headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert cross.status_code == 403
    form = await client.post(url, content=b"kind=arrow", headers={"X-CSRF-Token": csrf,
                                                                   "Content-Type": "text/plain"})
    assert form.status_code == 415
    same = await client.post(url, json=_mark(manifest), headers={"X-CSRF-Token": csrf, "Origin": "http://testserver"})
    assert same.status_code == 201
    # Without the viewing session (cookie), the token alone does nothing.
    client.cookies.clear()
    assert (await client.post(url, json=_mark(manifest), headers={"X-CSRF-Token": csrf})).status_code == 403


async def test_bad_marks_and_foreign_instances(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = _own_link(world)
    manifest, csrf = await _open(client, created.token)
    url = f"/s/{created.token}/api/annotations"
    headers = {"X-CSRF-Token": csrf}
    for bad in (
        _mark(manifest, x=1.5), _mark(manifest, y=-0.1), _mark(manifest, x2=None), _mark(manifest, x="0.5"),
        _mark(manifest, kind="polygon"), _mark(manifest, kind="note", text=""), _mark(manifest, frame=-1),
        _mark(manifest, text="x" * 500), _mark(manifest, x=True),
    ):
        response = await client.post(url, json=bad, headers=headers)
        assert response.status_code == 400, bad
    assert (await client.post(url, content=b"{not json", headers={**headers, "Content-Type": "application/json"})
            ).status_code == 400

    # Another patient's study (same UIDs shape, real instance) and an unrelated body part: 404.
    with transaction(world.sessions) as session:
        stranger = session.scalars(select(Study).where(Study.study_uid == world.stranger_study)).one()
        other = session.scalars(select(Study).where(Study.study_uid == world.other_part_study)).one()
        foreign = []
        for study in (stranger, other):
            series = study.series[0]
            inst = session.scalars(select(Instance).where(Instance.series_id == series.id)).first()
            assert inst is not None
            foreign.append((study.study_uid, series.series_uid, inst.sop_instance_uid))
    for study_uid, series_uid, sop in foreign:
        response = await client.post(url, headers=headers, json=_mark(manifest, study=study_uid, series=series_uid,
                                                                       sop=sop))
        assert response.status_code == 404
    # A real instance of the shared study named under the wrong series: 404 too.
    wrong_series = manifest["studies"][0]["series"][1]["uid"]
    assert (await client.post(url, headers=headers, json=_mark(manifest, series=wrong_series))).status_code == 404
    # A frame the instance does not have.
    assert (await client.post(url, headers=headers, json=_mark(manifest, frame=3))).status_code == 404
    # The prior is part of the patient's own link (priors included): marking it works.
    prior = manifest["studies"][1]
    on_prior = _mark(manifest, study=prior["uid"], series=prior["series"][0]["uid"],
                     sop=prior["series"][0]["slices"][0]["sop"])
    ok = await client.post(url, headers=headers, json=on_prior)
    assert ok.status_code == 201
    with transaction(world.sessions) as session:
        assert len(list(session.scalars(select(Annotation)))) == 1


async def test_link_cannot_delete_chat_notes_and_writes_are_rate_limited(
    client: httpx.AsyncClient, world: ShareWorld
) -> None:
    created = _own_link(world)
    manifest, csrf = await _open(client, created.token)
    headers = {"X-CSRF-Token": csrf}
    with transaction(world.sessions) as session:
        inst = session.scalars(select(Instance).where(Instance.sop_instance_uid == _mark(manifest)["sop"])).one()
        chat_note = Annotation(patient_id=world.patient_id, instance_id=inst.id, kind="marker", x=0.5, y=0.5,
                               text="from the chat", author="patient")
        session.add(chat_note)
        session.flush()
        chat_id = chat_note.public_id
    notes = (await client.get(f"/s/{created.token}/api/manifest")).json()["studies"][0]["series"][0]["slices"][3]
    assert [n["mine"] for n in notes["notes"]] == [False]
    assert (await client.delete(f"/s/{created.token}/api/annotations/{chat_id}", headers=headers)).status_code == 404
    statuses = [
        (await client.post(f"/s/{created.token}/api/annotations", json=_mark(manifest), headers=headers)).status_code
        for _ in range(WRITES_PER_MINUTE + 2)
    ]
    assert statuses[:WRITES_PER_MINUTE] == [201] * WRITES_PER_MINUTE
    assert statuses[WRITES_PER_MINUTE:] == [429, 429]


async def test_share_create_annotate_makes_the_patients_own_link(
    client: httpx.AsyncClient, world: ShareWorld, db_url: str, tmp_path: Any, monkeypatch: Any,
    capsys: Any,
) -> None:
    import json

    from bot.cli import main

    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LIGHTBOX_DATABASE_URL", db_url)
    assert main(["share", "create", "--patient-id", "P1", "--study", world.main_study, "--annotate", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    token = made["url"].rsplit("/", 1)[1]
    manifest, csrf = await _open(client, token)
    assert manifest["can_annotate"] is True and csrf
    saved = await client.post(f"/s/{token}/api/annotations", json=_mark(manifest), headers={"X-CSRF-Token": csrf})
    assert saved.status_code == 201
    # Without --annotate the link only looks.
    assert main(["share", "create", "--patient-id", "P1", "--study", world.main_study, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)["url"].rsplit("/", 1)[1]
    manifest, csrf = await _open(client, plain)
    assert manifest["can_annotate"] is False and csrf == ""
