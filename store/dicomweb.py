"""A PACS as an image source over DICOMweb: QIDO-RS to find a patient's studies, WADO-RS to fetch images.

:func:`sync_patient` records a patient's studies, series and instances from the PACS (``source='dicomweb'``,
each instance with its ``remote_url``) without downloading any pixels. :func:`fetch_instance` downloads
one instance when it is first needed and caches it in the :class:`store.filestore.FileStore`, recording
its storage key and content hash on the row, so the next look is local.

Never blocking other patients: every call is synchronous but bounded. Each HTTP request has a
per-operation timeout (connect, read, write, pool) *and* an overall deadline checked while the answer
streams in, so a PACS that is down, silent or dripping bytes gives a typed error within
``deadline + timeout`` seconds (a sync makes one request per study and per series, each so bounded).
No database transaction or lock is held while waiting on the PACS: :func:`sync_patient` and
:func:`fetch_instance` read, talk to the PACS, then write in a short transaction. The async bot calls
the ``*_async`` wrappers, which run the work in a worker thread (:func:`asyncio.to_thread`), so a slow
PACS ties up one thread for a bounded time and never the event loop.

Nothing widens past the patient: wildcard characters in a Patient ID are refused (QIDO would treat
them as a pattern), and each study the PACS returns is checked to carry exactly the Patient ID (and
issuer) asked for before it is recorded. A study the store already holds for another patient is
skipped and reported, never moved. Each sync is written to the patient's access log.

Limits: answers are read whole into memory (at most ``max_bytes``); QIDO results are not paged, so a
PACS that caps result counts shows only its first page of a patient's studies.

Errors, one tree; :func:`friendly_message` turns any of them into a line fit for the patient::

    DicomWebError                 anything that went wrong with the PACS source
    ├── PacsUnreachable           nothing answered: connection refused, no route, DNS failure
    ├── PacsTimeout               no complete answer within the timeout / overall deadline
    ├── PacsAccessDenied          401 or 403: wrong or missing credentials
    ├── PacsNotFound              404: the PACS does not have (or no longer has) the object
    ├── PacsBadAnswer             5xx, not DICOM JSON, broken multipart, or the wrong object
    ├── InvalidPatientId          empty, too long, or a wildcard pattern instead of one Patient ID
    ├── IdentifierConflict        that PACS Patient ID is already linked to another patient
    └── UnknownInstance           no such instance for this patient (or not a PACS one)
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pydicom
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from imaging.geometry import plane_from_orientation, slice_location
from store.audit import record_access
from store.body_parts import normalise_body_part
from store.dicom_meta import dicom_date
from store.filestore import FileStore
from store.models import Instance, Patient, PatientIdentifier, Series, Study, StudyModality

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
DEFAULT_DEADLINE = 60.0
DEFAULT_MAX_BYTES = 1 << 30
# QIDO answers are asked for in pages of this many (limit/offset), up to MAX_RESULTS in all.
DEFAULT_PAGE_SIZE = 500
MAX_RESULTS = 100_000
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_WILDCARDS = set("*?\\")
DICOM_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'

# DICOM JSON tags (PS3.18 F.2) read here.
T_STUDY_DATE = "00080020"
T_STUDY_TIME = "00080030"
T_MODALITIES_IN_STUDY = "00080061"
T_MODALITY = "00080060"
T_STUDY_DESCRIPTION = "00081030"
T_SERIES_DESCRIPTION = "0008103E"
T_SOP_CLASS = "00080016"
T_SOP_INSTANCE = "00080018"
T_PATIENT_NAME = "00100010"
T_PATIENT_ID = "00100020"
T_ISSUER = "00100021"
T_BIRTH_DATE = "00100030"
T_SEX = "00100040"
T_BODY_PART = "00180015"
T_SLICE_THICKNESS = "00180050"
T_CONTRAST = "00180010"
T_STUDY_UID = "0020000D"
T_SERIES_UID = "0020000E"
T_SERIES_NUMBER = "00200011"
T_INSTANCE_NUMBER = "00200013"
T_POSITION = "00200032"
T_ORIENTATION = "00200037"
T_STUDY_SERIES_COUNT = "00201206"
T_STUDY_INSTANCE_COUNT = "00201208"
T_SERIES_INSTANCE_COUNT = "00201209"
T_FRAMES = "00280008"
T_ROWS = "00280010"
T_COLUMNS = "00280011"
T_PIXEL_SPACING = "00280030"

STUDY_FIELDS = (T_STUDY_DESCRIPTION, T_MODALITIES_IN_STUDY, T_ISSUER, T_STUDY_SERIES_COUNT, T_STUDY_INSTANCE_COUNT)
SERIES_FIELDS = (T_SERIES_DESCRIPTION, T_BODY_PART, T_SERIES_NUMBER, T_SERIES_INSTANCE_COUNT, T_CONTRAST)
INSTANCE_FIELDS = (
    T_INSTANCE_NUMBER, T_POSITION, T_ORIENTATION, T_FRAMES, T_ROWS, T_COLUMNS, T_PIXEL_SPACING, T_SLICE_THICKNESS,
)  # fmt: skip


# ---------------------------------------------------------------- errors


class DicomWebError(Exception):
    """Something went wrong with the PACS source; ``str(exc)`` is for operators, see :func:`friendly_message`."""


class PacsUnreachable(DicomWebError):
    """Nothing answered at the PACS address."""


class PacsTimeout(DicomWebError):
    """The PACS did not answer completely within the bounded time."""


class PacsAccessDenied(DicomWebError):
    """The PACS refused our credentials (HTTP 401 or 403)."""


class PacsNotFound(DicomWebError):
    """The PACS does not have the object asked for (HTTP 404)."""


class PacsBadAnswer(DicomWebError):
    """The PACS answered with an error status or something that is not what DICOMweb promises."""


class InvalidPatientId(DicomWebError):
    """A Patient ID that cannot be searched for exactly (empty, too long or a wildcard pattern)."""


class IdentifierConflict(DicomWebError):
    """The PACS Patient ID is already linked to a different Lightbox patient."""


class UnknownInstance(DicomWebError):
    """No instance of this patient's by that id, or one that has no PACS copy to fetch."""


# The one place errors become words for the patient.
_FRIENDLY: dict[type[DicomWebError], str] = {
    PacsUnreachable: "I can't reach the hospital's image server right now. Please try again later.",
    PacsTimeout: "The hospital's image server is taking too long to answer. Please try again in a few minutes.",
    PacsAccessDenied: "The hospital's image server did not let me in. The people running this bot need to check it.",
    PacsNotFound: "The hospital's image server no longer has that image.",
    PacsBadAnswer: "The hospital's image server sent something I could not read. Please try again later.",
    InvalidPatientId: "That patient number can't be used to look up images.",
    IdentifierConflict: "That patient number is already linked to someone else here.",
    UnknownInstance: "I can't find that image.",
}


def failure_kind(exc: DicomWebError) -> str:
    """How a failed fetch reads to the person waiting: "down" (nothing answered, or too slowly: try again
    later), "missing" (the image is not there) or "bad" (anything else). The viewer turns it into an HTTP
    status, the chat into words in the patient's language."""
    if isinstance(exc, (PacsUnreachable, PacsTimeout)):
        return "down"
    if isinstance(exc, (PacsNotFound, UnknownInstance)):
        return "missing"
    return "bad"


def friendly_message(exc: BaseException) -> str:
    """A short, plain line for the patient about a DICOMweb failure (a generic one for anything else)."""
    for cls in type(exc).__mro__:
        if cls in _FRIENDLY:
            return _FRIENDLY[cls]
    return "Something went wrong while getting your images. Please try again later."


# ---------------------------------------------------------------- DICOM JSON


def _values(item: Mapping[str, Any], tag: str) -> list[Any]:
    element = item.get(tag) or item.get(tag.lower())
    if not isinstance(element, Mapping):
        return []
    value = element.get("Value")
    return list(value) if isinstance(value, list) else []


def _text(item: Mapping[str, Any], tag: str) -> str:
    values = _values(item, tag)
    if not values:
        return ""
    out = []
    for v in values:
        if isinstance(v, Mapping):  # PN: {"Alphabetic": "..."}
            v = v.get("Alphabetic", "")
        out.append(str(v).strip())
    return "\\".join(out)


def _int(item: Mapping[str, Any], tag: str) -> int | None:
    values = _values(item, tag)
    try:
        return int(float(values[0])) if values else None
    except (TypeError, ValueError):
        return None


def _floats(item: Mapping[str, Any], tag: str, count: int) -> list[float] | None:
    values = _values(item, tag)
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


@dataclass(frozen=True)
class RemoteStudy:
    """A study as QIDO-RS describes it."""

    study_uid: str
    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    study_date: date | None
    study_time: str
    description: str
    modalities: tuple[str, ...]
    series_count: int | None
    instance_count: int | None

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> RemoteStudy:
        return cls(
            study_uid=_text(item, T_STUDY_UID),
            patient_id=_text(item, T_PATIENT_ID),
            issuer=_text(item, T_ISSUER),
            patient_name=_text(item, T_PATIENT_NAME),
            birth_date=_text(item, T_BIRTH_DATE),
            sex=_text(item, T_SEX),
            study_date=dicom_date(_text(item, T_STUDY_DATE)),
            study_time=_text(item, T_STUDY_TIME)[:16],
            description=_text(item, T_STUDY_DESCRIPTION)[:256],
            modalities=tuple(sorted({str(v).strip().upper() for v in _values(item, T_MODALITIES_IN_STUDY) if v})),
            series_count=_int(item, T_STUDY_SERIES_COUNT),
            instance_count=_int(item, T_STUDY_INSTANCE_COUNT),
        )


@dataclass(frozen=True)
class RemoteSeries:
    """A series as QIDO-RS describes it."""

    series_uid: str
    modality: str
    series_number: int | None
    description: str
    body_part_examined: str
    contrast: str
    instance_count: int | None

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> RemoteSeries:
        return cls(
            series_uid=_text(item, T_SERIES_UID),
            modality=_text(item, T_MODALITY).upper()[:16],
            series_number=_int(item, T_SERIES_NUMBER),
            description=_text(item, T_SERIES_DESCRIPTION)[:256],
            body_part_examined=_text(item, T_BODY_PART)[:64],
            contrast=_text(item, T_CONTRAST)[:64],
            instance_count=_int(item, T_SERIES_INSTANCE_COUNT),
        )


@dataclass(frozen=True)
class RemoteInstance:
    """An instance as QIDO-RS describes it (with the geometry asked for through ``includefield``)."""

    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    rows: int | None
    columns: int | None
    frames: int
    position: list[float] | None
    orientation: list[float] | None
    pixel_spacing: str
    slice_thickness: float | None

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> RemoteInstance:
        thickness = _floats(item, T_SLICE_THICKNESS, 1)
        return cls(
            sop_instance_uid=_text(item, T_SOP_INSTANCE),
            sop_class_uid=_text(item, T_SOP_CLASS)[:64],
            instance_number=_int(item, T_INSTANCE_NUMBER),
            rows=_int(item, T_ROWS),
            columns=_int(item, T_COLUMNS),
            frames=_int(item, T_FRAMES) or 1,
            position=_floats(item, T_POSITION, 3),
            orientation=_floats(item, T_ORIENTATION, 6),
            pixel_spacing=_text(item, T_PIXEL_SPACING)[:64],
            slice_thickness=thickness[0] if thickness else None,
        )


# ---------------------------------------------------------------- multipart/related


def _boundary(content_type: str) -> bytes:
    match = re.search(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', content_type, re.IGNORECASE)
    if not match:
        raise PacsBadAnswer("multipart answer without a boundary")
    return (match.group(1) or match.group(2)).encode("latin-1")


def parse_multipart_related(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts (headers, content) of a ``multipart/related`` body (RFC 2046), in order."""
    delimiter = b"--" + _boundary(content_type)
    start = body.find(delimiter)
    if start < 0:
        raise PacsBadAnswer("multipart answer without its first boundary")
    parts: list[tuple[dict[str, str], bytes]] = []
    pos = start + len(delimiter)
    while True:
        if body[pos : pos + 2] == b"--":
            return parts
        line_end = body.find(b"\r\n", pos)  # the rest of the delimiter line (transport padding)
        if line_end < 0:
            raise PacsBadAnswer("multipart answer cut short")
        pos = line_end + 2
        following = body.find(b"\r\n" + delimiter, pos)
        if following < 0:
            raise PacsBadAnswer("multipart answer without its closing boundary")
        raw = body[pos:following]
        if raw.startswith(b"\r\n"):
            head, content = b"", raw[2:]
        else:
            head, separator, content = raw.partition(b"\r\n\r\n")
            if not separator:
                raise PacsBadAnswer("multipart part without a blank line after its headers")
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
        pos = following + 2 + len(delimiter)


# ---------------------------------------------------------------- the client


def _check_uid(uid: str) -> str:
    if not uid or len(uid) > 64 or not _UID.match(uid):
        raise PacsBadAnswer("a UID that is not a DICOM UID")
    return uid


def check_patient_id(patient_id: str) -> str:
    """``patient_id`` if it can be searched for exactly; :class:`InvalidPatientId` otherwise."""
    value = patient_id.strip()
    if not value or len(value) > 64 or _WILDCARDS & set(value) or any(ord(c) < 32 for c in value):
        raise InvalidPatientId("a Patient ID for QIDO must be one exact value (no *, ? or \\)")
    return value


class DicomWebSource:
    """A DICOMweb service (QIDO-RS, WADO-RS) at ``base_url`` (for Orthanc: ``<orthanc>/dicom-web``).

    ``timeout`` bounds each network operation; ``deadline`` bounds a whole request including the
    download; ``max_bytes`` bounds one answer's size; QIDO results come ``page_size`` at a time.
    Safe to share between threads.
    """

    def __init__(
        self,
        base_url: str,
        auth: tuple[str, str] | httpx.Auth | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        deadline: float = DEFAULT_DEADLINE,
        max_bytes: int = DEFAULT_MAX_BYTES,
        page_size: int = DEFAULT_PAGE_SIZE,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.page_size = max(1, page_size)
        self._client = httpx.Client(
            auth=auth,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": "Lightbox"},
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> DicomWebSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP --------------------------------------------------------------------------------

    def _get(self, path: str, *, params: Sequence[tuple[str, str]] = (), accept: str) -> tuple[int, str, bytes]:
        """GET ``path`` within the deadline; (status, content type, body) or a typed error."""
        url = self.base_url + path
        started = time.monotonic()
        try:
            with self._client.stream("GET", url, params=list(params), headers={"Accept": accept}) as response:
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PacsBadAnswer(f"answer larger than {self.max_bytes} bytes")
                    if time.monotonic() - started > self.deadline:
                        raise PacsTimeout(f"no complete answer within {self.deadline:.0f} s")
                    chunks.append(chunk)
                status = response.status_code
                content_type = response.headers.get("content-type", "")
        except httpx.TimeoutException as exc:
            raise PacsTimeout(f"the PACS did not answer in time ({type(exc).__name__})") from exc
        except (httpx.ConnectError, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise PacsUnreachable(f"the PACS cannot be reached ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise PacsBadAnswer(f"HTTP failure talking to the PACS ({type(exc).__name__})") from exc
        body = b"".join(chunks)
        if status in (401, 403):
            raise PacsAccessDenied(f"the PACS answered {status}")
        if status == 404:
            raise PacsNotFound("the PACS answered 404")
        if status >= 400:
            raise PacsBadAnswer(f"the PACS answered {status}")
        return status, content_type, body

    def _qido_page(self, path: str, params: Sequence[tuple[str, str]]) -> list[Mapping[str, Any]]:
        status, _, body = self._get(path, params=params, accept="application/dicom+json")
        if status == 204 or not body.strip():
            return []
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise PacsBadAnswer("QIDO answer is not JSON") from exc
        if not isinstance(data, list) or not all(isinstance(item, Mapping) for item in data):
            raise PacsBadAnswer("QIDO answer is not a list of DICOM JSON objects")
        return data

    def _qido(self, path: str, params: Sequence[tuple[str, str]]) -> list[Mapping[str, Any]]:
        """Every match, page by page (``limit``/``offset``); stops if the PACS ignores ``offset``."""
        results: list[Mapping[str, Any]] = []
        offset = 0
        previous_first: Mapping[str, Any] | None = None
        while len(results) < MAX_RESULTS:
            page_params = [*params, ("limit", str(self.page_size)), ("offset", str(offset))]
            page = self._qido_page(path, page_params)
            if not page or (previous_first is not None and page[0] == previous_first):
                break
            results.extend(page)
            if len(page) < self.page_size:
                break
            previous_first = page[0]
            offset += len(page)
        return results[:MAX_RESULTS]

    # -- QIDO-RS -----------------------------------------------------------------------------

    def search_studies(self, patient_id: str, issuer: str = "") -> list[RemoteStudy]:
        """The studies of exactly Patient ID ``patient_id`` (from ``issuer`` when given)."""
        value = check_patient_id(patient_id)
        params = [("PatientID", value)]
        if issuer:
            params.append(("IssuerOfPatientID", check_patient_id(issuer)))
        params += [("includefield", tag) for tag in STUDY_FIELDS]
        studies = []
        for item in self._qido("/studies", params):
            study = RemoteStudy.from_json(item)
            # Trust, but check: a PACS that matched loosely must not hand us someone else's study.
            if study.patient_id != value or (issuer and study.issuer and study.issuer != issuer):
                log.warning("QIDO returned a study for a different patient; ignored")
                continue
            _check_uid(study.study_uid)
            studies.append(study)
        return studies

    def search_series(self, study_uid: str) -> list[RemoteSeries]:
        """The series of study ``study_uid``."""
        params = [("includefield", tag) for tag in SERIES_FIELDS]
        series = [
            RemoteSeries.from_json(item) for item in self._qido(f"/studies/{_check_uid(study_uid)}/series", params)
        ]
        for s in series:
            _check_uid(s.series_uid)
        return series

    def search_instances(self, study_uid: str, series_uid: str) -> list[RemoteInstance]:
        """The instances of one series, with their geometry."""
        path = f"/studies/{_check_uid(study_uid)}/series/{_check_uid(series_uid)}/instances"
        params = [("includefield", tag) for tag in INSTANCE_FIELDS]
        instances = [RemoteInstance.from_json(item) for item in self._qido(path, params)]
        for inst in instances:
            _check_uid(inst.sop_instance_uid)
        return instances

    # -- WADO-RS -----------------------------------------------------------------------------

    def instance_url(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
        """The WADO-RS address of one instance."""
        return (
            f"{self.base_url}/studies/{_check_uid(study_uid)}/series/{_check_uid(series_uid)}"
            f"/instances/{_check_uid(sop_instance_uid)}"
        )

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> bytes:
        """The DICOM file (Part 10 bytes) of one instance, as stored at the PACS (any transfer syntax)."""
        path = self.instance_url(study_uid, series_uid, sop_instance_uid)[len(self.base_url) :]
        _, content_type, body = self._get(path, accept=DICOM_ACCEPT)
        media = content_type.split(";")[0].strip().lower()
        if media == "multipart/related":
            parts = [content for headers, content in parse_multipart_related(body, content_type)
                     if headers.get("content-type", "application/dicom").split(";")[0].strip().lower()
                     == "application/dicom"]  # fmt: skip
            if len(parts) != 1:
                raise PacsBadAnswer(f"expected one DICOM part, got {len(parts)}")
            data = parts[0]
        elif media == "application/dicom":
            data = body
        else:
            raise PacsBadAnswer(f"unexpected answer type {media or 'none'}")
        if len(data) < 132 or data[128:132] != b"DICM":
            raise PacsBadAnswer("the answer is not a DICOM file")
        return data


# ---------------------------------------------------------------- sync into the store


@dataclass
class SyncReport:
    """What :func:`sync_patient` found and recorded (opaque counts, no health information)."""

    studies_found: int = 0
    studies_added: int = 0
    studies_updated: int = 0
    series_added: int = 0
    instances_added: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass
class _RemoteTree:
    study: RemoteStudy
    series: list[tuple[RemoteSeries, list[RemoteInstance]]]


def _fetch_tree(source: DicomWebSource, pacs_patient_id: str, issuer: str) -> list[_RemoteTree]:
    trees = []
    for study in source.search_studies(pacs_patient_id, issuer):
        series = [
            (s, source.search_instances(study.study_uid, s.series_uid)) for s in source.search_series(study.study_uid)
        ]
        trees.append(_RemoteTree(study, series))
    return trees


def _link_identifier(session: Session, patient_id: int, value: str, issuer: str) -> None:
    existing = session.scalars(
        select(PatientIdentifier).where(PatientIdentifier.issuer == issuer, PatientIdentifier.value == value)
    ).first()
    if existing is None:
        session.add(PatientIdentifier(patient_id=patient_id, issuer=issuer, value=value))
    elif existing.patient_id != patient_id:
        raise IdentifierConflict("the PACS Patient ID belongs to another Lightbox patient")


def _record_tree(
    session: Session, source: DicomWebSource, patient: Patient, tree: _RemoteTree, report: SyncReport
) -> None:
    remote = tree.study
    study = session.scalars(select(Study).where(Study.study_uid == remote.study_uid)).first()
    if study is not None and study.patient_id != patient.id:
        report.skipped.append("a study the store already holds for another patient")
        return
    if study is None:
        study = Study(patient_id=patient.id, study_uid=remote.study_uid, source="dicomweb")
        session.add(study)
        report.studies_added += 1
    else:
        report.studies_updated += 1
    if study.source == "dicomweb":
        study.study_date = remote.study_date
        study.study_time = remote.study_time
        study.description = remote.description
    session.flush()

    known_series = {s.series_uid: s for s in session.scalars(select(Series).where(Series.study_id == study.id))}
    for remote_series, remote_instances in tree.series:
        series = known_series.get(remote_series.series_uid)
        if series is None:
            if session.scalars(select(Series.id).where(Series.series_uid == remote_series.series_uid)).first():
                report.skipped.append("a series filed under another study")
                continue
            series = Series(study_id=study.id, series_uid=remote_series.series_uid)
            session.add(series)
            known_series[series.series_uid] = series
            report.series_added += 1
        series.modality = remote_series.modality or series.modality
        series.series_number = remote_series.series_number
        series.description = remote_series.description
        series.contrast = remote_series.contrast
        series.body_part = normalise_body_part(
            remote_series.body_part_examined, remote_series.description, remote.description
        )
        orientation = next((i.orientation for i in remote_instances if i.orientation), None)
        series.plane = plane_from_orientation(orientation)
        series.slice_thickness = next((i.slice_thickness for i in remote_instances if i.slice_thickness), None)
        session.flush()

        uids = [i.sop_instance_uid for i in remote_instances]
        existing = {
            row.sop_instance_uid: row
            for row in session.scalars(select(Instance).where(Instance.sop_instance_uid.in_(uids)))
        } if uids else {}  # fmt: skip
        for remote_instance in remote_instances:
            row = existing.get(remote_instance.sop_instance_uid)
            if row is not None and row.series_id != series.id:
                report.skipped.append("an instance filed under another series")
                continue
            if row is None:
                row = Instance(series_id=series.id, sop_instance_uid=remote_instance.sop_instance_uid)
                session.add(row)
                report.instances_added += 1
            row.sop_class_uid = remote_instance.sop_class_uid
            row.instance_number = remote_instance.instance_number
            row.slice_location = slice_location(remote_instance.orientation, remote_instance.position)
            row.number_of_frames = remote_instance.frames
            row.rows = remote_instance.rows
            row.columns = remote_instance.columns
            row.pixel_spacing = remote_instance.pixel_spacing
            row.remote_url = source.instance_url(remote.study_uid, series.series_uid, row.sop_instance_uid)
        session.flush()
        series.instance_count = int(
            session.scalar(select(func.count()).select_from(Instance).where(Instance.series_id == series.id)) or 0
        )
        series.frame_count = int(
            session.scalar(select(func.sum(Instance.number_of_frames)).where(Instance.series_id == series.id)) or 0
        )
    _refresh_study_summary(session, study, remote)


def _refresh_study_summary(session: Session, study: Study, remote: RemoteStudy) -> None:
    """Counts, modalities (and their index rows) and body part of a study from its series rows."""
    session.flush()
    series_rows = list(session.scalars(select(Series).where(Series.study_id == study.id)))
    codes = sorted({s.modality for s in series_rows if s.modality} | set(remote.modalities))
    study.modalities = "\\".join(codes)[:64]
    study.series_count = len(series_rows)
    study.instance_count = sum(s.instance_count for s in series_rows)
    examined = next((s.body_part for s in series_rows if s.body_part), "")
    study.body_part = normalise_body_part(examined, remote.description, *(s.description for s in series_rows))
    have = {
        row.modality: row for row in session.scalars(select(StudyModality).where(StudyModality.study_id == study.id))
    }
    for code in codes:
        row = have.pop(code, None)
        if row is None:
            session.add(
                StudyModality(
                    study_id=study.id, modality=code, patient_id=study.patient_id, study_date=study.study_date
                )
            )
        else:
            row.study_date = study.study_date
    for stale in have.values():
        session.delete(stale)
    session.flush()


def sync_patient(
    sessions: sessionmaker[Session],
    source: DicomWebSource,
    patient_id_row: int,
    pacs_patient_id: str,
    issuer: str = "",
) -> SyncReport:
    """Record the PACS's studies of ``pacs_patient_id`` under Lightbox patient ``patient_id_row``.

    Asks the PACS first (bounded, no transaction open), then writes everything in one transaction:
    a failure leaves the store as it was. Links the PACS Patient ID to the patient (raises
    :class:`IdentifierConflict` when it belongs to another). Downloads no pixels.
    """
    value = check_patient_id(pacs_patient_id)
    trees = _fetch_tree(source, value, issuer)
    for attempt in (1, 2):
        report = SyncReport(studies_found=len(trees))
        try:
            with sessions() as session, session.begin():
                patient = session.get(Patient, patient_id_row)
                if patient is None:  # a caller's bug, not a PACS failure
                    raise ValueError("sync_patient needs an existing Lightbox patient row")
                _link_identifier(session, patient.id, value, issuer)
                for tree in trees:
                    _record_tree(session, source, patient, tree, report)
                record_access(
                    session,
                    patient.id,
                    "system",
                    "dicomweb",
                    "sync",
                    detail=f"{report.studies_added} new of {report.studies_found} studies at the PACS",
                )
                if trees and not patient.name:
                    first = trees[0].study
                    patient.name = first.patient_name[:512]
                    patient.birth_date = first.birth_date[:16]
                    patient.sex = first.sex[:16]
            return report
        except IntegrityError:
            # Another sync of the same patient won a race for a UID; read its rows and go again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- fetching on demand


def fetch_instance(
    sessions: sessionmaker[Session], source: DicomWebSource, store: FileStore, patient_id: int, instance_id: int
) -> Path | pydicom.Dataset:
    """The local file of the patient's instance ``instance_id``, fetched by WADO-RS and cached on first use.

    Checks the bytes really are that instance (SOP Instance UID) before keeping them; records the
    storage key, content hash, size and transfer syntax on the row.
    """
    with sessions() as session:
        row = session.execute(
            select(Instance, Series.series_uid, Study.study_uid)
            .join(Series, Series.id == Instance.series_id)
            .join(Study, Study.id == Series.study_id)
            .where(Study.patient_id == patient_id, Instance.id == instance_id)
        ).first()
    if row is None:
        raise UnknownInstance("no such instance for this patient")
    instance, series_uid, study_uid = row
    if instance.storage_key and store.exists(instance.storage_key):
        return store.image_source(instance.storage_key)
    if not instance.remote_url:
        raise UnknownInstance("the instance has no local file and no PACS copy")
    data = source.retrieve_instance(study_uid, series_uid, instance.sop_instance_uid)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        sop_uid = str(ds.SOPInstanceUID)
        transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    except Exception as exc:
        raise PacsBadAnswer("the PACS sent a DICOM file that cannot be read") from exc
    if sop_uid != instance.sop_instance_uid:
        raise PacsBadAnswer("the PACS sent a different instance than the one asked for")
    stored = store.put(data)
    with sessions() as session, session.begin():
        fresh = session.get(Instance, instance.id)
        if fresh is None:  # erased while we were downloading; the file is unreferenced
            raise UnknownInstance("the instance was removed meanwhile")
        fresh.storage_key = stored.key
        fresh.content_hash = stored.sha256
        fresh.size_bytes = stored.size
        fresh.transfer_syntax_uid = transfer_syntax[:64]
    return store.image_source(stored.key)


async def sync_patient_async(
    sessions: sessionmaker[Session],
    source: DicomWebSource,
    patient_id_row: int,
    pacs_patient_id: str,
    issuer: str = "",
) -> SyncReport:
    """:func:`sync_patient` in a worker thread, for the bot's event loop."""
    return await asyncio.to_thread(sync_patient, sessions, source, patient_id_row, pacs_patient_id, issuer)


async def fetch_instance_async(
    sessions: sessionmaker[Session], source: DicomWebSource, store: FileStore, patient_id: int, instance_id: int
) -> Path | pydicom.Dataset:
    """:func:`fetch_instance` in a worker thread, for the bot's event loop."""
    return await asyncio.to_thread(fetch_instance, sessions, source, store, patient_id, instance_id)


def remote_instances(instances: Iterable[Instance]) -> list[Instance]:
    """The instances that still need fetching (known at the PACS, not cached locally)."""
    return [i for i in instances if i.remote_url and not i.storage_key]
