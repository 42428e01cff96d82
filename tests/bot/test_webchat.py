"""The demo's web chat page in headless Chromium, against a running ``lightbox demo`` server (in a thread)."""

from __future__ import annotations

import asyncio
import queue
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydicom.data import get_testdata_file

from bot.demo import DemoReady, demo_settings, run_demo
from bot.settings import Settings

TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoReady]:
    """``lightbox demo`` on a free port, on its own event loop in a thread (Playwright's sync API needs ours)."""
    settings = demo_settings(Settings(), tmp_path_factory.mktemp("webchat") / "data")
    started: queue.Queue[DemoReady | BaseException] = queue.Queue()
    loop_and_stop: dict[str, Any] = {}

    async def serve() -> None:
        loop_and_stop["loop"], loop_and_stop["stop"] = asyncio.get_running_loop(), asyncio.Event()
        await run_demo(settings, port=0, stop=loop_and_stop["stop"], on_ready=started.put, pace_interval=0.2)

    def target() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # handed to the test thread
            started.put(exc)

    thread = threading.Thread(target=target, name="demo-server", daemon=True)
    thread.start()
    ready = started.get(timeout=90)
    if isinstance(ready, BaseException):
        raise ready
    yield ready
    loop_and_stop["loop"].call_soon_threadsafe(loop_and_stop["stop"].set)
    thread.join(30)
    assert not thread.is_alive(), "the demo did not stop"


@pytest.fixture
def page(chromium_browser: Any, demo: DemoReady) -> Iterator[Any]:
    context = chromium_browser.new_context()
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(demo.url.rstrip("/")) else None)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    response = page.goto(demo.url)
    assert response is not None and response.status == 200
    assert "default-src 'self'" in (response.headers.get("content-security-policy") or "")
    yield page
    context.close()
    assert outside == [], f"the page reached beyond its origin: {outside}"
    assert errors == [], f"script errors: {errors}"


def wait_until(page: Any, condition: Any, what: str) -> None:
    """Poll ``condition()`` from Python (the page's CSP forbids the eval behind wait_for_function)."""
    for _ in range(TIMEOUT_MS // 100):
        if condition():
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"timed out waiting for {what}")


def say(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def test_page_shows_the_linked_chat_with_telegram_formatting(page: Any) -> None:
    # The demo sent "/start <code>" for the person; the bot's answer is on screen, its <b> rendered as bold.
    bold = page.locator("article.bot .text b").first
    bold.wait_for(timeout=TIMEOUT_MS)
    assert "linked" in bold.inner_text()
    assert page.locator("article.me .text").first.inner_text() == "/start •••"  # the code is not shown


def test_show_my_last_mri_shows_a_photo_and_buttons_edit_it_in_place(page: Any) -> None:
    say(page, "show my last MRI")
    card = page.locator("article.bot:has(.media img)").last
    card.wait_for(timeout=TIMEOUT_MS)
    img = card.locator(".media img")
    wait_until(page, lambda: img.evaluate("img => img.complete && img.naturalWidth > 0"), "the photo to load")
    assert img.evaluate("img => img.naturalWidth") >= 256
    caption = card.locator(".caption").inner_text()
    assert "MRI" in caption
    message_id = card.get_attribute("data-id")
    first_src = img.get_attribute("src")
    card.locator("button", has_text="Next").click()
    edited = page.locator(f'article.bot[data-id="{message_id}"][data-version="1"]')
    edited.wait_for(timeout=TIMEOUT_MS)  # the same message, edited in place
    assert edited.locator(".media img").get_attribute("src") != first_src
    assert page.locator(f'article[data-id="{message_id}"]').count() == 1


def test_what_a_person_types_is_never_markup(page: Any) -> None:
    say(page, '<b>bold?</b><img src="/x" id="injected"> & stuff')
    mine = page.locator("article.me .text", has_text="bold?").last
    mine.wait_for(timeout=TIMEOUT_MS)
    assert mine.inner_text() == '<b>bold?</b><img src="/x" id="injected"> & stuff'
    assert page.locator("#injected").count() == 0


def test_share_link_opens_in_the_browser(page: Any, demo: DemoReady) -> None:
    say(page, "share my last MRI with Dr. Lee for 3 days")
    link = page.locator("article.bot .text a[href*='/s/']").last
    link.wait_for(timeout=TIMEOUT_MS)
    href = link.get_attribute("href")
    assert href is not None and href.startswith(demo.url.rstrip("/") + "/s/")
    viewer = page.context.new_page()
    response = viewer.goto(href)
    assert response is not None and response.status == 200
    assert re.search(r"Dr\.? Lee", viewer.content())
    viewer.close()
    # The patient hears about the first opening in the chat.
    page.locator("article.bot .text", has_text="was opened just now").wait_for(timeout=TIMEOUT_MS)


def test_upload_button_sends_a_file(page: Any) -> None:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    page.set_input_files("#file", str(path))
    mine = page.locator("article.me .media .file", has_text="CT_small.dcm")
    mine.wait_for(timeout=TIMEOUT_MS)
    # The bot's answer comes after the file in the chat (it may already be there: no counting).
    answer = page.locator("article.me:has(.media .file:has-text('CT_small.dcm')) ~ article.bot")
    answer.first.wait_for(timeout=TIMEOUT_MS)


def test_posts_from_other_pages_are_refused(demo: DemoReady) -> None:
    base = demo.url.rstrip("/")
    with httpx.Client(trust_env=False, timeout=10) as client:
        evil = client.post(f"{base}/api/say", json={"text": "hi"}, headers={"Origin": "http://evil.example"})
        plain = client.post(f"{base}/api/say", content=b'{"text": "hi"}', headers={"Content-Type": "text/plain"})
        upload = client.post(f"{base}/api/upload", files={"file": ("a.dcm", b"x")})
        forged_tap = client.post(f"{base}/api/tap", json={"message_id": 2, "data": "forged"})
        chat = client.get(f"{base}/api/messages", params={"since": -1, "wait": 0}).json()
    assert (evil.status_code, plain.status_code, upload.status_code) == (403, 415, 403)
    assert forged_tap.status_code == 409
    assert all(m["text"] != "hi" for m in chat["messages"])


def test_static_files_are_served_with_strict_headers(demo: DemoReady) -> None:
    base = demo.url.rstrip("/")
    with httpx.Client(trust_env=False, timeout=10) as client:
        script = client.get(f"{base}/chat/static/chat.js")
    assert script.status_code == 200 and "innerHTML" not in script.text.replace("never innerHTML", "")
    assert script.headers["x-content-type-options"] == "nosniff"
