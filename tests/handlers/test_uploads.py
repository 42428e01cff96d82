"""Uploads end to end: a CD as a ZIP (pydicom's dicomdirtests tree, three people), a single .dcm, bad files."""

from __future__ import annotations

import io
import zipfile

import pydicom
from sqlalchemy import func, select

from imaging.samples import sample_file
from store.models import ChatLink, Patient, PatientIdentifier, Study
from tests.handlers.conftest import Lightbox, study


def cd_zip() -> bytes:
    root = sample_file("DICOMDIR").parent
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, "CDROM/" + str(path.relative_to(root)))
    return out.getvalue()


def studies_of(patient_id: str) -> int:
    """Distinct studies of ``patient_id`` in the CD tree, read straight from the files."""
    root = sample_file("DICOMDIR").parent
    uids = set()
    for path in root.rglob("*"):
        if path.is_file() and path.name != "DICOMDIR":
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except pydicom.errors.InvalidDicomError:
                continue  # the tree holds a few non-DICOM files, which the import skips too
            if ds.get("PatientID") == patient_id:
                uids.add(ds.StudyInstanceUID)
    return len(uids)


async def test_a_cd_with_three_people_asks_which_is_theirs_and_keeps_only_that(lightbox: Lightbox) -> None:
    pia = lightbox.driver.user("Pia")
    await pia.send_document("my_cd.zip", cd_zip())
    status = await pia.wait_for_reply()
    await pia.wait_until(lambda: "Which are yours" in (status.text or ""))
    question = status
    text = question.text or ""
    assert "3 different people" in text
    labels = [b["text"] for row in question.reply_markup["inline_keyboard"] for b in row]
    assert sorted(labels) == ["I am Archibald D.", "I am Jan C.", "I am Peter D.", "None of these"]
    peter = "I am Peter D."
    tap = await pia.tap(question, peter)
    await pia.wait_for_answer(tap)
    await pia.wait_until(lambda: "kept" in (question.text or ""))
    done = question
    peters_studies = studies_of("98890234")
    assert f"I kept {peters_studies} studies as yours" in (done.text or "")
    assert "removed the images of 2 other people" in (done.text or "")
    with lightbox.services.sessions() as session:
        link = session.scalars(select(ChatLink).where(ChatLink.telegram_user_id == pia.id)).one()
        patients = session.scalars(select(Patient)).all()
        assert [p.id for p in patients] == [link.patient_id]
        assert session.scalar(select(func.count()).select_from(Study)) == peters_studies
        issuers = session.scalars(select(PatientIdentifier.issuer)).all()
        assert all(issuer.startswith("upload:") for issuer in issuers)
    await pia.say("show my last MRI")
    card = await pia.wait_for_reply()
    assert "MRI" in (card.caption or "") and "5 May 2003" in (card.caption or "")


async def test_a_single_file_links_an_unlinked_chat(lightbox: Lightbox) -> None:
    sol = lightbox.driver.user("Sol")
    data = sample_file("CT_small.dcm").read_bytes()
    await sol.send_document("scan.dcm", data)
    status = await sol.wait_for_reply()
    await sol.wait_until(lambda: "Done!" in (status.text or ""))
    done = status
    assert "I added 1 picture" in (done.text or "")
    await sol.command("last")
    card = await sol.wait_for_reply()
    assert card.photo_bytes is not None


async def test_an_upload_never_lands_in_another_patients_record(lightbox: Lightbox) -> None:
    # The clinic filed Peter's studies; a stranger uploads a CD that claims the same Patient ID.
    clinic = lightbox.add_patient("98890234", "Doe^Peter", [study("mr", 3, "MR", "MRI brain", "BRAIN", "MR_small.dcm")])
    eve = lightbox.driver.user("Eve")
    await eve.send_document("cd.zip", cd_zip())
    status = await eve.wait_for_reply()
    await eve.wait_until(lambda: "Which are yours" in (status.text or ""))
    with lightbox.services.sessions() as session:
        studies_of_clinic_patient = session.scalar(
            select(func.count()).select_from(Study).where(Study.patient_id == clinic))
    assert studies_of_clinic_patient == 1


async def test_files_that_are_not_images_get_a_clear_answer(lightbox: Lightbox) -> None:
    ned = lightbox.driver.user("Ned")
    await ned.send_document("notes.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    status = await ned.wait_for_reply()
    await ned.wait_until(lambda: "couldn't find" in (status.text or ""))
    done = status
    assert "couldn't find any medical images" in (done.text or "")
    await ned.send_document("empty.zip", b"")
    status = await ned.wait_for_reply()
    await ned.wait_until(lambda: "couldn't import" in (status.text or ""))
    done = status
    assert "empty" in (done.text or "")
