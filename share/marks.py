"""The patient's marks in the viewer: arrows, circles and text saved through a link of their own.

Only a link made with ``can_annotate`` (``share.links.create_annotation_link``, ``lightbox share create
--annotate``) may write. Such a link is meant for the patient, not for a specialist. Its marks are stored as
:class:`store.models.Annotation` rows with author ``share:<link public id>`` (not ``patient``), so they can
be told apart from marks made in the chat and traced to the link that made them. Every link (the
specialist's too) shows them as the patient's marks. A link can delete only the marks it made itself;
marks made in the chat are deleted in the chat (/notes).

Coordinates are normalised (0..1) to the original frame: column / Columns and row / Rows. The viewer
turns screen points into frame pixels through its current zoom, pan, rotation and flips, so a mark stays on
the same anatomy under any view (and ``imaging.overlays.draw_marks`` draws it after the transforms).

Writes are protected three ways: the viewing-session cookie (HttpOnly, SameSite=Strict), a CSRF token in
the page (an HMAC of that cookie, sent back in the ``X-CSRF-Token`` header), and same-origin checks (an
``Origin`` header, when sent, must be this server's own). They are rate-limited per link (60 writes a
minute, per worker) and each one is written to the patient's access log (action ``annotate``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from share.context import SESSION_COOKIE, ViewerContext
from share.links import record_event
from share.ratelimit import FailureLimiter
from store.models import Annotation, Instance, ShareLink

KINDS = ("arrow", "circle", "note")
TWO_POINT_KINDS = ("arrow", "circle")
MAX_TEXT = 200
CSRF_HEADER = "x-csrf-token"
WRITES_PER_MINUTE = 60


class AnnotationError(ValueError):
    """A mark that cannot be saved as sent (400); the message is fit for the viewer."""


@dataclass(frozen=True)
class NewMark:
    """A checked request to add one mark."""

    study: str
    series: str
    sop: str
    frame: int
    kind: str
    x: float
    y: float
    x2: float | None
    y2: float | None
    text: str


def author_of(link: ShareLink) -> str:
    """The ``Annotation.author`` of marks made through ``link``."""
    return f"share:{link.public_id}"


def csrf_token(secret_key: bytes, cookie_value: str) -> str:
    """The token the page carries for the viewing session whose cookie is ``cookie_value``."""
    return hmac.new(secret_key, b"csrf:" + cookie_value.encode(), hashlib.sha256).hexdigest()[:40]


def _coordinate(body: dict[str, Any], name: str, *, required: bool) -> float | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AnnotationError(f"{name} must be a number between 0 and 1.")
    if not 0.0 <= float(value) <= 1.0:
        raise AnnotationError(f"{name} must be between 0 and 1 (a point on the picture).")
    return float(value)


def _text_field(body: dict[str, Any], name: str, limit: int = 128) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or not value or len(value) > limit:
        raise AnnotationError(f"{name} is missing.")
    return value


def parse_mark(body: Any) -> NewMark:
    """Check the JSON body of a new mark; :class:`AnnotationError` says what is wrong."""
    if not isinstance(body, dict):
        raise AnnotationError("Send the mark as a JSON object.")
    kind = body.get("kind")
    if kind not in KINDS:
        raise AnnotationError("kind must be arrow, circle or note.")
    frame = body.get("frame", 0)
    if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < 100_000:
        raise AnnotationError("frame must be a whole number.")
    x = _coordinate(body, "x", required=True)
    y = _coordinate(body, "y", required=True)
    two = kind in TWO_POINT_KINDS
    x2 = _coordinate(body, "x2", required=two)
    y2 = _coordinate(body, "y2", required=two)
    if not two:
        x2 = y2 = None
    text = body.get("text", "")
    if not isinstance(text, str):
        raise AnnotationError("text must be words.")
    text = " ".join(text.split())
    if len(text) > MAX_TEXT:
        raise AnnotationError(f"Keep the text under {MAX_TEXT} characters.")
    if kind == "note" and not text:
        raise AnnotationError("A text mark needs some words.")
    assert x is not None and y is not None
    return NewMark(_text_field(body, "study"), _text_field(body, "series"), _text_field(body, "sop"), frame,
                   kind, x, y, x2, y2, text)


def describe(note: Annotation, link: ShareLink) -> dict[str, Any]:
    """One mark as the viewer script sees it."""
    return {
        "id": note.public_id, "kind": note.kind, "x": note.x, "y": note.y, "x2": note.x2, "y2": note.y2,
        "text": note.text, "mine": note.author == author_of(link),
    }


# ---------------------------------------------------------------- routes


def _limiter(ctx: ViewerContext) -> FailureLimiter:
    # Counts writes (not failures) per link: a FailureLimiter is exactly a sliding-window counter.
    limiter = getattr(ctx, "_annotation_writes", None)
    if limiter is None:
        limiter = FailureLimiter(max_failures=WRITES_PER_MINUTE, window=60.0)
        ctx._annotation_writes = limiter  # type: ignore[attr-defined]
    return limiter


def _same_origin(request: Request, ctx: ViewerContext) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        # Browsers send Origin on every cross-origin POST/DELETE; no Origin means not a cross-site form.
        return True
    own = {ctx.public_url.rstrip("/"), f"{request.url.scheme}://{request.headers.get('host', '')}"}
    return origin.rstrip("/") in own


def _csrf_ok(request: Request, ctx: ViewerContext) -> bool:
    cookie = request.cookies.get(SESSION_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    return bool(cookie and sent) and hmac.compare_digest(sent, csrf_token(ctx.secret_key, cookie))


def _refuse_cross_site(request: Request, ctx: ViewerContext) -> Response | None:
    if not _same_origin(request, ctx) or not _csrf_ok(request, ctx):
        return ctx.json_error(403, "This change must come from the viewer page itself.")
    return None


async def add_mark(request: Request) -> Response:
    """``POST /s/{token}/api/annotations``: save one arrow, circle or text mark (201 with the mark)."""
    ctx: ViewerContext = request.app.state.viewer
    refused = _refuse_cross_site(request, ctx)
    if refused is not None:
        return refused
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return ctx.json_error(415, "Send JSON.")
    raw = await request.body()
    if len(raw) > 4096:
        return ctx.json_error(413, "That mark is too big.")
    try:
        mark = parse_mark(json.loads(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        message = str(exc) if isinstance(exc, AnnotationError) else "Send the mark as JSON."
        return ctx.json_error(400, message)
    now = ctx.now()
    limiter = _limiter(ctx)

    def work(session: Session, link: ShareLink) -> tuple[str, Any]:
        if not link.can_annotate:
            return "forbidden", None
        if limiter.retry_after(link.public_id):
            return "limited", None
        found = ctx.instance_in_scope(session, link, mark.study, mark.series, mark.sop)
        if found is None:
            return "missing", None
        study, series, instance = found
        if mark.frame >= max(1, instance.number_of_frames):
            return "missing", None
        limiter.failed(link.public_id)
        note = Annotation(patient_id=link.patient_id, instance_id=instance.id, frame=mark.frame, kind=mark.kind,
                          x=mark.x, y=mark.y, x2=mark.x2, y2=mark.y2, text=mark.text, author=author_of(link),
                          created_at=now)
        session.add(note)
        session.flush()
        record_event(session, link, "annotate", at=now, study_id=study.id, series_id=series.id,
                     instance_id=instance.id, detail=f"add {mark.kind}")
        return "ok", describe(note, link)

    result, failure = await ctx.resolve(request, str(request.path_params["token"]), work)
    if failure is not None:
        return failure
    assert result is not None
    return _answer(ctx, result, 201)


async def delete_mark(request: Request) -> Response:
    """``DELETE /s/{token}/api/annotations/{id}``: remove a mark this link made (204)."""
    ctx: ViewerContext = request.app.state.viewer
    refused = _refuse_cross_site(request, ctx)
    if refused is not None:
        return refused
    public_id = str(request.path_params["annotation"])
    now = ctx.now()
    limiter = _limiter(ctx)

    def work(session: Session, link: ShareLink) -> tuple[str, Any]:
        if not link.can_annotate:
            return "forbidden", None
        if limiter.retry_after(link.public_id):
            return "limited", None
        note = session.scalars(select(Annotation).where(
            Annotation.public_id == public_id, Annotation.patient_id == link.patient_id,
            Annotation.author == author_of(link),
        )).first()
        if note is None:
            return "missing", None
        limiter.failed(link.public_id)
        instance = session.get(Instance, note.instance_id)
        record_event(session, link, "annotate", at=now, instance_id=note.instance_id,
                     series_id=instance.series_id if instance is not None else None, detail=f"delete {note.kind}")
        session.delete(note)
        return "ok", None

    result, failure = await ctx.resolve(request, str(request.path_params["token"]), work)
    if failure is not None:
        return failure
    assert result is not None
    return _answer(ctx, result, 204)


def _answer(ctx: ViewerContext, result: tuple[str, Any], status: int) -> Response:
    kind, payload = result
    if kind == "forbidden":
        return ctx.json_error(403, "This link can only look, not mark.")
    if kind == "limited":
        response = ctx.json_error(429, "Too many changes at once; wait a minute.")
        response.headers["Retry-After"] = "60"
        return response
    if kind == "missing":
        return ctx.json_error(404, "Not part of this share.")
    if status == 204:
        return Response(status_code=204)
    return JSONResponse(payload, status_code=status)
