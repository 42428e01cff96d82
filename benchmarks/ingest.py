"""Ingest speed: Lightbox's importer vs Orthanc's REST API on the same files; "latest MR" query time.

Run: ``.venv/bin/python benchmarks/ingest.py [--instances 10000] [--patients 1000] [--no-orthanc]``

Corpus: every DICOM file in pydicom's test files and pydicom-data that has Study/Series/SOP UIDs and
is at most ``--max-kb`` big, replicated with fresh UIDs to ``--instances`` files. Each copy is its own
study with a random study date (seeded), and the copies are spread over ``--patients`` patients, so
the store ends with 10,000 studies over 1,000 patients by default.

1. Lightbox: ``store.importer.import_path`` on the folder, into a fresh SQLite store (files fsynced,
   one transaction per batch) — instances per second.
2. Orthanc (tests.services.start_orthanc, default configuration): each file POSTed to ``/instances``
   over one keep-alive HTTP connection, as a single client would — instances per second.
3. The ratio (target: Lightbox at least 2x Orthanc).
4. "Latest MR for this patient" (``store.queries.latest_study(session, patient_id, modality="MR")``)
   timed for random patients on the SQLite store: median and p95 (target: median at most 5 ms), with
   the answers checked against the generated data.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pydicom
import pydicom.data
from pydicom.uid import generate_uid
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from store.db import make_engine, session_factory, upgrade  # noqa: E402
from store.filestore import FileStore  # noqa: E402
from store.importer import import_path  # noqa: E402
from store.models import Patient, PatientIdentifier, Study  # noqa: E402


def corpus_roots() -> list[Path]:
    """pydicom's test files and pydicom-data's files."""
    roots = [Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent]
    try:
        import data_store  # pydicom-data

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        print("pydicom-data is not installed: corpus is pydicom's test files only")
    return roots


def load_templates(max_kb: int) -> list[pydicom.Dataset]:
    """Every readable DICOM file with the three UIDs and a Modality, at most ``max_kb`` big."""
    templates = []
    seen: set[str] = set()
    for root in corpus_roots():
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.stat().st_size > max_kb * 1024:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(path)
            except Exception:
                continue
            if "DirectoryRecordSequence" in ds or not all(
                k in ds for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Modality")
            ):
                continue
            if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
                continue
            digest = f"{path.name}:{path.stat().st_size}"
            if digest in seen:
                continue
            seen.add(digest)
            try:  # some test files are deliberately odd and cannot be written back
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds.save_as(io.BytesIO(), enforce_file_format=True)
            except Exception:
                continue
            templates.append(ds)
    return templates


def replicate(
    templates: list[pydicom.Dataset], count: int, patients: int, folder: Path, seed: int
) -> dict[str, date]:
    """Write ``count`` copies with fresh UIDs into ``folder``; returns each patient's latest MR date."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    per_patient = max(1, count // patients)
    latest_mr: dict[str, date] = {}
    start = date(2000, 1, 1)
    warnings.simplefilter("ignore")  # the test files' deliberate oddities, re-written thousands of times
    for i in range(count):
        ds = templates[i % len(templates)]
        patient = f"BENCH{min(i // per_patient, patients - 1):05d}"
        when = start + timedelta(days=rng.randrange(0, 25 * 365))
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = patient
        ds.PatientName = f"Bench^{patient}"
        ds.PatientBirthDate = "19700101"
        ds.StudyDate = when.strftime("%Y%m%d")
        ds.SeriesDate = ds.StudyDate
        if "IssuerOfPatientID" in ds:
            del ds.IssuerOfPatientID
        out = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(out, enforce_file_format=True)
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"{i:06d}.dcm").write_bytes(out.getvalue())
        if str(ds.Modality).upper() == "MR":
            latest_mr[patient] = max(latest_mr.get(patient, when), when)
    return latest_mr


def bench_lightbox(corpus: Path, work: Path) -> tuple[float, object, str]:
    url = f"sqlite:///{work / 'lightbox.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    started = time.perf_counter()
    report = import_path(sessions, FileStore(work / "dicom"), corpus)
    elapsed = time.perf_counter() - started
    engine.dispose()
    if report.skipped or report.conflicts:
        print(f"  note: {len(report.skipped)} skipped, {len(report.conflicts)} conflicts")
    return elapsed, report, url


def template_bytes(ds: pydicom.Dataset) -> bytes:
    """A template written with fresh UIDs (for probing)."""
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def orthanc_accepts(client: Any, templates: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    """The templates Orthanc stores (some deliberately odd test files it refuses); probes are deleted."""
    kept = []
    for ds in templates:
        response = client.post("/instances", content=template_bytes(ds))
        if response.status_code == 200:
            kept.append(ds)
            client.delete(f"/instances/{response.json()['ID']}")
    return kept


def post_to_orthanc(client: Any, files: list[Path]) -> float:
    """Seconds to POST every file to Orthanc's /instances, one keep-alive connection."""
    before = int(client.get("/statistics").json()["CountInstances"])
    started = time.perf_counter()
    for path in files:
        response = client.post("/instances", content=path.read_bytes())
        if response.status_code != 200:
            raise RuntimeError(f"Orthanc refused {path.name}: {response.status_code} {response.text[:200]}")
    elapsed = time.perf_counter() - started
    after = int(client.get("/statistics").json()["CountInstances"])
    if after - before != len(files):
        print(f"  warning: Orthanc stored {after - before} instances, expected {len(files)}")
    return elapsed


@contextmanager
def maybe_orthanc(work: Path, enabled: bool) -> Iterator[Any]:
    """An httpx client on a fresh Orthanc, or ``None`` when disabled or not installed."""
    if not enabled:
        yield None
        return
    import httpx

    from tests.services import ServiceError, find_orthanc, start_orthanc

    if find_orthanc() is None:
        print("Orthanc: not installed, not measured")
        yield None
        return
    try:
        with start_orthanc(work / "orthanc") as base, httpx.Client(base_url=base, timeout=120) as client:
            yield client
    except ServiceError as exc:
        print(f"Orthanc: did not start ({exc})")
        yield None


def bench_query(url: str, latest_mr: dict[str, date], samples: int, seed: int) -> None:
    try:
        from store.queries import latest_study
    except ImportError:
        print("Query: store.queries.latest_study is not available; not measured")
        return
    engine = make_engine(url)
    sessions = session_factory(engine)
    rng = random.Random(seed)
    with sessions() as session:
        ids = {v: p for v, p in session.execute(select(PatientIdentifier.value, PatientIdentifier.patient_id))}
        n_patients = session.scalar(select(func.count()).select_from(Patient))
        n_studies = session.scalar(select(func.count()).select_from(Study))
        print(f"Query store: {n_studies} studies over {n_patients} patients")
        values = sorted(ids)
        timings = []
        wrong = 0
        for _ in range(samples):
            value = rng.choice(values)
            started = time.perf_counter()
            study = latest_study(session, ids[value], modality="MR")
            timings.append((time.perf_counter() - started) * 1000)
            expected = latest_mr.get(value)
            got = study.study_date if study is not None else None
            if got != expected:
                wrong += 1
            session.expunge_all()
    engine.dispose()
    timings.sort()
    median = statistics.median(timings)
    p95 = timings[int(len(timings) * 0.95) - 1]
    verdict = "meets" if median <= 5 else "MISSES"
    print(f"Latest MR for a patient (SQLite, {samples} random patients): median {median:.2f} ms, p95 {p95:.2f} ms "
          f"({verdict} the 5 ms target); wrong answers: {wrong}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--patients", type=int, default=1_000)
    parser.add_argument("--max-kb", type=int, default=600, help="largest template file in KB (default 600)")
    parser.add_argument("--no-orthanc", action="store_true")
    parser.add_argument("--queries", type=int, default=2_000, help="query samples (default 2000)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--workdir", type=Path, help="keep files here (default: a temporary folder)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="lightbox-ingest-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        templates = load_templates(args.max_kb)
        with maybe_orthanc(work, not args.no_orthanc) as orthanc:
            if orthanc is not None:
                accepted = orthanc_accepts(orthanc, templates)
                print(f"Templates: {len(templates)} readable, {len(accepted)} also accepted by Orthanc (used)")
                templates = accepted
            modalities = sorted({str(t.Modality) for t in templates})
            print(f"Templates: {len(templates)} files (modalities {', '.join(modalities)})")
            started = time.perf_counter()
            latest_mr = replicate(templates, args.instances, args.patients, work / "corpus", args.seed)
            files = sorted((work / "corpus").rglob("*.dcm"))
            size_mb = sum(f.stat().st_size for f in files) / 2**20
            print(f"Corpus: {len(files)} instances, {size_mb:.0f} MB, written in "
                  f"{time.perf_counter() - started:.1f} s")

            elapsed, report, url = bench_lightbox(work / "corpus", work / "lightbox")
            added = report.instances_added  # type: ignore[attr-defined]
            lightbox_rate = added / elapsed
            print(f"Lightbox import: {added} instances in {elapsed:.1f} s = {lightbox_rate:.0f} instances/s "
                  f"({size_mb / elapsed:.1f} MB/s)")

            if orthanc is not None:
                orthanc_elapsed = post_to_orthanc(orthanc, files)
                orthanc_rate = len(files) / orthanc_elapsed
                ratio = lightbox_rate / orthanc_rate
                print(f"Orthanc REST POST /instances: {len(files)} instances in {orthanc_elapsed:.1f} s = "
                      f"{orthanc_rate:.0f} instances/s")
                print(f"Ratio Lightbox/Orthanc: {ratio:.2f}x ({'meets' if ratio >= 2 else 'MISSES'} the 2x target)")

        bench_query(url, latest_mr, args.queries, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
