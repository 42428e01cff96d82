"""Importing DICOM into the store: one file, a folder tree, a ZIP (as from a CD), a DICOMDIR, an upload.

How an import runs (each stage one function below):

1. *Enumerate* the source into named items (files, ZIP members, DICOMDIR records), refusing unsafe
   names (absolute paths, ``..``, files a DICOMDIR names outside its medium) and ZIP bombs up front.
2. *Read* each item's header only (``store.dicom_meta``: Patient, Study, Series, SOP and geometry
   attributes; pixels are never decoded). Non-DICOM files are skipped with a reason; reports and
   structured reports without pixels are kept.
3. *Store* the bytes in the content-addressed :class:`store.filestore.FileStore` (atomic write).
4. *Record* a batch of stored files in one transaction: patients keyed by Patient ID + Issuer,
   studies, series, instances, then the counts, modalities and body parts of what was touched.
   The batch's files are made durable together (one ``syncfs``, :meth:`FileStore.deferred_sync`)
   just before its transaction, instead of two fsyncs per file.

Because a file is on disk before any row names it, and its key is its content hash, an import that is
killed or runs out of disk leaves no row pointing at a missing file; running it again skips the files
already there and adds the missing rows. Batches take a database-wide import lock (PostgreSQL advisory
lock, SQLite write lock) so two imports of the same CD at once end with one copy of each instance, and
any unique-constraint clash with another writer re-runs the batch, which then sees the other's rows.

Nothing is merged into the wrong patient: a file whose study already belongs to another patient, or
whose name or birth date disagree with the patient already known under its Patient ID, is kept in the
file store but not filed, and reported as a conflict. So is a file that reuses a SOP Instance UID with
different content; the existing instance is never overwritten.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NoReturn

from sqlalchemy import and_, delete, func, insert, or_, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from store.body_parts import normalise_body_part, parts_in_text, refine
from store.db import transaction
from store.dicom_meta import (
    DamagedDicomError,
    DicomdirFileError,
    InstanceMeta,
    NotDicomError,
    read_dataset,
    read_instance_meta,
    referenced_file_ids,
)
from store.filestore import FileStore, FileStoreError, StoredObject, StoreFullError
from store.models import (
    AccessEvent,
    Instance,
    Patient,
    PatientIdentifier,
    Series,
    Study,
    StudyModality,
    new_public_id,
    utcnow,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

# Issuer recorded for files that carry no Patient ID (keyed by a hash of name and birth date instead).
NO_ID_ISSUER = "lightbox:no-patient-id"
_BATCH = 400
_ATTEMPTS = 6
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
# Any constant: the advisory lock number that serialises import batches on PostgreSQL.
_PG_IMPORT_LOCK = 0x4C_49_47_48_54


# ---------------------------------------------------------------- errors


class ImportProblem(Exception):
    """An import could not run; the message is short, plain and fit to show the patient."""


class SourceNotFound(ImportProblem):
    """The path given does not exist or cannot be read."""


class EmptyUpload(ImportProblem):
    """The file or archive is empty (0 bytes)."""


class DamagedArchive(ImportProblem):
    """The ZIP archive is corrupt, truncated or password-protected."""


class ArchiveTooLarge(ImportProblem):
    """The ZIP archive unpacks to more than the limits allow (a ZIP bomb, or simply too big)."""


class DamagedDicomdir(ImportProblem):
    """The DICOMDIR cannot be read."""


class StorageFull(ImportProblem):
    """The disk filled up; what was stored before stays, consistent. ``report`` says how far it got."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


class DatabaseBusy(ImportProblem):
    """The database stayed busy or unreachable through every retry."""


# ---------------------------------------------------------------- limits and report


@dataclass(frozen=True)
class ImportLimits:
    """ZIP bomb limits: total unpacked size, and unpacked/packed ratio (per large member and overall)."""

    max_total_bytes: int = 4 * 1024**3
    max_ratio: float = 200.0
    # Members smaller than this are not ratio-checked on their own (tiny files compress oddly).
    ratio_min_bytes: int = 1024 * 1024
    max_members: int = 200_000


@dataclass
class SkippedFile:
    """A file that was not imported and why (plain words)."""

    file: str
    reason: str


@dataclass
class Conflict:
    """A file kept aside rather than filed: ``kind`` is one of
    ``different_content`` (same SOP Instance UID, other bytes), ``patient_details`` (other name or birth
    date under a known Patient ID), ``study_of_other_patient``, ``series_of_other_study``."""

    kind: str
    file: str
    sop_instance_uid: str
    detail: str
    storage_key: str


@dataclass
class PatientFound:
    """A patient in the import, by opaque id only (names are shown by the bot to the linked patient)."""

    public_id: str
    new: bool
    instances: int = 0
    study_uids: list[str] = field(default_factory=list)
    matches_hint: bool | None = None


@dataclass
class StudyFound:
    """A study the import added to or found in the store (its state after the import)."""

    public_id: str
    study_uid: str
    patient_public_id: str
    date: date | None
    modalities: list[str]
    body_part: str
    description: str
    series_count: int
    instance_count: int
    new: bool


@dataclass
class ImportReport:
    """What an import found and did."""

    total_files: int = 0
    patients: list[PatientFound] = field(default_factory=list)
    studies: list[StudyFound] = field(default_factory=list)
    studies_added: int = 0
    studies_present: int = 0
    series_added: int = 0
    series_present: int = 0
    instances_added: int = 0
    instances_present: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def several_patients(self) -> bool:
        """Whether the import held more than one patient (the bot asks which are the patient's)."""
        return len(self.patients) > 1

    @property
    def instances_found(self) -> int:
        """DICOM objects read from the source (added, already present or in conflict)."""
        return self.instances_added + self.instances_present + len(self.conflicts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; no patient names, birth dates or Patient IDs."""
        return {
            "total_files": self.total_files,
            "several_patients": self.several_patients,
            "patients": [
                {
                    "id": p.public_id,
                    "new": p.new,
                    "instances": p.instances,
                    "study_uids": p.study_uids,
                    "matches_patient_id": p.matches_hint,
                }
                for p in self.patients
            ],
            "counts": {
                "studies_added": self.studies_added,
                "studies_present": self.studies_present,
                "series_added": self.series_added,
                "series_present": self.series_present,
                "instances_added": self.instances_added,
                "instances_present": self.instances_present,
                "conflicts": len(self.conflicts),
                "skipped": len(self.skipped),
            },
            "studies": [
                {
                    "study_uid": s.study_uid,
                    "id": s.public_id,
                    "patient": s.patient_public_id,
                    "date": s.date.isoformat() if s.date else None,
                    "modalities": s.modalities,
                    "body_part": s.body_part,
                    "description": s.description,
                    "series_count": s.series_count,
                    "instance_count": s.instance_count,
                    "new": s.new,
                }
                for s in self.studies
            ],
            "skipped": [{"file": s.file, "reason": s.reason} for s in self.skipped],
            "conflicts": [
                {"kind": c.kind, "file": c.file, "sop_instance_uid": c.sop_instance_uid, "detail": c.detail}
                for c in self.conflicts
            ],
        }


# ---------------------------------------------------------------- enumerating sources


@dataclass(frozen=True)
class _Item:
    """One candidate file: a display name and how to get its bytes."""

    name: str
    load: Callable[[], bytes]


def _file_loader(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


def folder_items(root: Path, report: ImportReport) -> list[_Item]:
    """Every regular file under ``root``, sorted; links leading outside ``root`` go to ``report.skipped``."""
    items = []
    real_root = root.resolve()
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                shown = path.relative_to(root).as_posix()
                report.skipped.append(SkippedFile(shown, "a link to a file outside the folder (refused)"))
                continue
            if path.is_file():
                items.append(_Item(path.relative_to(root).as_posix(), _file_loader(path)))
    return items


def unsafe_member_name(name: str) -> bool:
    """Whether a ZIP member name is absolute or climbs out (``..``), on POSIX or Windows rules."""
    if not name or "\x00" in name:
        return True
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith(("/", "\\")):
        return True
    return ".." in posix.parts or ".." in windows.parts


def zip_items(archive: zipfile.ZipFile, limits: ImportLimits, report: ImportReport) -> list[_Item]:
    """The archive's files, after the ZIP bomb checks; unsafe names go to ``report.skipped``.

    Raises :class:`ArchiveTooLarge` before anything is unpacked when the declared sizes exceed the
    limits. zipfile stops reading a member at its declared size, so a lying header cannot unpack more.
    """
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > limits.max_members:
        raise ArchiveTooLarge(
            f"This archive holds {len(members)} files, more than the {limits.max_members} allowed."
        )
    total = sum(m.file_size for m in members)
    packed = sum(m.compress_size for m in members)
    if total > limits.max_total_bytes:
        raise ArchiveTooLarge(
            f"This archive would unpack to {total / 2**20:.0f} MB, more than the "
            f"{limits.max_total_bytes / 2**20:.0f} MB allowed. Please send the images in smaller parts."
        )
    if total > limits.ratio_min_bytes and total > limits.max_ratio * max(packed, 1):
        raise ArchiveTooLarge("This archive unpacks to far more than its size, so it was not opened.")
    items = []
    for member in members:
        if member.file_size > limits.ratio_min_bytes and member.file_size > limits.max_ratio * max(
            member.compress_size, 1
        ):
            raise ArchiveTooLarge("This archive unpacks to far more than its size, so it was not opened.")
        if unsafe_member_name(member.filename):
            report.skipped.append(SkippedFile(member.filename, "unsafe name inside the archive (refused)"))
            continue
        if member.flag_bits & 0x1:
            report.skipped.append(SkippedFile(member.filename, "password-protected file in the archive"))
            continue
        items.append(_Item(member.filename, _member_loader(archive, member)))
    return items


def _member_loader(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> Callable[[], bytes]:
    def load() -> bytes:
        with archive.open(member) as handle:
            return handle.read(member.file_size + 1)

    return load


def dicomdir_items(dicomdir: Path, report: ImportReport) -> list[_Item]:
    """The files a DICOMDIR's records name, relative to its folder (the medium root).

    Records naming a file outside the medium (``..``, absolute, or a symlink out) are refused; records
    naming a missing file are reported. Reads Referenced File ID (0004,1500).
    """
    try:
        ds = read_dataset(dicomdir.read_bytes())
    except (NotDicomError, DamagedDicomError, OSError) as exc:
        raise DamagedDicomdir("This DICOMDIR file cannot be read; try importing the whole folder instead.") from exc
    root = dicomdir.parent.resolve()
    items: list[_Item] = []
    seen: set[Path] = set()
    for parts in referenced_file_ids(ds):
        shown = "/".join(parts)
        if any(p in ("..", ".") or unsafe_member_name(p) or "/" in p or "\\" in p for p in parts):
            report.skipped.append(SkippedFile(shown, "the DICOMDIR points outside the disc (refused)"))
            continue
        path = _find_case_insensitive(root, parts)
        if path is None:
            report.skipped.append(SkippedFile(shown, "listed in the DICOMDIR but missing"))
            continue
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            report.skipped.append(SkippedFile(shown, "the DICOMDIR points outside the disc (refused)"))
            continue
        if resolved in seen:
            continue
        seen.add(resolved)
        items.append(_Item(path.relative_to(root).as_posix(), _file_loader(path)))
    return items


def _find_case_insensitive(root: Path, parts: list[str] | Any) -> Path | None:
    """``root/parts...``; CDs name files in upper case, copies to disk sometimes lower them."""
    path = root.joinpath(*parts)
    if path.is_file():
        return path
    current = root
    for part in parts:
        try:
            match = next((c for c in current.iterdir() if c.name.casefold() == part.casefold()), None)
        except OSError:
            return None
        if match is None:
            return None
        current = match
    return current if current.is_file() else None


# ---------------------------------------------------------------- reading and storing


@dataclass(frozen=True)
class _Staged:
    """A DICOM file read and stored, waiting for its rows."""

    name: str
    meta: InstanceMeta
    stored: StoredObject


def patient_key(meta: InstanceMeta, patient_hint: str | None, issuer_scope: str | None = None) -> tuple[str, str]:
    """(issuer, value) identifying the patient: Patient ID (0010,0020) + Issuer (0010,0021).

    A file without a Patient ID takes ``patient_hint`` when given, else a key derived from name and
    birth date (so anonymous files are kept together, never merged into a real Patient ID).
    With ``issuer_scope`` (a patient's own upload) the issuer is prefixed by it, so the upload can never
    be filed into a record that somebody else's files created.
    """
    if meta.patient_id:
        issuer, value = meta.issuer, meta.patient_id
    elif patient_hint:
        issuer, value = "", patient_hint
    else:
        issuer = NO_ID_ISSUER
        value = hashlib.sha256(f"{meta.patient_name}\x00{meta.birth_date}".encode()).hexdigest()[:32]
    return (f"{issuer_scope}|{issuer}" if issuer_scope else issuer), value


def _skip_reason(exc: Exception) -> str:
    if isinstance(exc, DicomdirFileError):
        return "a DICOMDIR (the disc's index), not an image"
    if isinstance(exc, NotDicomError):
        return "empty file" if str(exc) == "empty file" else "not a DICOM file"
    if isinstance(exc, DamagedDicomError):
        return f"damaged DICOM file ({exc})"
    return "could not be read"


def load_item(item: _Item) -> bytes | SkippedFile:
    """The item's bytes, or why they cannot be read."""
    try:
        return item.load()
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, ValueError) as exc:
        damaged = isinstance(exc, zipfile.BadZipFile | zlib.error | EOFError)
        return SkippedFile(item.name, "damaged file in the archive" if damaged else "could not be read")


def prepare_item(filestore: FileStore, name: str, data: bytes | SkippedFile) -> _Staged | SkippedFile:
    """Read one file's header and store its bytes; a reason instead when it is not a DICOM object to keep.

    Raises :class:`store.filestore.FileStoreError` (e.g. :class:`StoreFullError`) when storing fails.
    """
    if isinstance(data, SkippedFile):
        return data
    if not data:
        return SkippedFile(name, "empty file")
    if data[:4] in _ZIP_MAGIC:
        return SkippedFile(name, "an archive inside the upload (not opened)")
    try:
        meta = read_instance_meta(data)
    except (NotDicomError, DamagedDicomError, DicomdirFileError) as exc:
        return SkippedFile(name, _skip_reason(exc))
    return _Staged(name, meta, filestore.put(data))


# ---------------------------------------------------------------- recording


def _same_person(a: str, b: str) -> bool:
    """Names compared ignoring case, spacing and empty trailing components ('DOE^JOHN^^' = 'Doe^John')."""

    def norm(name: str) -> str:
        return "^".join(" ".join(part.split()) for part in name.casefold().split("^")).rstrip("^")

    return not a or not b or norm(a) == norm(b)


@dataclass
class _Outcome:
    """What one committed batch did (merged into the report only after the commit)."""

    patients: dict[int, tuple[str, bool, tuple[str, str]]] = field(default_factory=dict)
    patient_instances: Counter[int] = field(default_factory=Counter)
    patient_studies: dict[int, set[str]] = field(default_factory=dict)
    studies_created: set[str] = field(default_factory=set)
    studies_seen: set[str] = field(default_factory=set)
    series_created: set[str] = field(default_factory=set)
    series_seen: set[str] = field(default_factory=set)
    added: int = 0
    present: int = 0
    conflicts: list[Conflict] = field(default_factory=list)


def _lock_for_import(session: Session) -> None:
    """Serialise import batches: PostgreSQL advisory lock; SQLite takes its write lock now."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_IMPORT_LOCK})
    else:
        session.execute(text("DELETE FROM study_modality WHERE 0 = 1"))


def _load_patients(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Patient]:
    if not keys:
        return {}
    rows = session.execute(
        select(PatientIdentifier.issuer, PatientIdentifier.value, Patient)
        .join(Patient, Patient.id == PatientIdentifier.patient_id)
        .where(or_(*(and_(PatientIdentifier.issuer == i, PatientIdentifier.value == v) for i, v in keys)))
    ).all()
    return {(issuer, value): patient for issuer, value, patient in rows}


def _record_batch(
    session: Session, filestore: FileStore, batch: list[_Staged], patient_hint: str | None,
    issuer_scope: str | None = None,
) -> _Outcome:
    """Rows for one batch of stored files, inside the caller's transaction (one flush for the batch)."""
    out = _Outcome()
    keys = {patient_key(s.meta, patient_hint, issuer_scope) for s in batch}
    patients = _load_patients(session, keys)
    new_patient_ids: set[int] = set()
    studies = {
        s.study_uid: s
        for s in session.scalars(select(Study).where(Study.study_uid.in_({s.meta.study_uid for s in batch})))
    }
    series_map = {
        s.series_uid: s
        for s in session.scalars(select(Series).where(Series.series_uid.in_({s.meta.series_uid for s in batch})))
    }
    existing = {
        i.sop_instance_uid: i
        for i in session.scalars(
            select(Instance).where(Instance.sop_instance_uid.in_({s.meta.sop_instance_uid for s in batch}))
        )
    }
    # New patients, created together (one flush) and only for files that will be filed under them:
    # a file whose study is already known belongs to that study's patient or is a conflict.
    first_of_new: dict[tuple[str, str], InstanceMeta] = {}
    for staged in batch:
        key = patient_key(staged.meta, patient_hint, issuer_scope)
        if key not in patients and staged.meta.study_uid not in studies:
            first_of_new.setdefault(key, staged.meta)
    for key, first in first_of_new.items():
        created = Patient(name=first.patient_name, birth_date=first.birth_date, sex=first.sex)
        created.identifiers.append(PatientIdentifier(issuer=key[0], value=key[1]))
        session.add(created)
        patients[key] = created
    if first_of_new:
        session.flush()
        new_patient_ids.update(patients[key].id for key in first_of_new)
    # Rows created in this batch are not flushed yet (no ids): their owners are tracked by object.
    new_series_study: dict[str, Study] = {}
    new_instances: dict[str, tuple[str, Series]] = {}
    touched_series: set[Series] = set()
    touched_studies: set[Study] = set()
    instance_rows: list[tuple[Series, dict[str, Any]]] = []

    def conflict(staged: _Staged, kind: str, detail: str) -> None:
        out.conflicts.append(Conflict(kind, staged.name, staged.meta.sop_instance_uid, detail, staged.stored.key))

    for staged in batch:
        meta = staged.meta
        key = patient_key(meta, patient_hint, issuer_scope)
        patient = patients.get(key)
        study = studies.get(meta.study_uid)
        if study is not None and (patient is None or study.patient_id != patient.id):
            conflict(staged, "study_of_other_patient", "this study is already filed under another patient")
            continue
        if patient is None:  # not reached: created above for every file whose study is new
            continue
        if not (
            _same_person(patient.name, meta.patient_name) and _same_person(patient.birth_date, meta.birth_date)
        ):
            conflict(staged, "patient_details", "name or birth date differ from the patient known under this ID")
            continue
        if study is None:
            study = Study(
                patient_id=patient.id,
                study_uid=meta.study_uid,
                study_date=meta.study_date,
                study_time=meta.study_time,
                description=meta.study_description,
            )
            session.add(study)
            studies[meta.study_uid] = study
            out.studies_created.add(meta.study_uid)
        series = series_map.get(meta.series_uid)
        if series is None:
            series = Series(
                study=study,
                series_uid=meta.series_uid,
                modality=meta.modality,
                series_number=meta.series_number,
                description=meta.series_description,
                body_part=normalise_body_part(meta.body_part_examined, meta.series_description, meta.study_description),
                plane=meta.plane,
                contrast=meta.contrast,
                slice_thickness=meta.slice_thickness,
            )
            session.add(series)
            series_map[meta.series_uid] = series
            new_series_study[meta.series_uid] = study
            out.series_created.add(meta.series_uid)
        elif _series_elsewhere(series, study, new_series_study.get(meta.series_uid)):
            conflict(staged, "series_of_other_study", "this series is already filed under another study")
            continue
        _fill_blanks(study, series, meta)
        present = existing.get(meta.sop_instance_uid)
        fresh = new_instances.get(meta.sop_instance_uid)
        if fresh is not None:
            # A second copy inside this same import.
            if fresh[0] != staged.stored.sha256:
                conflict(staged, "different_content", "another file with the same image ID is already stored")
                continue
            if fresh[1] is not series:
                conflict(staged, "series_of_other_study", "this image is already filed under another series")
                continue
            out.present += 1
        elif present is not None:
            if present.content_hash and present.content_hash != staged.stored.sha256:
                conflict(staged, "different_content", "another file with the same image ID is already stored")
                continue
            if series.id is None or present.series_id != series.id:
                conflict(staged, "series_of_other_study", "this image is already filed under another series")
                continue
            if not present.content_hash or not present.storage_key or not filestore.exists(present.storage_key):
                # A PACS instance not cached yet, or a row whose file went missing: this file fills it.
                present.content_hash = staged.stored.sha256
                present.storage_key = staged.stored.key
                present.size_bytes = staged.stored.size
                if not present.transfer_syntax_uid:
                    present.transfer_syntax_uid = meta.transfer_syntax
            out.present += 1
        else:
            # Inserted in bulk after the loop (Core executemany: instances are most of the rows).
            instance_rows.append(
                (
                    series,
                    {
                        "sop_instance_uid": meta.sop_instance_uid,
                        "sop_class_uid": meta.sop_class_uid,
                        "instance_number": meta.instance_number,
                        "slice_location": meta.slice_location,
                        "number_of_frames": meta.frames,
                        "rows": meta.rows,
                        "columns": meta.columns,
                        "pixel_spacing": meta.pixel_spacing,
                        "transfer_syntax_uid": meta.transfer_syntax,
                        "size_bytes": staged.stored.size,
                        "content_hash": staged.stored.sha256,
                        "storage_key": staged.stored.key,
                    },
                )
            )
            new_instances[meta.sop_instance_uid] = (staged.stored.sha256, series)
            out.added += 1
            touched_series.add(series)
            touched_studies.add(study)
        out.studies_seen.add(meta.study_uid)
        out.series_seen.add(meta.series_uid)
        out.patients[patient.id] = (patient.public_id, patient.id in new_patient_ids, key)
        out.patient_instances[patient.id] += 1
        out.patient_studies.setdefault(patient.id, set()).add(meta.study_uid)
    session.flush()
    if instance_rows:
        now = utcnow()
        session.execute(
            insert(Instance),
            [
                {**row, "series_id": series.id, "public_id": new_public_id(), "created_at": now}
                for series, row in instance_rows
            ],
        )
    refresh_series(session, touched_series)
    refresh_studies(session, touched_studies)
    return out


def _series_elsewhere(series: Series, study: Study, created_under: Study | None) -> bool:
    """Whether a known series belongs to another study than ``study`` (``created_under``: its study if new)."""
    if created_under is not None:
        return created_under is not study
    return study.id is None or series.study_id != study.id


def _fill_blanks(study: Study, series: Series, meta: InstanceMeta) -> None:
    """Fill study/series attributes the first file lacked (dates, descriptions, plane)."""
    if study.study_date is None and meta.study_date is not None:
        study.study_date = meta.study_date
    if not study.description and meta.study_description:
        study.description = meta.study_description
    if series.plane == "unknown" and meta.plane != "unknown":
        series.plane = meta.plane
    if not series.body_part:
        series.body_part = normalise_body_part(
            meta.body_part_examined, meta.series_description, meta.study_description
        )


def refresh_series(session: Session, series: set[Series]) -> None:
    """Recount instances and frames of these (flushed) series."""
    if not series:
        return
    by_id = {se.id: se for se in series}
    counts = session.execute(
        select(Instance.series_id, func.count(), func.coalesce(func.sum(Instance.number_of_frames), 0))
        .where(Instance.series_id.in_(by_id))
        .group_by(Instance.series_id)
    ).all()
    for series_id, instances, frames in counts:
        by_id[series_id].instance_count = int(instances)
        by_id[series_id].frame_count = int(frames)
    session.flush()


def study_body_part(description: str, series_parts: list[str]) -> str:
    """A study's body part: named in its description, else its series' most common part; refined by the rest."""
    from_description = parts_in_text(description)
    named = [p for p in series_parts if p]
    if from_description:
        chosen = from_description[0]
    elif named:
        chosen = Counter(named).most_common(1)[0][0]
    else:
        return ""
    return refine(chosen, from_description + named)


def refresh_studies(session: Session, studies: set[Study]) -> None:
    """Recount series and instances, and redo modalities (with StudyModality rows) and body part."""
    if not studies:
        return
    by_id = {st.id: st for st in studies}
    rows: dict[int, list[tuple[str, str, int]]] = {study_id: [] for study_id in by_id}
    for study_id, modality, body_part, count in session.execute(
        select(Series.study_id, Series.modality, Series.body_part, Series.instance_count)
        .where(Series.study_id.in_(by_id))
        .order_by(Series.study_id, Series.series_number, Series.id)
    ):
        rows[study_id].append((modality, body_part, count))
    have: dict[int, dict[str, StudyModality]] = {study_id: {} for study_id in by_id}
    for row in session.scalars(select(StudyModality).where(StudyModality.study_id.in_(by_id))):
        have[row.study_id][row.modality] = row
    for study_id, study in by_id.items():
        series_rows = rows[study_id]
        modalities = sorted({m for m, _, _ in series_rows if m})
        study.series_count = len(series_rows)
        study.instance_count = int(sum(n for _, _, n in series_rows))
        study.modalities = "\\".join(modalities)[:64]
        study.body_part = study_body_part(study.description, [b for _, b, _ in series_rows])
        for modality in modalities:
            if modality in have[study_id]:
                have[study_id][modality].study_date = study.study_date
            else:
                session.add(
                    StudyModality(
                        study_id=study_id, modality=modality, patient_id=study.patient_id, study_date=study.study_date
                    )
                )
        stale = set(have[study_id]) - set(modalities)
        if stale:
            session.execute(
                delete(StudyModality).where(StudyModality.study_id == study_id, StudyModality.modality.in_(stale))
            )


# ---------------------------------------------------------------- the import


class _Importer:
    """One import run: reads items, stores files, records batches, keeps the report."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        filestore: FileStore,
        patient_hint: str | None,
        progress: Progress | None,
        actor: tuple[str, str],
        issuer_scope: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.filestore = filestore
        self.patient_hint = patient_hint.strip() if patient_hint else None
        self.issuer_scope = issuer_scope
        self.progress = progress
        self.actor = actor
        self.report = ImportReport()
        self.batch: list[_Staged] = []
        self._patients: dict[int, PatientFound] = {}
        self._patient_keys: dict[int, tuple[str, str]] = {}
        self._study_uids: list[str] = []
        self._studies_created: set[str] = set()
        self._series_created: set[str] = set()
        self._series_seen: set[str] = set()

    def run(self, items: list[_Item]) -> ImportReport:
        total = len(items)
        self.report.total_files = total + len(self.report.skipped)
        done = 0
        if self.progress:
            self.progress(0, total)
        # Group commit: each batch's files are made durable together, just before their rows.
        with self.filestore.deferred_sync():
            for item in items:
                self._one(item)
                done += 1
                if len(self.batch) >= _BATCH:
                    self._flush()
                if self.progress:
                    self.progress(done, total)
            self._flush()
        self._finish()
        return self.report

    def _one(self, item: _Item) -> None:
        try:
            result = prepare_item(self.filestore, item.name, load_item(item))
        except FileStoreError as exc:
            self._flush()  # what is already on disk gets its rows
            self._stop(exc)
        self._take(result)

    def _take(self, result: _Staged | SkippedFile) -> None:
        if isinstance(result, SkippedFile):
            self.report.skipped.append(result)
        else:
            self.batch.append(result)

    def _stop(self, exc: FileStoreError) -> NoReturn:
        """End the import on a file store failure, with the report of what was saved."""
        self._finish()
        if isinstance(exc, StoreFullError):
            raise StorageFull(
                f"The storage is full. {self.report.instances_added} new images were saved before it filled up; "
                "import again once there is space, and nothing will be saved twice.",
                self.report,
            ) from None
        raise ImportProblem(str(exc)) from exc

    def _flush(self) -> None:
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        try:
            self.filestore.sync()  # no row may name a file that is not durable yet
        except FileStoreError as exc:
            self._stop(exc)
        for attempt in range(_ATTEMPTS):
            try:
                with transaction(self.sessions) as session:
                    _lock_for_import(session)
                    outcome = _record_batch(session, self.filestore, batch, self.patient_hint, self.issuer_scope)
                break
            except (IntegrityError, OperationalError) as exc:
                # Another writer got there first (or the database was busy): the retry sees its rows.
                log.info("import batch retry %d after %s", attempt + 1, type(exc).__name__)
                if attempt == _ATTEMPTS - 1:
                    raise DatabaseBusy("The image database is busy right now; please try again in a minute.") from exc
                time.sleep(0.05 * 2**attempt)
        self._merge(outcome)

    def _merge(self, out: _Outcome) -> None:
        report = self.report
        report.instances_added += out.added
        report.instances_present += out.present
        report.conflicts.extend(out.conflicts)
        self._studies_created |= out.studies_created
        self._series_created |= out.series_created
        self._series_seen |= out.series_seen
        for uid in sorted(out.studies_seen):
            if uid not in self._study_uids:
                self._study_uids.append(uid)
        for patient_id, (public_id, new, key) in out.patients.items():
            found = self._patients.get(patient_id)
            if found is None:
                found = PatientFound(public_id, new)
                if self.patient_hint:
                    found.matches_hint = key[1] == self.patient_hint
                self._patients[patient_id] = found
                self._patient_keys[patient_id] = key
            found.new = found.new or new
            found.instances += out.patient_instances[patient_id]
            for uid in sorted(out.patient_studies.get(patient_id, ())):
                if uid not in found.study_uids:
                    found.study_uids.append(uid)

    def _finish(self) -> None:
        report = self.report
        report.patients = list(self._patients.values())
        report.studies_added = len(self._studies_created)
        report.studies_present = len(set(self._study_uids) - self._studies_created)
        report.series_added = len(self._series_created)
        report.series_present = len(self._series_seen - self._series_created)
        report.studies = self._describe_studies()
        self._audit()
        log.info(
            "import done: %d files, %d added, %d present, %d conflicts, %d skipped, %d patients",
            report.total_files,
            report.instances_added,
            report.instances_present,
            len(report.conflicts),
            len(report.skipped),
            len(report.patients),
        )

    def _describe_studies(self) -> list[StudyFound]:
        if not self._study_uids:
            return []
        found = []
        with self.sessions() as session:
            rows = session.execute(
                select(Study, Patient.public_id)
                .join(Patient, Patient.id == Study.patient_id)
                .where(Study.study_uid.in_(self._study_uids))
            ).all()
            for study, patient_public_id in rows:
                found.append(
                    StudyFound(
                        public_id=study.public_id,
                        study_uid=study.study_uid,
                        patient_public_id=patient_public_id,
                        date=study.study_date,
                        modalities=[m for m in study.modalities.split("\\") if m],
                        body_part=study.body_part,
                        description=study.description,
                        series_count=study.series_count,
                        instance_count=study.instance_count,
                        new=study.study_uid in self._studies_created,
                    )
                )
        found.sort(key=lambda s: (s.date or date.min, s.study_uid), reverse=True)
        return found

    def _audit(self) -> None:
        """One AccessEvent per patient that received new images."""
        if not self._patients or not self.report.instances_added:
            return
        with transaction(self.sessions) as session:
            for patient_id, found in self._patients.items():
                session.add(
                    AccessEvent(
                        patient_id=patient_id,
                        actor_kind=self.actor[0],
                        actor_ref=self.actor[1],
                        action="import",
                        detail=f"{found.instances} images in {len(found.study_uids)} studies",
                    )
                )


# ---------------------------------------------------------------- entry points


def _open_zip(source: Path | io.BytesIO, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        raise DamagedArchive(f"{name} is not a complete ZIP archive; it may be damaged or cut short.") from exc
    except (OSError, EOFError, ValueError) as exc:
        raise DamagedArchive(f"{name} could not be opened as a ZIP archive.") from exc


def _looks_like_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) in _ZIP_MAGIC


def _is_dicomdir_file(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return b"1.2.840.10008.1.3.10" in head


def import_path(
    sessions: sessionmaker[Session],
    filestore: FileStore,
    path: Path | str,
    *,
    patient_hint: str | None = None,
    progress: Progress | None = None,
    limits: ImportLimits | None = None,
    actor: tuple[str, str] = ("system", "import"),
    issuer_scope: str | None = None,
) -> ImportReport:
    """Import one file, a folder tree, a ZIP archive or a DICOMDIR (with the files it names).

    ``patient_hint`` is a Patient ID for files that carry none; each patient found is flagged with
    whether it matches it. ``progress(done, total)`` is called as files are handled. Raises an
    :class:`ImportProblem` subclass for a source that cannot be imported at all.
    """
    path = Path(path)
    limits = limits or ImportLimits()
    importer = _Importer(sessions, filestore, patient_hint, progress, actor, issuer_scope)
    if path.is_dir():
        items = folder_items(path, importer.report)
        return importer.run(items)
    if not path.is_file():
        raise SourceNotFound("There is nothing to import at that path.")
    if path.stat().st_size == 0:
        raise EmptyUpload(f"{path.name} is empty (0 bytes).")
    if _looks_like_zip(path):
        with _open_zip(path, path.name) as archive:
            return importer.run(zip_items(archive, limits, importer.report))
    if _is_dicomdir_file(path):
        try:
            ds = read_dataset(path.read_bytes())
            is_dir = "DirectoryRecordSequence" in ds
        except (NotDicomError, DamagedDicomError):
            is_dir = False
        if is_dir:
            return importer.run(dicomdir_items(path, importer.report))
    return importer.run([_Item(path.name, _file_loader(path))])


def import_bytes(
    sessions: sessionmaker[Session],
    filestore: FileStore,
    data: bytes,
    *,
    filename: str = "upload",
    patient_hint: str | None = None,
    progress: Progress | None = None,
    limits: ImportLimits | None = None,
    actor: tuple[str, str] = ("system", "upload"),
    issuer_scope: str | None = None,
) -> ImportReport:
    """Import an uploaded file held in memory: a DICOM file or a ZIP archive (as :func:`import_path`)."""
    limits = limits or ImportLimits()
    if not data:
        raise EmptyUpload("This file is empty (0 bytes).")
    if len(data) > limits.max_total_bytes:
        raise ArchiveTooLarge(f"This file is larger than the {limits.max_total_bytes / 2**20:.0f} MB allowed.")
    importer = _Importer(sessions, filestore, patient_hint, progress, actor, issuer_scope)
    if data[:4] in _ZIP_MAGIC:
        with _open_zip(io.BytesIO(data), "This file") as archive:
            return importer.run(zip_items(archive, limits, importer.report))
    return importer.run([_Item(filename, lambda: data)])


def iter_report_lines(report: ImportReport) -> Iterator[str]:
    """A short plain-text summary of a report, one line at a time (no names or Patient IDs)."""
    yield (
        f"Imported {report.instances_added} new image{'' if report.instances_added == 1 else 's'}"
        f" ({report.instances_present} were already stored) in {len(report.studies)} studies"
        f" of {len(report.patients)} patient{'s' if len(report.patients) != 1 else ''}."
    )
    if report.several_patients:
        yield "This import holds images of more than one person; they are kept apart."
    for s in report.studies:
        when = s.date.isoformat() if s.date else "no date"
        parts = ", ".join(p for p in ("/".join(s.modalities), s.body_part, s.description) if p)
        yield f"  {when}  {parts}  ({s.series_count} series, {s.instance_count} images) {s.study_uid}"
    if report.conflicts:
        n = len(report.conflicts)
        yield f"{n} file{' was' if n == 1 else 's were'} kept aside (not filed):"
        for c in report.conflicts:
            yield f"  {c.file}: {c.detail}"
    if report.skipped:
        n = len(report.skipped)
        yield f"{n} file{' was' if n == 1 else 's were'} skipped:"
        for sk in report.skipped:
            yield f"  {sk.file}: {sk.reason}"
