"""De-identification checked attribute by attribute against PS3.15 table E.1-1, on real pydicom files."""

from __future__ import annotations

import io
import json
import warnings
from datetime import date, timedelta
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from share.deidentify import PROFILE_PATH, ProfileRule, UidMap, deidentify, load_profile, rule_for

SOURCES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "US1_UNCR.dcm", "SC_rgb.dcm"]
NAME = "Doe^Jane"
NESTED_NAME = "Nested^Secret"


def _sample(vr: str, tag: int) -> Any:
    vr = vr.split(" or ")[0]
    return {
        "DA": "20200115", "TM": "101010", "DT": "20200115101010", "PN": NAME, "UI": f"1.2.826.0.1.{tag}",
        "CS": "VALUE", "AS": "045Y", "IS": "7", "DS": "1.5", "US": 7, "SS": 7, "UL": 7, "SL": 7, "UV": 7,
        "SV": 7, "FL": 1.5, "FD": 1.5, "OB": b"\x01\x02", "OW": b"\x01\x02", "OF": b"\x00\x00\x80\x3f",
        "OD": b"\x00" * 8, "OL": b"\x01\x00\x00\x00", "OV": b"\x00" * 8, "UN": b"\x01\x02", "AT": 0x00100010,
        "UR": "http://example.org/identifying", "AE": "STATION7", "SH": "Short id", "LO": "Identifying text",
        "LT": "Identifying text", "ST": "Identifying text", "UT": "Identifying text", "UC": "Identifying text",
    }.get(vr)


def loaded(source: str) -> tuple[Dataset, dict[int, Any]]:
    """A real file with every attribute of the table that it lacks filled in; returns it and the originals."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(get_testdata_file(source))
        exact, _ = load_profile()
        for tag in exact:
            if tag in ds or tag >> 16 in (0x0000, 0x0002):  # command and file meta groups are not in files
                continue
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                continue
            if vr == "SQ":
                item = Dataset()
                item.PatientName = NESTED_NAME
                item.ReferencedSOPInstanceUID = "1.2.826.0.1.99"
                ds.add_new(tag, "SQ", Sequence([item]))
                continue
            value = _sample(vr, tag)
            if value is not None:
                ds.add_new(tag, vr.split(" or ")[0], value)
        ds.PatientName = NAME
        ds.add_new(0x00091010, "LO", "private stuff")  # private (odd group)
        ds.add_new(0x00090010, "LO", "ACME private creator")
        ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)  # overlay data
        ds.add_new(0x60004000, "LT", "overlay comment")
        ds.add_new(0x50000010, "US", 4)  # curve
    originals = {int(elem.tag): elem.value for elem in ds}
    return ds, originals


def is_empty(value: Any) -> bool:
    return value in (None, "", b"") or (isinstance(value, list | Sequence) and len(value) == 0)


def test_table_loads_with_every_row() -> None:
    rows = json.loads(PROFILE_PATH.read_text())
    exact, wild = load_profile()
    assert len(exact) + len(wild) == len(rows) == 621
    assert {r.tag_text for r in wild} == {"(50XX,XXXX)", "(60XX,4000)", "(60XX,3000)", "(GGGG,EEEE) WHERE GGGG IS ODD"}
    assert rule_for(0x00100010).action == "Z"  # Patient's Name
    assert rule_for(0x60023000) is not None and rule_for(0x60023000).chosen == "X"  # type: ignore[union-attr]
    assert rule_for(0x00291010) is not None and rule_for(0x00291010).private  # type: ignore[union-attr]
    assert rule_for(0x00280010) is None  # Rows: not listed, kept


@pytest.mark.parametrize("source", SOURCES)
def test_every_listed_attribute_gets_its_basic_profile_action(source: str) -> None:
    ds, originals = loaded(source)
    uids = UidMap(b"salt-1")
    report = deidentify(ds, uids)
    checked = 0
    for tag, original in originals.items():
        rule = rule_for(tag)
        if rule is None or tag in (0x00120062, 0x00120063, 0x00120064):
            if rule is None and tag >> 16 != 0x0012:
                assert tag in ds, hex(tag)  # not listed: kept
            continue
        checked += 1
        _check(rule, tag, original, ds, uids)
    assert checked > 350, checked  # the table's attributes really were exercised
    assert ds.PatientIdentityRemoved == "YES"
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113100"]
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert report.removed and report.emptied and report.replaced and report.uids
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    raw = out.getvalue()
    for secret in (NAME, NESTED_NAME, "private stuff", "overlay comment"):
        assert secret.encode() not in raw, secret
    reread = pydicom.dcmread(io.BytesIO(raw))
    assert reread.SOPInstanceUID == ds.SOPInstanceUID


def _check(rule: ProfileRule, tag: int, original: Any, ds: Dataset, uids: UidMap) -> None:
    action = rule.chosen
    label = f"{rule.name} {rule.tag_text} {rule.action}"
    if action == "X":
        assert tag not in ds, label
    elif action == "Z":
        assert tag in ds and is_empty(ds[tag].value), label
    elif action == "K":
        assert tag in ds and ds[tag].value == original, label
    elif action == "U" or (action == "D" and ds[tag].VR == "UI"):
        assert tag in ds, label
        if ds[tag].VR != "SQ" and not is_empty(original):
            value = ds[tag].value
            values = list(value) if isinstance(value, list | pydicom.multival.MultiValue) else [value]
            originals = list(original) if isinstance(original, list | pydicom.multival.MultiValue) else [original]
            assert values == [uids(str(v)) for v in originals], label
            assert all(str(v).startswith("2.25.") and str(v) != str(o) for v, o in zip(values, originals,
                                                                                        strict=True)), label
    elif action == "D":
        assert tag in ds, label
        if ds[tag].VR == "SQ":
            for item in ds[tag].value:
                assert item.get("PatientName", "") in ("", None), label
        elif not is_empty(original) and ds[tag].VR not in ("US", "SS", "UL", "SL", "FL", "FD", "AT"):
            assert ds[tag].value != original, label
    else:
        pytest.fail(f"unexpected action {action} for {label}")


def test_uids_are_remapped_consistently_across_files() -> None:
    a, a_orig = loaded("CT_small.dcm")
    b, _ = loaded("CT_small.dcm")
    b.SOPInstanceUID = "1.2.826.0.1.777"  # another instance of the same study and series
    uids = UidMap(b"one export")
    deidentify(a, uids)
    deidentify(b, uids)
    assert a.StudyInstanceUID == b.StudyInstanceUID != a_orig[0x0020000D]
    assert a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    other = UidMap(b"another export")
    assert other(str(a_orig[0x0020000D])) != a.StudyInstanceUID  # a different salt cannot be joined


def test_modified_dates_option_shifts_dates_by_the_same_days() -> None:
    ds, originals = loaded("CT_small.dcm")
    deidentify(ds, UidMap(b"x"), date_shift_days=-100)
    study_date = date(int(originals[0x00080020][:4]), int(originals[0x00080020][4:6]), int(originals[0x00080020][6:]))
    assert ds.StudyDate == (study_date - timedelta(days=100)).strftime("%Y%m%d")
    shifted = 0
    exact, _ = load_profile()
    for tag, rule in exact.items():
        if rule.modified_dates_option and tag in originals and dictionary_VR(tag) == "DA" and originals[tag]:
            assert tag in ds and ds[tag].value != originals[tag], rule.name
            shifted += 1
    assert shifted > 10
    assert "PatientBirthDate" in ds and ds.PatientBirthDate in ("", None)  # birth date is not a 'modified' date
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100", "113107"]


@pytest.mark.parametrize(("source", "risky"), [("CT_small.dcm", False), ("US1_UNCR.dcm", True),
                                               ("SC_rgb.dcm", True)])
def test_burned_in_text_is_flagged(source: str, risky: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(get_testdata_file(source))
    report = deidentify(ds, UidMap(b"x"))
    assert report.burned_in_risk is risky
    assert bool(report.warnings) is risky
    if risky:
        assert "written into the picture" in report.warnings[0]
