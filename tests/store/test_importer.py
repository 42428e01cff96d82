"""Import from folders, DICOMDIRs, ZIPs and uploads, on SQLite and PostgreSQL, with pydicom's real CD tree.

The CD is pydicom's ``dicomdirtests`` tree: 31 files, 2 patients (Patient IDs 77654033 and 98890234),
6 studies, 13 series, with a DICOMDIR naming every file.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import pydicom
import pydicom.data
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from imaging.geometry import plane_from_orientation, slice_location
from store.filestore import FileStore
from store.importer import (
    ImportReport,
    import_bytes,
    import_path,
)
from store.models import AccessEvent, Instance, Patient, PatientIdentifier, Series, Study, StudyModality

CD_DICOMDIR = Path(pydicom.data.get_testdata_file("DICOMDIR"))
CD_FOLDERS = ("77654033", "98892001", "98892003")
CD_INSTANCES = 31
CD_STUDIES = 6
CD_SERIES = 13
CT_HEAD_STUDY = "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.1"
CR_SPINE_STUDY = "1.3.6.1.4.1.5962.1.1.0.0.0.1196527414.5534.0.1"


# ---------------------------------------------------------------- helpers (also used by the other import tests)


def copy_cd(dest: Path) -> Path:
    """A copy of the CD tree (DICOMDIR + the three patient folders) in ``dest``; returns its DICOMDIR."""
    dest.mkdir(parents=True, exist_ok=True)
    for folder in CD_FOLDERS:
        shutil.copytree(CD_DICOMDIR.parent / folder, dest / folder)
    shutil.copy2(CD_DICOMDIR, dest / "DICOMDIR")
    return dest / "DICOMDIR"


def cd_files(root: Path) -> list[Path]:
    """The 31 DICOM files of a CD copy."""
    return sorted(p for folder in CD_FOLDERS for p in (root / folder).rglob("*") if p.is_file())


def zip_folder(folder: Path, target: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A ZIP of ``folder`` (as a patient would get it from a CD), plus ``extra`` members."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return target


def dicom_bytes(
    name: str = "CT_small.dcm", *, fresh_uids: bool = True, **attributes: Any
) -> bytes:
    """A real pydicom test file, with new Study/Series/SOP UIDs and the given attributes changed."""
    ds = pydicom.dcmread(pydicom.data.get_testdata_file(name))
    if fresh_uids:
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def store_state(sessions: sessionmaker[Session], filestore: FileStore) -> dict[str, Any]:
    """Everything an import decides, in comparable form (no generated ids or timestamps)."""
    with sessions() as s:
        return {
            "patients": sorted(
                (i.issuer, i.value, len(p.studies))
                for p in s.scalars(select(Patient))
                for i in p.identifiers
            ),
            "studies": sorted(
                (st.study_uid, st.study_date, st.modalities, st.body_part, st.series_count, st.instance_count)
                for st in s.scalars(select(Study))
            ),
            "series": sorted(
                (se.series_uid, se.modality, se.plane, se.body_part, se.instance_count, se.frame_count)
                for se in s.scalars(select(Series))
            ),
            "instances": sorted(
                (i.sop_instance_uid, i.content_hash, i.storage_key, i.size_bytes)
                for i in s.scalars(select(Instance))
            ),
            "study_modalities": sorted(
                (m.modality, m.study_date) for m in s.scalars(select(StudyModality))
            ),
            "files": filestore.keys(),
        }


def assert_consistent(sessions: sessionmaker[Session], filestore: FileStore) -> None:
    """Every row points at a stored file with its hash, and the counts match the rows."""
    with sessions() as s:
        for inst in s.scalars(select(Instance)):
            assert inst.storage_key and filestore.exists(inst.storage_key), inst.sop_instance_uid
            assert hashlib.sha256(filestore.read(inst.storage_key)).hexdigest() == inst.content_hash
        for se in s.scalars(select(Series)):
            n = s.scalar(select(func.count()).select_from(Instance).where(Instance.series_id == se.id))
            assert se.instance_count == n
        for st in s.scalars(select(Study)):
            n_series = s.scalar(select(func.count()).select_from(Series).where(Series.study_id == st.id))
            n_inst = s.scalar(
                select(func.count()).select_from(Instance).join(Series).where(Series.study_id == st.id)
            )
            assert (st.series_count, st.instance_count) == (n_series, n_inst)
            rows = {m.modality for m in s.scalars(select(StudyModality).where(StudyModality.study_id == st.id))}
            assert rows == {m for m in st.modalities.split("\\") if m}


@pytest.fixture
def filestore(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store" / "dicom")


@pytest.fixture
def cd(tmp_path: Path) -> Path:
    """A copy of the CD tree; returns its DICOMDIR path."""
    return copy_cd(tmp_path / "cd")


# ---------------------------------------------------------------- tests


def test_folder_import_indexes_every_attribute(
    sessions: sessionmaker[Session], filestore: FileStore, cd: Path
) -> None:
    root = cd.parent
    (root / "README.txt").write_text("Viewer instructions for this CD")
    (root / "empty.dcm").write_bytes(b"")
    report = import_path(sessions, filestore, root)

    assert report.total_files == CD_INSTANCES + 3
    assert (report.instances_added, report.instances_present) == (CD_INSTANCES, 0)
    assert (report.studies_added, report.series_added) == (CD_STUDIES, CD_SERIES)
    assert report.conflicts == []
    assert {(s.file, s.reason) for s in report.skipped} == {
        ("DICOMDIR", "a DICOMDIR (the disc's index), not an image"),
        ("README.txt", "not a DICOM file"),
        ("empty.dcm", "empty file"),
    }
    assert report.several_patients
    assert sorted(p.instances for p in report.patients) == [7, 24]
    assert all(p.new for p in report.patients)

    with sessions() as s:
        by_id = {i.value: i.patient for i in s.scalars(select(PatientIdentifier))}
        assert set(by_id) == {"77654033", "98890234"}
        assert by_id["77654033"].name == "Doe^Archibald"
        head = s.scalars(select(Study).where(Study.study_uid == CT_HEAD_STUDY)).one()
        assert head.patient_id == by_id["77654033"].id
        assert head.study_date == date(1995, 9, 3)
        assert head.description == "CT, HEAD/BRAIN WO CONTRAST"
        assert (head.modalities, head.body_part) == ("CT", "brain")
        assert (head.series_count, head.instance_count) == (1, 4)
        modality_rows = s.scalars(select(StudyModality).where(StudyModality.study_id == head.id)).all()
        assert [(m.modality, m.patient_id, m.study_date) for m in modality_rows] == [
            ("CT", head.patient_id, date(1995, 9, 3))
        ]
        spine = s.scalars(select(Study).where(Study.study_uid == CR_SPINE_STUDY)).one()
        assert (spine.modalities, spine.body_part, spine.series_count) == ("CR", "cervical spine", 3)
        mra = s.scalars(select(Series).where(Series.description == "ANGIO Projected from   C")).one()
        assert (mra.modality, mra.instance_count, mra.frame_count) == ("MR", 7, 7)
        all_instances = s.scalars(select(Instance)).all()
        assert len(all_instances) == CD_INSTANCES

    # Each instance row against its own file, read independently with pydicom.
    with sessions() as s:
        for path in cd_files(root):
            raw = path.read_bytes()
            ds = pydicom.dcmread(path)
            inst = s.scalars(select(Instance).where(Instance.sop_instance_uid == ds.SOPInstanceUID)).one()
            assert inst.content_hash == hashlib.sha256(raw).hexdigest()
            assert inst.size_bytes == len(raw)
            assert filestore.read(inst.storage_key or "") == raw
            assert inst.sop_class_uid == ds.SOPClassUID
            assert (inst.rows, inst.columns) == (ds.Rows, ds.Columns)
            assert inst.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
            assert inst.instance_number == (int(ds.InstanceNumber) if "InstanceNumber" in ds else None)
            expected_location = slice_location(ds.get("ImageOrientationPatient"), ds.get("ImagePositionPatient"))
            if expected_location is None:
                assert inst.slice_location is None
            else:
                assert inst.slice_location == pytest.approx(expected_location)
            if "PixelSpacing" in ds:
                assert [float(v) for v in inst.pixel_spacing.split("\\")] == pytest.approx(
                    [float(v) for v in ds.PixelSpacing]
                )
            assert inst.series.series_uid == ds.SeriesInstanceUID
            if inst.series.instance_count == 1:
                assert inst.series.plane == plane_from_orientation(ds.get("ImageOrientationPatient"))
            # Opaque names: no patient name or ID in the store's paths.
            stored_path = str(filestore.path(inst.storage_key or ""))
            assert "Doe" not in stored_path and str(ds.PatientID) not in stored_path
    assert_consistent(sessions, filestore)
    with sessions() as s:
        events = s.scalars(select(AccessEvent).where(AccessEvent.action == "import")).all()
        assert len(events) == 2 and {e.actor_kind for e in events} == {"system"}


def test_report_describes_studies_without_patient_names(
    sessions: sessionmaker[Session], filestore: FileStore, cd: Path
) -> None:
    report = import_path(sessions, filestore, cd.parent)
    data = report.to_dict()
    text = repr(data)
    assert "Doe" not in text and "77654033" not in text and "98890234" not in text
    assert data["counts"]["instances_added"] == CD_INSTANCES
    studies = {s["study_uid"]: s for s in data["studies"]}
    assert len(studies) == CD_STUDIES
    assert studies[CT_HEAD_STUDY] | {"id": None, "patient": None} == {
        "study_uid": CT_HEAD_STUDY,
        "id": None,
        "patient": None,
        "date": "1995-09-03",
        "modalities": ["CT"],
        "body_part": "brain",
        "description": "CT, HEAD/BRAIN WO CONTRAST",
        "series_count": 1,
        "instance_count": 4,
        "new": True,
    }
    dates = [s["date"] for s in data["studies"]]
    assert dates == sorted(dates, reverse=True)
    patient_ids = {p["id"] for p in data["patients"]}
    assert {s["patient"] for s in data["studies"]} == patient_ids


def test_dicomdir_follows_its_records(sessions: sessionmaker[Session], filestore: FileStore, cd: Path) -> None:
    (cd.parent / "stray.dcm").write_bytes(dicom_bytes())  # on the disc but not in the DICOMDIR
    report = import_path(sessions, filestore, cd)
    assert report.total_files == CD_INSTANCES
    assert report.instances_added == CD_INSTANCES
    assert report.skipped == []
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == CD_INSTANCES


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
@pytest.mark.filterwarnings("ignore:The value length")
def test_dicomdir_refuses_files_outside_the_medium(
    sessions: sessionmaker[Session], filestore: FileStore, tmp_path: Path, cd: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = dicom_bytes(PatientID="SECRET")
    (outside / "SECRET").write_bytes(secret)
    secret_uid = pydicom.dcmread(io.BytesIO(secret)).SOPInstanceUID
    ds = pydicom.dcmread(cd)
    records = [r for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r]
    records[0].ReferencedFileID = ["..", "outside", "SECRET"]
    records[1].ReferencedFileID = ["77654033", "NOSUCH"]
    records[2].ReferencedFileID = "../outside/SECRET"
    ds.save_as(cd)

    report = import_path(sessions, filestore, cd)
    reasons = sorted(s.reason for s in report.skipped)
    assert reasons == [
        "listed in the DICOMDIR but missing",
        "the DICOMDIR points outside the disc (refused)",
        "the DICOMDIR points outside the disc (refused)",
    ]
    assert report.instances_added == CD_INSTANCES - 3
    with sessions() as s:
        assert s.scalars(select(Instance).where(Instance.sop_instance_uid == secret_uid)).first() is None
        assert s.scalars(select(PatientIdentifier).where(PatientIdentifier.value == "SECRET")).first() is None
    assert hashlib.sha256(secret).hexdigest() not in filestore.keys()


def test_zip_and_upload_import_like_the_folder(
    sessions: sessionmaker[Session], filestore: FileStore, tmp_path: Path, cd: Path
) -> None:
    archive = zip_folder(cd.parent, tmp_path / "cd.zip", extra={"autorun.inf": b"[autorun]\n", "docs/": b""})
    calls: list[tuple[int, int]] = []
    report = import_path(sessions, filestore, archive, progress=lambda done, total: calls.append((done, total)))
    assert report.instances_added == CD_INSTANCES
    assert {s.file for s in report.skipped} == {"DICOMDIR", "autorun.inf"}
    assert calls[-1] == (CD_INSTANCES + 2, CD_INSTANCES + 2)
    state = store_state(sessions, filestore)
    again = import_bytes(sessions, filestore, archive.read_bytes(), filename="cd.zip")
    assert (again.instances_added, again.instances_present) == (0, CD_INSTANCES)
    assert (again.studies_added, again.studies_present) == (0, CD_STUDIES)
    assert store_state(sessions, filestore) == state


def test_single_file_and_upload(sessions: sessionmaker[Session], filestore: FileStore, tmp_path: Path) -> None:
    data = dicom_bytes("MR_small.dcm", PatientID="P-MR", PatientName="Knee^Kim", BodyPartExamined="KNEE")
    path = tmp_path / "upload.dcm"
    path.write_bytes(data)
    report = import_path(sessions, filestore, path)
    assert report.instances_added == 1 and not report.several_patients
    study = report.studies[0]
    assert (study.modalities, study.body_part, study.date) == (["MR"], "knee", date(2004, 8, 26))
    upload = import_bytes(sessions, filestore, data, filename="from-telegram.dcm")
    assert (upload.instances_added, upload.instances_present) == (0, 1)
    other = import_bytes(sessions, filestore, dicom_bytes("CT_small.dcm", PatientID="P-MR", PatientName="Knee^Kim"))
    assert other.instances_added == 1
    assert other.patients[0].public_id == report.patients[0].public_id
    assert not other.patients[0].new
    assert_consistent(sessions, filestore)


def test_import_is_idempotent(sessions: sessionmaker[Session], filestore: FileStore, cd: Path) -> None:
    first = import_path(sessions, filestore, cd.parent)
    state = store_state(sessions, filestore)
    assert len(state["instances"]) == CD_INSTANCES and len(state["files"]) == CD_INSTANCES
    second = import_path(sessions, filestore, cd.parent)
    assert (second.instances_added, second.instances_present) == (0, CD_INSTANCES)
    assert (second.studies_added, second.studies_present) == (0, CD_STUDIES)
    assert (second.series_added, second.series_present) == (0, CD_SERIES)
    assert not any(p.new for p in second.patients)
    assert {p.public_id for p in second.patients} == {p.public_id for p in first.patients}
    assert store_state(sessions, filestore) == state


def test_progress_reports_every_file(sessions: sessionmaker[Session], filestore: FileStore, cd: Path) -> None:
    calls: list[tuple[int, int]] = []
    import_path(sessions, filestore, cd, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, CD_INSTANCES)
    assert calls[-1] == (CD_INSTANCES, CD_INSTANCES)
    assert [d for d, _ in calls] == list(range(CD_INSTANCES + 1))
    assert {t for _, t in calls} == {CD_INSTANCES}


def test_same_uid_with_different_content_is_a_conflict(
    sessions: sessionmaker[Session], filestore: FileStore
) -> None:
    original = dicom_bytes("CT_small.dcm", PatientID="P1")
    ds = pydicom.dcmread(io.BytesIO(original))
    ds.ImageComments = "a different file claiming the same image ID"
    out = io.BytesIO()
    ds.save_as(out)
    impostor = out.getvalue()

    import_bytes(sessions, filestore, original)
    report = import_bytes(sessions, filestore, impostor, filename="impostor.dcm")
    assert report.instances_added == report.instances_present == 0
    assert len(report.conflicts) == 1
    conflict = report.conflicts[0]
    assert (conflict.kind, conflict.file, conflict.sop_instance_uid) == (
        "different_content",
        "impostor.dcm",
        ds.SOPInstanceUID,
    )
    # Not dropped: the conflicting file is kept; not overwritten: the row still points at the original.
    assert filestore.read(conflict.storage_key) == impostor
    with sessions() as s:
        rows = s.scalars(select(Instance)).all()
        assert len(rows) == 1
        assert rows[0].content_hash == hashlib.sha256(original).hexdigest()
        assert filestore.read(rows[0].storage_key or "") == original
    again = import_bytes(sessions, filestore, original)
    assert (again.instances_present, again.conflicts) == (1, [])


def test_same_patient_id_with_another_name_is_not_merged(
    sessions: sessionmaker[Session], filestore: FileStore
) -> None:
    import_bytes(sessions, filestore, dicom_bytes(PatientID="P1", PatientName="Doe^Jane", PatientBirthDate="19700101"))
    same = import_bytes(
        sessions, filestore, dicom_bytes(PatientID="P1", PatientName="DOE^JANE^^", PatientBirthDate="19700101")
    )
    assert same.instances_added == 1 and same.conflicts == []
    other_name = dicom_bytes(PatientID="P1", PatientName="Roe^Richard", PatientBirthDate="19700101")
    other_birth = dicom_bytes(PatientID="P1", PatientName="Doe^Jane", PatientBirthDate="19991231")
    report = import_bytes(sessions, filestore, other_name)
    report2 = import_bytes(sessions, filestore, other_birth)
    assert [c.kind for c in report.conflicts + report2.conflicts] == ["patient_details", "patient_details"]
    assert report.instances_added == report2.instances_added == 0
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 2
        assert s.scalar(select(func.count()).select_from(Patient)) == 1
    # The same Patient ID from another issuer is another patient.
    issued = import_bytes(sessions, filestore, dicom_bytes(PatientID="P1", IssuerOfPatientID="HOSP-B",
                                                           PatientName="Roe^Richard"))
    assert issued.instances_added == 1 and issued.patients[0].new


def test_a_study_of_another_patient_is_not_merged(sessions: sessionmaker[Session], filestore: FileStore) -> None:
    first = dicom_bytes(PatientID="P1")
    study_uid = pydicom.dcmread(io.BytesIO(first)).StudyInstanceUID
    import_bytes(sessions, filestore, first)
    intruder = dicom_bytes(PatientID="P2", StudyInstanceUID=study_uid)
    report = import_bytes(sessions, filestore, intruder)
    assert [c.kind for c in report.conflicts] == ["study_of_other_patient"]
    assert report.patients == [] and report.instances_added == 0
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Patient)) == 1
        assert s.scalar(select(func.count()).select_from(Instance)) == 1


def test_several_patients_in_one_upload_are_kept_apart(
    sessions: sessionmaker[Session], filestore: FileStore, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, pid in enumerate(["A1", "A1", "B2", ""]):
        (folder / f"f{i}.dcm").write_bytes(dicom_bytes(PatientID=pid, PatientName=f"Person^{pid or 'A1'}"))
    report = import_path(sessions, filestore, folder, patient_hint="A1")
    assert report.several_patients
    assert report.conflicts == []
    # The file without a Patient ID is filed under the hint; the other patient is flagged as not matching.
    assert sorted((p.instances, p.matches_hint) for p in report.patients) == [(1, False), (3, True)]
    with sessions() as s:
        values = {i.value: len(i.patient.studies) for i in s.scalars(select(PatientIdentifier))}
    assert values == {"A1": 3, "B2": 1}


def test_files_without_patient_id(sessions: sessionmaker[Session], filestore: FileStore) -> None:
    anon = dicom_bytes(PatientID="", PatientName="")
    report = import_bytes(sessions, filestore, anon, patient_hint="H-9")
    assert report.instances_added == 1 and report.patients[0].matches_hint is True
    no_hint = import_bytes(sessions, filestore, dicom_bytes(PatientID="", PatientName=""))
    assert no_hint.instances_added == 1
    with sessions() as s:
        issuers = sorted((i.issuer, i.value == "H-9") for i in s.scalars(select(PatientIdentifier)))
    assert issuers == [("", True), ("lightbox:no-patient-id", False)]


def test_non_dicom_files_are_skipped_with_reasons_and_documents_kept(
    sessions: sessionmaker[Session], filestore: FileStore, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.txt").write_text("hello")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "sub" / "inner.zip").write_bytes(zip_bytes({"x.dcm": dicom_bytes()}))
    (folder / "no_uids.dcm").write_bytes(Path(pydicom.data.get_testdata_file("UN_sequence.dcm")).read_bytes())
    # No pixel data is not a reason to skip: a structured report and an ECG are kept.
    (folder / "report.dcm").write_bytes(dicom_bytes("reportsi.dcm"))
    (folder / "ecg.dcm").write_bytes(dicom_bytes("waveform_ecg.dcm"))
    (folder / "noprefix.dcm").write_bytes(
        Path(pydicom.data.get_testdata_file("ExplVR_BigEndNoMeta.dcm")).read_bytes()
    )
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(dicom_bytes(PatientID="OUTSIDE"))
    (folder / "sub" / "link.dcm").symlink_to(outside)
    report = import_path(sessions, filestore, folder)
    assert {s.file: s.reason for s in report.skipped} == {
        "sub/link.dcm": "a link to a file outside the folder (refused)",
        "README.txt": "not a DICOM file",
        "photo.jpg": "not a DICOM file",
        "empty.dcm": "empty file",
        "sub/inner.zip": "an archive inside the upload (not opened)",
        "no_uids.dcm": "damaged DICOM file (missing or invalid Study, Series or SOP Instance UID)",
    }
    assert report.instances_added == 3
    with sessions() as s:
        sr = s.scalars(select(Instance).where(Instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.11")).one()
        assert sr.rows is None and sr.storage_key and filestore.exists(sr.storage_key)
        modalities = sorted(s.scalars(select(Series.modality)))
    assert modalities == ["ECG", "RTPLAN", "SR"]


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_report_counts_match_database(sessions: sessionmaker[Session], filestore: FileStore, cd: Path) -> None:
    report: ImportReport = import_path(sessions, filestore, cd)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Study)) == report.studies_added == len(report.studies)
        assert s.scalar(select(func.count()).select_from(Series)) == report.series_added
        assert sum(st.instance_count for st in report.studies) == report.instances_added
