"""``lightbox describe FILE_OR_FOLDER [--json]``: what a DICOM file or folder holds, in plain words.

Reads headers only (never pixels): kind of scan, body part, date, plane, MR weighting,
contrast, slices, and what bright and dark mean. Never a diagnosis.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from bot.commands import CommandError
from bot.settings import Settings
from glossary.describe import describe_datasets

MAX_FILES = 50_000


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``describe`` sub-command."""
    parser = subparsers.add_parser(
        "describe",
        help="describe a DICOM file or folder in plain words",
        description="Describe the studies in a DICOM file or folder from their attributes (no diagnosis).",
    )
    parser.add_argument("path", metavar="FILE_OR_FOLDER", help="a DICOM file or a folder of them")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)


def dicom_files(path: Path, limit: int = MAX_FILES) -> Iterator[Path]:
    """``path`` itself, or every file under it in a stable order (at most ``limit``)."""
    if path.is_file():
        yield path
        return
    count = 0
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            count += 1
            if count > limit:
                return
            yield Path(root) / name


def read_headers(paths: Iterator[Path]) -> tuple[list[Dataset], int]:
    """Headers of the DICOM files among ``paths`` (no pixel data), and how many files were skipped."""
    datasets: list[Dataset] = []
    skipped = 0
    for p in paths:
        try:
            datasets.append(dcmread(p, stop_before_pixels=True))
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
            skipped += 1
    return datasets, skipped


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """pydicom warns about every slightly malformed header, also when elements are first read;
    the descriptions cope, so stderr stays for Lightbox's own messages."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print a plain description of each study found."""
    del settings
    path = Path(args.path)
    if not path.exists():
        raise CommandError(f"{args.path} does not exist.")
    with quiet_pydicom():
        datasets, skipped = read_headers(dicom_files(path))
        if not datasets:
            what = "is not a DICOM file" if path.is_file() else "has no DICOM files"
            raise CommandError(f"{args.path} {what}.")
        studies = describe_datasets(datasets)
    if args.json:
        print(json.dumps({"studies": [s.as_dict() for s in studies], "skipped_files": skipped}, indent=2))
        return 0
    print("\n\n".join(s.text for s in studies))
    if skipped:
        print(f"\n({skipped} file(s) were not DICOM and were left out.)")
    return 0
