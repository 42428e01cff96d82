"""What the conversation needs from the rest of Lightbox, handed over by bot/ at start-up.

Handlers never build engines, stores or caches themselves: ``bot.app`` puts one :class:`Services`
into ``application.bot_data`` under :data:`SERVICES_KEY` and handlers read it with
:func:`services_of`. Nothing in here is patient data, so it is never persisted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from store.filestore import FileStore
from store.models import utcnow
from store.render_cache import RenderCache

SERVICES_KEY = "lightbox.services"


@dataclass
class Services:
    """Database sessions, the file store and the settings handlers use."""

    sessions: sessionmaker[Session]
    files: FileStore
    work_dir: Path
    public_url: str = "http://127.0.0.1:8080"
    bot_username: str = ""
    max_pixels: int = 400_000_000
    max_upload_bytes: int = 2_000_000_000
    now: Callable[[], datetime] = utcnow
    # Render cache folder for chat previews ('' disables the cache).
    cache_dir: Path | None = None
    cache_limit_bytes: int = 512 * 1024 * 1024
    # True when a job runner works beside the bot (lightbox run): uploads then become database jobs that any
    # worker can take over; otherwise (tests, demo) they are imported in the handler.
    background_jobs: bool = False
    # Extra hooks bot/ may set (e.g. to refresh a share viewer); called with opaque ids only.
    hooks: dict[str, Callable[..., Awaitable[Any]]] = field(default_factory=dict)

    _preview_cache: RenderCache | None = field(default=None, init=False, repr=False)

    def preview_cache(self) -> RenderCache | None:
        """The chat previews' render cache (one per process: it keeps a running total of its size, which
        a fresh object would have to count again by walking the folder)."""
        if self.cache_dir is None:
            return None
        if self._preview_cache is None:
            self._preview_cache = RenderCache(self.cache_dir, self.cache_limit_bytes)
        return self._preview_cache

    def today(self) -> date:
        """Today's date for resolving 'last March' and the like (UTC)."""
        return self.now().date()


def services_of(context: Any) -> Services:
    """The :class:`Services` of the running Application (``context`` is a PTB CallbackContext)."""
    services = context.application.bot_data.get(SERVICES_KEY)
    if not isinstance(services, Services):
        raise RuntimeError("Lightbox services are not installed on this Application")
    return services
