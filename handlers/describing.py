"""'What is this image showing me?': a plain description of a series from its stored attributes.

The words come from the glossary's study description (attributes only, never a diagnosis); the
glossary terms found in the series description become "explain" buttons. In German, Spanish and
Russian the same facts are put into the same sentences from labels.toml (describe.*).
"""

from __future__ import annotations

import pydicom

from glossary.describe import SeriesFacts
from handlers import texts
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
        body_part = series.study.body_part
    if middle is None:
        return None
    try:
        path = local_path(services.files, middle)  # a PACS instance is fetched into the worker's cache
    except DicomWebError:
        return None
    ds = path if isinstance(path, pydicom.Dataset) else pydicom.dcmread(path, stop_before_pixels=True, force=True)
    described = describe_series(ds, slice_count=count)
    text = described.text if texts.language() == "en" else series_words(described.facts, body_part)
    hits = glossary().find_terms(" ".join(filter(None, [description, study_description])))
    seen: dict[str, str] = {}
    for hit in hits:
        seen.setdefault(hit.concept.id, glossary().explain(hit.concept, texts.language()).term)
    return text, list(seen.items())


# Modalities whose pictures read like an X-ray's (as glossary.describe sorts them).
XRAY_CODES = frozenset({"CR", "DX", "DR", "RG", "PX", "IO", "RF", "BMD"})
SLICED = frozenset({"MR", "CT", "PT", "NM"})


def series_words(facts: SeriesFacts, body_part: str) -> str:
    """glossary.describe's sentences for ``facts`` in the update's language (the body part is the study's
    canonical one, which labels.toml names in every language)."""
    what = texts.what_of(facts.modality, body_part)
    if facts.date is not None:
        sentences = [texts.label("describe.opening_dated", what=what, date=texts.nice_date(facts.date))]
    else:
        sentences = [texts.label("describe.opening", what=what)]
    if facts.weighting:
        name = texts.label(f"describe.weighting_name.{facts.weighting}")
        how = "describe.weighting" if facts.weighting_from == "name" else "describe.weighting_from_timing"
        sentences.append(texts.label(how, name=name))
    if facts.plane in {"axial", "sagittal", "coronal", "oblique"}:
        sentences.append(texts.label(f"describe.plane.{facts.plane}"))
    thickness = f"{facts.slice_thickness_mm:g}" if facts.slice_thickness_mm else ""
    if facts.slice_count and facts.slice_count > 1:
        unit = "slice" if facts.modality in SLICED else "picture"
        sentences.append(texts.label("describe.count", count=texts.counted(facts.slice_count, unit)))
        if thickness and unit == "slice":
            sentences.append(texts.label("describe.thickness", mm=thickness))
    elif thickness and facts.modality in {"MR", "CT"}:
        sentences.append(texts.label("describe.thickness", mm=thickness))
    if facts.contrast is not None:
        sentences.append(texts.label("describe.contrast_given" if facts.contrast else "describe.contrast_not_given"))
    if facts.modality == "MR" and facts.weighting:
        sentences.append(texts.label(f"describe.bright_mr.{facts.weighting}"))
    else:
        key = f"describe.bright.{'XR' if facts.modality in XRAY_CODES else facts.modality}"
        if key in texts.labels():
            sentences.append(texts.label(key))
    sentences.append(texts.label("describe.closing"))
    return " ".join(sentences)
