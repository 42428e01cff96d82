"""The viewer in headless Chromium (sync Playwright) against the app served by uvicorn on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest

from tests.share.conftest import Notified, ShareWorld

pytestmark = pytest.mark.chromium


def _stage_shot(page: Any) -> bytes:
    page.wait_for_timeout(150)  # let the transform and picture settle
    return page.locator("#stage").screenshot()


def _wait_loaded(page: Any, index: int) -> None:
    page.wait_for_function(
        "i => document.getElementById('stage').dataset.slice === String(i) && "
        "document.getElementById('image').complete && document.getElementById('image').naturalWidth > 0",
        arg=index,
    )
    page.wait_for_function("() => !!document.getElementById('stage').dataset.loaded")


@pytest.mark.parametrize("device", ["phone", "desktop"])
def test_viewer_scrolls_zooms_rotates_and_stays_on_its_origin(
    chromium_browser: Any, served: str, world: ShareWorld, notified: Notified, device: str
) -> None:
    created = world.share(download="deidentified")
    url = f"{served}/s/{created.token}"
    add_note(world, slice_index=6, text="The spot I asked about")
    options: dict[str, Any] = (
        {"viewport": {"width": 390, "height": 780}, "device_scale_factor": 2, "has_touch": True, "is_mobile": True}
        if device == "phone" else {"viewport": {"width": 1280, "height": 900}}
    )
    context = chromium_browser.new_context(**options)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    try:
        response = page.goto(url)
        assert response is not None and response.status == 200
        page.wait_for_selector("body[data-ready='1']")
        assert "J. (knee pain)" in page.inner_text("header")
        assert page.locator("#series button").count() == 2
        assert page.locator("#download").count() == 1
        _wait_loaded(page, 6)  # starts in the middle of the 12 slices
        # Neighbours are fetched before they are asked for, so scrolling is instant.
        page.wait_for_function(
            "() => new Set(performance.getEntriesByType('resource').filter(e => e.name.includes('/img/'))"
            ".map(e => e.name.split('/img/')[1].split('/')[2])).size >= 6"
        )
        # The patient's note is drawn on its slice and listed.
        assert page.locator("#overlay line.note").count() == 1
        assert page.text_content("#overlay") == "The spot I asked about"
        assert "The spot I asked about (slice 7)" in page.inner_text("#notes")
        start = _stage_shot(page)

        # Keys scroll.
        page.focus("#stage")
        page.keyboard.press("ArrowDown")
        _wait_loaded(page, 7)
        after_key = _stage_shot(page)
        assert after_key != start
        assert page.locator("#overlay line.note").count() == 0  # the note belongs to slice 7 only

        # The wheel scrolls.
        page.mouse.move(*_centre(page))
        page.mouse.wheel(0, 120)
        _wait_loaded(page, 8)
        # The slider scrolls.
        page.eval_on_selector("#slider", "el => { el.value = '2'; el.dispatchEvent(new Event('input')); }")
        _wait_loaded(page, 2)
        # Dragging (a swipe on a phone) scrolls: 12 px per slice.
        x, y = _centre(page)
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x, y + 40, steps=5)
        page.mouse.up()
        _wait_loaded(page, 5)
        base = _stage_shot(page)

        page.click("#zoom-in")
        zoomed = _stage_shot(page)
        assert zoomed != base
        page.click("#reset")
        _wait_loaded(page, 5)
        page.click("#rotate")
        rotated = _stage_shot(page)
        assert rotated != base and rotated != zoomed
        page.click("#reset")
        _wait_loaded(page, 5)

        # Two-finger pinch (pointer events, as a touch screen sends them) zooms.
        before_pinch = page.evaluate("() => document.getElementById('frame').style.transform")
        _pinch(page)
        after_pinch = page.evaluate("() => document.getElementById('frame').style.transform")
        assert after_pinch != before_pinch and "scale(1)" not in after_pinch.split("rotate")[0]
        page.click("#reset")

        # The ruler measures in millimetres (CT_small has Pixel Spacing).
        page.select_option("#tool", "ruler")
        page.mouse.move(x - 50, y)
        page.mouse.down()
        page.mouse.move(x + 50, y, steps=4)
        page.mouse.up()
        assert page.inner_text("#measure").endswith("mm")

        # A window preset re-renders with the preset's numbers.
        page.select_option("#preset", "bone")
        page.wait_for_function(
            "() => performance.getEntriesByType('resource').some(e => e.name.includes('preset=bone'))"
        )

        # Dragging with the brightness/contrast tool asks the server for that exact window.
        page.select_option("#tool", "window")
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 60, y + 30, steps=4)
        page.mouse.up()
        page.wait_for_function(
            "() => performance.getEntriesByType('resource').some(e => e.name.includes('wc=') && e.name.includes('ww='))"
        )

        # Series thumbnails switch series.
        page.locator("#series button").nth(1).click()
        _wait_loaded(page, 1)  # the MR series has 3 slices
    finally:
        context.close()
    assert requests, "the page made no requests"
    foreign = [u for u in requests if not u.startswith((served + "/", "blob:", "data:"))]
    assert foreign == []
    assert not [e for e in console_errors if "Failed to load resource" not in e]
    assert notified.first_open == [created.link.public_id]


def add_note(world: ShareWorld, slice_index: int, text: str) -> None:
    """An arrow note by the patient on one slice of the CT series."""
    from sqlalchemy import select

    from share.links import instances_in_order
    from store.db import transaction
    from store.models import Annotation, Series

    with transaction(world.sessions) as session:
        series = session.scalars(select(Series).where(Series.series_uid == world.main_series[0])).one()
        instance = instances_in_order(session, series)[slice_index]
        session.add(Annotation(patient_id=world.patient_id, instance_id=instance.id, frame=0, kind="arrow",
                               x=0.2, y=0.2, x2=0.5, y2=0.5, text=text))


def _centre(page: Any) -> tuple[float, float]:
    box = page.locator("#stage").bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def _pinch(page: Any) -> None:
    page.evaluate(
        """() => {
        const stage = document.getElementById('stage');
        const r = stage.getBoundingClientRect();
        const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
        const ev = (type, id, x, y) => stage.dispatchEvent(new PointerEvent(type, {
            pointerId: id, pointerType: 'touch', clientX: x, clientY: y, bubbles: true, isPrimary: id === 11 }));
        ev('pointerdown', 11, cx - 20, cy); ev('pointerdown', 12, cx + 20, cy);
        for (let d = 20; d <= 80; d += 10) { ev('pointermove', 11, cx - d, cy); ev('pointermove', 12, cx + d, cy); }
        ev('pointerup', 11, cx - 80, cy); ev('pointerup', 12, cx + 80, cy);
    }"""
    )


def test_expired_link_shows_the_expired_page(chromium_browser: Any, served: str, world: ShareWorld) -> None:
    created = world.share(hours=1)
    world.clock.advance(hours=2)
    page = chromium_browser.new_page()
    try:
        response = page.goto(f"{served}/s/{created.token}")
        assert response is not None and response.status == 410
        assert "no longer works" in page.inner_text("h1")
        unknown = page.goto(f"{served}/s/{'x' * 32}")
        assert unknown is not None and unknown.status == 404
        assert "does not work" in page.inner_text("h1")
    finally:
        page.close()


def test_access_code_form_in_the_browser(chromium_browser: Any, served: str, world: ShareWorld) -> None:
    created = world.share(access_code="13572468")
    page = chromium_browser.new_page()
    try:
        page.goto(f"{served}/s/{created.token}")
        page.fill("#code", "11112222")
        page.click("button[type=submit]")
        assert "tries left" in page.inner_text("main")
        page.fill("#code", "13572468")
        page.click("button[type=submit]")
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("#series button").count() == 2
    finally:
        page.close()


def test_ruler_says_so_when_the_file_has_no_pixel_spacing(chromium_browser: Any, served: str,
                                                          world: ShareWorld) -> None:
    from sqlalchemy import update

    from store.db import transaction
    from store.models import Instance, Series

    with transaction(world.sessions) as session:
        series_id = session.query(Series.id).filter(Series.series_uid == world.main_series[1]).scalar()
        session.execute(update(Instance).where(Instance.series_id == series_id).values(pixel_spacing=""))
    created = world.share(series_uids=[world.main_series[1]])
    page = chromium_browser.new_page(viewport={"width": 800, "height": 800})
    try:
        page.goto(f"{served}/s/{created.token}")
        page.wait_for_selector("body[data-ready='1']")
        _wait_loaded(page, 1)
        page.select_option("#tool", "ruler")
        x, y = _centre(page)
        page.mouse.move(x - 40, y)
        page.mouse.down()
        page.mouse.move(x + 40, y, steps=3)
        page.mouse.up()
        text = page.inner_text("#measure")
        assert "no pixel spacing" in text and "mm" not in text.split("(")[0]
    finally:
        page.close()
