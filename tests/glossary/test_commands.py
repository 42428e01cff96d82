"""``lightbox explain``, ``lightbox describe`` and ``lightbox report``, run as a user would."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from bot.cli import main
from bot.commands import explain as explain_command
from glossary.lookup import Glossary, default_glossary
from tests.glossary.pdfs import dicom_bytes, encapsulated_pdf, tiny_pdf


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def pydicom_file(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None
    return path


def test_explain_prints_the_explanation(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "explain", "FLAIR")
    assert status == 0
    assert out.startswith("FLAIR\nFLAIR is a kind of MRI picture")
    assert "Source: " in out and "Related: T2-weighted" in out


def test_explain_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "explain", "cat", "scan", "--json")
    assert status == 0
    data = json.loads(out)
    assert {"term", "explanation", "related", "source"} <= set(data)
    assert data["term"] == "CT" and data["match"] == "alias"
    assert isinstance(data["related"], list) and data["related"]


def test_explain_a_sentence_explains_each_term(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "explain", "what does mild disc bulge at L4-5 mean", "--json")
    assert status == 0
    data = json.loads(out)
    assert data["id"] == "disc_bulge"
    assert "mild" in [a["id"] for a in data["also"]]


def test_explain_fuzzy_says_what_it_shows(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "explain", "ultrsound")
    assert status == 0
    assert out.startswith("(Showing Ultrasound for 'ultrsound'.)")


def test_explain_unknown_exits_1_with_suggestions(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "explain", "diffusin tensr")
    assert status == 1
    assert "no glossary entry for 'diffusin tensr'" in err and "Did you mean:" in err
    assert "Diffusion tensor imaging" in err
    status, out, err = run(capsys, "explain", "qzxwv", "--json")
    assert status == 1
    assert json.loads(out) == {"query": "qzxwv", "found": False, "suggestions": []}


def test_explain_in_other_languages(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    status, out, _ = run(capsys, "explain", "MRI", "--lang", "de", "--json")
    assert status == 0 and json.loads(out)["lang"] == "de"
    status, out, _ = run(capsys, "explain", "Pineal gland", "--lang", "ES")
    assert status == 0 and "Glándula pineal" in out and "Not yet written" not in out
    # Every packaged concept is translated now, so the fallback note is shown on a glossary built
    # with one Spanish text left out.
    concepts = [
        replace(c, translations={k: v for k, v in c.translations.items() if k != "es"}) if c.id == "pineal_gland" else c
        for c in default_glossary().concepts
    ]
    monkeypatch.setattr(explain_command, "default_glossary", lambda: Glossary(concepts))
    status, out, _ = run(capsys, "explain", "Pineal gland", "--lang", "ES")
    assert status == 0 and "(Not yet written in es; here it is in English.)" in out
    assert "The pineal gland is a tiny gland" in out


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["explain", "MRI", "--lang", "fr"], 2, "language 'fr' is not available"),
        (["explain", "   "], 2, "please give a word to explain"),
        (["explain", "\x00\x01"], 2, "please give a word to explain"),
    ],
)
def test_explain_bad_input(capsys: pytest.CaptureFixture[str], argv: list[str], status: int, message: str) -> None:
    got, _, err = run(capsys, *argv)
    assert got == status and message in err
    assert "Traceback" not in err


def test_explain_a_20000_character_argument(capsys: pytest.CaptureFixture[str]) -> None:
    status, _out, err = run(capsys, "explain", "x" * 20_000)
    assert status == 1
    assert len(err) < 400  # the query is not echoed back whole


def test_describe_a_file_and_a_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, _ = run(capsys, "describe", pydicom_file("MR_small.dcm"))
    assert status == 0 and out.startswith("This study is an MRI scan, taken on 26 August 2004.")
    assert "radiologist's report" in out
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(pydicom_file(name), tmp_path / name)
    (tmp_path / "notes.txt").write_text("not dicom")
    status, out, _ = run(capsys, "describe", str(tmp_path), "--json")
    assert status == 0
    data = json.loads(out)
    assert data["skipped_files"] == 1
    kinds = sorted(s["series"][0]["kind"] for s in data["studies"])
    assert kinds == ["CT scan", "MRI scan"]


def test_describe_bad_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, "describe", str(tmp_path / "missing"))
    assert status == 1 and "does not exist" in err
    (tmp_path / "a.txt").write_text("hello")
    status, _, err = run(capsys, "describe", str(tmp_path / "a.txt"))
    assert status == 1 and "is not a DICOM file" in err
    status, _, err = run(capsys, "describe", str(tmp_path))
    assert status == 1 and "has no DICOM files" in err


def test_report_sr_file(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "report", pydicom_file("test-SR.dcm"), "--json")
    assert status == 0
    data = json.loads(out)
    assert data["kind"] == "sr" and "A mass of" in data["text"]
    assert "mass" in [t["id"] for t in data["terms"]]


def test_report_folder_with_a_pdf_and_an_image(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lines = ["MRI KNEE WITHOUT CONTRAST", "Small joint effusion. Meniscus tear."]
    (tmp_path / "report.dcm").write_bytes(dicom_bytes(encapsulated_pdf(tiny_pdf(lines))))
    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "image.dcm")
    status, out, _ = run(capsys, "report", str(tmp_path))
    assert status == 0
    assert "MRI KNEE WITHOUT CONTRAST" in out
    assert "Words from the glossary in this report:" in out
    assert "  - Without contrast (WITHOUT CONTRAST): " in out


def test_report_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, "report", pydicom_file("CT_small.dcm"))
    assert status == 1 and "image, not a report" in err
    (tmp_path / "empty.pdf").write_bytes(b"")
    status, _, err = run(capsys, "report", str(tmp_path / "empty.pdf"))
    assert status == 1 and "empty" in err
    status, _, err = run(capsys, "report", str(tmp_path))
    assert status == 1 and "no report" in err
