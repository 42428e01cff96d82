"""A DICOMweb endpoint scoped to one link: ``/s/{token}/dicom-web`` for OHIF, Weasis or any DICOMweb client.

- QIDO-RS: ``/studies``, ``/studies/{study}/series``, ``/studies/{study}/series/{series}/instances``
  (``application/dicom+json``), only what the link reaches; the patient's chosen label stands in for
  the name.
- WADO-RS: ``/studies/{study}[/series/{series}[/instances/{sop}]]`` as ``multipart/related;
  type="application/dicom"``, and ``.../metadata``: only when the patient allowed original downloads
  (the files carry the name; a de-identified WADO would break the UIDs QIDO announced).
- Rendered: ``.../instances/{sop}/rendered`` and ``.../frames/{n}/rendered`` (JPEG, or PNG with
  ``Accept: image/png``), always, as the viewer shows them anyway.

Who may call: the viewer's own session cookie; otherwise the token, plus for a link with an access code
HTTP Basic authentication whose password is the code (any user name; wrong codes count towards the lock).
Each study search (``GET /studies``) from outside the viewer counts as an open: it uses up a view of a
view-limited link, writes an access event, and the first one tells the patient.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pydicom
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from share.context import ViewerContext, archive_error, has_image, instance_opener, instance_source
from share.links import (
    CodeCheck,
    check_access_code,
    count_open,
    instances_in_order,
    link_scope,
    record_event,
)
from share.links import (
    Scope as LinkScope,
)
from store.dicomweb import DicomWebError
from store.models import Instance, Patient, Series, ShareLink, Study

DICOM_JSON = "application/dicom+json"
CHUNK = 256 * 1024


class Denied(Exception):
    """The caller may not use this endpoint; carries the HTTP answer."""

    def __init__(self, status: int, message: str, basic: bool = False, locked_link: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.basic = basic
        self.locked_link = locked_link  # public id of a link this request locked


def _basic_password(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2]


def _admit(ctx: ViewerContext, request: Request, session: Session, link: ShareLink, now: datetime,
           *, counts_view: bool) -> bool:
    """Raise :class:`Denied` unless the caller may use the link's DICOMweb endpoint.

    A study search from outside the viewer counts as an open (view count, first-open notice, access
    event); returns whether it was the link's first open.
    """
    if ctx.has_session(request, link):
        return False
    if link.access_code_hash:
        code = _basic_password(request)
        if code is None:
            raise Denied(401, "This link needs its access code (as the HTTP Basic password).", basic=True)
        checked = check_access_code(session, link, code, now)
        if checked is not CodeCheck.OK:
            locked = link.public_id if checked is CodeCheck.LOCKED_NOW else ""
            raise Denied(401, "Wrong access code.", basic=True, locked_link=locked)
    if counts_view:
        counted = count_open(session, link, now)
        if counted is None:
            raise Denied(410, "This link has been opened as many times as the patient allowed.")
        return counted[1]
    return False


def _value(vr: str, *values: Any) -> dict[str, Any]:
    cleaned = [v for v in values if v not in (None, "")]
    return {"vr": vr, "Value": cleaned} if cleaned else {"vr": vr}


def study_json(study: Study, scope: LinkScope, label: str, base: str) -> dict[str, Any]:
    """QIDO-RS study attributes (PS3.18 table 10.6.3-3), label instead of the name."""
    series = scope.series.get(study.id, [])
    return {
        "00080020": _value("DA", study.study_date.strftime("%Y%m%d") if study.study_date else None),
        "00080030": _value("TM", study.study_time),
        "00080061": _value("CS", *sorted({s.modality for s in series if s.modality})),
        "00081030": _value("LO", study.description),
        "00081190": _value("UR", f"{base}/studies/{study.study_uid}"),
        "00100010": _value("PN", {"Alphabetic": label} if label else None),
        "0020000D": _value("UI", study.study_uid),
        "00201206": _value("IS", len(series)),
        "00201208": _value("IS", sum(s.instance_count for s in series)),
    }


def series_json(study: Study, series: Series, base: str) -> dict[str, Any]:
    """QIDO-RS series attributes."""
    return {
        "00080060": _value("CS", series.modality),
        "0008103E": _value("LO", series.description),
        "00081190": _value("UR", f"{base}/studies/{study.study_uid}/series/{series.series_uid}"),
        "0020000D": _value("UI", study.study_uid),
        "0020000E": _value("UI", series.series_uid),
        "00200011": _value("IS", series.series_number),
        "00201209": _value("IS", series.instance_count),
    }


def instance_json(study: Study, series: Series, inst: Instance, base: str) -> dict[str, Any]:
    """QIDO-RS instance attributes."""
    url = f"{base}/studies/{study.study_uid}/series/{series.series_uid}/instances/{inst.sop_instance_uid}"
    return {
        "00080016": _value("UI", inst.sop_class_uid),
        "00080018": _value("UI", inst.sop_instance_uid),
        "00081190": _value("UR", url),
        "0020000D": _value("UI", study.study_uid),
        "0020000E": _value("UI", series.series_uid),
        "00200013": _value("IS", inst.instance_number),
        "00280008": _value("IS", inst.number_of_frames),
        "00280010": _value("US", inst.rows),
        "00280011": _value("US", inst.columns),
    }


def _base(request: Request) -> str:
    ctx: ViewerContext = request.app.state.viewer
    return f"{ctx.public_url}/s/{request.path_params['token']}/dicom-web"


async def _run(request: Request, work: Callable[[Session, ShareLink, LinkScope], Any], *,
               counts_view: bool = False) -> tuple[Any, Response | None]:
    ctx: ViewerContext = request.app.state.viewer
    now = ctx.now()

    first_open: list[str] = []

    def wrapped(session: Session, link: ShareLink) -> Any:
        try:
            if _admit(ctx, request, session, link, now, counts_view=counts_view):
                first_open.append(link.public_id)
        except Denied as denied:
            return denied
        return work(session, link, link_scope(session, link))

    result, failure = await ctx.resolve(request, str(request.path_params["token"]), wrapped,
                                        opening=counts_view, need_session=False)
    if failure is not None:
        return None, failure
    for public_id in first_open:
        await ctx.notify(ctx.on_first_open, public_id)
    if isinstance(result, Denied):
        if result.status == 401 and _basic_password(request) is not None:
            ctx.limiter.failed(ctx.client_address(request))  # a wrong code is a failed lookup
        if result.locked_link:
            await ctx.notify(ctx.on_locked, result.locked_link)
        response = ctx.json_error(result.status, result.message)
        if result.basic:
            response.headers["WWW-Authenticate"] = 'Basic realm="Lightbox shared images"'
        return None, response
    return result, None


def _json(data: Any) -> Response:
    return JSONResponse(data, media_type=DICOM_JSON)


async def search_studies(request: Request) -> Response:
    """QIDO-RS: the studies the link reaches (optionally filtered by StudyInstanceUID)."""
    wanted = request.query_params.get("StudyInstanceUID") or request.query_params.get("0020000D")
    base = _base(request)

    def work(session: Session, link: ShareLink, scope: LinkScope) -> list[dict[str, Any]]:
        patient = session.get(Patient, link.patient_id)
        label = patient.display_label if patient is not None else ""
        return [study_json(s, scope, label, base) for s in scope.studies if not wanted or s.study_uid == wanted]

    result, failure = await _run(request, work, counts_view=True)
    return failure if failure is not None else _json(result)


async def search_series(request: Request) -> Response:
    """QIDO-RS: the series of one reachable study."""
    base = _base(request)
    study_uid = request.path_params["study"]

    def work(session: Session, link: ShareLink, scope: LinkScope) -> list[dict[str, Any]] | None:
        study = scope.study_by_uid(study_uid)
        if study is None:
            return None
        return [series_json(study, s, base) for s in scope.series.get(study.id, [])]

    result, failure = await _run(request, work)
    if failure is not None:
        return failure
    return _json(result) if result is not None else request.app.state.viewer.json_error(404, "Not in this share.")


def _find_series(scope: LinkScope, study_uid: str, series_uid: str) -> tuple[Study, Series] | None:
    study = scope.study_by_uid(study_uid)
    if study is None:
        return None
    series = scope.series_by_uid(study, series_uid)
    return (study, series) if series is not None else None


async def search_instances(request: Request) -> Response:
    """QIDO-RS: the instances of one reachable series, in slice order."""
    base = _base(request)
    p = request.path_params

    def work(session: Session, link: ShareLink, scope: LinkScope) -> list[dict[str, Any]] | None:
        found = _find_series(scope, p["study"], p["series"])
        if found is None:
            return None
        study, series = found
        return [instance_json(study, series, i, base) for i in instances_in_order(session, series)]

    result, failure = await _run(request, work)
    if failure is not None:
        return failure
    return _json(result) if result is not None else request.app.state.viewer.json_error(404, "Not in this share.")


def _selected_instances(session: Session, link: ShareLink, scope: LinkScope,
                        p: dict[str, Any]) -> list[tuple[Study, Series, Instance]] | None:
    study = scope.study_by_uid(p["study"])
    if study is None:
        return None
    chosen = scope.series.get(study.id, [])
    if "series" in p:
        chosen = [s for s in chosen if s.series_uid == p["series"]]
        if not chosen:
            return None
    out = []
    for series in chosen:
        for inst in instances_in_order(session, series):
            if "sop" in p and inst.sop_instance_uid != p["sop"]:
                continue
            if has_image(inst):  # a local file, or a copy in the PACS fetched on demand
                out.append((study, series, inst))
    if "sop" in p and not out:
        return None
    return out


def _multipart(paths: list[Any], boundary: str) -> Iterator[bytes]:
    for path in paths:
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        with path() if callable(path) else open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


async def retrieve(request: Request) -> Response:
    """WADO-RS: study, series or instance as multipart DICOM (original downloads only)."""
    ctx: ViewerContext = request.app.state.viewer
    p = dict(request.path_params)
    now = ctx.now()

    def work(session: Session, link: ShareLink, scope: LinkScope) -> Any:
        if link.download != "original":
            return "forbidden"
        found = _selected_instances(session, link, scope, p)
        if found is None:
            return None
        record_event(session, link, "download", at=now, detail=f"dicomweb wado, {len(found)} files")
        return [inst for _, _, inst in found]

    result, failure = await _run(request, work)
    if failure is not None:
        return failure
    if result == "forbidden":
        return ctx.json_error(403, "The patient did not allow downloading the original files from this link.")
    if result is None:
        return ctx.json_error(404, "Not in this share.")
    # Once the multipart answer has started, a failure can only cut it short: if the PACS is needed, see
    # first (in a thread) that it answers, so a PACS that is down gets a plain 503 instead.
    first_remote = next((inst for inst in result if not inst.storage_key), None)
    if first_remote is not None:
        try:
            await run_in_threadpool(instance_source, ctx.files, first_remote)
        except DicomWebError as exc:
            return archive_error(exc)
    boundary = secrets.token_hex(16)
    paths = [instance_opener(ctx.files, inst) for inst in result]  # plain bytes, even when encrypted at rest
    return StreamingResponse(
        _multipart(paths, boundary),
        media_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
    )


async def metadata(request: Request) -> Response:
    """WADO-RS metadata (DICOM JSON without bulk data), original downloads only."""
    ctx: ViewerContext = request.app.state.viewer
    p = dict(request.path_params)

    def work(session: Session, link: ShareLink, scope: LinkScope) -> Any:
        if link.download != "original":
            return "forbidden"
        found = _selected_instances(session, link, scope, p)
        if found is None:
            return None
        return [inst for _, _, inst in found]

    result, failure = await _run(request, work)
    if failure is not None:
        return failure
    if result == "forbidden":
        return ctx.json_error(403, "The patient did not allow the original files' details from this link.")
    if result is None:
        return ctx.json_error(404, "Not in this share.")

    def read_all() -> list[dict[str, Any]]:
        out = []
        for inst in result:
            with instance_opener(ctx.files, inst)() as fh:
                ds = pydicom.dcmread(fh, stop_before_pixels=True)
            out.append(ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda _: ""))
        return out

    try:
        return _json(await run_in_threadpool(read_all))
    except DicomWebError as exc:
        return archive_error(exc)


async def rendered(request: Request) -> Response:
    """A frame rendered as JPEG (or PNG when asked for), 1-based frame numbers as DICOMweb has them."""
    from share.web import render_request_from, scoped_instance_work, send_picture

    ctx: ViewerContext = request.app.state.viewer
    p = request.path_params
    frames_text = str(p.get("frames", "1")).split(",")[0]
    if not frames_text.isdigit() or int(frames_text) < 1:
        return ctx.json_error(400, "Frame numbers start at 1.")
    frame = int(frames_text) - 1
    req = render_request_from(request, frame, default_size=2048)
    if "image/png" in request.headers.get("accept", "") and "image/jpeg" not in request.headers.get("accept", ""):
        req = type(req)(req.frame, req.size, req.center, req.width, req.preset, "png")
    work = scoped_instance_work(ctx, p["study"], p["series"], p["sop"], f"frame {frame} dicomweb", ctx.now())

    def admitted(session: Session, link: ShareLink, scope: LinkScope) -> Any:
        return work(session, link)

    result, failure = await _run(request, admitted)
    if failure is not None:
        return failure
    if result is None:
        return ctx.json_error(404, "Not in this share.")
    instance, key, due = result
    if due:
        await ctx.events_due()
    return await send_picture(ctx, instance, key, req)


def routes() -> list[Route]:
    """The routes to mount at ``/s/{token}/dicom-web``."""
    s, r, i = "/studies/{study}", "/series/{series}", "/instances/{sop}"
    return [
        Route("/studies", search_studies),
        Route(f"{s}/series", search_series),
        Route(f"{s}{r}/instances", search_instances),
        Route(f"{s}/metadata", metadata),
        Route(f"{s}{r}/metadata", metadata),
        Route(f"{s}{r}{i}/metadata", metadata),
        Route(f"{s}{r}{i}/rendered", rendered),
        Route(f"{s}{r}{i}/frames/{{frames}}/rendered", rendered),
        Route(s, retrieve),
        Route(f"{s}{r}", retrieve),
        Route(f"{s}{r}{i}", retrieve),
    ]

