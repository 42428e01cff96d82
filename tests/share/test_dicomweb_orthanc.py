"""A third-party DICOMweb client reads the link's endpoint: Orthanc's DICOMweb plugin, pointed at
``/s/{token}/dicom-web`` as a remote server, searches it (QIDO-RS) and retrieves the study (WADO-RS)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.share.conftest import ShareWorld

pytestmark = pytest.mark.orthanc


def test_orthanc_searches_and_retrieves_through_the_link(orthanc_url: str, served: str, world: ShareWorld) -> None:
    created = world.share(download="original", series_uids=[world.main_series[1]])
    name = f"lightbox-{created.link.public_id[:8]}"
    with httpx.Client(base_url=orthanc_url, timeout=60) as orthanc:
        put = orthanc.put(f"/dicom-web/servers/{name}", json={"Url": f"{served}/s/{created.token}/dicom-web"})
        assert put.status_code == 200, put.text

        studies = orthanc.post(f"/dicom-web/servers/{name}/get", json={"Uri": "/studies"})
        assert studies.status_code == 200, studies.text
        found = studies.json()
        assert [s["0020000D"]["Value"][0] for s in found] == [world.main_study]
        assert found[0]["00100010"]["Value"][0]["Alphabetic"] == "J. (knee pain)"

        series = orthanc.post(f"/dicom-web/servers/{name}/get", json={"Uri": f"/studies/{world.main_study}/series"})
        assert [s["0020000E"]["Value"][0] for s in series.json()] == [world.main_series[1]]

        retrieved = orthanc.post(f"/dicom-web/servers/{name}/retrieve",
                                 json={"Resources": [{"Study": world.main_study}], "Synchronous": True})
        assert retrieved.status_code == 200, retrieved.text
        deadline = time.monotonic() + 30
        while True:
            lookup = orthanc.post("/tools/find", json={"Level": "Instance", "Expand": True,
                                                       "Query": {"StudyInstanceUID": world.main_study}})
            instances = lookup.json()
            if len(instances) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # Only the shared (MR) series came across: the link's scope holds for a foreign client too.
        assert len(instances) == 3
        series_uids = {orthanc.get(f"/instances/{i['ID']}/simplified-tags").json()["SeriesInstanceUID"]
                       for i in instances}
        assert series_uids == {world.main_series[1]}

        # Another study's UID through the link: nothing.
        escape = orthanc.post(f"/dicom-web/servers/{name}/get",
                              json={"Uri": f"/studies/{world.stranger_study}/series"})
        assert escape.status_code != 200 or escape.json() == []
        orthanc.delete(f"/dicom-web/servers/{name}")
