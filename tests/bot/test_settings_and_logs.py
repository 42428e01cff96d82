"""Settings come from LIGHTBOX_* variables; logs never carry tokens."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.logs import RedactingFilter, redact
from bot.settings import Settings, SettingsError


def test_defaults_are_embedded() -> None:
    settings = Settings.from_env({})
    assert settings.data_dir == Path("lightbox-data")
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_database_url.endswith("lightbox-data/lightbox.sqlite3")
    assert settings.dicom_dir == Path("lightbox-data/dicom")
    assert settings.log_level == "INFO"


def test_values_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "LIGHTBOX_DATA_DIR": "/srv/lb",
            "LIGHTBOX_DATABASE_URL": "postgresql+psycopg://db/lb",
            "LIGHTBOX_BOT_TOKEN": "123456:" + "A" * 35,
            "LIGHTBOX_PUBLIC_URL": "https://lb.example/",
            "LIGHTBOX_LOG_LEVEL": "debug",
            "LIGHTBOX_BOT_USERNAME": "@lightbox_bot",
        }
    )
    assert settings.data_dir == Path("/srv/lb")
    assert settings.effective_database_url == "postgresql+psycopg://db/lb"
    assert settings.public_url == "https://lb.example"
    assert settings.log_level == "DEBUG"
    assert settings.bot_username == "lightbox_bot"
    assert "AAAA" not in repr(settings)  # the token never shows in a repr


@pytest.mark.parametrize(
    ("name", "value"),
    [("LIGHTBOX_LOG_LEVEL", "LOUD"), ("LIGHTBOX_MAX_PIXELS", "lots"), ("LIGHTBOX_STORE", "s3")],
)
def test_bad_values_get_a_clear_message(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_bot_tokens_and_share_tokens_are_masked() -> None:
    token = "7012345678:AAH" + "x" * 32
    line = f"POST https://api.telegram.org/bot{token}/sendMessage and https://lb/s/{'k' * 22}/image"
    cleaned = redact(line)
    assert token not in cleaned
    assert "k" * 22 not in cleaned
    assert "<bot-token>" in cleaned


def test_the_filter_rewrites_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("lightbox.test")
    logger.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO):
            logger.info("calling %s", "bot123456:" + "Z" * 35)
    finally:
        logger.filters.clear()
    assert "Z" * 35 not in caplog.text


def test_debug_level_never_lets_telegram_log_updates() -> None:
    from bot.logs import configure_logging

    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        configure_logging("DEBUG")
        assert logging.getLogger("telegram").getEffectiveLevel() >= logging.INFO
        assert logging.getLogger("telegram.ext.Application").isEnabledFor(logging.DEBUG) is False
        assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
        assert logging.getLogger("lightbox").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
