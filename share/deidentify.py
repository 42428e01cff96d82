"""De-identified copies for a share's download: DICOM PS3.15 Annex E, Basic Application Level
Confidentiality Profile, driven by the standard's own table (``share/data/confidentiality_profile_attributes.json``,
table E.1-1 extracted by innolitics/dicom-standard).

Actions per attribute (column "Basic Profile"):

- ``X`` remove; ``Z`` replace with a zero-length value; ``D`` replace with a non-identifying dummy of the
  same VR; ``U`` replace the UID with another, the same one every time within one export (so references
  between files still match); ``K`` keep.
- Combined codes pick by the attribute's IOD type in the standard. Without IOD tables we take the
  choice that keeps the file valid for any type: ``X/Z`` -> ``Z``, ``X/D``, ``Z/D`` and ``X/Z/D`` -> ``D``,
  ``X/Z/U*`` -> ``U``. Each of those removes the identifying value just as well.
- Wildcard rows: private groups (odd group numbers), curve data (50xx,xxxx), overlay data and comments
  (60xx,3000 / 60xx,4000) are removed.
- Attributes not in the table are kept; nested sequences get the same treatment item by item.

Option ``date_shift_days`` is the standard's "Retain Longitudinal Temporal Information with Modified
Dates" option: attributes the table marks for it have their dates moved by the same number of days instead
of being removed, so intervals between a study and its priors survive. Times are kept.

What this cannot do: remove text burned into the pixels. Ultrasound, secondary captures and anything with
Burned In Annotation = YES often show the name in the picture; :func:`deidentify` says so in its report.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

PROFILE_PATH = Path(__file__).with_name("data") / "confidentiality_profile_attributes.json"

# De-identification Method Code Sequence codes (CID 7050).
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
MODIFIED_DATES_CODE = ("113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option")

# Modalities / SOP classes that often carry names burned into the pixels.
BURNED_IN_MODALITIES = {"US", "SC", "XC", "ES", "GM", "OT", "DOC", "SM"}
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"

_CHOICE = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}
_STRING_DUMMY = "ANONYMIZED"
_NUMERIC_VRS = {"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"}
_BYTES_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}


@dataclass(frozen=True)
class ProfileRule:
    """One row of table E.1-1: which tags it covers and what the basic profile does to them."""

    name: str
    tag_text: str
    action: str  # the table's code: X, Z, D, U, K or a combination
    tag: int | None = None  # exact tag, or None for a wildcard row
    group_mask: int = 0  # for wildcard rows: (tag >> 16) & group_mask == group_value
    group_value: int = 0
    element: int | None = None
    private: bool = False
    modified_dates_option: bool = False

    @property
    def chosen(self) -> str:
        """The single action taken (combined codes resolved as the module docstring says)."""
        return _CHOICE.get(self.action, self.action)

    def covers(self, tag: int) -> bool:
        """Whether this row applies to ``tag``."""
        if self.tag is not None:
            return tag == self.tag
        group, element = tag >> 16, tag & 0xFFFF
        if self.private:
            return bool(group % 2)
        if (group & self.group_mask) != self.group_value:
            return False
        return self.element is None or element == self.element


_TAG_RE = re.compile(r"^\(([0-9A-Fa-fX]{4}),([0-9A-Fa-fX]{4})\)$")


def _parse_rule(row: dict[str, str]) -> ProfileRule:
    text = row["tag"].strip()
    common = {
        "name": row["name"],
        "tag_text": text,
        "action": row["basicProfile"].strip(),
        "modified_dates_option": row.get("rtnLongModifDatesOpt", "") == "C",
    }
    if "ODD" in text.upper():
        return ProfileRule(private=True, **common)  # type: ignore[arg-type]
    match = _TAG_RE.match(text)
    if match is None:
        raise ValueError(f"unreadable tag {text!r} in the confidentiality profile table")
    group_text, element_text = match.group(1).upper(), match.group(2).upper()
    if "X" not in group_text + element_text:
        return ProfileRule(tag=int(group_text + element_text, 16), **common)  # type: ignore[arg-type]
    mask = int("".join("0" if c == "X" else "F" for c in group_text), 16)
    value = int(group_text.replace("X", "0"), 16)
    element = None if "X" in element_text else int(element_text, 16)
    return ProfileRule(group_mask=mask, group_value=value, element=element, **common)  # type: ignore[arg-type]


@cache
def load_profile(path: Path = PROFILE_PATH) -> tuple[dict[int, ProfileRule], tuple[ProfileRule, ...]]:
    """The table as (exact rules by tag, wildcard rules)."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    exact: dict[int, ProfileRule] = {}
    wild: list[ProfileRule] = []
    for row in rows:
        rule = _parse_rule(row)
        if rule.tag is not None:
            exact[rule.tag] = rule
        else:
            wild.append(rule)
    return exact, tuple(wild)


def rule_for(tag: int) -> ProfileRule | None:
    """The table row for ``tag`` (exact rows win over wildcards), or ``None`` when it is not listed."""
    exact, wild = load_profile()
    if tag in exact:
        return exact[tag]
    return next((rule for rule in wild if rule.covers(tag)), None)


class UidMap:
    """Consistent UID replacement: the same original always gets the same ``2.25.<n>`` UID for one salt."""

    def __init__(self, salt: bytes) -> None:
        self.salt = salt
        self.mapping: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        uid = uid.strip().rstrip("\0")
        if not uid:
            return uid
        new = self.mapping.get(uid)
        if new is None:
            digest = hashlib.sha256(self.salt + uid.encode("ascii", "replace")).digest()
            new = "2.25." + str(int.from_bytes(digest[:16], "big"))
            self.mapping[uid] = new
        return new


@dataclass
class DeidentifyReport:
    """What was done to one dataset, and what could not be done."""

    removed: int = 0
    emptied: int = 0
    replaced: int = 0
    uids: int = 0
    shifted: int = 0
    burned_in_risk: bool = False
    warnings: list[str] = field(default_factory=list)


def shift_date(value: str, days: int) -> str:
    """A DA (YYYYMMDD) moved by ``days``; an unreadable value becomes empty rather than kept."""
    text = value.strip()
    try:
        moved = date(int(text[0:4]), int(text[4:6]), int(text[6:8])) + timedelta(days=days)
    except (ValueError, IndexError):
        return ""
    return moved.strftime("%Y%m%d")


def shift_datetime(value: str, days: int) -> str:
    """A DT moved by ``days`` (the date part; time and zone kept)."""
    text = value.strip()
    if len(text) < 8:
        return ""
    moved = shift_date(text[:8], days)
    return moved + text[8:] if moved else ""


def dummy_value(vr: str, original: object) -> object:
    """A non-identifying value of the same VR for the ``D`` action."""
    if vr == "DA":
        return "19000101"
    if vr == "DT":
        return "19000101000000"
    if vr == "TM":
        return "000000"
    if vr == "AS":
        return "000Y"
    if vr in ("IS", "DS"):
        return "0"
    if vr in _NUMERIC_VRS:
        return 0
    if vr in _BYTES_VRS:
        return b""
    if vr == "UR":
        return ""
    if vr in ("AE", "CS", "SH"):
        return _STRING_DUMMY[:16]
    return _STRING_DUMMY


def _map_uid_value(value: object, uids: UidMap) -> object:
    if isinstance(value, MultiValue | list):
        return [uids(str(v)) for v in value]
    return uids(str(value)) if value not in (None, "") else value


def _shift_value(elem: DataElement, days: int) -> object:
    def one(v: object) -> str:
        return shift_date(str(v), days) if elem.VR == "DA" else shift_datetime(str(v), days)

    if isinstance(elem.value, MultiValue | list):
        return [one(v) for v in elem.value]
    return one(elem.value) if elem.value not in (None, "") else elem.value


def _apply(ds: Dataset, uids: UidMap, date_shift_days: int | None, report: DeidentifyReport) -> None:
    for elem in list(ds):
        tag = int(elem.tag)
        rule = rule_for(tag)
        if rule is None:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    _apply(item, uids, date_shift_days, report)
            continue
        action = rule.chosen
        if (date_shift_days is not None and rule.modified_dates_option and elem.VR in ("DA", "DT")
                and action != "K"):
            elem.value = _shift_value(elem, date_shift_days)
            report.shifted += 1
            continue
        if action == "K" or (date_shift_days is not None and rule.modified_dates_option and elem.VR == "TM"):
            if elem.VR == "SQ":
                for item in elem.value or []:
                    _apply(item, uids, date_shift_days, report)
            continue
        if action == "X":
            del ds[elem.tag]
            report.removed += 1
        elif action == "Z":
            elem.value = Sequence([]) if elem.VR == "SQ" else (b"" if elem.VR in _BYTES_VRS else None)
            report.emptied += 1
        elif action == "U" or (action == "D" and elem.VR == "UI"):
            if elem.VR == "SQ":
                for item in elem.value or []:
                    _apply(item, uids, date_shift_days, report)
            else:
                elem.value = _map_uid_value(elem.value, uids)
                report.uids += 1
        else:  # D, and any code the table might add: never keep the original
            if elem.VR == "SQ":
                for item in elem.value or []:
                    _apply(item, uids, date_shift_days, report)
            else:
                elem.value = dummy_value(elem.VR, elem.value)
                report.replaced += 1


def burned_in_risk(ds: Dataset) -> bool:
    """Whether the pixels may show identifying text: Burned In Annotation (0028,0301) YES, or a
    modality / SOP Class that often has it (ultrasound, secondary capture, photographs, documents)."""
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        return True
    if str(ds.get("Modality", "")).strip().upper() in BURNED_IN_MODALITIES:
        return True
    return str(ds.get("SOPClassUID", "")).startswith(SECONDARY_CAPTURE_PREFIX)


def _code_item(code: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def deidentify(ds: Dataset, uids: UidMap, *, date_shift_days: int | None = None) -> DeidentifyReport:
    """De-identify ``ds`` in place by the basic profile (see the module docstring) and say what was done.

    Also sets Patient Identity Removed (0012,0062) = YES, De-identification Method (0012,0063) and its
    Code Sequence (0012,0064), and keeps the file meta's Media Storage SOP Instance UID matching.
    """
    report = DeidentifyReport()
    report.burned_in_risk = burned_in_risk(ds)
    _apply(ds, uids, date_shift_days, report)
    ds.PatientIdentityRemoved = "YES"
    codes = [BASIC_PROFILE_CODE]
    method = "PS3.15 E.1 Basic Profile"  # LO: at most 64 characters
    if date_shift_days is not None:
        codes.append(MODIFIED_DATES_CODE)
        method += ", Modified Dates Option"
    ds.DeidentificationMethod = method
    ds.DeidentificationMethodCodeSequence = Sequence([_code_item(c) for c in codes])
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if report.burned_in_risk:
        report.warnings.append(
            "This image may show the patient's name or other details written into the picture itself "
            "(common in ultrasound and screen captures); removing those is not possible here."
        )
    return report


def is_listed(tag: int | BaseTag) -> bool:
    """Whether ``tag`` has a row in the table (exact or wildcard)."""
    return rule_for(int(Tag(tag))) is not None
