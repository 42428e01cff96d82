"""Download of the shared images as a ZIP: the original DICOM files, or de-identified copies.

The patient chose per link: ``original``, ``deidentified`` (:mod:`share.deidentify`) or ``none``. File
names inside the ZIP are neutral (``study-1/series-2/0007.dcm``), never names or ids. A de-identified ZIP
carries a short README saying what was done and warning when pixels may show names. The UID map and the
date shift come from the server secret and the link's public id, so every download of one link agrees
with itself (priors keep their intervals) and nobody can reverse them without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

import pydicom
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from share.context import ViewerContext, archive_error, has_image, instance_opener
from share.deidentify import UidMap, deidentify
from share.links import instances_in_order, link_scope, record_event
from store.dicomweb import DicomWebError
from store.models import Instance, ShareLink

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
README_ORIGINAL = (
    "These are the original DICOM files the patient shared with you.\n"
    "They contain the patient's name and other details. Please keep them safe.\n"
)
README_DEIDENTIFIED = (
    "These DICOM files were de-identified before download (DICOM PS3.15 Annex E, Basic Application\n"
    "Level Confidentiality Profile, with the Retain Longitudinal Temporal Information Modified Dates\n"
    "option): names, ids and other identifying attributes were removed or replaced, private attributes\n"
    "removed, UIDs replaced consistently and dates shifted by the same number of days.\n"
)
README_BURNED_IN = (
    "\nPlease note: some of these images (for example ultrasound or screen captures) may show the\n"
    "patient's name or other details written into the picture itself. Those could not be removed.\n"
)


@dataclass(frozen=True)
class ZipEntry:
    """One file to put in the ZIP: where it is stored ('' when only in the PACS), its neutral name and the
    instance (to fetch it from the PACS)."""

    storage_key: str
    arcname: str
    instance: Instance | None = None


def zip_entries(session: Session, link: ShareLink) -> list[ZipEntry]:
    """The files the link reaches, with neutral names, in study / series / slice order."""
    scope = link_scope(session, link)
    entries = []
    for s_index, study in enumerate(scope.studies, start=1):
        for r_index, series in enumerate(scope.series.get(study.id, []), start=1):
            for i_index, inst in enumerate(instances_in_order(session, series), start=1):
                if has_image(inst):
                    name = f"study-{s_index}/series-{r_index}/{i_index:04d}.dcm"
                    entries.append(ZipEntry(inst.storage_key or "", name, inst))
    return entries


def link_salt(secret_key: bytes, public_id: str) -> bytes:
    """The per-link secret behind UID remapping and the date shift."""
    return hmac.new(secret_key, f"deidentify:{public_id}".encode(), hashlib.sha256).digest()


def date_shift_for(salt: bytes) -> int:
    """A shift of 30 to 759 days into the past, the same for every download of one link."""
    return -(30 + int.from_bytes(salt[:4], "big") % 730)


def write_zip(out: IO[bytes], paths: Sequence[tuple[Path | Callable[[], IO[bytes]], str]], *,
              deidentified: bool, salt: bytes) -> None:
    """Write the ZIP of ``paths`` (file, or a function opening its plain bytes, and name inside) to ``out``;
    DICOM is already compressed, so store. Openers keep files encrypted at rest readable."""
    uids = UidMap(salt)
    shift = date_shift_for(salt)
    burned_in = False
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path, arcname in paths:
            if callable(path):
                with path() as fh:
                    data = fh.read()
                if not deidentified:
                    archive.writestr(arcname, data)
                    continue
                source: Path | IO[bytes] = io.BytesIO(data)
            elif not deidentified:
                archive.write(path, arcname)
                continue
            else:
                source = path
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(source)
                report = deidentify(ds, uids, date_shift_days=shift)
                burned_in = burned_in or report.burned_in_risk
                buffer = io.BytesIO()
                ds.save_as(buffer, enforce_file_format=False)
            archive.writestr(arcname, buffer.getvalue())
        text = README_DEIDENTIFIED + (README_BURNED_IN if burned_in else "") if deidentified else README_ORIGINAL
        archive.writestr("README.txt", text)


def _stream(spool: IO[bytes]) -> Iterator[bytes]:
    try:
        spool.seek(0)
        while chunk := spool.read(CHUNK):
            yield chunk
    finally:
        spool.close()


async def download_zip(request: Request) -> Response:
    """The ZIP the patient allowed for this link (403 when downloads are off)."""
    ctx: ViewerContext = request.app.state.viewer
    token = str(request.path_params["token"])
    now = ctx.now()

    def work(session: Session, link: ShareLink) -> tuple[str, str, list[ZipEntry]]:
        if link.download not in ("original", "deidentified"):
            return link.download, link.public_id, []
        entries = zip_entries(session, link)
        record_event(session, link, "download", at=now, detail=f"{link.download} zip, {len(entries)} files")
        return link.download, link.public_id, entries

    result, failure = await ctx.resolve(request, token, work)
    if failure is not None:
        return failure
    assert result is not None
    kind, public_id, entries = result
    if kind not in ("original", "deidentified"):
        return ctx.json_error(403, "The patient did not allow downloads from this link.")
    # Plain bytes, even encrypted at rest; an instance only in the PACS is fetched while the ZIP is written.
    paths = [(instance_opener(ctx.files, e.instance) if e.instance is not None
              else partial(ctx.files.open, e.storage_key), e.arcname) for e in entries]
    spool = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)
    try:
        await run_in_threadpool(write_zip, spool, paths, deidentified=kind == "deidentified",
                                salt=link_salt(ctx.secret_key, public_id))
    except DicomWebError as exc:
        spool.close()
        return archive_error(exc)
    except Exception:
        spool.close()
        log.exception("download failed for link %s", public_id)
        return ctx.json_error(500, "The download could not be prepared. Please try again later.")
    name = "shared-images-deidentified.zip" if kind == "deidentified" else "shared-images.zip"
    return StreamingResponse(
        _stream(spool), media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
