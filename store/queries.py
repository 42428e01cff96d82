"""Finding a patient's studies, series and instances: "my last MRI", "my knee X-rays from 2023".

Every function takes the asking patient (a ``Patient.id``) and filters by it first; no argument can
widen a query to another patient's images. Public ids and UIDs that arrive from Telegram callbacks or
URLs are untrusted: :func:`get_study_for_patient` and friends return ``None`` for anything that is not
the asking patient's, exactly as for something that does not exist.

Modalities are DICOM codes (MR, CT, US, MG, PT, NM...) and ``XR`` for any plain X-ray (CR, DX, RF, DR).
Body parts are matched through :func:`store.body_parts.body_part_matches` ("brain" also finds "head").
Dates take a :class:`datetime.date`, or a string ``YYYY-MM-DD``, ``YYYY-MM`` (a month) or ``YYYY`` (a year).

Speed: the modality queries read ``study_modality`` through its ``(patient_id, modality, study_date)``
index; the others read ``study`` through ``(patient_id, study_date)``. Studies without a date sort after
all dated ones, whichever way the list runs (so "latest" never picks an undated study over a dated one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Select, and_, exists, false, or_, select
from sqlalchemy.orm import Session

from store.models import Instance, Series, Study, StudyModality

# Plain X-ray in the patient's words covers these DICOM modalities.
XRAY_MODALITIES = frozenset({"CR", "DX", "RF", "DR"})

# Words a person or an operator may type for a modality, mapped to the DICOM code (or XR).
_MODALITY_ALIASES = {
    "XRAY": "XR",
    "X-RAY": "XR",
    "X RAY": "XR",
    "MRI": "MR",
    "PET": "PT",
    "ULTRASOUND": "US",
    "MAMMOGRAM": "MG",
    "MAMMOGRAPHY": "MG",
}

_DICOM_CODE = re.compile(r"^[A-Z0-9]{1,16}$")


class QueryError(ValueError):
    """A query argument cannot be understood; the message is fit to show the person who typed it."""


# ---------------------------------------------------------------- arguments


def modality_codes(modality: str) -> frozenset[str]:
    """The DICOM Modality (0008,0060) values a request for ``modality`` covers: ``XR`` -> CR, DX, RF, DR."""
    code = " ".join(modality.strip().upper().split())
    code = _MODALITY_ALIASES.get(code, code)
    if code == "XR":
        return XRAY_MODALITIES
    if not _DICOM_CODE.match(code):
        raise QueryError(f"{modality!r} is not a modality code (try MR, CT, US, XR, MG, PT or NM).")
    return frozenset({code})


def _family(modalities: Iterable[str]) -> frozenset[str]:
    """Modalities widened to their family: any plain X-ray code stands for all of them."""
    out: set[str] = set()
    for code in modalities:
        code = code.strip().upper()
        if not code:
            continue
        out |= XRAY_MODALITIES if code in XRAY_MODALITIES else {code}
    return frozenset(out)


def body_part_values(body_part: str) -> frozenset[str]:
    """The canonical stored body parts a request for ``body_part`` matches (via store.body_parts)."""
    from store.body_parts import body_part_matches

    values = frozenset(v for v in body_part_matches(body_part) if v)
    return values


@dataclass(frozen=True)
class DateRange:
    """Half-open range of study dates: ``start <= study_date < end``."""

    start: date
    end: date


def date_range(when: date | str) -> DateRange:
    """The days ``when`` covers: one day (a date or ``YYYY-MM-DD``), a month (``YYYY-MM``) or a year."""
    if isinstance(when, date):
        return DateRange(when, date.fromordinal(when.toordinal() + 1))
    text = when.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            return DateRange(day, date.fromordinal(day.toordinal() + 1))
        if re.fullmatch(r"\d{4}-\d{2}", text):
            year, month = int(text[:4]), int(text[5:])
            start = date(year, month, 1)
            end = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
            return DateRange(start, end)
        if re.fullmatch(r"\d{4}", text):
            year = int(text)
            return DateRange(date(year, 1, 1), date(year + 1, 1, 1))
    except ValueError:
        pass
    raise QueryError(f"{when!r} is not a date; use YYYY-MM-DD, YYYY-MM or YYYY.")


# ---------------------------------------------------------------- building blocks


def _study_filters(
    patient_id: int, *, body_part: str | frozenset[str] | None, when: date | str | None, date_column: Any
) -> list[Any]:
    """WHERE clauses shared by every study query (the patient first, always).

    ``body_part`` is what a person asked for (widened through its synonyms) or, as a frozenset, the
    exact canonical values to match.
    """
    clauses: list[Any] = [Study.patient_id == patient_id]
    values: frozenset[str] | None = None
    if isinstance(body_part, frozenset):
        values = body_part
    elif body_part is not None and body_part.strip():
        values = body_part_values(body_part)
    if values is not None:
        if not values:
            clauses.append(false())
        else:
            # A study matches on its own body part, or on any of its series' (a multi-region study).
            clauses.append(
                or_(
                    Study.body_part.in_(values),
                    exists().where(and_(Series.study_id == Study.id, Series.body_part.in_(values))),
                )
            )
    if when is not None:
        span = date_range(when)
        clauses.append(date_column >= span.start)
        clauses.append(date_column < span.end)
    return clauses


def _studies_select(
    patient_id: int, *, modality: str | None, body_part: str | None, when: date | str | None
) -> tuple[Select[Study], Any]:
    """A SELECT of the patient's matching studies, and the date column to order it by."""
    if modality is not None and modality.strip():
        codes = sorted(modality_codes(modality))
        if len(codes) == 1:
            # One code: join study_modality and walk its (patient_id, modality, study_date) index.
            stmt = (
                select(Study)
                .join(StudyModality, StudyModality.study_id == Study.id)
                .where(StudyModality.patient_id == patient_id, StudyModality.modality == codes[0])
                .where(
                    *_study_filters(patient_id, body_part=body_part, when=when, date_column=StudyModality.study_date)
                )
            )
            return stmt, StudyModality.study_date
        # A family (XR): a study with both CR and DX must come once, so test membership instead of joining.
        has_modality = exists().where(
            and_(
                StudyModality.study_id == Study.id,
                StudyModality.patient_id == patient_id,
                StudyModality.modality.in_(codes),
            )
        )
        stmt = select(Study).where(
            has_modality, *_study_filters(patient_id, body_part=body_part, when=when, date_column=Study.study_date)
        )
        return stmt, Study.study_date
    filters = _study_filters(patient_id, body_part=body_part, when=when, date_column=Study.study_date)
    return select(Study).where(*filters), Study.study_date


def _ordered(stmt: Select[Study], date_column: Any, *, newest_first: bool) -> Select[Study]:
    if newest_first:
        return stmt.order_by(date_column.desc(), Study.study_time.desc(), Study.id.desc())
    return stmt.order_by(date_column.asc(), Study.study_time.asc(), Study.id.asc())


def _first_study(
    session: Session,
    patient_id: int,
    *,
    modality: str | None,
    body_part: str | None,
    when: date | str | None,
    newest_first: bool,
) -> Study | None:
    stmt, date_column = _studies_select(patient_id, modality=modality, body_part=body_part, when=when)
    # Dated studies first (an index range scan on both backends), undated ones only when there are none.
    dated = _ordered(stmt.where(date_column.is_not(None)), date_column, newest_first=newest_first).limit(1)
    found = session.scalars(dated).first()
    if found is not None or when is not None:
        return found
    undated = stmt.where(date_column.is_(None)).order_by(Study.id.desc() if newest_first else Study.id.asc())
    return session.scalars(undated.limit(1)).first()


# ---------------------------------------------------------------- studies


def latest_study(
    session: Session,
    patient_id: int,
    *,
    modality: str | None = None,
    body_part: str | None = None,
    on: date | str | None = None,
) -> Study | None:
    """The patient's newest study (of ``modality``, of ``body_part``, within day/month/year ``on``)."""
    return _first_study(session, patient_id, modality=modality, body_part=body_part, when=on, newest_first=True)


def earliest_study(
    session: Session,
    patient_id: int,
    *,
    modality: str | None = None,
    body_part: str | None = None,
    on: date | str | None = None,
) -> Study | None:
    """The patient's oldest study (of ``modality``, of ``body_part``, within day/month/year ``on``)."""
    return _first_study(session, patient_id, modality=modality, body_part=body_part, when=on, newest_first=False)


def previous_study(
    session: Session,
    patient_id: int,
    before: Study,
    *,
    modality: str | None = None,
    body_part: str | None = None,
) -> Study | None:
    """The patient's study just before ``before``, of the same kind: the one to compare it with.

    Without ``modality`` it shares a modality with ``before`` (any plain X-ray counts as the same);
    without ``body_part`` it has ``before``'s body part when that is known. ``None`` when ``before``
    is not this patient's, has no date, or nothing came earlier.
    """
    if before.patient_id != patient_id or before.study_date is None:
        return None
    if modality is not None and modality.strip():
        codes = modality_codes(modality)
    else:
        codes = _family(before.modalities.split("\\"))
    parts: str | frozenset[str] | None = body_part
    if body_part is None and before.body_part:
        parts = frozenset({before.body_part})
    stmt = (
        select(Study)
        .where(*_study_filters(patient_id, body_part=parts, when=None, date_column=Study.study_date))
        .where(Study.id != before.id)
        .where(
            or_(
                Study.study_date < before.study_date,
                and_(
                    Study.study_date == before.study_date,
                    or_(
                        Study.study_time < before.study_time,
                        and_(Study.study_time == before.study_time, Study.id < before.id),
                    ),
                ),
            )
        )
    )
    if codes:
        stmt = stmt.where(
            exists().where(
                and_(
                    StudyModality.study_id == Study.id,
                    StudyModality.patient_id == patient_id,
                    StudyModality.modality.in_(sorted(codes)),
                )
            )
        )
    return session.scalars(_ordered(stmt, Study.study_date, newest_first=True).limit(1)).first()


def find_studies(
    session: Session,
    patient_id: int,
    *,
    modality: str | None = None,
    body_part: str | None = None,
    date: date | str | None = None,
    newest_first: bool = True,
    limit: int | None = None,
    offset: int = 0,
) -> list[Study]:
    """The patient's studies matching every filter given, newest first (undated ones last)."""
    stmt, date_column = _studies_select(patient_id, modality=modality, body_part=body_part, when=date)
    # NULL dates last in both directions, written out so SQLite and PostgreSQL agree.
    ordered = stmt.order_by(date_column.is_(None).asc())
    ordered = _ordered(ordered, date_column, newest_first=newest_first)
    if offset:
        ordered = ordered.offset(offset)
    if limit is not None:
        ordered = ordered.limit(limit)
    return list(session.scalars(ordered))


def list_studies(
    session: Session, patient_id: int, *, newest_first: bool = True, limit: int | None = None, offset: int = 0
) -> list[Study]:
    """All the patient's studies, newest first (undated ones last)."""
    return find_studies(session, patient_id, newest_first=newest_first, limit=limit, offset=offset)


def count_studies(session: Session, patient_id: int) -> int:
    """How many studies the patient has."""
    from sqlalchemy import func

    return int(session.scalar(select(func.count()).select_from(Study).where(Study.patient_id == patient_id)) or 0)


def get_study_for_patient(session: Session, patient_id: int, study_ref: str) -> Study | None:
    """The patient's study with public id or Study Instance UID ``study_ref``; ``None`` if not theirs."""
    ref = study_ref.strip()
    if not ref or len(ref) > 64:
        return None
    stmt = select(Study).where(Study.patient_id == patient_id, or_(Study.public_id == ref, Study.study_uid == ref))
    return session.scalars(stmt.limit(1)).first()


# ---------------------------------------------------------------- series and instances


def series_of_study(session: Session, patient_id: int, study_id: int) -> list[Series]:
    """The series of the patient's study ``study_id`` (row id) by Series Number; empty if not theirs."""
    stmt = (
        select(Series)
        .join(Study, Study.id == Series.study_id)
        .where(Study.patient_id == patient_id, Series.study_id == study_id)
        .order_by(Series.series_number.is_(None).asc(), Series.series_number.asc(), Series.id.asc())
    )
    return list(session.scalars(stmt))


def get_series_for_patient(session: Session, patient_id: int, series_ref: str) -> Series | None:
    """The patient's series with public id or Series Instance UID ``series_ref``; ``None`` if not theirs."""
    ref = series_ref.strip()
    if not ref or len(ref) > 64:
        return None
    stmt = (
        select(Series)
        .join(Study, Study.id == Series.study_id)
        .where(Study.patient_id == patient_id, or_(Series.public_id == ref, Series.series_uid == ref))
    )
    return session.scalars(stmt.limit(1)).first()


def get_instance_for_patient(session: Session, patient_id: int, instance_ref: str) -> Instance | None:
    """The patient's instance with public id or SOP Instance UID ``instance_ref``; ``None`` if not theirs."""
    ref = instance_ref.strip()
    if not ref or len(ref) > 64:
        return None
    stmt = (
        select(Instance)
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Series.study_id)
        .where(Study.patient_id == patient_id, or_(Instance.public_id == ref, Instance.sop_instance_uid == ref))
    )
    return session.scalars(stmt.limit(1)).first()


def slice_order(instances: Sequence[Instance]) -> list[Instance]:
    """Instances in slice order: along the slice normal when every one has a position, else by number.

    Ties (several echoes or phases at one position) keep Instance Number (0020,0013) order.
    """

    def by_number(inst: Instance) -> tuple[int, int, int]:
        number = inst.instance_number
        return (number is None, number if number is not None else 0, inst.id or 0)

    if instances and all(inst.slice_location is not None for inst in instances):
        return sorted(instances, key=lambda inst: (inst.slice_location, *by_number(inst)))
    return sorted(instances, key=by_number)


def instances_of_series(session: Session, patient_id: int, series_id: int) -> list[Instance]:
    """The instances of the patient's series ``series_id`` (row id) in slice order; empty if not theirs."""
    stmt = (
        select(Instance)
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Series.study_id)
        .where(Study.patient_id == patient_id, Instance.series_id == series_id)
    )
    return slice_order(list(session.scalars(stmt)))
