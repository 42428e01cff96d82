"""Erasing a patient: every row, file, cached picture, annotation and share link, at once.

Order matters for "nothing is lost, nothing is left": the database rows go first in one transaction
(share links stop working at that commit), then the files. A crash between the two leaves only
orphan files with opaque names and no row pointing at them; :func:`sweep_orphan_files` removes those.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from store.filestore import FileStore
from store.models import AccessEvent, Annotation, Instance, Patient, Series, ShareLink, Study
from store.render_cache import RenderCache


@dataclass(frozen=True)
class ErasureReport:
    """What was deleted (counts only: the report itself holds no health information)."""

    studies: int = 0
    instances: int = 0
    files: int = 0
    share_links: int = 0
    annotations: int = 0
    access_events: int = 0
    found: bool = True


def _count(session: Session, model: type, *where: object) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)  # type: ignore[arg-type]


def forget_patient(
    sessions: sessionmaker[Session], files: FileStore, patient_id: int, *, cache: RenderCache | None = None
) -> ErasureReport:
    """Delete everything of patient ``patient_id`` (a row id) and say what was deleted."""
    with sessions() as session, session.begin():
        patient = session.get(Patient, patient_id)
        if patient is None:
            return ErasureReport(found=False)
        namespace = patient.public_id
        keys = list(
            session.scalars(
                select(Instance.storage_key)
                .join(Series, Series.id == Instance.series_id)
                .join(Study, Study.id == Series.study_id)
                .where(Study.patient_id == patient_id, Instance.storage_key.is_not(None))
            )
        )
        # Copies fetched from a PACS live in this worker's cache under their SOP Instance UID.
        remote_uids = list(
            session.scalars(
                select(Instance.sop_instance_uid)
                .join(Series, Series.id == Instance.series_id)
                .join(Study, Study.id == Series.study_id)
                .where(Study.patient_id == patient_id, Instance.remote_url != "")
            )
        )
        report = ErasureReport(
            studies=_count(session, Study, Study.patient_id == patient_id),
            instances=_count(
                session,
                Instance,
                Instance.series_id.in_(
                    select(Series.id).join(Study, Study.id == Series.study_id).where(Study.patient_id == patient_id)
                ),
            ),
            files=0,
            share_links=_count(session, ShareLink, ShareLink.patient_id == patient_id),
            annotations=_count(session, Annotation, Annotation.patient_id == patient_id),
            access_events=_count(session, AccessEvent, AccessEvent.patient_id == patient_id),
        )
        session.delete(patient)
    removed = 0
    for key in keys:
        if key and files.exists(key):
            files.delete(key)
            removed += 1
    pacs_cache = getattr(files, "cache", None)
    if pacs_cache is not None and hasattr(pacs_cache, "remove"):
        for uid in remote_uids:
            if pacs_cache.remove(uid):
                removed += 1
    if cache is not None:
        cache.clear(namespace)
    return ErasureReport(**{**report.__dict__, "files": removed})


def discard_unfiled(sessions: sessionmaker[Session], files: FileStore, keys: Iterable[str]) -> int:
    """Delete those of ``keys`` that no instance row names; returns how many went.

    For the files an upload kept aside (conflicts): the command line reports them to an operator, but a
    chat upload has nobody to review them, and a stored file no row names can be neither shown nor
    erased by the patient, so it must not stay. (A concurrent import of the very same bytes that records
    its row after this check would lose its file; content addressing makes that a same-bytes, same-moment
    race, and the file is then reported missing rather than served wrong.)
    """
    wanted = {k for k in keys if k}
    if not wanted:
        return 0
    with sessions() as session:
        named = set(session.scalars(select(Instance.storage_key).where(Instance.storage_key.in_(wanted))))
    removed = 0
    for key in wanted - named:
        if files.exists(key):
            files.delete(key)
            removed += 1
    return removed


def sweep_orphan_files(sessions: sessionmaker[Session], files: FileStore, *, older_than_s: float = 3600.0) -> int:
    """Delete stored files that no instance row names (left by a crash mid-erasure); returns how many.

    Only files older than ``older_than_s`` go: an import writes its file just before its row, and a
    sweep must not take a file whose row is about to be committed.
    """
    cutoff = time.time() - older_than_s
    with sessions() as session:
        known = set(session.scalars(select(Instance.storage_key).where(Instance.storage_key.is_not(None))))
    removed = 0
    for key in files.keys():
        if key in known:
            continue
        try:
            if files.path(key).stat().st_mtime > cutoff:
                continue
        except OSError:
            continue
        files.delete(key)
        removed += 1
    return removed
