"""Reading report text: DICOM SR (pydicom's real test files), encapsulated PDF, bare PDF and text."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from glossary.lookup import Glossary
from glossary.reports import ReportError, is_report, report_from_bytes, report_from_dataset
from tests.glossary.pdfs import dicom_bytes, encapsulated_pdf, tiny_pdf

REPORT_LINES = [
    "MRI BRAIN WITH AND WITHOUT CONTRAST",
    "FINDINGS: A few small T2 hyperintense foci in the white matter.",
    "IMPRESSION: No acute findings. Clinical correlation recommended.",
]


def sr(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing"
    return pydicom.dcmread(path)


def test_comprehensive_sr_text_in_document_order() -> None:
    report = report_from_dataset(sr("test-SR.dcm"))
    assert report.kind == "sr"
    assert report.title == "Diagnosis"
    text = report.text
    assert "A mass of" in text and "was detected." in text
    assert text.index("A mass of") < text.index("was detected.")
    assert "Diameter: 3" in text  # a NUM item with its value
    assert "Sample Code 1" in text  # a CODE item's meaning
    assert "1.2.3.4.5" not in text  # UIDREF items are not report text


def test_basic_text_sr_leaves_out_observer_context() -> None:
    report = report_from_dataset(sr("reportsi.dcm"))
    assert "Report Text: Enter text" in report.text
    assert "Observation Context Mode" not in report.text


def test_sr_terms_are_found(glossary: Glossary) -> None:
    report = report_from_dataset(sr("test-SR.dcm"))
    assert "mass" in {h.concept.id for h in glossary.find_terms(report.text)}


def test_encapsulated_pdf_text_and_terms(glossary: Glossary) -> None:
    ds = encapsulated_pdf(tiny_pdf(REPORT_LINES))
    assert is_report(ds)
    report = report_from_dataset(ds)
    assert report.kind == "pdf" and report.title == "Radiology report"
    for line in REPORT_LINES:
        assert line in report.text
    found = {h.concept.id for h in glossary.find_terms(report.text)}
    assert {"mri", "with_and_without_contrast", "hyperintense", "no_acute_findings"} <= found


def test_encapsulated_pdf_from_file_bytes() -> None:
    data = dicom_bytes(encapsulated_pdf(tiny_pdf(["Hello report"])))
    assert data[128:132] == b"DICM"
    assert report_from_bytes(data).text == "Hello report"


def test_bare_pdf_and_plain_text() -> None:
    assert "No acute findings" in report_from_bytes(tiny_pdf(REPORT_LINES)).text
    report = report_from_bytes(b"IMPRESSION: Unremarkable study.\n")
    assert report.kind == "text" and report.text == "IMPRESSION: Unremarkable study."


def test_long_pdfs_are_read_up_to_the_page_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import glossary.reports as reports

    monkeypatch.setattr(reports, "MAX_PDF_PAGES", 3)
    report = report_from_bytes(tiny_pdf(["page text"], pages=5))
    assert report.truncated
    assert report.text.count("page text") == 3


def test_an_image_is_not_a_report() -> None:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    with pytest.raises(ReportError, match="image, not a report"):
        report_from_dataset(pydicom.dcmread(path))
    assert not is_report(pydicom.dcmread(path))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"%PDF-1.4 this is not really a pdf", "could not be read"),
        (b"\x00\x01\x02binary junk" * 10, "not a report"),
        (b"\x00" * 128 + b"DICM" + b"\x00" * 20, "could not be read|no report"),
    ],
)
def test_bad_files_get_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        report_from_bytes(data)


def test_an_encapsulated_document_of_unknown_type_is_refused() -> None:
    ds = encapsulated_pdf(b"GIF89a....")
    ds.MIMETypeOfEncapsulatedDocument = "image/gif"
    with pytest.raises(ReportError, match="cannot read"):
        report_from_dataset(ds)


def test_cda_documents_lose_their_markup() -> None:
    ds = encapsulated_pdf(b"")
    ds.MIMETypeOfEncapsulatedDocument = "text/XML"
    ds.EncapsulatedDocument = b"<ClinicalDocument><text>Mild disc bulge.</text></ClinicalDocument>"
    report = report_from_dataset(ds)
    assert report.kind == "cda" and report.text == "Mild disc bulge."


def test_huge_text_is_bounded(tmp_path: Path) -> None:
    report = report_from_bytes(b"word " * 100_000)
    assert report.truncated and len(report.text) <= 200_000
