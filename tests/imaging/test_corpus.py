"""Every pixel-bearing file in pydicom's test files and pydicom-data renders or is refused with a reason."""

from __future__ import annotations

import numpy as np
import pytest

from imaging.errors import RenderError
from imaging.render import render
from tests.imaging.corpus import corpus_files, short_name

# Files that cannot be shown, and why (checked by hand: see the notes).
KNOWN_REFUSALS = {
    "MR_truncated.dcm": "truncated-pixel-data",  # 8130 of 8192 pixel bytes
    "emri_small_jpeg_2k_lossless_too_short.dcm": "truncated-pixel-data",  # last 8 bytes (the delimiter) cut
    "JPEG2000-embedded-sequence-delimiter.dcm": "corrupt",  # codestream header claims 14,540,801 tiles
    "meta_missing_tsyntax.dcm": "corrupt",  # a 2-byte Pixel Data with no Rows/Columns/Bits Allocated
    "nested_priv_SQ.dcm": "corrupt",  # same: no image attributes at all
}


def test_every_corpus_file_renders_or_is_refused_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    files = corpus_files()
    assert len(files) >= 160, "pydicom's test files and pydicom-data should both be installed"
    rendered, refused = [], []
    for path in files:
        name = short_name(path)
        try:
            result = render(path, max_size=0)
        except RenderError as exc:
            refused.append((name, exc.reason, str(exc)))
            continue
        pixels = result.pixels
        assert pixels.dtype == np.uint8 and pixels.ndim in (2, 3) and pixels.size > 0, name
        rendered.append((name, "x".join(map(str, pixels.shape)), result.voi.kind if result.voi else "colour"))
    print(f"\n{'file':55} outcome")  # every file: shown with pytest -s
    for name, shape, voi in rendered:
        print(f"{name:55} rendered {shape} ({voi})")
    with capsys.disabled():  # the refusals and the count: always shown
        print()
        for name, reason, message in refused:
            print(f"{name:55} REFUSED {reason}: {message}")
        print(f"corpus: rendered {len(rendered)}, refused {len(refused)}, of {len(files)}")
    assert {name: reason for name, reason, _ in refused} == {
        name: reason for name, reason in KNOWN_REFUSALS.items() if any(short_name(f) == name for f in files)
    }
    assert len(rendered) >= 158
