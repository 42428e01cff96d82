"""The demo patient's files: real full-size images from pydicom's test data and ``pydicom-data``, re-labelled.

Every picture is a real acquisition (an MR shoulder at 1024 x 1024, a CT head at 512 x 512, an MR abdomen, a
CR chest radiograph at 1955 x 1841, a CR lower leg, a 120-frame echocardiogram clip). They come from different
people, so each is re-labelled into one obviously fake patient ("Demo^Patient", Patient ID ``DEMO-0001``) with
new UIDs and study dates relative to today, so that "show my last MRI", the comparison with an earlier MRI and
the timeline have something real to show.

The test data holds single slices, not whole series: where a study needs a series, one real slice is copied
with changed Image Position (Patient), Slice Location and Instance Number (marked ``synthesised`` below). The
pixel data is never decoded or changed; compressed files stay compressed.

Pure file building: no database here (:mod:`bot.demo` imports what this writes).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

log = logging.getLogger("lightbox.demo")

DEMO_PATIENT_NAME = "Demo^Patient"
DEMO_PATIENT_ID = "DEMO-0001"
DEMO_BIRTH_DATE = date(1980, 4, 12)
DEMO_SEX = "F"
DEMO_INSTITUTION = "Lightbox Demo Clinic"


class DemoDataMissing(RuntimeError):
    """A test file the demo needs is not installed (pydicom or pydicom-data missing)."""


@dataclass(frozen=True)
class DemoSeries:
    """One series of a demo study, made from one real test file.

    ``copies`` > 1 means the series is synthesised: the one real slice is repeated ``copies`` times,
    ``spacing_mm`` apart along the slice normal (Image Orientation (Patient)).
    """

    source: str  # file name for pydicom.data.get_testdata_file
    description: str
    copies: int = 1
    spacing_mm: float = 5.0


@dataclass(frozen=True)
class DemoStudy:
    """One study of the demo patient, ``days_ago`` before the day it is built."""

    key: str
    days_ago: int
    modality: str
    description: str
    body_part: str  # Body Part Examined, a DICOM defined term
    series: tuple[DemoSeries, ...]
    laterality: str = ""


# Newest first. Descriptions say what the picture shows, never a finding.
DEMO_STUDIES: tuple[DemoStudy, ...] = (
    DemoStudy("mr-shoulder", 14, "MR", "MRI right shoulder", "SHOULDER",
              # synthesised: one real 1024 x 1024 T1 slice (MR2_J2KR) repeated through the shoulder
              (DemoSeries("MR2_J2KR.dcm", "T1 oblique coronal", copies=20, spacing_mm=4.0),), laterality="R"),
    DemoStudy("mr-abdomen", 240, "MR", "MRI abdomen (liver)", "ABDOMEN",
              # synthesised: one real 484 x 484 axial slice repeated
              (DemoSeries("MR-SIEMENS-DICOM-WithOverlays.dcm", "T1 axial", copies=8, spacing_mm=4.0),)),
    DemoStudy("us-heart", 180, "US", "Ultrasound of the heart (echocardiogram)", "HEART",
              (DemoSeries("color3d_jpeg_baseline.dcm", "Echo clip"),)),  # a real 120-frame clip
    DemoStudy("ct-head", 365, "CT", "CT head (brain)", "HEAD",
              # synthesised: one real 512 x 512 slice (693_UNCR) repeated at 5 mm
              (DemoSeries("693_UNCR.dcm", "Brain axial 5 mm", copies=20, spacing_mm=5.0),)),
    DemoStudy("mr-shoulder-earlier", 425, "MR", "MRI right shoulder", "SHOULDER",
              # synthesised, as above: the earlier study of the same shoulder, for "compare"
              (DemoSeries("MR2_J2KR.dcm", "T1 oblique coronal", copies=12, spacing_mm=5.0),), laterality="R"),
    DemoStudy("cr-leg", 730, "CR", "X-ray right lower leg", "LEG",
              (DemoSeries("RG3_J2KR.dcm", "Lower leg AP"),), laterality="R"),
    DemoStudy("cr-chest", 1095, "CR", "X-ray chest", "CHEST",
              (DemoSeries("RG1_UNCR.dcm", "Chest PA"),)),
)

# Attributes that could carry the source's people, places or references to its old UIDs.
_DROPPED = (
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress",
    "PatientTelephoneNumbers", "PatientMotherBirthName", "MilitaryRank", "EthnicGroup", "PatientComments",
    "IssuerOfPatientID", "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianAddress",
    "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
    "RequestingPhysician", "StationName", "DeviceSerialNumber", "AdmittingDiagnosesDescription",
    "AdditionalPatientHistory", "ReferencedImageSequence", "SourceImageSequence", "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence", "RequestAttributesSequence", "ProcedureCodeSequence",
    "ReferencedPatientSequence", "ImageComments", "StudyComments", "ProtocolName", "PerformedProcedureStepID",
    "PerformedProcedureStepDescription", "RequestedProcedureDescription", "ImageType", "DerivationDescription",
    "PatientAge", "PatientWeight", "PatientSize",
)  # fmt: skip


def _source_path(name: str) -> str:
    try:
        path = get_testdata_file(name)
    except Exception as exc:  # pydicom raises ValueError/OSError when a data source is unreachable
        raise DemoDataMissing(f"the demo needs pydicom's test file {name} ({type(exc).__name__})") from None
    if path is None:
        raise DemoDataMissing(f"the demo needs pydicom's test file {name}; install pydicom-data")
    return str(path)


def _age(birth: date, on: date) -> str:
    """Patient's Age (0010,1010) as DICOM writes it, e.g. ``044Y``."""
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{years:03d}Y"


def slice_normal(ds: Dataset) -> np.ndarray | None:
    """The unit normal of the slice plane from Image Orientation (Patient), or ``None`` without one."""
    orientation = ds.get("ImageOrientationPatient")
    if not orientation or len(orientation) != 6:
        return None
    row = np.array([float(v) for v in orientation[:3]])
    col = np.array([float(v) for v in orientation[3:]])
    normal = np.cross(row, col)
    length = float(np.linalg.norm(normal))
    return normal / length if length else None


def relabel(ds: Dataset, study: DemoStudy, series: DemoSeries, *, study_uid: str, series_uid: str,
            frame_uid: str, series_number: int, on: date) -> None:
    """Make ``ds`` one image of the demo patient's ``study``: patient, institution, dates and UIDs.

    Reads nothing it keeps from the source's Patient, Study or Series modules except geometry and pixels.
    """
    ds.remove_private_tags()
    for keyword in _DROPPED:
        if keyword in ds:
            delattr(ds, keyword)
    for tag in [t for t in ds.keys() if t.group & 0xFF00 == 0x6000]:  # overlays: marks on another person's scan
        del ds[tag]
    day = on.strftime("%Y%m%d")
    ds.PatientName = DEMO_PATIENT_NAME
    ds.PatientID = DEMO_PATIENT_ID
    ds.PatientBirthDate = DEMO_BIRTH_DATE.strftime("%Y%m%d")
    ds.PatientSex = DEMO_SEX
    ds.PatientAge = _age(DEMO_BIRTH_DATE, on)
    ds.InstitutionName = DEMO_INSTITUTION
    ds.ReferringPhysicianName = ""
    ds.AccessionNumber = f"DEMO{on.strftime('%y%m%d')}"
    ds.StudyID = study.key[:16]
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        setattr(ds, keyword, day)
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "101500"
    ds.Modality = study.modality
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.BodyPartExamined = study.body_part
    if study.laterality:
        ds.Laterality = study.laterality
    elif "Laterality" in ds:
        del ds.Laterality
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.SeriesNumber = series_number


def _place_slice(ds: Dataset, origin: list[float] | None, normal: np.ndarray | None, index: int,
                 spacing: float) -> None:
    """Position copy ``index`` of a synthesised series ``spacing`` mm along the slice normal."""
    ds.InstanceNumber = index + 1
    if origin is None or normal is None:
        return
    position = np.array(origin) + normal * spacing * index
    ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
    ds.SliceLocation = f"{float(np.dot(position, normal)):.4f}"
    ds.SliceThickness = f"{spacing:g}"
    ds.SpacingBetweenSlices = f"{spacing:g}"


def _study_files(study: DemoStudy, on: date) -> Iterator[tuple[str, Dataset]]:
    """(file name, dataset) for every image of ``study`` acquired on ``on``; datasets are reused between yields."""
    study_uid = generate_uid()
    for number, series in enumerate(study.series, start=1):
        series_uid, frame_uid = generate_uid(), generate_uid()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # some test files have header oddities pydicom warns about
            ds = dcmread(_source_path(series.source))
        relabel(ds, study, series, study_uid=study_uid, series_uid=series_uid, frame_uid=frame_uid,
                series_number=number, on=on)
        origin = [float(v) for v in ds.ImagePositionPatient] if "ImagePositionPatient" in ds else None
        normal = slice_normal(ds)
        for index in range(series.copies):
            sop_uid = generate_uid()
            ds.SOPInstanceUID = sop_uid
            ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            if series.copies > 1:
                _place_slice(ds, origin, normal, index, series.spacing_mm)
            else:
                ds.InstanceNumber = 1
            yield f"{study.key}/s{number:02d}/i{index + 1:04d}.dcm", ds


def build_demo_files(folder: Path, *, today: date | None = None,
                     studies: tuple[DemoStudy, ...] = DEMO_STUDIES) -> list[Path]:
    """Write the demo patient's DICOM files under ``folder`` (created); returns the files written."""
    today = today or date.today()
    written: list[Path] = []
    for study in studies:
        on = today - timedelta(days=study.days_ago)
        for name, ds in _study_files(study, on):
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            written.append(path)
    log.info("demo files written", extra={"files": len(written), "studies": len(studies)})
    return written
