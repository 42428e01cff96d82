"""Each real service the suite relies on starts and does real work (proves the fixtures)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from sqlalchemy import create_engine, text


def test_postgres_round_trips_a_row(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE harness_probe (id serial PRIMARY KEY, label text NOT NULL)"))
        conn.execute(text("INSERT INTO harness_probe (label) VALUES (:label)"), {"label": "round trip"})
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT label FROM harness_probe")).all()
        version = conn.execute(text("SHOW server_version")).scalar_one()
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE harness_probe"))
    engine.dispose()
    assert rows == [("round trip",)]
    assert str(version).split(".")[0].isdigit()


def test_orthanc_returns_an_uploaded_file_over_qido_rs(orthanc_url: str) -> None:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    ds = pydicom.dcmread(path)
    with httpx.Client(base_url=orthanc_url, timeout=30) as client:
        stored = client.post("/instances", content=Path(path).read_bytes())
        assert stored.status_code == 200, stored.text
        found = client.get("/dicom-web/studies", params={"StudyInstanceUID": ds.StudyInstanceUID})
        assert found.status_code == 200
        studies = found.json()
    assert len(studies) == 1
    assert studies[0]["0020000D"]["Value"] == [ds.StudyInstanceUID]


def test_dcmj2pnm_renders_ct_small(dcmj2pnm: str, tmp_path: Path) -> None:
    path = get_testdata_file("CT_small.dcm")
    out = tmp_path / "ct.pgm"
    subprocess.run([dcmj2pnm, "+Wm", path, str(out)], check=True, capture_output=True)
    image = np.asarray(Image.open(out))
    assert image.shape == (128, 128)
    assert image.std() > 10  # a real picture, not a flat field


def test_chromium_renders_a_local_page(chromium_browser: Any, tmp_path: Path) -> None:
    page_file = tmp_path / "probe.html"
    page_file.write_text(
        "<!doctype html><title>probe</title><body style='margin:0;background:#fff'>"
        "<div id=box style='width:50px;height:50px;background:#f00'></div>"
        "<script>document.title='ready '+(2+3)</script></body>"
    )
    page = chromium_browser.new_page()
    try:
        page.goto(page_file.as_uri())
        assert page.title() == "ready 5"
        shot = tmp_path / "shot.png"
        page.screenshot(path=str(shot))
    finally:
        page.close()
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert tuple(pixels[10, 10]) == (255, 0, 0)
    assert tuple(pixels[100, 100]) == (255, 255, 255)
