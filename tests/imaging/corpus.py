"""The rendering corpus: every file with pixel data in pydicom's test files and pydicom-data."""

from __future__ import annotations

import os
import warnings
from functools import cache
from pathlib import Path

import pydicom
import pydicom.data

_PIXEL_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")


def _roots() -> list[Path]:
    roots = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # pydicom-data

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:  # pragma: no cover - pydicom-data is a test dependency
        pass
    return roots


def _has_pixel_data(path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, defer_size=256)
        if any(kw in ds for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            return True
    except Exception:
        pass
    # A file cut off inside Pixel Data parses without it: look for the tag itself after the header.
    data = path.read_bytes()
    return len(data) > 132 and any(tag in data[132:] for tag in _PIXEL_TAG_BYTES) and (
        data[128:132] == b"DICM"
    )


@cache
def corpus_files() -> tuple[Path, ...]:
    """Every file under the two test-data roots that holds (or starts) a Pixel Data element."""
    found = []
    for root in _roots():
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                if path.suffix in {".json", ".txt", ".py", ".icc", ".gz", ".bz2", ".dump"}:
                    continue
                if _has_pixel_data(path):
                    found.append(path)
    return tuple(sorted(found))


def short_name(path: Path) -> str:
    """A readable name for tables: the path below the data root."""
    for root in _roots():
        try:
            return str(path.relative_to(root))
        except ValueError:
            continue
    return path.name
