"""Describing series and studies from their attributes, on pydicom's real files and on database-like rows."""

from __future__ import annotations

import datetime

import pydicom
import pytest
import textstat
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from glossary.describe import (
    CLOSING,
    contrast_of,
    describe_datasets,
    describe_series,
    describe_study,
    mr_weighting,
    plain_date,
)
from glossary.lookup import Glossary


def real(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing"
    return pydicom.dcmread(path, stop_before_pixels=True)


def test_mr_weighting_told_from_echo_and_repetition_times() -> None:
    ds = real("MR_small.dcm")  # TR 4000 ms, TE 240 ms, no sequence name in the description
    assert (float(ds.RepetitionTime), float(ds.EchoTime)) == (4000.0, 240.0)
    d = describe_series(ds)
    assert d.facts.modality == "MR"
    assert d.facts.weighting == "t2" and d.facts.weighting_from == "timing"
    assert d.facts.plane == "axial"
    assert d.facts.slice_thickness_mm == 0.8
    assert d.facts.date == datetime.date(2004, 8, 26)
    assert "T2-weighted" in d.text and "fluid looks bright" in d.text
    assert "26 August 2004" in d.text


def test_ct_with_contrast_from_the_contrast_attributes() -> None:
    ds = real("CT_small.dcm")
    assert ds.ContrastBolusAgent  # the file itself says contrast was given
    d = describe_series(ds)
    assert d.facts.kind == "CT scan" and d.facts.contrast is True and d.facts.plane == "axial"
    assert "Contrast was given" in d.text
    assert "bone look white and air looks black" in d.text
    assert "5 mm thick" in d.text


def test_sagittal_t1_shoulder_from_names_and_orientation() -> None:
    d = describe_series(real("MR2_J2KI.dcm"))
    assert d.facts.body_part == "shoulder"
    assert d.facts.plane == "sagittal"
    assert d.facts.weighting == "t1" and d.facts.weighting_from == "name"
    assert "MRI scan of the shoulder" in d.text and "fat looks bright" in d.text


def test_multiframe_counts_frames_as_slices() -> None:
    d = describe_series(real("emri_small.dcm"))
    assert d.facts.slice_count == 10
    assert "There are 10 slices" in d.text


def test_enhanced_ct_plane_from_the_functional_groups() -> None:
    ds = real("eCT_Supplemental.dcm")
    assert "ImageOrientationPatient" not in ds
    assert describe_series(ds).facts.plane == "axial"


def test_ultrasound_and_nuclear_medicine_say_what_bright_means() -> None:
    assert "fluid looks black" in describe_series(real("US1_J2KI.dcm")).text
    nm = describe_series(real("JPEG2000.dcm"))
    assert nm.facts.kind == "nuclear medicine scan" and "tracer" in nm.text


@pytest.mark.parametrize(
    ("attrs", "weighting", "contrast", "plane"),
    [
        ({"Modality": "MR", "SeriesDescription": "AX T2 FLAIR"}, "flair", None, "axial"),
        ({"Modality": "MR", "SeriesDescription": "SAG T1 POST GAD"}, "t1", True, "sagittal"),
        ({"Modality": "MR", "SeriesDescription": "COR STIR"}, "stir", None, "coronal"),
        ({"Modality": "MR", "SeriesDescription": "ep2d_diff_3scan_trace"}, "dwi", None, "unknown"),
        ({"Modality": "MR", "SeriesDescription": "ep2d_diff_3scan_trace_ADC"}, "adc", None, "unknown"),
        ({"Modality": "MR", "SeriesDescription": "AX SWI"}, "swi", None, "axial"),
        ({"Modality": "MR", "SeriesDescription": "PD FS COR"}, "pd", None, "coronal"),
        ({"Modality": "MR", "SeriesDescription": "AX T1 PRE"}, "t1", False, "axial"),
        ({"Modality": "MR", "SeriesDescription": "T1 C+"}, "t1", True, "unknown"),
        ({"Modality": "CT", "SeriesDescription": "CT HEAD WO CONTRAST"}, "", False, "unknown"),
        ({"Modality": "CT", "SeriesDescription": "CT ABD W WO"}, "", None, "unknown"),
    ],
)
def test_descriptions_from_database_rows(
    attrs: dict[str, str], weighting: str, contrast: bool | None, plane: str
) -> None:
    facts = describe_series(attrs).facts
    assert (facts.weighting, facts.contrast, facts.plane) == (weighting, contrast, plane)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"ScanningSequence": "IR", "InversionTime": 2500, "RepetitionTime": 9000, "EchoTime": 120}, "flair"),
        ({"ScanningSequence": "IR", "InversionTime": 150, "RepetitionTime": 4000, "EchoTime": 40}, "stir"),
        ({"ScanningSequence": "SE", "RepetitionTime": 500, "EchoTime": 12}, "t1"),
        ({"ScanningSequence": "SE", "RepetitionTime": 4000, "EchoTime": 100}, "t2"),
        ({"ScanningSequence": "SE", "RepetitionTime": 2500, "EchoTime": 30}, "pd"),
        ({"ScanningSequence": "GR", "RepetitionTime": 600, "EchoTime": 20}, "swi"),
        ({"RepetitionTime": "", "EchoTime": None}, ""),
        ({"RepetitionTime": "abc", "EchoTime": "nan"}, ""),
    ],
)
def test_weighting_from_timing(attrs: dict[str, object], expected: str) -> None:
    assert mr_weighting({"Modality": "MR", **attrs})[0] == expected


def test_contrast_agent_none_means_no_contrast_information() -> None:
    assert contrast_of({"ContrastBolusAgent": "NONE"}) is None
    assert contrast_of({"ContrastBolusAgent": "Gadovist"}) is True
    assert contrast_of({}) is None


def test_every_description_ends_with_the_report_and_the_doctor() -> None:
    for name in ("MR_small.dcm", "CT_small.dcm", "US1_J2KI.dcm", "rtdose.dcm", "SC_rgb.dcm"):
        text = describe_series(real(name)).text
        assert text.endswith(CLOSING)
        assert "report" in CLOSING and "doctor" in CLOSING


def test_descriptions_never_name_a_finding(glossary: Glossary) -> None:
    texts = [describe_series(real(n)).text for n in ("MR_small.dcm", "CT_small.dcm", "MR2_J2KI.dcm", "US1_J2KI.dcm")]
    texts.append(describe_series({"Modality": "MR", "SeriesDescription": "marked lesion T1"}).text)
    for text in texts:
        findings = [h.concept.id for h in glossary.find_terms(text) if h.concept.category == "finding"]
        assert findings == [], (findings, text)
        assert "lesion" not in text


def test_descriptions_are_plain_reading() -> None:
    texts = [describe_series(real(n)).text for n in ("MR_small.dcm", "CT_small.dcm", "MR2_J2KI.dcm", "US1_J2KI.dcm")]
    for text in texts:
        assert textstat.flesch_kincaid_grade(text) <= 8, text


def test_a_study_from_a_folder_of_files() -> None:
    folder = [get_testdata_file(n) for n in ("MR_small.dcm", "CT_small.dcm")]
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in folder if p]
    studies = describe_datasets(datasets + datasets[:1])  # MR_small twice: same series, two instances
    assert len(studies) == 2
    mr = next(s for s in studies if s.series[0].facts.modality == "MR")
    assert mr.series[0].facts.slice_count == 2
    assert mr.opening.startswith("This study is an MRI scan")
    assert mr.text.endswith(CLOSING) and mr.text.count(CLOSING) == 1


def test_study_from_rows_mentions_each_series() -> None:
    study = describe_study(
        [
            ({"Modality": "MR", "SeriesDescription": "AX T2 FLAIR", "BodyPartExamined": "BRAIN",
              "StudyDate": "20240303"}, 24),
            ({"Modality": "MR", "SeriesDescription": "SAG T1 POST GAD", "StudyDate": "20240303"}, 120),
        ]
    )
    assert study.opening == "This study is an MRI scan of the brain, taken on 3 March 2024. It has 2 series."
    assert "Series 1 (AX T2 FLAIR)" in study.text and "There are 24 slices" in study.text
    assert "Series 2 (SAG T1 POST GAD)" in study.text and "Contrast was given" in study.text
    data = study.as_dict()
    assert [s["weighting"] for s in data["series"]] == ["flair", "t1"]


def test_empty_and_junk_attributes_do_not_crash() -> None:
    assert describe_study([]).opening == "There are no pictures to describe."
    junk = {
        "Modality": "\x00<b>MR</b>",
        "StudyDate": "2024-13-45",
        "SliceThickness": "-3",
        "ImageOrientationPatient": ["a", "b"],
        "NumberOfFrames": "lots",
        "SeriesDescription": "x" * 5000,
    }
    d = describe_series(junk)
    assert d.facts.date is None and d.facts.slice_thickness_mm is None and d.facts.slice_count is None
    assert len(d.facts.description) <= 64
    assert d.text.endswith(CLOSING)


def test_plain_date() -> None:
    assert plain_date(datetime.date(2024, 3, 3)) == "3 March 2024"


def test_objects_with_keyword_attributes_are_read_too() -> None:
    class Row:
        Modality = "CT"
        SeriesDescription = "CT HEAD WO CONTRAST"
        BodyPartExamined = "HEAD"
        SliceThickness = "5"
        NumberOfSeriesRelatedInstances = 32

    facts = describe_series(Row()).facts
    assert (facts.kind, facts.body_part, facts.contrast, facts.slice_count) == ("CT scan", "head", False, 32)
