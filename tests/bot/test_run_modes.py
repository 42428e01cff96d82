"""``lightbox run``: long polling and webhook mode against the Bot API sandbox; the secret token is enforced."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.cli import main
from bot.sandbox import BotApiSandbox, TelegramDriver
from bot.server import BotReady, run_bot, webhook_path
from bot.settings import Settings

SECRET = "test-webhook-secret_123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def bot_running(settings: Settings, sandbox: BotApiSandbox, *, port: int = 0,
                      webhook_url: str | None = None) -> AsyncIterator[BotReady]:
    stop = asyncio.Event()
    ready: asyncio.Future[BotReady] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_bot(settings, host="127.0.0.1", port=port, webhook_url=webhook_url,
                                       base_url=sandbox.base_url, base_file_url=sandbox.base_file_url,
                                       stop=stop, on_ready=ready.set_result))
    waiting: set[asyncio.Future[object]] = {task, ready}  # type: ignore[arg-type]
    done, _ = await asyncio.wait(waiting, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert ready in done, "the bot did not start in 30 s"
    try:
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def test_run_without_token_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    monkeypatch.delenv("LIGHTBOX_BOT_TOKEN", raising=False)
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(tmp_path))
    assert main(["run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LIGHTBOX_BOT_TOKEN is not set" in err[0] and "Traceback" not in err[0]


def test_run_refuses_a_webhook_url_that_is_not_http(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("LIGHTBOX_BOT_TOKEN", "1:abc")
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(tmp_path))
    assert main(["run", "--webhook", "ftp://example/hook"]) == 1
    assert "webhook URL" in capsys.readouterr().err


def test_webhook_path_comes_from_the_url() -> None:
    assert webhook_path("https://bot.example.org/tg/hook-123") == "/tg/hook-123"
    assert webhook_path("https://bot.example.org") == "/telegram/webhook"


async def test_long_polling_answers_and_serves_the_viewer(data_dir: Path) -> None:
    async with BotApiSandbox() as sandbox:
        settings = Settings(data_dir=data_dir, bot_token=sandbox.token)
        async with bot_running(settings, sandbox) as ready:
            alex = TelegramDriver(sandbox).user("Alex")
            await alex.command("start")
            welcome = await alex.wait_for_reply()
            assert welcome.text and "Lightbox" in welcome.text
            async with httpx.AsyncClient(trust_env=False) as client:
                health = await client.get(f"{ready.url}/healthz")
            assert health.status_code == 200 and health.text == "ok"
        assert sandbox.calls("getUpdates", 200)
        assert not sandbox.calls("setWebhook")
        assert sandbox.spec_violations == []


async def test_webhook_with_the_right_secret_is_answered_others_get_403(data_dir: Path) -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/telegram/hook-abc"
    async with BotApiSandbox(webhook_retry_delay=0.2) as sandbox:
        settings = Settings(data_dir=data_dir, bot_token=sandbox.token, webhook_secret=SECRET)
        async with bot_running(settings, sandbox, port=port, webhook_url=hook) as ready:
            assert ready.webhook_path == "/telegram/hook-abc"
            assert sandbox.api.webhook.url == hook and sandbox.api.webhook.secret_token == SECRET
            alex = TelegramDriver(sandbox).user("Alex")
            await alex.command("help")
            answer = await alex.wait_for_reply()
            assert answer.text and "/studies" in answer.text
            delivered = [a for a in sandbox.webhook_attempts if a.status == 200]
            assert delivered and all(a.secret_sent for a in delivered)

            # Someone else posts a forged update: refused before the bot sees it.
            forged = {"update_id": 999_999, "message": {
                "message_id": 77, "date": 1_700_000_000, "chat": {"id": alex.id, "type": "private"},
                "from": {"id": alex.id, "is_bot": False, "first_name": "Alex"}, "text": "/privacy"}}
            async with httpx.AsyncClient(trust_env=False) as client:
                wrong = await client.post(hook, json=forged, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
                missing = await client.post(hook, json=forged)
                empty = await client.post(hook, json=forged, headers={"X-Telegram-Bot-Api-Secret-Token": ""})
                garbage = await client.post(hook, content=b"{not json",
                                            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
            assert (wrong.status_code, missing.status_code, empty.status_code) == (403, 403, 403)
            assert garbage.status_code == 400
            sent_before = len(alex.bot_messages)
            await asyncio.sleep(0.5)
            assert len(alex.bot_messages) == sent_before  # the forged /privacy got no answer
            assert not sandbox.calls("getUpdates")
        assert sandbox.spec_violations == []
