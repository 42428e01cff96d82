"""'What is this image showing me?': a plain description of a series from its stored attributes.

The words come from the glossary's study description (attributes only, never a diagnosis); the
glossary terms found in the series description become "explain" buttons.
"""

from __future__ import annotations

import pydicom

from handlers.services import Services
from store.dicomweb import DicomWebError
from store.pacs_store import local_path
from store.queries import get_series_for_patient, instances_of_series


def describe_for_patient(
    services: Services, patient_id: int, series_ref: str
) -> tuple[str, list[tuple[str, str]]] | None:
    """(description, [(concept id, term)]) for the patient's series, or ``None`` if it is not theirs."""
    from glossary.describe import describe_series
    from handlers.words import glossary

    with services.sessions() as session:
        series = get_series_for_patient(session, patient_id, series_ref)
        if series is None:
            return None
        instances = instances_of_series(session, patient_id, series.id)
        stored = [i for i in instances if i.storage_key or i.remote_url]
        middle = stored[len(stored) // 2] if stored else None
        count = len(instances)
        description = series.description
        study_description = series.study.description
    if middle is None:
        return None
    try:
        path = local_path(services.files, middle)  # a PACS instance is fetched into the worker's cache
    except DicomWebError:
        return None
    ds = path if isinstance(path, pydicom.Dataset) else pydicom.dcmread(path, stop_before_pixels=True, force=True)
    text = describe_series(ds, slice_count=count).text
    hits = glossary().find_terms(" ".join(filter(None, [description, study_description])))
    seen: dict[str, str] = {}
    for hit in hits:
        seen.setdefault(hit.concept.id, hit.concept.term)
    return text, list(seen.items())
