"""Lightbox against dcmtk's dcmj2pnm on every corpus file dcmtk can render.

Both at native size with the default window: dcmj2pnm with ``+Wi 1`` where the file stores a
window, ``+Wl 1`` for a VOI LUT Sequence, else ``+Wm`` (min-max). Mean absolute difference at
most 4 grey levels on at least 97% of the files dcmtk renders.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from bot.cli import main
from imaging.decode import decode_frame, open_image
from imaging.display import frame_attributes, stored_windows
from tests.imaging.corpus import corpus_files, short_name

pytestmark = pytest.mark.dcmtk

TOLERANCE = 4.0


def _dcmtk_options(path: Path) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    if stored_windows(ds):
        return ["+Wi", "1"]
    frame_windows = stored_windows(frame_attributes(ds, 0))
    if frame_windows:
        # Enhanced objects keep their window in the Functional Groups; dcmtk 3.6.7 applies the
        # rescale from there but does not offer that window to +Wi ("only 0 window(s) in file"),
        # so it gets the same numbers explicitly.
        return ["+Ww", f"{frame_windows[0].center:g}", f"{frame_windows[0].width:g}"]
    if ds.get("VOILUTSequence"):
        return ["+Wl", "1"]
    return ["+Wm"]


def _dcmtk(dcmj2pnm: str, path: Path, out: Path) -> np.ndarray | None:
    done = subprocess.run([dcmj2pnm, *_dcmtk_options(path), str(path), str(out)],
                          capture_output=True, timeout=60, check=False)
    if done.returncode != 0 or not out.exists():
        return None
    with Image.open(out) as pnm:
        return np.asarray(pnm)


def _diff(ours: np.ndarray, theirs: np.ndarray) -> float | None:
    if ours.ndim != theirs.ndim:
        ours = ours.mean(axis=2) if ours.ndim == 3 else ours
        theirs = theirs.mean(axis=2) if theirs.ndim == 3 else theirs
    if ours.shape != theirs.shape:
        return None
    return float(np.abs(ours.astype(float) - theirs.astype(float)).mean())


def _twin(path: Path) -> Path | None:
    """The little-endian original of a big-endian test file (``x_expb.dcm`` -> ``x.dcm``)."""
    if "_expb" in path.name:
        twin = path.with_name(path.name.replace("_expb", ""))
        return twin if twin.exists() else None
    return None


def test_lightbox_matches_dcmtk(dcmj2pnm: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = list(corpus_files())
    out_dir = tmp_path / "lightbox"
    status = main(["render", *map(str, files), "--out", str(out_dir), "--max-size", "0", "--format", "png"])
    written = {}
    for line in capsys.readouterr().out.splitlines():
        source, _, target = line.partition(" -> ")
        written[source] = Path(target)
    assert status == 1  # the five refused files (see test_corpus) make it non-zero
    rows: list[tuple[str, str, str]] = []
    compared = within = 0
    for n, path in enumerate(files):
        if str(path) not in written:
            continue
        theirs = _dcmtk(dcmj2pnm, path, tmp_path / f"dcmtk-{n}.pnm")
        if theirs is None:
            rows.append((short_name(path), "-", "dcmtk cannot render it"))
            continue
        with Image.open(written[str(path)]) as png:
            ours = np.asarray(png)
        diff = _diff(ours, theirs)
        compared += 1
        if diff is not None and diff <= TOLERANCE:
            within += 1
            rows.append((short_name(path), f"{diff:.2f}", "ok"))
            continue
        note = "DIFFERENT" if diff is not None else f"shape {ours.shape} vs {theirs.shape}"
        twin = _twin(path)
        if twin is not None and diff is not None:
            twin_theirs = _dcmtk(dcmj2pnm, twin, tmp_path / f"dcmtk-twin-{n}.pnm")
            twin_diff = None if twin_theirs is None else _diff(ours, twin_theirs)
            same_values = np.array_equal(decode_frame(open_image(path)).pixels,
                                         decode_frame(open_image(twin)).pixels)
            if same_values and twin_diff is not None and twin_diff <= TOLERANCE:
                note = (f"dcmtk wrong: it misreads this big-endian file; its render of the little-endian "
                        f"twin {twin.name} (same pixel values) differs from ours by {twin_diff:.2f}")
        rows.append((short_name(path), "-" if diff is None else f"{diff:.2f}", note))
    with capsys.disabled():
        print(f"\n{'file':55} {'mean |diff|':>11}  note")
        for name, diff_text, note in rows:
            print(f"{name:55} {diff_text:>11}  {note}")
        print(f"dcmtk rendered {compared}; within {TOLERANCE} grey levels: {within} ({100 * within / compared:.1f}%)")
    assert compared >= 100
    assert within >= 0.97 * compared
