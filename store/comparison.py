"""Choosing what to compare: two studies of one patient, their matching series, and paired slices.

"compare my knee MRIs" means the latest and the one before, of the same modality and body part;
"compare my chest X-ray with the one from 2023" names one side. Series are paired by kind (plane,
then how alike their descriptions are); slices by position along the slice normal (nearest), or by
relative position in the stack when either series lacks geometry.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date

from rapidfuzz import fuzz
from sqlalchemy.orm import Session

from store.models import Instance, Series, Study
from store.queries import (
    XRAY_MODALITIES,
    earliest_study,
    find_studies,
    instances_of_series,
    latest_study,
    previous_study,
    series_of_study,
)

IMAGE_FREE_MODALITIES = frozenset({"SR", "DOC", "PR", "KO", "OT"})


@dataclass(frozen=True)
class ComparisonPlan:
    """Two studies to put side by side (earlier, later), or why there are none: ``problem`` in plain English,
    ``code`` and ``values`` for saying it in another language (handlers.comparing)."""

    earlier: Study | None = None
    later: Study | None = None
    problem: str = ""
    code: str = ""
    values: tuple[str, ...] = ()


def _family(modalities: str) -> set[str]:
    codes = {m for m in modalities.split("\\") if m}
    return {"XR" if m in XRAY_MODALITIES else m for m in codes} - IMAGE_FREE_MODALITIES


def _words(study: Study) -> str:
    from_kind = {
        "MR": "an MRI",
        "CT": "a CT scan",
        "XR": "an X-ray",
        "US": "an ultrasound",
        "MG": "a mammogram",
        "PT": "a PET scan",
        "NM": "a nuclear medicine scan",
    }
    fam = sorted(_family(study.modalities))
    return from_kind.get(fam[0], "a scan") if fam else "a scan"


def plan_comparison(
    session: Session,
    patient_id: int,
    *,
    modality: str | None = None,
    body_part: str | None = None,
    dates: list[str] | None = None,
    later_study: Study | None = None,
) -> ComparisonPlan:
    """Which two studies to compare, or a plain reason why nothing comparable exists."""
    kind = {"modality": modality, "body_part": body_part}
    dates = [d for d in (dates or []) if d]
    if len(dates) >= 2:
        first = latest_study(session, patient_id, on=dates[0], **kind)
        second = latest_study(session, patient_id, on=dates[1], **kind)
        if first is None or second is None:
            missing = dates[0] if first is None else dates[1]
            return ComparisonPlan(
                problem=f"I couldn't find a matching scan from {missing}.", code="missing_date", values=(missing,)
            )
        pair = sorted([first, second], key=lambda s: s.study_date or date.min)
        return ComparisonPlan(pair[0], pair[1])
    later = later_study or latest_study(session, patient_id, **kind)
    if later is None:
        return ComparisonPlan(problem="I couldn't find a scan like that to compare.", code="nothing")
    if len(dates) == 1:
        named = latest_study(session, patient_id, on=dates[0], **kind)
        if named is None or named.id == later.id:
            return ComparisonPlan(
                problem=f"I couldn't find a matching scan from {dates[0]}.", code="missing_date", values=(dates[0],)
            )
        pair = sorted([named, later], key=lambda s: s.study_date or date.min)
        return ComparisonPlan(pair[0], pair[1])
    earlier = previous_study(session, patient_id, later, **kind)
    if earlier is not None:
        return ComparisonPlan(earlier, later)
    # Say why: an earlier study of this body part of another kind, or nothing earlier at all.
    part = body_part or later.body_part
    if part:
        others = [
            s
            for s in find_studies(session, patient_id, body_part=part)
            if s.id != later.id and (s.study_date or date.min) <= (later.study_date or date.max)
        ]
        if others:
            other = others[0]
            return ComparisonPlan(
                problem=(
                    f"Your earlier {part} study is {_words(other)}, and the newer one is {_words(later)}. "
                    "Different kinds of scan can't be compared picture by picture."
                ),
                code="different_kinds",
                values=(part, other.modalities, later.modalities),
            )
    oldest = earliest_study(session, patient_id, **kind)
    if oldest is not None and oldest.id == later.id:
        return ComparisonPlan(
            problem="This is your only scan of this kind, so there is nothing earlier to compare it with.",
            code="only_one",
        )
    return ComparisonPlan(
        problem="I couldn't find an earlier scan of the same kind to compare with.", code="no_earlier"
    )


def _image_series(session: Session, patient_id: int, study: Study) -> list[Series]:
    return [
        s
        for s in series_of_study(session, patient_id, study.id)
        if s.modality not in IMAGE_FREE_MODALITIES and (s.instance_count or s.frame_count)
    ]


def series_likeness(a: Series, b: Series) -> float:
    """How alike two series are (0..100): same plane and modality first, then description words."""
    score = (
        fuzz.token_set_ratio(a.description.lower(), b.description.lower()) if a.description and b.description else 50.0
    )
    if a.plane == b.plane and a.plane != "unknown":
        score += 100
    if a.modality == b.modality:
        score += 50
    return score


def pair_series(
    session: Session, patient_id: int, earlier: Study, later: Study, later_series: Series | None = None
) -> tuple[Series, Series] | None:
    """The best-matching (earlier, later) series pair; with ``later_series`` given, its best partner."""
    old = _image_series(session, patient_id, earlier)
    new = [later_series] if later_series is not None else _image_series(session, patient_id, later)
    if not old or not new:
        return None
    best = max(
        (
            (series_likeness(o, n), -abs((o.instance_count or 0) - (n.instance_count or 0)), o.id, n.id, o, n)
            for o in old
            for n in new
        ),
        key=lambda t: t[:4],
    )
    return best[4], best[5]


def pair_slice(earlier: list[Instance], later: list[Instance], later_index: int) -> int:
    """Index in ``earlier`` of the slice that matches ``later[later_index]``.

    Nearest position along the slice normal when both stacks have geometry, else the same relative
    position in the stack.
    """
    if not earlier:
        return 0
    later_index = min(max(later_index, 0), len(later) - 1) if later else 0
    target = later[later_index].slice_location if later else None
    positions = [i.slice_location for i in earlier]
    known = [p for p in positions if p is not None]
    if target is not None and len(known) == len(positions):
        ordered = sorted(range(len(earlier)), key=lambda k: known[k])
        values = [known[k] for k in ordered]
        at = bisect.bisect_left(values, target)
        candidates = [c for c in (at - 1, at) if 0 <= c < len(values)]
        best = min(candidates, key=lambda c: abs(values[c] - target))
        return ordered[best]
    if len(later) <= 1:
        return (len(earlier) - 1) // 2
    return round(later_index * (len(earlier) - 1) / (len(later) - 1))


def stack(session: Session, patient_id: int, series: Series) -> list[Instance]:
    """The series' image instances in slice order (stored here or kept in the PACS)."""
    rows = instances_of_series(session, patient_id, series.id)
    return [i for i in rows if (i.storage_key or i.remote_url) and i.rows]
