"""Describing a series or study in plain words, from its DICOM attributes alone.

Nothing here looks at pixels and nothing here says what the images show: the description
tells how the pictures were made (kind of scan, body part, date, plane, MR weighting,
contrast, slices) and what bright and dark mean on that kind of picture, and it always
ends by pointing to the radiologist's report and the patient's doctor.

Input is a pydicom ``Dataset``, any mapping from DICOM keywords to values (for example
a database row: ``{"Modality": "MR", "SeriesDescription": "AX T2 FLAIR", ...}``), or an
object with attributes of those names.
Each stage is one small function naming the attributes it reads.
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from glossary.text import clean_text, tokens
from imaging.geometry import plane_from_orientation

CLOSING = (
    "This only tells how the pictures were taken, not what they show. "
    "The radiologist's report says what was found, and your doctor can explain what it means for you."
)

MODALITY_NAMES: dict[str, str] = {
    "MR": "MRI scan",
    "CT": "CT scan",
    "CR": "X-ray",
    "DX": "X-ray",
    "DR": "X-ray",
    "RG": "X-ray",
    "PX": "dental X-ray",
    "IO": "dental X-ray",
    "MG": "mammogram",
    "US": "ultrasound",
    "PT": "PET scan",
    "NM": "nuclear medicine scan",
    "XA": "X-ray of the blood vessels (angiogram)",
    "RF": "live X-ray (fluoroscopy)",
    "BMD": "bone density scan",
    "OT": "picture",
    "SC": "picture",
    "XC": "photo",
    "ES": "endoscopy picture",
    "OP": "eye photo",
    "OPT": "eye scan",
    "SR": "report",
    "DOC": "document",
    "ECG": "heart tracing (ECG)",
    "SEG": "set of outlines drawn on the images",
    "RTDOSE": "radiation therapy dose map",
    "RTSTRUCT": "set of radiation therapy outlines",
    "RTPLAN": "radiation therapy plan",
    "RTIMAGE": "radiation therapy picture",
    "KO": "list of key images",
    "PR": "saved view settings",
}

# BodyPartExamined (0018,0015) defined terms (DICOM PS3.16 Annex L), in plain words.
BODY_PARTS: dict[str, str] = {
    "HEAD": "head",
    "BRAIN": "brain",
    "SKULL": "skull",
    "NECK": "neck",
    "HEADNECK": "head and neck",
    "CSPINE": "neck spine",
    "TSPINE": "upper back spine",
    "LSPINE": "lower back spine",
    "SSPINE": "sacrum",
    "SPINE": "spine",
    "WHOLESPINE": "whole spine",
    "CHEST": "chest",
    "THORAX": "chest",
    "LUNG": "lungs",
    "HEART": "heart",
    "BREAST": "breast",
    "ABDOMEN": "belly",
    "PELVIS": "pelvis",
    "ABDOMENPELVIS": "belly and pelvis",
    "CHESTABDOMEN": "chest and belly",
    "CHESTABDPELVIS": "chest, belly and pelvis",
    "WHOLEBODY": "whole body",
    "KIDNEY": "kidneys",
    "LIVER": "liver",
    "PANCREAS": "pancreas",
    "GALLBLADDER": "gallbladder",
    "BLADDER": "bladder",
    "PROSTATE": "prostate",
    "UTERUS": "womb",
    "OVARY": "ovaries",
    "THYROID": "thyroid",
    "AORTA": "aorta",
    "CAROTID": "neck arteries",
    "SHOULDER": "shoulder",
    "ELBOW": "elbow",
    "WRIST": "wrist",
    "HAND": "hand",
    "FINGER": "finger",
    "HIP": "hip",
    "KNEE": "knee",
    "ANKLE": "ankle",
    "FOOT": "foot",
    "TOE": "toe",
    "ARM": "arm",
    "LEG": "leg",
    "FEMUR": "thigh bone",
    "TIBIA": "shin bone",
    "HUMERUS": "upper arm bone",
    "CLAVICLE": "collarbone",
    "JAW": "jaw",
    "TMJ": "jaw joint",
    "ORBIT": "eye socket",
    "EYE": "eye",
    "SINUS": "sinuses",
    "IAC": "inner ear canals",
    "EXTREMITY": "arm or leg",
    "PHANTOM": "test object",
}

_PLANES = {
    "axial": "The slices go across the body, as if you were looking up from the feet.",
    "sagittal": "The slices split the body into left and right, so you see it from the side.",
    "coronal": "The slices split the body into front and back, so you see it from the front.",
    "oblique": "The slices are at an angle, lined up with the body part being looked at.",
}

_WEIGHTING_NAMES = {
    "t1": "T1-weighted",
    "t2": "T2-weighted",
    "pd": "proton density",
    "flair": "FLAIR",
    "stir": "STIR",
    "dwi": "diffusion",
    "adc": "ADC map",
    "swi": "susceptibility (SWI or T2 star)",
}

_BRIGHT_DARK_MR = {
    "t1": "On T1-weighted pictures, fat looks bright and fluid looks dark.",
    "t2": "On T2-weighted pictures, fluid looks bright, and fat can look bright too.",
    "pd": "On proton density pictures, fluid looks fairly bright and cartilage shows in detail.",
    "flair": "On FLAIR pictures, the clear fluid around the brain looks dark, so changes near it stand out.",
    "stir": "On STIR pictures, fat is made dark, so fluid looks very bright.",
    "dwi": "On diffusion pictures, places where water cannot move freely look bright.",
    "adc": "On the ADC map, places where water cannot move freely look dark.",
    "swi": "On these pictures, blood, iron and calcium look dark.",
}

_BRIGHT_DARK = {
    "MR": "On MRI, bright and dark depend on the kind of picture, so the same part can look different in each series.",
    "CT": (
        "On CT, dense things like bone look white and air looks black. "
        "Fat looks dark gray, and organs are shades of gray."
    ),
    "XR": "On an X-ray, bone looks white and air looks black. Soft parts are shades of gray.",
    "MG": "On a mammogram, dense tissue looks white and fatty tissue looks darker.",
    "US": "On ultrasound, fluid looks black and firmer tissue looks gray or white.",
    "PT": (
        "Brighter or warmer colors mean more tracer was taken up. "
        "Some parts, like the brain and bladder, always take up a lot."
    ),
    "NM": "Darker or warmer spots mean more tracer was taken up there.",
    "XA": "Vessels filled with contrast stand out, as the darkest or brightest parts.",
}
_XRAY_CODES = {"CR", "DX", "DR", "RG", "PX", "IO", "RF", "BMD"}

# Words in a series description that say how contrast was used. Read only from the description.
_NO_CONTRAST = {
    "wo", "without", "noncontrast", "non", "unenhanced", "nonenhanced", "precontrast", "pre", "nc", "native"
}
_CONTRAST = {
    "post",
    "postcontrast",
    "gad",
    "gd",
    "gado",
    "gadolinium",
    "contrast",
    "ce",
    "enhanced",
    "arterial",
    "venous",
    "portal",
    "delayed",
    "postgad",
}
_BOTH = {"wwo"}


@dataclass(frozen=True)
class SeriesFacts:
    """What the attributes of one series tell, before it is put into words."""

    modality: str
    kind: str
    body_part: str
    date: datetime.date | None
    plane: str
    weighting: str
    weighting_from: str  # "name", "timing" or ""
    contrast: bool | None
    slice_count: int | None
    slice_thickness_mm: float | None
    description: str


@dataclass(frozen=True)
class SeriesDescription:
    """A series in plain words: the facts and the sentences built from them."""

    facts: SeriesFacts
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        """The whole description, ending with the pointer to the report and the doctor."""
        return " ".join((*self.sentences, CLOSING))

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        f = self.facts
        return {
            "modality": f.modality,
            "kind": f.kind,
            "body_part": f.body_part,
            "date": f.date.isoformat() if f.date else None,
            "plane": f.plane,
            "weighting": f.weighting or None,
            "weighting_from": f.weighting_from or None,
            "contrast": f.contrast,
            "slice_count": f.slice_count,
            "slice_thickness_mm": f.slice_thickness_mm,
            "series_description": f.description,
            "text": self.text,
        }


@dataclass(frozen=True)
class StudyDescription:
    """A study in plain words: an opening line, one short part per series, and the closing."""

    opening: str
    series: tuple[SeriesDescription, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        """The whole description: opening, each series without its closing, then the closing once."""
        parts = [self.opening]
        for i, s in enumerate(self.series, 1):
            label = f"Series {i}"
            if s.facts.description:
                label += f" ({s.facts.description})"
            parts.append(f"{label}: " + " ".join(s.sentences[1:] or s.sentences))
        parts.append(CLOSING)
        return "\n".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"opening": self.opening, "series": [s.as_dict() for s in self.series], "text": self.text}


# -- reading attributes -----------------------------------------------------------------------------


def _get(source: Any, keyword: str) -> Any:
    """Value of ``keyword`` in a Dataset, a mapping or an object with that attribute, or None.

    pydicom elements are unwrapped; a value pydicom cannot parse counts as missing.
    """
    try:
        if isinstance(source, Mapping) or hasattr(source, "get"):
            value = source.get(keyword)
        else:
            value = getattr(source, keyword, None)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None
    if value is not None and hasattr(value, "value") and hasattr(value, "tag"):
        value = value.value
    return value


def _text(source: Any, keyword: str) -> str:
    value = _get(source, keyword)
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return clean_text(str(value), 1000).strip()


def _float(source: Any, keyword: str) -> float | None:
    value = _get(source, keyword)
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        result = float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None
    if result is None or result != result or result in (float("inf"), float("-inf")):
        return None
    return result


def _int(source: Any, keyword: str) -> int | None:
    value = _float(source, keyword)
    return int(value) if value is not None and value >= 0 else None


def modality_of(source: Any) -> str:
    """Modality (0008,0060), upper case, or "" when missing."""
    return _text(source, "Modality").upper()


def kind_of_scan(modality: str) -> str:
    """Plain name of a modality code ("MR" -> "MRI scan"); unknown codes give "scan"."""
    return MODALITY_NAMES.get(modality, "scan")


def body_part_of(source: Any) -> str:
    """Plain body part from Body Part Examined (0018,0015), else from the study/series descriptions."""
    code = re.sub(r"[^A-Z]", "", _text(source, "BodyPartExamined").upper())
    if code in BODY_PARTS:
        return BODY_PARTS[code]
    words = _description_words(source, ("StudyDescription", "SeriesDescription", "ProtocolName"))
    for word in words:
        part = BODY_PARTS.get(word.upper())
        if part:
            return part
    return ""


def date_of(source: Any) -> datetime.date | None:
    """Series Date (0008,0021), else Acquisition Date (0008,0022), else Study Date (0008,0020)."""
    for keyword in ("SeriesDate", "AcquisitionDate", "StudyDate", "ContentDate"):
        raw = _text(source, keyword).replace("-", "").replace(".", "")
        if len(raw) >= 8 and raw[:8].isdigit():
            try:
                return datetime.date(int(raw[:4]), int(raw[4:6]), int(raw[6:8]))
            except ValueError:
                continue
    return None


def plain_date(date: datetime.date) -> str:
    """A date as "3 March 2024": unambiguous in every country."""
    return f"{date.day} {calendar.month_name[date.month]} {date.year}"


def orientation_of(source: Any) -> list[float] | None:
    """Image Orientation (Patient) (0020,0037), also from an enhanced object's functional groups."""
    value = _get(source, "ImageOrientationPatient")
    if value is None:
        for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            seq = _get(source, group)
            try:
                item = seq[0] if seq else None
                plane_seq = item.get("PlaneOrientationSequence") if item is not None else None
                value = plane_seq[0].get("ImageOrientationPatient") if plane_seq else None
            except (AttributeError, IndexError, TypeError, KeyError):
                value = None
            if value is not None:
                break
    try:
        return [float(v) for v in value] if value is not None else None
    except (TypeError, ValueError):
        return None


def plane_of(source: Any) -> str:
    """``axial``/``sagittal``/``coronal``/``oblique`` from the orientation, else from the description."""
    plane = plane_from_orientation(orientation_of(source))
    if plane != "unknown":
        return plane
    words = set(_description_words(source, ("SeriesDescription", "ProtocolName")))
    for plane_name, keys in (
        ("axial", {"ax", "axial", "tra", "transverse", "axi"}),
        ("sagittal", {"sag", "sagittal"}),
        ("coronal", {"cor", "coronal"}),
    ):
        if words & keys:
            return plane_name
    return "unknown"


def _description_words(source: Any, keywords: Sequence[str]) -> list[str]:
    out: list[str] = []
    for keyword in keywords:
        out.extend(t.text for t in tokens(_text(source, keyword)))
    return out


def mr_weighting(source: Any) -> tuple[str, str]:
    """MR weighting and how it was told: ``(weighting, "name" | "timing")``, or ``("", "")``.

    Reads Series Description (0008,103E), Protocol Name (0018,1030), Sequence Name (0018,0024),
    Image Type (0008,0008), Diffusion b-value (0018,9087); then Scanning Sequence (0018,0020),
    Echo Time (0018,0081), Repetition Time (0018,0080) and Inversion Time (0018,0082).
    """
    raw = " ".join(_text(source, k) for k in ("SeriesDescription", "ProtocolName", "SequenceName")).upper()
    words = {t.text for t in tokens(raw)} | {t.text for t in tokens(_text(source, "ImageType"))}
    b_value = _float(source, "DiffusionBValue")
    if "adc" in words:
        return "adc", "name"
    if words & {"dwi", "diffusion", "diff", "trace", "tracew", "dw", "b1000", "b800", "ep2d"} or (b_value or 0) > 0:
        return "dwi", "name"
    if words & {"swi", "swan", "swip", "susceptibility"} or "T2*" in raw or words & {"t2star", "hemo"}:
        return "swi", "name"
    if words & {"flair", "darkfluid"} or "DARK FLUID" in raw:
        return "flair", "name"
    if words & {"stir", "tirm"}:
        return "stir", "name"
    if words & {"pd", "pdw", "pdfs"}:
        return "pd", "name"
    if any(w.startswith("t2") for w in words):
        return "t2", "name"
    if any(w.startswith("t1") for w in words) or words & {"mprage", "spgr", "bravo", "vibe", "lava", "thrive"}:
        return "t1", "name"
    return _weighting_from_timing(source)


def _weighting_from_timing(source: Any) -> tuple[str, str]:
    te = _float(source, "EchoTime")
    tr = _float(source, "RepetitionTime")
    ti = _float(source, "InversionTime")
    scanning = _text(source, "ScanningSequence").upper()
    if ti is not None and ("IR" in scanning or ti > 0):
        if ti >= 1500:
            return "flair", "timing"
        if 80 <= ti <= 300:
            return "stir", "timing"
    if te is None or tr is None or te <= 0 or tr <= 0:
        return "", ""
    if "GR" in scanning and "SE" not in scanning and te >= 15:
        return "swi", "timing"
    if tr <= 1000 and te <= 30:
        return "t1", "timing"
    if tr >= 2000 and te >= 70:
        return "t2", "timing"
    if tr >= 1500 and te <= 45:
        return "pd", "timing"
    return "", ""


def contrast_of(source: Any) -> bool | None:
    """Whether contrast was given for this series: True, False or None (the file does not say).

    Reads Contrast/Bolus Agent (0018,0010), Contrast/Bolus Agent Sequence (0018,0012),
    Contrast/Bolus Route (0018,1040), then the series description's own words ("POST GAD", "WO").
    """
    agent = _text(source, "ContrastBolusAgent").strip().upper()
    if agent and agent not in {"NONE", "NO", "N", "-", "NIL", "NONE GIVEN"}:
        return True
    if _get(source, "ContrastBolusAgentSequence") or _text(source, "ContrastBolusRoute"):
        return True
    raw = _text(source, "SeriesDescription")
    words = [t.text for t in tokens(raw)]
    word_set = set(words)
    if word_set & _BOTH or ("w" in word_set and "wo" in word_set):
        return None
    if word_set & _NO_CONTRAST:
        return False
    if word_set & _CONTRAST or re.search(r"(?:\bC\+|\+C\b)", raw, re.IGNORECASE):
        return True
    return None


def slice_count_of(source: Any, slice_count: int | None = None) -> int | None:
    """``slice_count`` if given, else Number of Series Related Instances (0020,1209), else frames."""
    if slice_count is not None and slice_count > 0:
        return slice_count
    for keyword in ("NumberOfSeriesRelatedInstances", "NumberOfFrames"):
        value = _int(source, keyword)
        if value:
            return value
    return None


def slice_thickness_of(source: Any) -> float | None:
    """Slice Thickness (0018,0050) in mm, when it is a sensible positive number."""
    value = _float(source, "SliceThickness")
    return round(value, 2) if value is not None and 0 < value < 1000 else None


# -- putting facts into words ---------------------------------------------------------------------------


def series_facts(source: Any, slice_count: int | None = None) -> SeriesFacts:
    """Every fact :func:`describe_series` uses, read from ``source``."""
    modality = modality_of(source)
    weighting, told = mr_weighting(source) if modality == "MR" else ("", "")
    return SeriesFacts(
        modality=modality,
        kind=kind_of_scan(modality),
        body_part=body_part_of(source),
        date=date_of(source),
        plane=plane_of(source) if modality in {"MR", "CT", "PT", "NM"} else "unknown",
        weighting=weighting,
        weighting_from=told,
        contrast=contrast_of(source),
        slice_count=slice_count_of(source, slice_count),
        slice_thickness_mm=slice_thickness_of(source),
        description=_text(source, "SeriesDescription")[:64],
    )


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" or word.startswith(("MRI", "X-ray")) else "a"


def _opening(kind: str, body_part: str, date: datetime.date | None, what: str = "This is") -> str:
    text = f"{what} {_article(kind)} {kind}"
    if body_part:
        text += f" of the {body_part}"
    if date is not None:
        text += f", taken on {plain_date(date)}"
    return text + "."


def _number(value: float) -> str:
    return f"{value:g}"


def series_sentences(facts: SeriesFacts) -> tuple[str, ...]:
    """The plain sentences for one series, without the closing pointer."""
    sentences = [_opening(facts.kind, facts.body_part, facts.date)]
    if facts.weighting:
        name = _WEIGHTING_NAMES[facts.weighting]
        how = "" if facts.weighting_from == "name" else " (told from the scanner settings)"
        sentences.append(f"These are {name} pictures{how}.")
    if facts.plane in _PLANES:
        sentences.append(_PLANES[facts.plane])
    if facts.slice_count and facts.slice_count > 1:
        noun = "slices" if facts.modality in {"MR", "CT", "PT", "NM"} else "pictures"
        line = f"There are {facts.slice_count} {noun}"
        if facts.slice_thickness_mm and noun == "slices":
            line += f", each {_number(facts.slice_thickness_mm)} mm thick"
        sentences.append(line + ".")
    elif facts.slice_thickness_mm and facts.modality in {"MR", "CT"}:
        sentences.append(f"Each slice is {_number(facts.slice_thickness_mm)} mm thick.")
    if facts.contrast is True:
        sentences.append("Contrast was given, so blood vessels and some tissues can look brighter.")
    elif facts.contrast is False:
        sentences.append("No contrast was given for these pictures.")
    if facts.modality == "MR" and facts.weighting:
        sentences.append(_BRIGHT_DARK_MR[facts.weighting])
    else:
        key = "XR" if facts.modality in _XRAY_CODES else facts.modality
        if key in _BRIGHT_DARK:
            sentences.append(_BRIGHT_DARK[key])
    return tuple(sentences)


def describe_series(source: Any, slice_count: int | None = None) -> SeriesDescription:
    """One series in plain words, from a Dataset or a mapping of DICOM keywords.

    ``slice_count`` is the number of instances when the caller knows it (a folder, a database);
    otherwise Number of Series Related Instances or Number of Frames is used.
    """
    facts = series_facts(source, slice_count)
    return SeriesDescription(facts=facts, sentences=series_sentences(facts))


def describe_study(series: Iterable[Any | tuple[Any, int]]) -> StudyDescription:
    """A study in plain words from its series (each a Dataset/mapping, or ``(source, slice_count)``)."""
    described: list[SeriesDescription] = []
    for item in series:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], int):
            described.append(describe_series(item[0], item[1]))
        else:
            described.append(describe_series(item))
    if not described:
        return StudyDescription(opening="There are no pictures to describe.")
    kinds = []
    for d in described:
        if d.facts.kind not in kinds and d.facts.modality not in {"SR", "DOC", "KO", "PR", "SEG"}:
            kinds.append(d.facts.kind)
    kind = kinds[0] if len(kinds) == 1 else ("scan" if not kinds else " and ".join(kinds))
    body = next((d.facts.body_part for d in described if d.facts.body_part), "")
    dates = [d.facts.date for d in described if d.facts.date]
    opening = _opening(kind, body, min(dates) if dates else None, "This study is")
    n = len(described)
    opening += f" It has {n} series." if n > 1 else " It has 1 series."
    return StudyDescription(opening=opening, series=tuple(described))


def describe_datasets(datasets: Iterable[Any]) -> list[StudyDescription]:
    """Group instances by Study/Series Instance UID and describe each study (first series first)."""
    studies: dict[str, dict[str, list[Any]]] = {}
    for ds in datasets:
        study = _text(ds, "StudyInstanceUID") or "unknown-study"
        series = _text(ds, "SeriesInstanceUID") or f"unknown-series-{_text(ds, 'SeriesNumber')}"
        studies.setdefault(study, {}).setdefault(series, []).append(ds)
    out = []
    for series_map in studies.values():
        ordered = sorted(series_map.values(), key=lambda items: _int(items[0], "SeriesNumber") or 0)
        out.append(describe_study([(items[0], _count(items)) for items in ordered]))
    return out


def _count(items: list[Any]) -> int:
    """Slices in a series: the instances, or the frames of a single multi-frame instance."""
    if len(items) == 1:
        return _int(items[0], "NumberOfFrames") or 1
    return len(items)
