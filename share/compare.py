"""Side by side with an earlier study in the viewer: which series of each prior goes with which series
of the shared study, and how far apart the dates are.

Series are paired on the server by :func:`store.comparison.pair_series` (plane, modality, description),
the same rule as the chat. Slices are paired in the browser, mirroring :func:`store.comparison.pair_slice`:
the nearest position along the slice normal (each slice in the manifest carries its ``position``), else
the same relative position in the stack.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from share.links import Scope
from store.comparison import pair_series
from store.models import ShareLink


def interval_words(earlier: date | None, later: date | None) -> str:
    """``14 months apart``, ``2 years apart``, ``5 days apart`` (as the chat says it)."""
    if earlier is None or later is None:
        return "dates unknown"
    days = abs((later - earlier).days)

    def plural(n: int, word: str) -> str:
        return f"{n} {word}" + ("" if n == 1 else "s")

    if days < 45:
        return f"{plural(days, 'day')} apart"
    months = round(days / 30.44)
    if months < 24:
        return f"{plural(months, 'month')} apart"
    return f"{plural(round(days / 365.25), 'year')} apart"


def comparisons(session: Session, link: ShareLink, scope: Scope) -> list[dict[str, Any]]:
    """For each prior the link reaches: its date, the interval, and the partner of each shared series.

    ``[{"study": prior uid, "date": iso, "interval": "2 years apart", "pairs": {main series uid: prior
    series uid}}]``, newest prior first; priors with no pairable series are left out.
    """
    if not scope.studies or scope.studies[0].id != link.study_id:
        return []
    main = scope.studies[0]
    out: list[dict[str, Any]] = []
    for prior in scope.studies[1:]:
        reachable = {s.id for s in scope.series.get(prior.id, [])}
        pairs: dict[str, str] = {}
        for series in scope.series.get(main.id, []):
            pair = pair_series(session, link.patient_id, prior, main, later_series=series)
            if pair is not None and pair[0].id in reachable:
                pairs[series.series_uid] = pair[0].series_uid
        if pairs:
            out.append({
                "study": prior.study_uid,
                "date": prior.study_date.isoformat() if prior.study_date else "",
                "later_date": main.study_date.isoformat() if main.study_date else "",
                "interval": interval_words(prior.study_date, main.study_date),
                "pairs": pairs,
            })
    return out
