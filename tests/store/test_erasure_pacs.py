"""Erasure also removes copies a worker fetched from the PACS into its cache."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from store.dicomweb import DicomWebSource
from store.erasure import forget_patient
from store.models import Instance, Patient, Series, Study
from store.pacs_store import PacsFileStore


def test_forget_clears_the_pacs_cache_of_that_patient_only(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    files = PacsFileStore(tmp_path / "dicom", DicomWebSource("http://127.0.0.1:9/dicom-web"), sessions,
                          cache_root=tmp_path / "pacs-cache", cache_limit_bytes=10_000_000)
    with sessions() as session, session.begin():
        for n, name in enumerate(("Gone^Gail", "Kept^Ken")):
            patient = Patient(name=name)
            session.add(patient)
            session.flush()
            study = Study(patient_id=patient.id, study_uid=f"9.{n}", source="dicomweb")
            study.series.append(Series(series_uid=f"9.{n}.1", modality="CT"))
            session.add(study)
            session.flush()
            session.add(Instance(series_id=study.series[0].id, sop_instance_uid=f"9.{n}.1.1",
                                 remote_url=f"http://pacs/{n}"))
    gone_copy = files.cache.put("9.0.1.1", b"DICM gail's pixels")
    kept_copy = files.cache.put("9.1.1.1", b"DICM ken's pixels")
    with sessions() as session:
        gail = session.query(Patient).filter_by(name="Gone^Gail").one().id
    report = forget_patient(sessions, files, gail)
    assert report.files == 1
    assert not gone_copy.exists()
    assert kept_copy.exists()


def test_with_encryption_the_pacs_cache_holds_no_clear_bytes(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    import io

    import pydicom

    from imaging.samples import sample_file
    from store.crypto import Cipher

    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.PatientName = "Secret^Sally"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    plain = buffer.getvalue()

    class FakePacs(DicomWebSource):
        def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:  # type: ignore[override]
            return plain

    files = PacsFileStore(tmp_path / "dicom", FakePacs("http://127.0.0.1:9/dicom-web"), sessions,
                          cache_root=tmp_path / "pacs-cache", cache_limit_bytes=10_000_000)
    files.cipher = Cipher.from_secret("a test key that is long enough")
    with sessions() as session, session.begin():
        patient = Patient(name="Secret^Sally")
        session.add(patient)
        session.flush()
        study = Study(patient_id=patient.id, study_uid=str(ds.StudyInstanceUID), source="dicomweb")
        study.series.append(Series(series_uid=str(ds.SeriesInstanceUID), modality="CT"))
        session.add(study)
        session.flush()
        instance = Instance(series_id=study.series[0].id, sop_instance_uid=str(ds.SOPInstanceUID),
                            remote_url="http://pacs/x")
        session.add(instance)
    on_disk = files.fetch(instance).read_bytes()
    assert b"Secret^Sally" not in on_disk and plain[-4096:] not in on_disk
    assert files.fetch_bytes(instance) == plain
    source = files.fetch_source(instance)
    assert not isinstance(source, Path) and str(source.SOPInstanceUID) == str(ds.SOPInstanceUID)
