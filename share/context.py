"""What every share route needs: settings of the viewer, the link behind a request, and the rules.

:class:`ViewerContext` is built once at app assembly (``share.web.create_app``). Each request resolves
its token through :meth:`ViewerContext.resolve`, which applies the per-address failure limit, the link's
state (expired, revoked, locked, used up) and the viewing-session cookie, and answers failures with the
same plain pages and the same minimum response time whether or not the token ever existed.

Viewing session: opening the link (after the access code, when there is one) counts one view and sets an
HttpOnly cookie scoped to the link's path, signed with the server's secret. Images, downloads and the
manifest need that cookie, so a view limit limits viewing sessions, not image requests.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import inspect
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import anyio
import anyio.to_thread
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydicom.dataset import Dataset
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from share.events import EventBuffer
from share.links import Clock, LinkState, Scope, find_instance, find_link, link_scope, link_state, read_link
from share.ratelimit import FailureLimiter
from share.render import ImageCache
from store.db import transaction
from store.dicomweb import DicomWebError, UnknownInstance, failure_kind
from store.models import Instance, Series, ShareLink, Study, utcnow
from store.pacs_store import PacsFileStore

log = logging.getLogger(__name__)
T = TypeVar("T")

HERE = Path(__file__).parent
SESSION_COOKIE = "lb_view"

# Every page, image and file the viewer sends carries these (see SecurityHeaders in share.web).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"x-robots-tag", b"noindex, nofollow"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CSP.encode()),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


class FileSource(Protocol):
    """Where an instance's file is: ``store.filestore.FileStore`` satisfies this."""

    def path(self, key: str) -> Path: ...

    def image_source(self, key: str) -> Path | Dataset:
        """The path, or the decrypted dataset when files are encrypted at rest."""
        ...

    def open(self, key: str) -> BinaryIO:
        """The plain bytes of the stored file (decrypted when encrypted at rest)."""
        ...


Notifier = Callable[[str], Awaitable[None] | None]


# ---------------------------------------------------------------- instances kept only in the PACS
# With LIGHTBOX_STORE=dicomweb an instance may have no local file (``storage_key`` is None) and a PACS copy
# (``remote_url``); ``files`` is then a :class:`store.pacs_store.PacsFileStore` that fetches it on demand.

ARCHIVE_DOWN = ("The hospital's image archive cannot be reached right now, so these images cannot be shown or "
                "downloaded. Please try again in a few minutes.")
ARCHIVE_BAD = "The hospital's image archive gave an answer that cannot be used. Please try again later."
ARCHIVE_MISSING = "This image is no longer in the hospital's image archive."


def has_image(instance: Instance) -> bool:
    """Whether the instance's file is somewhere: in the file store, or in the PACS."""
    return bool(instance.storage_key or instance.remote_url)


def _from_pacs(files: FileSource, instance: Instance) -> bool:
    if not isinstance(files, PacsFileStore) or not instance.remote_url:
        return False
    return not instance.storage_key or not files.exists(instance.storage_key)


def instance_source(files: FileSource, instance: Instance) -> Path | Dataset:
    """The file (or decrypted dataset) to render ``instance`` from, fetched from the PACS if need be.
    Blocking: call it in a worker thread. Raises :class:`~store.dicomweb.DicomWebError` if the PACS fails."""
    if _from_pacs(files, instance):
        assert isinstance(files, PacsFileStore)
        return files.fetch_source(instance)
    if instance.storage_key:
        return files.image_source(instance.storage_key)
    raise UnknownInstance("the instance has no file here")


def instance_opener(files: FileSource, instance: Instance) -> Callable[[], BinaryIO]:
    """A function opening the plain bytes of ``instance``'s file (fetching it from the PACS when it runs)."""
    if not _from_pacs(files, instance):
        return partial(files.open, str(instance.storage_key or ""))
    assert isinstance(files, PacsFileStore)
    pacs = files

    def open_remote() -> BinaryIO:
        return io.BytesIO(pacs.fetch_bytes(instance))

    return open_remote


def archive_error(exc: DicomWebError) -> JSONResponse:
    """The plain answer when the PACS could not give an instance: 503 down or slow, 404 gone, 502 otherwise."""
    status, message = {"down": (503, ARCHIVE_DOWN), "missing": (404, ARCHIVE_MISSING)}.get(
        failure_kind(exc), (502, ARCHIVE_BAD))
    log.warning("PACS fetch failed: %s", type(exc).__name__)
    response = JSONResponse({"error": message}, status_code=status)
    if status == 503:
        response.headers["Retry-After"] = "60"
    return response


@dataclass
class ViewerContext:
    """Settings and shared state of one viewer app."""

    sessions: sessionmaker[Session]
    files: FileSource
    public_url: str
    secret_key: bytes
    clock: Clock = utcnow
    on_first_open: Notifier | None = None
    on_locked: Notifier | None = None
    limiter: FailureLimiter = field(default_factory=FailureLimiter)
    # Failure pages take at least this long, so timing does not tell whether a token existed.
    failure_floor: float = 0.05
    cache: ImageCache = field(default_factory=ImageCache)
    events: EventBuffer | None = None
    # How long a link's scope (which studies and series it reaches) is reused; the link itself is re-read
    # on every request, so revocation and expiry still take effect at once.
    scope_ttl: float = 5.0
    # Where read-only lookups (image requests) run: "loop" on the event loop itself, "thread" in a small
    # thread pool. None picks "loop" for SQLite (a local read in WAL mode takes microseconds and never
    # waits for a writer; a thread hop and the GIL hand-over cost more than the read) and "thread" for a
    # networked database, whose stall must not freeze the viewer. benchmarks/share_load.py measures both
    # (SHARE_LOAD_READS); an asyncio engine (psycopg async) measured slower than either and was dropped.
    read_mode: str | None = None
    lookup_threads: int = 4
    _lookup_limiter: anyio.CapacityLimiter | None = None
    _flush_wanted: asyncio.Event | None = None
    _reader: Engine | bool | None = None
    _waiting: dict[str, collections.deque[asyncio.Event]] = field(default_factory=dict)
    _scopes: dict[tuple[int, int, str, bool], tuple[float, Scope]] = field(default_factory=dict)
    _instances: dict[tuple[Any, ...], tuple[float, Any]] = field(default_factory=dict)
    templates: Environment = field(
        default_factory=lambda: Environment(
            loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"])
        )
    )

    def __post_init__(self) -> None:
        if self.events is None:
            self.events = EventBuffer(self.sessions)

    def _networked(self) -> Engine | None:
        """The sessions' engine when its database is across a network (not a local SQLite file)."""
        bind = self.sessions.kw.get("bind")
        return bind if isinstance(bind, Engine) and bind.dialect.name != "sqlite" else None

    @property
    def reads(self) -> str:
        """Where read-only lookups run (``read_mode``, chosen by database when not set)."""
        if self.read_mode is None:
            self.read_mode = "thread" if self._networked() is not None else "loop"
        return self.read_mode

    def _link_reader(self) -> Engine | None:
        """For a networked database, an engine that reads a link in one round trip: autocommit (no BEGIN
        and ROLLBACK around the SELECT) and no ping before each use (a dropped connection fails the read,
        which ``resolve`` retries on a fresh one). None for SQLite, whose reads are local."""
        if self._reader is None:
            bind = self._networked()
            self._reader = False if bind is None else create_engine(
                bind.url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, pool_size=self.lookup_threads,
                max_overflow=0)
        return self._reader if isinstance(self._reader, Engine) else None

    def close(self) -> None:
        """Close the link reader's connections (at the app's shutdown)."""
        if isinstance(self._reader, Engine):
            self._reader.dispose()
        self._reader = None

    def scope(self, session: Session, link: ShareLink) -> Scope:
        """The link's scope, reused for ``scope_ttl`` seconds (bounded: at most 1,000 links remembered)."""
        key = (link.id, link.study_id, link.series_scope, link.include_priors)
        now = time.monotonic()
        hit = self._scopes.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        scope = link_scope(session, link)
        if len(self._scopes) >= 1000:
            self._scopes.clear()
        self._scopes[key] = (now + self.scope_ttl, scope)
        return scope

    def instance_in_scope(self, session: Session, link: ShareLink, study_uid: str, series_uid: str,
                          sop_uid: str) -> tuple[Study, Series, Instance] | None:
        """The instance named by the UIDs if the link reaches it; reused for ``scope_ttl`` seconds like the scope."""
        key = (link.id, link.study_id, link.series_scope, link.include_priors, study_uid, series_uid, sop_uid)
        now = time.monotonic()
        hit = self._instances.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = find_instance(session, self.scope(session, link), study_uid, series_uid, sop_uid)
        if len(self._instances) >= 20_000:
            self._instances.clear()
        self._instances[key] = (now + self.scope_ttl, found)
        return found

    def _db_threads(self) -> anyio.CapacityLimiter:
        # A few threads for database lookups: many more only fight over the GIL and the connection pool.
        if self._lookup_limiter is None:
            self._lookup_limiter = anyio.CapacityLimiter(self.lookup_threads)
        return self._lookup_limiter

    def flush_events(self) -> int:
        """Write buffered image-view events now."""
        return self.events.flush() if self.events is not None else 0

    async def write_events(self) -> None:
        """The writer task (run by the app's lifespan): write buffered image-view events every
        ``max_delay`` seconds, or at once when a request says they are due. Runs until cancelled."""
        assert self.events is not None
        self._flush_wanted = asyncio.Event()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_wanted.wait(), self.events.max_delay)
                self._flush_wanted.clear()
                await anyio.to_thread.run_sync(self.flush_events)
        finally:
            self._flush_wanted = None

    async def events_due(self) -> None:
        """A request found buffered events due: wake the writer task rather than wait for the database
        (a flush takes tens of milliseconds under load; image requests must not queue behind it). Only
        without a writer task, or when the buffer is far behind because the database is slow or down,
        does the request write them itself: back-pressure keeps the buffer's memory bounded."""
        assert self.events is not None
        if self._flush_wanted is not None and len(self.events) < self.events.max_items * 10:
            self._flush_wanted.set()
        else:
            await anyio.to_thread.run_sync(self.flush_events)

    # ------------------------------------------------------------ pages

    def page(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        """Render ``templates/<name>`` as an HTML response."""
        return HTMLResponse(self.templates.get_template(name).render(**values), status_code=status)

    def failure_page(self, state: LinkState) -> HTMLResponse:
        """The plain page for a link that does not work (404 unknown, 410 expired/revoked/locked/used up)."""
        return self.page("gone.html", state.status_code, state=state.value)

    def too_many(self, retry_after: float) -> HTMLResponse:
        """429 for an address that failed too often."""
        response = self.page("limited.html", 429)
        response.headers["Retry-After"] = str(int(retry_after) + 1)
        return response

    # ------------------------------------------------------------ sessions

    def _sign(self, link: ShareLink, view: int) -> str:
        message = f"{link.public_id}:{view}:{link.access_code_hash}".encode()
        return hmac.new(self.secret_key, message, hashlib.sha256).hexdigest()[:40]

    def session_cookie_value(self, link: ShareLink, view: int) -> str:
        """The signed cookie value of viewing session ``view`` of ``link``."""
        return f"{view}.{self._sign(link, view)}"

    def has_session(self, request: Request, link: ShareLink) -> bool:
        """Whether the request carries a valid viewing-session cookie for ``link``."""
        raw = request.cookies.get(SESSION_COOKIE, "")
        view_text, _, signature = raw.partition(".")
        if not view_text.isdigit() or len(view_text) > 9 or not signature:
            return False
        return hmac.compare_digest(signature, self._sign(link, int(view_text)))

    def set_session(self, response: Response, link: ShareLink, view: int, token: str) -> None:
        """Attach the viewing-session cookie, scoped to this link's path only."""
        response.set_cookie(
            SESSION_COOKIE,
            self.session_cookie_value(link, view),
            path=f"/s/{token}",
            httponly=True,
            samesite="strict",
            secure=self.public_url.startswith("https://"),
            max_age=int((link.expires_at - self.clock()).total_seconds()) + 1,
        )

    # ------------------------------------------------------------ lookups

    @staticmethod
    def client_address(request: Request) -> str:
        """The client's address as the server sees it (behind a proxy, configure uvicorn's forwarded-allow-ips)."""
        return request.client.host if request.client else "unknown"

    async def pad(self, started: float) -> None:
        """Sleep until ``failure_floor`` seconds have passed since ``started``."""
        remaining = self.failure_floor - (time.perf_counter() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)

    async def resolve(
        self,
        request: Request,
        token: str,
        work: Callable[[Session, ShareLink], T],
        *,
        opening: bool = False,
        need_session: bool = True,
        read_only: bool = False,
    ) -> tuple[T | None, Response | None]:
        """Find the link for ``token`` and run ``work(session, link)`` in one transaction (in a thread).

        Returns (result, None) when the link works, else (None, failure response): a 429 for a limited
        address, the 404/410 page after the failure floor, or a 403 when ``need_session`` and the request
        has no viewing session. ``opening`` starts a new session, so a used-up view limit refuses it.

        ``read_only`` is the fast path for requests that change nothing in the database (image views,
        whose events go to the buffer): the link is read with one Core query as a detached ``ShareLink``,
        ``work`` gets a session that touches the database only if ``work`` queries it (a cache miss) and
        is never committed; where it runs is ``read_mode``.
        """
        started = time.perf_counter()
        address = self.client_address(request)
        wait = await self._begin(address)
        if wait:
            return None, self.too_many(wait)
        try:
            return await self._resolve(request, token, work, address, started, opening=opening,
                                       need_session=need_session, read_only=read_only)
        finally:
            self.limiter.finish(address)
            self._wake_next(address)

    async def _begin(self, address: str) -> float:
        """:meth:`FailureLimiter.begin`, waiting in line while the address has as many lookups in flight
        as failures left (queue, do not refuse). First come, first served: one viewer prefetching many
        slices must not leave some of its requests waiting far longer than others."""
        line = self._waiting.get(address)
        if not line and (wait := self.limiter.begin(address)) >= 0:
            return wait
        line = self._waiting.setdefault(address, collections.deque())
        turn = asyncio.Event()
        line.append(turn)
        try:
            while True:
                turn.clear()
                if line[0] is turn and (wait := self.limiter.begin(address)) >= 0:
                    return wait
                # Woken when a lookup of this address finishes; the timeout only guards the line.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(turn.wait(), 0.1)
        finally:
            line.remove(turn)
            if not line:
                self._waiting.pop(address, None)
            self._wake_next(address)  # the next in line tries now

    def _wake_next(self, address: str) -> None:
        line = self._waiting.get(address)
        if line:
            line[0].set()

    async def _resolve(
        self,
        request: Request,
        token: str,
        work: Callable[[Session, ShareLink], T],
        address: str,
        started: float,
        *,
        opening: bool,
        need_session: bool,
        read_only: bool,
    ) -> tuple[T | None, Response | None]:
        now = self.clock()

        def judged(session: Session, link: ShareLink | None) -> tuple[T | None, LinkState, bool]:
            has_session = link is not None and self.has_session(request, link)
            state = link_state(link, now, opening=opening and not has_session)
            if state is not LinkState.OK or link is None or (need_session and not has_session):
                return None, state, has_session
            return work(session, link), state, has_session

        def lookup() -> tuple[T | None, LinkState, bool]:
            with transaction(self.sessions) as session:
                return judged(session, find_link(session, token))

        def read() -> tuple[T | None, LinkState, bool]:
            # The link is read on a connection of its own (cheaper than through the session); the session
            # begins a transaction only if work queries (a cache miss). Nothing is written or committed.
            with self.sessions() as session:
                bind = self._link_reader() or session.get_bind()
                with bind.connect() if isinstance(bind, Engine) else contextlib.nullcontext(bind) as connection:
                    link = read_link(connection, token)
                return judged(session, link)

        for attempt in range(3):
            try:
                if read_only and self.reads == "loop":
                    result, state, has_session = read()
                else:
                    result, state, has_session = await anyio.to_thread.run_sync(
                        read if read_only else lookup, limiter=self._db_threads())
                break
            except OperationalError:
                # SQLite answers a write that raced another writer with "database is locked", and a
                # PostgreSQL connection may have been dropped (the link reader does not ping first): the
                # transaction was rolled back whole and a dead connection is not reused, so run it again.
                if attempt == 2:
                    raise
                await asyncio.sleep(0.02 * (attempt + 1))
        if state is LinkState.OK:
            if need_session and not has_session:
                return None, self.json_error(403, "Open the link in the viewer first.")
            return result, None
        self.limiter.failed(address)
        await self.pad(started)
        return None, self.failure_page(state)

    def now(self) -> datetime:
        """The current time by the app's clock."""
        return self.clock()

    async def notify(self, callback: Notifier | None, public_id: str) -> None:
        """Call a patient notifier (sync or async); a failing notifier never breaks the viewer."""
        if callback is None:
            return
        try:
            result = callback(public_id)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("share notifier failed for link %s", public_id)

    @staticmethod
    def json_error(status: int, message: str) -> JSONResponse:
        """A small JSON error for the viewer's scripts and DICOMweb clients."""
        return JSONResponse({"error": message}, status_code=status)
