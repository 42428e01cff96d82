"""Settings from the environment.

Every setting is read from an environment variable with the ``LIGHTBOX_`` prefix.
The defaults keep everything embedded: an SQLite file and a DICOM folder under
``./lightbox-data``. See the configuration table in README.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "LIGHTBOX_"


class SettingsError(ValueError):
    """A setting has a value Lightbox cannot use; the message says which and why."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name} must be a whole number, not {raw!r}") from None


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value <= 0:
        raise SettingsError(f"{PREFIX}{name} must be a positive whole number, not {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """Lightbox's configuration, one field per ``LIGHTBOX_*`` variable."""

    data_dir: Path = Path("lightbox-data")
    database_url: str = ""
    bot_token: str = field(default="", repr=False)
    bot_username: str = ""
    public_url: str = "http://127.0.0.1:8080"
    log_level: str = "INFO"
    store: str = "local"
    dicomweb_url: str = ""
    dicomweb_username: str = ""
    dicomweb_password: str = field(default="", repr=False)
    webhook_secret: str = field(default="", repr=False)
    encryption_key: str = field(default="", repr=False)
    max_pixels: int = 400_000_000
    max_upload_bytes: int = 2_000_000_000
    bot_api_url: str = ""
    lease_seconds: int = 30
    pacs_cache_bytes: int = 2 * 1024 * 1024 * 1024

    @property
    def dicom_dir(self) -> Path:
        """Folder of the on-disk DICOM store."""
        return self.data_dir / "dicom"

    @property
    def cache_dir(self) -> Path:
        """Folder of the render cache."""
        return self.data_dir / "cache"

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'lightbox.sqlite3').resolve()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: the process environment)."""
        env = os.environ if env is None else env

        def get(name: str, default: str = "") -> str:
            return env.get(PREFIX + name, default) or default

        level = get("LOG_LEVEL", "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise SettingsError(f"{PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {level!r}")
        store = get("STORE", "local").lower()
        if store not in {"local", "dicomweb"}:
            raise SettingsError(f"{PREFIX}STORE must be 'local' or 'dicomweb', not {store!r}")
        return cls(
            data_dir=Path(get("DATA_DIR", "lightbox-data")),
            database_url=get("DATABASE_URL"),
            bot_token=get("BOT_TOKEN"),
            bot_username=get("BOT_USERNAME").lstrip("@"),
            public_url=get("PUBLIC_URL", "http://127.0.0.1:8080").rstrip("/"),
            log_level=level,
            store=store,
            dicomweb_url=get("DICOMWEB_URL").rstrip("/"),
            dicomweb_username=get("DICOMWEB_USERNAME"),
            dicomweb_password=get("DICOMWEB_PASSWORD"),
            webhook_secret=get("WEBHOOK_SECRET"),
            encryption_key=get("ENCRYPTION_KEY"),
            max_pixels=_int(env, "MAX_PIXELS", 400_000_000),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 2_000_000_000),
            bot_api_url=get("BOT_API_URL").rstrip("/"),
            lease_seconds=_positive(env, "LEASE_SECONDS", 30),
            pacs_cache_bytes=_positive(env, "PACS_CACHE_MB", 2048) * 1024 * 1024,
        )
