"""The specialist's web viewer: a Starlette app assembled from the share routes.

Routes (the token is always the second path segment; ``bot.logs`` masks it in log lines):

- ``GET /s/{token}``: the viewer page (or the access-code form); opening it starts a viewing session.
- ``POST /s/{token}``: the access code.
- ``GET /s/{token}/api/manifest``: the shared studies, series and slices as JSON, with the patient's notes
  and marks and, for priors, which series pair with which (:mod:`share.compare`).
- ``POST /s/{token}/api/annotations``, ``DELETE /s/{token}/api/annotations/{id}``: the patient's own marks,
  through a ``can_annotate`` link only (:mod:`share.marks`).
- ``GET /s/{token}/img/{study}/{series}/{sop}/{frame}?size=&wc=&ww=&preset=``: one slice as JPEG.
- ``GET /s/{token}/thumb/{study}/{series}``: a series thumbnail.
- ``GET /s/{token}/download``: the ZIP the patient allowed (:mod:`share.download`).
- ``/s/{token}/dicom-web/...``: QIDO-RS / WADO-RS / rendered, scoped to the link (:mod:`share.dicomweb`).
- ``/static/...``: the viewer's own script and styles (no third-party origins anywhere).

Every response carries the security headers of :data:`share.context.SECURITY_HEADERS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from share import dicomweb, download, marks
from share.compare import comparisons
from share.context import (
    HERE,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    FileSource,
    Notifier,
    ViewerContext,
    archive_error,
    has_image,
    instance_source,
)
from share.events import PendingView
from share.links import (
    MAX_CODE_ATTEMPTS,
    CodeCheck,
    LinkState,
    check_access_code,
    count_open,
    instances_in_order,
    link_scope,
)
from share.links import (
    Scope as LinkScope,
)
from share.ratelimit import FailureLimiter
from share.render import PRESETS, ImageCache, RenderRequest, render, size_bucket
from store.dicomweb import DicomWebError
from store.models import Annotation, Instance, Patient, ShareLink, Study, utcnow

log = logging.getLogger(__name__)


class SecurityHeaders:
    """ASGI middleware adding the viewer's security headers to every HTTP response."""

    def __init__(self, app: ASGIApp, https: bool = False) -> None:
        self.app = app
        # Behind HTTPS, browsers are also told never to use plain HTTP for this host.
        self.headers = SECURITY_HEADERS + (
            ((b"strict-transport-security", b"max-age=31536000"),) if https else ()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in self.headers}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                headers.extend(self.headers)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ---------------------------------------------------------------- what the page shows


@dataclass
class Glance:
    """The study at a glance: what the viewer page header and cards show."""

    label: str
    recipient: str
    expires_at: datetime
    download: str
    studies: list[dict[str, Any]]


def _pixel_spacing(text: str) -> list[float] | None:
    try:
        values = [float(v) for v in text.replace(",", "\\").split("\\") if v.strip()]
    except ValueError:
        return None
    return values[:2] if len(values) >= 2 and all(v > 0 for v in values[:2]) else None


def _patient_label(session: Session, link: ShareLink) -> str:
    patient = session.get(Patient, link.patient_id)
    # The patient's chosen label, never the name itself.
    return (patient.display_label if patient is not None else "") or "Shared images"


def _study_summary(study: Study, scope: LinkScope, main_id: int) -> dict[str, Any]:
    return {
        "uid": study.study_uid,
        "date": study.study_date.isoformat() if study.study_date else "",
        "modality": study.modalities.replace("\\", ", "),
        "description": study.description,
        "body_part": study.body_part,
        "prior": study.id != main_id,
        "series": [
            {
                "uid": s.series_uid,
                "number": s.series_number,
                "description": s.description,
                "modality": s.modality,
                "plane": s.plane,
                "count": s.frame_count or s.instance_count,
            }
            for s in scope.series.get(study.id, [])
        ],
    }


def build_glance(session: Session, link: ShareLink) -> Glance:
    """What the page header shows for ``link``."""
    scope = link_scope(session, link)
    return Glance(
        label=_patient_label(session, link),
        recipient=link.recipient_label,
        expires_at=link.expires_at,
        download=link.download,
        studies=[_study_summary(s, scope, link.study_id) for s in scope.studies],
    )


def build_manifest(session: Session, link: ShareLink) -> dict[str, Any]:
    """Everything the viewer script needs: studies, series, slices in order, spacing, notes."""
    scope = link_scope(session, link)
    studies = []
    instance_ids: list[int] = []
    for study in scope.studies:
        summary = _study_summary(study, scope, link.study_id)
        for series_info, series in zip(summary["series"], scope.series.get(study.id, []), strict=True):
            slices = []
            for inst in instances_in_order(session, series):
                instance_ids.append(inst.id)
                for frame in range(max(1, inst.number_of_frames)):
                    slices.append({
                        "sop": inst.sop_instance_uid,
                        "frame": frame,
                        "rows": inst.rows,
                        "columns": inst.columns,
                        "spacing": _pixel_spacing(inst.pixel_spacing),
                        "position": inst.slice_location,
                        "_id": inst.id,
                    })
            series_info["slices"] = slices
        studies.append(summary)
    notes: dict[tuple[int, int], list[dict[str, Any]]] = {}
    if instance_ids:
        rows = session.scalars(
            select(Annotation).where(
                Annotation.patient_id == link.patient_id,
                Annotation.instance_id.in_(instance_ids),
            )
        )
        for note in rows:
            notes.setdefault((note.instance_id, note.frame), []).append(marks.describe(note, link))
    for study_info in studies:
        for series_info in study_info["series"]:
            for item in series_info["slices"]:
                item["notes"] = notes.get((item.pop("_id"), item["frame"]), [])
    return {
        "label": _patient_label(session, link),
        "recipient": link.recipient_label,
        "expires_at": link.expires_at.isoformat(),
        "download": link.download,
        "presets": {name: list(values) for name, values in PRESETS.items()},
        "studies": studies,
        "compare": comparisons(session, link, scope),
        "can_annotate": link.can_annotate,
    }


# ---------------------------------------------------------------- routes


def _token(request: Request) -> str:
    return str(request.path_params["token"])


async def viewer_page(request: Request) -> Response:
    """The viewer, the access-code form, or the page that says the link no longer works."""
    ctx: ViewerContext = request.app.state.viewer
    token = _token(request)
    now = ctx.now()

    def work(session: Session, link: ShareLink) -> tuple[str, Glance | None, int, bool, str, str]:
        if ctx.has_session(request, link):
            csrf = marks.csrf_token(ctx.secret_key, request.cookies.get(SESSION_COOKIE, ""))
            return "view", build_glance(session, link), 0, False, link.public_id, csrf if link.can_annotate else ""
        if link.access_code_hash:
            return "code", None, 0, False, link.public_id, ""
        counted = count_open(session, link, now)
        if counted is None:
            return "used_up", None, 0, False, link.public_id, ""
        view, first = counted
        csrf = marks.csrf_token(ctx.secret_key, ctx.session_cookie_value(link, view))
        return "view", build_glance(session, link), view, first, link.public_id, csrf if link.can_annotate else ""

    result, failure = await ctx.resolve(request, token, work, opening=True, need_session=False)
    if failure is not None:
        return failure
    assert result is not None
    kind, glance, view, first, public_id, csrf = result
    if kind == "used_up":
        return ctx.failure_page(LinkState.USED_UP)
    if kind == "code":
        return ctx.page("code.html", 200, attempts_left=None)
    assert glance is not None
    response = ctx.page("viewer.html", 200, glance=glance, base=f"/s/{token}", public_url=ctx.public_url,
                        csrf=csrf)
    if view:
        await _start_session(ctx, response, public_id, view, token, first)
    return response


async def _start_session(ctx: ViewerContext, response: Response, public_id: str, view: int, token: str,
                         first: bool) -> None:
    def load() -> ShareLink | None:
        with ctx.sessions() as session:
            return session.scalars(select(ShareLink).where(ShareLink.public_id == public_id)).first()

    link = await run_in_threadpool(load)
    if link is not None:
        ctx.set_session(response, link, view, token)
    if first:
        await ctx.notify(ctx.on_first_open, public_id)


async def submit_code(request: Request) -> Response:
    """Check the access code; the fifth wrong one locks the link and tells the patient."""
    ctx: ViewerContext = request.app.state.viewer
    token = _token(request)
    form = await request.form()
    code = str(form.get("code", ""))[:64]
    now = ctx.now()

    def work(session: Session, link: ShareLink) -> tuple[str, int, bool, str]:
        if ctx.has_session(request, link) or not link.access_code_hash:
            return "open", 0, False, link.public_id
        checked = check_access_code(session, link, code, now)
        if checked is CodeCheck.OK:
            counted = count_open(session, link, now)
            if counted is None:
                return "used_up", 0, False, link.public_id
            return "ok", counted[0], counted[1], link.public_id
        if checked is CodeCheck.WRONG:
            return "wrong", max(0, MAX_CODE_ATTEMPTS - link.failed_code_attempts), False, link.public_id
        return checked.value, 0, False, link.public_id

    result, failure = await ctx.resolve(request, token, work, opening=True, need_session=False)
    if failure is not None:
        return failure
    assert result is not None
    kind, number, first, public_id = result
    if kind == "used_up":
        return ctx.failure_page(LinkState.USED_UP)
    if kind in ("locked", "locked_now"):
        ctx.limiter.failed(ctx.client_address(request))
        if kind == "locked_now":
            await ctx.notify(ctx.on_locked, public_id)
        return ctx.failure_page(LinkState.LOCKED)
    if kind == "wrong":
        ctx.limiter.failed(ctx.client_address(request))
        return ctx.page("code.html", 403, attempts_left=number)
    response = RedirectResponse(f"/s/{token}", status_code=303)
    if kind == "ok":
        await _start_session(ctx, response, public_id, number, token, first)
    return response


async def manifest(request: Request) -> Response:
    """The viewer's data for this link."""
    ctx: ViewerContext = request.app.state.viewer
    result, failure = await ctx.resolve(request, _token(request), build_manifest)
    if failure is not None:
        return failure
    return Response(json.dumps(result), media_type="application/json")


def _float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be a number") from None
    if value != value or abs(value) > 1e7:  # NaN or absurd
        raise HTTPException(400, f"{name} is out of range")
    return value


def render_request_from(request: Request, frame: int, default_size: int = 512) -> RenderRequest:
    """Size, window and format asked for in the query string."""
    try:
        size = int(request.query_params.get("size", default_size))
    except ValueError:
        raise HTTPException(400, "size must be a whole number") from None
    preset = request.query_params.get("preset", "")
    if preset and preset not in PRESETS:
        raise HTTPException(400, "unknown preset")
    fmt = request.query_params.get("format", "jpeg")
    if fmt not in ("jpeg", "png"):
        raise HTTPException(400, "format must be jpeg or png")
    return RenderRequest(
        frame=frame, size=size_bucket(max(16, size)), center=_float_param(request, "wc"),
        width=_float_param(request, "ww"), preset=preset, fmt=fmt,
    )


async def send_picture(ctx: ViewerContext, instance: Instance, storage_key: str, req: RenderRequest) -> Response:
    """The rendered picture of one frame, from the cache or rendered now (in a worker thread).

    An instance kept only in the PACS is fetched in that thread too; if the PACS cannot give it the answer
    says so (503 when it is down), never a traceback. ``storage_key`` is '' for such an instance."""
    if req.frame < 0 or req.frame >= max(1, instance.number_of_frames):
        return ctx.json_error(404, "No such frame.")
    if instance.rows and instance.columns:
        # Never upscale past the image's own size bucket.
        req = RenderRequest(req.frame, min(req.size, size_bucket(max(instance.rows, instance.columns))),
                            req.center, req.width, req.preset, req.fmt)
    key = (instance.id, req)
    picture = ctx.cache.get(key)
    if picture is None:
        try:
            # Decrypted in memory when encrypted at rest; fetched from the PACS when only there.
            picture = await run_in_threadpool(lambda: render(instance_source(ctx.files, instance), req))
        except DicomWebError as exc:
            return archive_error(exc)
        except Exception as exc:  # a broken file must not take the viewer down
            log.warning("render failed for instance %s: %s", instance.public_id, type(exc).__name__)
            return ctx.json_error(422, "This image cannot be shown.")
        ctx.cache.put(key, picture)
    headers = {}
    if picture.center is not None and picture.width is not None:
        headers = {"X-Window-Center": f"{picture.center:.2f}", "X-Window-Width": f"{picture.width:.2f}"}
    return Response(picture.data, media_type="image/png" if req.fmt == "png" else "image/jpeg", headers=headers)


def scoped_instance_work(ctx: ViewerContext, study_uid: str, series_uid: str, sop_uid: str, detail: str,
                         now: datetime) -> Callable[[Session, ShareLink], tuple[Instance, str, bool] | None]:
    """A lookup of one instance inside the link's scope that buffers an image-view event when found.
    Returns the instance, its storage key and whether buffered events are due to be written."""

    def work(session: Session, link: ShareLink) -> tuple[Instance, str, bool] | None:
        found = ctx.instance_in_scope(session, link, study_uid, series_uid, sop_uid)
        if found is None or not has_image(found[2]):
            return None
        study, series, instance = found
        assert ctx.events is not None
        due = ctx.events.add(PendingView(link.patient_id, link.id, link.public_id, now, study.id, series.id,
                                         instance.id, detail))
        return instance, str(instance.storage_key or ""), due

    return work


async def image(request: Request) -> Response:
    """One slice as a picture, at the size the screen asked for."""
    ctx: ViewerContext = request.app.state.viewer
    p = request.path_params
    frame = int(p["frame"])
    req = render_request_from(request, frame)
    work = scoped_instance_work(ctx, p["study"], p["series"], p["sop"], f"frame {frame}", ctx.now())
    result, failure = await ctx.resolve(request, _token(request), work, read_only=True)
    if failure is not None:
        return failure
    if result is None:
        return ctx.json_error(404, "Not part of this share.")
    instance, key, due = result
    if due:
        await ctx.events_due()
    return await send_picture(ctx, instance, key, req)


async def thumbnail(request: Request) -> Response:
    """The middle slice of a series, small."""
    ctx: ViewerContext = request.app.state.viewer
    p = request.path_params

    def work(session: Session, link: ShareLink) -> tuple[Instance, str, int] | None:
        scope = ctx.scope(session, link)
        study = scope.study_by_uid(p["study"])
        series = scope.series_by_uid(study, p["series"]) if study is not None else None
        if series is None:
            return None
        rows = [i for i in instances_in_order(session, series) if has_image(i)]
        if not rows:
            return None
        middle = rows[len(rows) // 2]
        frame = middle.number_of_frames // 2 if len(rows) == 1 else 0
        return middle, str(middle.storage_key or ""), frame

    result, failure = await ctx.resolve(request, _token(request), work)
    if failure is not None:
        return failure
    if result is None:
        return ctx.json_error(404, "Not part of this share.")
    instance, key, frame = result
    return await send_picture(ctx, instance, key, RenderRequest(frame=frame, size=128))


async def not_found(request: Request, exc: Exception) -> Response:
    """Anything unknown gets the same plain page as an unknown link."""
    ctx: ViewerContext = request.app.state.viewer
    status = getattr(exc, "status_code", 404)
    if status == 404:
        return ctx.failure_page(LinkState.UNKNOWN)
    return ctx.json_error(status, str(getattr(exc, "detail", "Bad request.")))


async def health(request: Request) -> Response:
    """Liveness for a load balancer."""
    return Response("ok", media_type="text/plain")


def create_app(
    sessions: sessionmaker[Session],
    files: FileSource,
    *,
    public_url: str = "http://127.0.0.1:8080",
    secret_key: bytes | None = None,
    clock: Callable[[], datetime] = utcnow,
    on_first_open: Notifier | None = None,
    on_locked: Notifier | None = None,
    limiter: FailureLimiter | None = None,
    failure_floor: float = 0.05,
    cache: ImageCache | None = None,
    extra_routes: list[Any] | None = None,
) -> Starlette:
    """The viewer app. ``on_first_open(share_public_id)`` and ``on_locked(share_public_id)`` tell the
    patient (bot/ wires them); ``secret_key`` signs viewing-session cookies and must be the same on
    every worker (a random one per process otherwise)."""
    ctx = ViewerContext(
        sessions=sessions,
        files=files,
        public_url=public_url,
        secret_key=secret_key or secrets.token_bytes(32),
        clock=clock,
        on_first_open=on_first_open,
        on_locked=on_locked,
        limiter=limiter if limiter is not None else FailureLimiter(),
        failure_floor=failure_floor,
        cache=cache if cache is not None else ImageCache(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        writer = asyncio.create_task(ctx.write_events())
        log.info("share viewer ready")
        try:
            yield
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await run_in_threadpool(ctx.flush_events)
            ctx.close()

    routes: list[Any] = [
        Route("/healthz", health),
        Route("/s/{token}", viewer_page, methods=["GET"]),
        Route("/s/{token}", submit_code, methods=["POST"]),
        Route("/s/{token}/api/manifest", manifest),
        Route("/s/{token}/api/annotations", marks.add_mark, methods=["POST"]),
        Route("/s/{token}/api/annotations/{annotation}", marks.delete_mark, methods=["DELETE"]),
        Route("/s/{token}/img/{study}/{series}/{sop}/{frame:int}", image),
        Route("/s/{token}/thumb/{study}/{series}", thumbnail),
        Route("/s/{token}/download", download.download_zip),
        Mount("/s/{token}/dicom-web", routes=dicomweb.routes()),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
        *(extra_routes or []),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_found})
    app.state.viewer = ctx
    app.add_middleware(SecurityHeaders, https=public_url.startswith("https://"))
    return app

