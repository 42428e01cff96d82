"""Damaged files of every kind: a typed error or a picture, never anything else."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from imaging.errors import RenderError
from imaging.render import render_frame

SOURCES = ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_gdcm.dcm",
           "emri_small_jpeg_ls_lossless.dcm", "OBXXXX1A_expb.dcm", "JPGExtended.dcm", "MR_small_expb.dcm",
           "examples_ybr_color.dcm", "vlut_04.dcm", "eCT_Supplemental.dcm"]


def _damaged(data: bytes, rng: random.Random) -> bytes:
    mode = rng.choice(["cut", "flip", "junk"])
    if mode == "cut":
        return data[: rng.randrange(0, len(data))]
    if mode == "flip":
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        return bytes(damaged)
    return rng.randbytes(rng.randrange(0, 5000))


@pytest.mark.parametrize("name", SOURCES)
def test_damaged_copies_never_crash(name: str, tmp_path: Path) -> None:
    source = get_testdata_file(name)
    assert source is not None
    data = Path(str(source)).read_bytes()
    rng = random.Random(name)
    outcomes: dict[str, int] = {}
    for n in range(25):
        path = tmp_path / f"{n}.dcm"
        path.write_bytes(_damaged(data, rng))
        try:
            picture = render_frame(path, max_size=128)
            assert picture.dtype.name == "uint8" and picture.size > 0
            outcome = "rendered"
        except RenderError as exc:
            assert str(exc) and "\n" not in str(exc)
            outcome = exc.reason
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert sum(outcomes.values()) == 25
    assert set(outcomes) - {"rendered"}, "some damage must be noticed"
