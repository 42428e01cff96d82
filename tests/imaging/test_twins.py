"""Files dcmtk cannot render (JPEG 2000, JPEG-LS) against their uncompressed twins in the corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from imaging.render import render_frame

# (compressed, uncompressed original, largest mean |difference| allowed in grey levels)
TWINS = [
    ("693_J2KR.dcm", "693_UNCR.dcm", 0.0),
    ("693_J2KI.dcm", "693_UNCI.dcm", 4.0),
    ("MR2_J2KR.dcm", "MR2_UNCR.dcm", 0.0),
    ("MR2_J2KI.dcm", "MR2_UNCI.dcm", 4.0),
    ("RG1_J2KR.dcm", "RG1_UNCR.dcm", 0.0),
    ("RG1_J2KI.dcm", "RG1_UNCI.dcm", 4.0),
    ("RG3_J2KR.dcm", "RG3_UNCR.dcm", 0.0),
    ("RG3_J2KI.dcm", "RG3_UNCI.dcm", 4.0),
    ("US1_J2KR.dcm", "US1_UNCR.dcm", 0.0),
    ("US1_J2KI.dcm", "US1_UNCI.dcm", 4.0),
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm", 0.0),
    ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm", 0.0),
    ("MR_small_jp2klossless.dcm", "MR_small.dcm", 0.0),
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", 0.0),
    ("JPEG2000.dcm", "JPEG2000_UNC.dcm", 0.0),
    ("SC_rgb_gdcm_KY.dcm", "SC_rgb.dcm", 4.0),
    ("SC_rgb_jls_lossy_line.dcm", "SC_rgb.dcm", 4.0),
    ("SC_rgb_jls_lossy_sample.dcm", "SC_rgb.dcm", 4.0),
    ("SC_rgb_32bit.dcm", "SC_rgb.dcm", 1.0),
    ("SC_rgb_expb_32bit.dcm", "SC_rgb.dcm", 1.0),
    ("gdcm-US-ALOKA-16_big.dcm", "gdcm-US-ALOKA-16.dcm", 0.0),
]


def _file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path))


@pytest.mark.parametrize(("compressed", "original", "tolerance"), TWINS)
def test_compressed_file_renders_like_its_original(compressed: str, original: str, tolerance: float) -> None:
    ours = render_frame(_file(compressed), max_size=0).astype(float)
    reference = render_frame(_file(original), max_size=0).astype(float)
    assert ours.shape == reference.shape
    diff = float(np.abs(ours - reference).mean())
    assert diff <= tolerance, f"{compressed} vs {original}: {diff:.2f}"
