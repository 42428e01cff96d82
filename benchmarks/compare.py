"""How fast a side-by-side comparison preview is made for two 200-slice series (issue 9).

Builds one patient with two CT studies a year apart, each one 200-slice axial series synthesised from a
real 512 x 512 CT slice (pydicom-data's ``693_UNCR.dcm``: own UIDs, positions 2.5 mm apart along the slice
normal, the earlier series offset by 1.25 mm so pairing by position has work to do, pixels shifted per
slice), imported through the real importer into a fresh SQLite database and file store.

Each run does what the chat's "compare" and ``lightbox compare`` do: plan the comparison
(:func:`store.comparison.plan_comparison`), pair the series (``pair_series``), load both stacks
(``stack``), pair the slice (``pair_slice``), render both slices with the same window and captions
(:func:`imaging.compose.side_by_side`, 640 px) and encode the chat photo (``imaging.render.photo_bytes``).
Cold cache: the header cache is cleared before every run and every run asks for a different slice, so no
picture or header is reused (the operating system's file cache stays warm: the files were just written).

Target: median <= 300 ms on 2 cores. Run pinned to two cores for the figure that counts:

    taskset -c 0,1 .venv/bin/python benchmarks/compare.py [--slices 200] [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pydicom
from pydicom.uid import generate_uid
from sqlalchemy.orm import Session, sessionmaker

from imaging.compose import side_by_side
from imaging.decode import clear_header_cache
from imaging.render import photo_bytes
from imaging.samples import sample_file
from store.comparison import pair_series, pair_slice, plan_comparison, stack
from store.db import make_engine, session_factory, upgrade
from store.filestore import FileStore
from store.importer import import_path
from store.linking import find_patient_by_identifier

SOURCE = "693_UNCR.dcm"
PATIENT = "BENCH-CMP"


def write_series(folder: Path, slices: int, *, study_date: str, offset_mm: float) -> None:
    """``slices`` files of one axial series made from the real 512 x 512 CT slice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = pydicom.dcmread(sample_file(SOURCE))
    plain = original.pixel_array.copy()
    study_uid, series_uid = generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(slices):
        ds = original.copy()
        ds.PatientID = PATIENT
        ds.PatientName = "Bench^Compare"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = study_date
        ds.StudyDescription = "CT chest"
        ds.BodyPartExamined = "CHEST"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 2
        ds.SeriesDescription = "Axial 2.5 mm"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-250.0, -250.0, offset_mm + 2.5 * k]
        ds.SliceLocation = offset_mm + 2.5 * k
        ds.PixelData = np.roll(plain, k, axis=0).astype(plain.dtype).tobytes()
        ds.save_as(folder / f"{k:04d}.dcm", enforce_file_format=True)


def preview(sessions: sessionmaker[Session], files: FileStore, index: int) -> tuple[bytes, int]:
    """One side-by-side preview of later slice ``index`` (the chat's path); returns the photo and partner."""
    with sessions() as session:
        patient = find_patient_by_identifier(session, PATIENT, None)
        assert patient is not None
        plan = plan_comparison(session, patient.id, modality="CT", body_part="CHEST")
        assert plan.earlier is not None and plan.later is not None, plan.problem
        pair = pair_series(session, patient.id, plan.earlier, plan.later)
        assert pair is not None
        old, new = stack(session, patient.id, pair[0]), stack(session, patient.id, pair[1])
        index = min(index, len(new) - 1)
        partner = pair_slice(old, new, index)
        pixels = side_by_side(
            (files.image_source(old[partner].storage_key or ""), 0),
            (files.image_source(new[index].storage_key or ""), 0),
            ("12 March 2025", "18 March 2026"),
            max_size=640,
        )
    return photo_bytes(pixels), partner


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=200, help="slices per series (default 200)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs (default 30)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-compare-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_series(root / "in" / "earlier", args.slices, study_date="20250312", offset_mm=1.25)
        write_series(root / "in" / "later", args.slices, study_date="20260318", offset_mm=0.0)
        url = f"sqlite:///{root / 'lightbox.sqlite3'}"
        upgrade(url)
        engine = make_engine(url)
        sessions = session_factory(engine)
        files = FileStore(root / "dicom", cipher=None)
        report = import_path(sessions, files, root / "in")
        assert report.instances_added == 2 * args.slices, report.to_dict()
        print(f"built 2 x {args.slices} slices of 512 x 512 CT in {time.perf_counter() - started:.1f} s; "
              f"{cores} core(s) available")

        preview(sessions, files, 0)  # imports and database connections warm; pictures are not reused below
        times: list[float] = []
        sizes: list[int] = []
        for run in range(args.runs):
            clear_header_cache()
            index = (run * 37 + 11) % args.slices  # a different slice each run
            t0 = time.perf_counter()
            photo, partner = preview(sessions, files, index)
            times.append((time.perf_counter() - t0) * 1000)
            sizes.append(len(photo))
            assert abs(partner - index) <= 1, (index, partner)  # paired by position (1.25 mm apart)
        engine.dispose()
    times.sort()
    median = statistics.median(times)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    photo_kb = int(statistics.median(sizes)) // 1024
    print(f"side-by-side preview of two {args.slices}-slice series, {args.runs} cold runs: "
          f"median {median:.0f} ms, p95 {p95:.0f} ms, min {times[0]:.0f} ms; photo ~{photo_kb} KB")
    print(f"target: median <= 300 ms on 2 cores -> {'met' if median <= 300 else 'NOT met'}"
          f"{'' if cores == 2 else f' (measured with {cores} cores; pin with taskset -c 0,1)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
