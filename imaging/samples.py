"""Real sample DICOM files that ship with pydicom and the ``pydicom-data`` package, found offline.

``pydicom.data.get_testdata_files`` downloads any external file whose checksum it does not recognise,
retrying for tens of seconds per file when there is no network; tests, benchmarks and the demo use
these functions instead, which only ever look on disk.
"""

from __future__ import annotations

import fnmatch
import importlib.util
from pathlib import Path


def sample_dirs() -> list[Path]:
    """Folders holding sample files: pydicom's own test files, then pydicom-data's, if installed."""
    folders: list[Path] = []
    spec = importlib.util.find_spec("pydicom")
    if spec is not None and spec.origin:
        folders.append(Path(spec.origin).parent / "data" / "test_files")
    store = importlib.util.find_spec("data_store")
    if store is not None and store.origin:
        folders.append(Path(store.origin).parent / "data")
    return [f for f in folders if f.is_dir()]


def sample_files(pattern: str = "*") -> list[Path]:
    """Every sample file whose name matches ``pattern`` (fnmatch), sorted, never downloading."""
    found: dict[str, Path] = {}
    for folder in sample_dirs():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and fnmatch.fnmatch(path.name, pattern) and not path.name.endswith((".py", ".pyc")):
                found.setdefault(str(path.relative_to(folder)), path)
    return sorted(found.values())


def sample_file(name: str) -> Path:
    """The sample file called ``name`` (a file name, or a path inside a sample folder)."""
    for folder in sample_dirs():
        direct = folder / name
        if direct.is_file():
            return direct
        matches = sorted(p for p in folder.rglob(Path(name).name) if p.is_file())
        if matches:
            return matches[0]
    raise FileNotFoundError(f"no sample DICOM file named {name}")
