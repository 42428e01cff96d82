"""The link's DICOMweb endpoint read back as a DICOMweb client does: QIDO-RS JSON, WADO-RS multipart, rendered."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io

import httpx
import pydicom
import pytest
from pydicom.uid import UID

from share.links import MAX_CODE_ATTEMPTS
from store.db import transaction
from store.models import ShareLink
from tests.share.conftest import Notified, ShareWorld, pixels_of

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


def parse_multipart(response: httpx.Response) -> list[bytes]:
    """The parts of a multipart/related body (PS3.18 8.6.1.2), as a DICOMweb client splits them."""
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/related") and 'type="application/dicom"' in content_type
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + response.content
    )
    parts = []
    for part in message.iter_parts():
        assert part.get_content_type() == "application/dicom"
        parts.append(part.get_payload(decode=True))
    return parts


def tag(item: dict, key: str) -> object:
    values = item.get(key, {}).get("Value", [])
    return values[0] if values else None


async def test_qido_wado_and_rendered(client: httpx.AsyncClient, world: ShareWorld, notified: Notified) -> None:
    created = world.share(download="original", include_priors=True)
    base = f"/s/{created.token}/dicom-web"
    studies = await client.get(f"{base}/studies")
    await client.get(f"{base}/studies")
    assert notified.first_open == [created.link.public_id]  # a DICOMweb client opening the link counts
    assert studies.status_code == 200 and studies.headers["content-type"].startswith("application/dicom+json")
    found = studies.json()
    assert [tag(s, "0020000D") for s in found] == [world.main_study, world.prior_study]
    assert tag(found[0], "00100010") == {"Alphabetic": "J. (knee pain)"}  # label, never the name
    assert "Doe" not in studies.text
    assert tag(found[0], "00201206") == 2 and tag(found[0], "00201208") == 15
    only = await client.get(f"{base}/studies", params={"StudyInstanceUID": world.prior_study})
    assert [tag(s, "0020000D") for s in only.json()] == [world.prior_study]

    series = (await client.get(f"{base}/studies/{world.main_study}/series")).json()
    assert [tag(s, "0020000E") for s in series] == world.main_series
    assert [tag(s, "00080060") for s in series] == ["CT", "MR"]
    instances = (await client.get(f"{base}/studies/{world.main_study}/series/{world.main_series[0]}/instances")).json()
    assert len(instances) == 12 and all(tag(i, "00280010") == 128 for i in instances)
    numbers = [tag(i, "00200013") for i in instances]
    assert numbers == sorted(numbers)

    sop = tag(instances[3], "00080018")
    one = await client.get(f"{base}/studies/{world.main_study}/series/{world.main_series[0]}/instances/{sop}")
    assert one.status_code == 200
    [part] = parse_multipart(one)
    ds = pydicom.dcmread(io.BytesIO(part))
    assert ds.SOPInstanceUID == sop and ds.InstanceNumber == 4
    assert ds.pixel_array.shape == (128, 128)

    whole = await client.get(f"{base}/studies/{world.main_study}")
    datasets = [pydicom.dcmread(io.BytesIO(p)) for p in parse_multipart(whole)]
    assert len(datasets) == 15 and {d.StudyInstanceUID for d in datasets} == {world.main_study}

    meta = await client.get(f"{base}/studies/{world.main_study}/series/{world.main_series[1]}/metadata")
    assert meta.status_code == 200 and len(meta.json()) == 3
    assert all(tag(m, "00080060") == "MR" for m in meta.json())
    dataset = pydicom.Dataset.from_json(meta.json()[0])
    assert UID(dataset.SeriesInstanceUID) == world.main_series[1]

    rendered = await client.get(
        f"{base}/studies/{world.main_study}/series/{world.main_series[0]}/instances/{sop}/frames/1/rendered"
    )
    assert rendered.status_code == 200 and rendered.headers["content-type"] == "image/jpeg"
    assert pixels_of(rendered.content).shape[:2] == (128, 128)
    png = await client.get(f"{base}/studies/{world.main_study}/series/{world.main_series[0]}/instances/{sop}/rendered",
                           headers={"Accept": "image/png"})
    assert png.headers["content-type"] == "image/png"
    bad_frame = await client.get(
        f"{base}/studies/{world.main_study}/series/{world.main_series[0]}/instances/{sop}/frames/2/rendered"
    )
    assert bad_frame.status_code == 404


async def test_scope_and_download_choice_apply(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = world.share(series_uids=[world.main_series[1]])  # download: none
    base = f"/s/{created.token}/dicom-web"
    assert [tag(s, "0020000D") for s in (await client.get(f"{base}/studies")).json()] == [world.main_study]
    series = (await client.get(f"{base}/studies/{world.main_study}/series")).json()
    assert [tag(s, "0020000E") for s in series] == [world.main_series[1]]
    hidden = await client.get(f"{base}/studies/{world.main_study}/series/{world.main_series[0]}/instances")
    assert hidden.status_code == 404
    for uid in (world.prior_study, world.stranger_study, world.other_part_study):
        assert (await client.get(f"{base}/studies/{uid}/series")).status_code == 404
    # Without original downloads, WADO retrieve and metadata are refused; rendered frames stay.
    assert (await client.get(f"{base}/studies/{world.main_study}")).status_code == 403
    assert (await client.get(f"{base}/studies/{world.main_study}/metadata")).status_code == 403
    instances = (await client.get(f"{base}/studies/{world.main_study}/series/{world.main_series[1]}/instances")).json()
    sop = tag(instances[0], "00080018")
    ok = await client.get(f"{base}/studies/{world.main_study}/series/{world.main_series[1]}/instances/{sop}/rendered")
    assert ok.status_code == 200
    with transaction(world.sessions) as session:
        link = session.get(ShareLink, created.link.id)
        assert link is not None
        link.revoked_at = world.clock()
    assert (await client.get(f"{base}/studies")).status_code == 410


def _basic(code: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"specialist:{code}".encode()).decode()}


async def test_access_code_as_basic_auth_and_lock(client: httpx.AsyncClient, world: ShareWorld,
                                                  notified: Notified) -> None:
    created = world.share(access_code="31415926")
    base = f"/s/{created.token}/dicom-web"
    needs = await client.get(f"{base}/studies")
    assert needs.status_code == 401 and needs.headers["www-authenticate"].startswith("Basic")
    assert (await client.get(f"{base}/studies", headers=_basic("31415926"))).status_code == 200
    for _ in range(MAX_CODE_ATTEMPTS):
        assert (await client.get(f"{base}/studies", headers=_basic("00000000"))).status_code == 401
    assert (await client.get(f"{base}/studies", headers=_basic("31415926"))).status_code == 410
    assert notified.locked == [created.link.public_id]


async def test_view_limit_counts_study_searches(client: httpx.AsyncClient, world: ShareWorld) -> None:
    created = world.share(max_views=1)
    base = f"/s/{created.token}/dicom-web"
    assert (await client.get(f"{base}/studies")).status_code == 200
    assert (await client.get(f"{base}/studies")).status_code == 410
