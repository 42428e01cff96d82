"""Side by side with the prior in headless Chromium: paired slices scrolled together, same window, dates."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from share.links import instances_in_order
from store.comparison import pair_slice
from store.db import transaction
from store.models import Series, Study
from tests.share.conftest import ShareWorld
from tests.share.test_viewer_browser import _wait_loaded

pytestmark = pytest.mark.chromium


def _wait_prior(page: Any, index: int) -> None:
    page.wait_for_function(
        "i => { const s = document.getElementById('stage2'); const im = document.getElementById('image2');"
        " return !s.hidden && s.dataset.slice === String(i) && !!s.dataset.loaded && im.complete &&"
        " im.naturalWidth > 0 && im.src.startsWith('blob:'); }",
        arg=index,
    )


def _shot(page: Any, selector: str) -> bytes:
    page.wait_for_timeout(150)
    return page.locator(selector).screenshot()


def _expected_pairs(world: ShareWorld) -> list[int]:
    """store.comparison.pair_slice for every slice of the main CT series against the prior's CT series."""
    with transaction(world.sessions) as session:
        main = session.scalars(select(Series).where(Series.series_uid == world.main_series[0])).one()
        prior_study = session.scalars(select(Study).where(Study.study_uid == world.prior_study)).one()
        prior = session.scalars(select(Series).where(Series.study_id == prior_study.id)).one()
        later, earlier = instances_in_order(session, main), instances_in_order(session, prior)
        return [pair_slice(earlier, later, i) for i in range(len(later))]


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_side_by_side_with_the_prior_scrolls_together(
    chromium_browser: Any, served: str, world: ShareWorld, device: str
) -> None:
    created = world.share(include_priors=True)
    expected = _expected_pairs(world)
    assert set(expected) == {0, 1}  # the prior has two slices, at 0 and 5 mm
    options: dict[str, Any] = (
        {"viewport": {"width": 390, "height": 780}, "device_scale_factor": 2, "has_touch": True, "is_mobile": True}
        if device == "phone" else {"viewport": {"width": 1280, "height": 900}}
    )
    context = chromium_browser.new_context(**options)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{served}/s/{created.token}")
        page.wait_for_selector("body[data-ready='1']")
        _wait_loaded(page, 6)
        assert page.locator("#stage2").is_hidden()
        assert page.locator("#tool option[value=arrow]").count() == 0  # a specialist's link only looks
        assert page.locator("#compare-bar").is_visible()
        page.select_option("#compare", world.prior_study)
        _wait_prior(page, expected[6])
        info = page.inner_text("#compare-info")
        assert "10 Jan 2024" in info and "20 Feb 2026" in info and "2 years apart" in info
        assert "Earlier" in page.inner_text("#info2")

        # Phone: one above the other; desktop: next to each other.
        one, two = page.locator("#stage").bounding_box(), page.locator("#stage2").bounding_box()
        assert one is not None and two is not None and one["height"] > 100 and two["height"] > 100
        if device == "phone":
            assert two["y"] >= one["y"] + one["height"] - 1 and abs(two["x"] - one["x"]) < 2
        else:
            assert two["x"] >= one["x"] + one["width"] - 1 and abs(two["y"] - one["y"]) < 2

        main_before, prior_before = _shot(page, "#stage"), _shot(page, "#stage2")
        # Scroll the current study (keyboard): both sides change.
        page.focus("#stage")
        page.keyboard.press("Home")
        _wait_loaded(page, 0)
        _wait_prior(page, expected[0])
        main_after, prior_after = _shot(page, "#stage"), _shot(page, "#stage2")
        assert main_after != main_before and prior_after != prior_before

        # Scroll the earlier study (wheel over it): both sides move too.
        box = page.locator("#stage2").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, 120)
        _wait_loaded(page, 1)
        _wait_prior(page, expected[1])
        assert _shot(page, "#stage") != main_after and _shot(page, "#stage2") != prior_after

        # Every slice pairs exactly as the chat's store.comparison.pair_slice does.
        for index, partner in enumerate(expected):
            page.eval_on_selector("#slider", f"el => {{ el.value = '{index}'; el.dispatchEvent(new Event('input')); }}")
            _wait_loaded(page, index)
            _wait_prior(page, partner)

        # Same window on both: the earlier side is asked for the window the current side was shown with.
        shown = page.evaluate(
            """async () => {
                const img = performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/img/'));
                return img;
            }"""
        )
        prior_urls = [u for u in shown if f"/img/{world.prior_study}/" in u]
        main_urls = [u for u in shown if f"/img/{world.main_study}/" in u]
        assert prior_urls and all("wc=" in u and "ww=" in u for u in prior_urls)
        main_slice = page.evaluate("() => document.getElementById('image').src")
        assert main_slice.startswith("blob:") and main_urls
        window = page.evaluate(
            """async (url) => { const r = await fetch(url); return [r.headers.get('X-Window-Center'),
                r.headers.get('X-Window-Width')]; }""",
            main_urls[-1],
        )
        want = f"wc={float(window[0]):.1f}&ww={float(window[1]):.1f}"
        assert any(want in u for u in prior_urls), (want, prior_urls[-3:])
        # A preset applies to both sides.
        page.select_option("#preset", "bone")
        page.wait_for_function(
            "uid => performance.getEntriesByType('resource').some(e => e.name.includes('/img/' + uid + '/') &&"
            " e.name.includes('preset=bone'))",
            arg=world.prior_study,
        )
        # Rotating turns both.
        page.click("#rotate")
        transforms = page.evaluate(
            "() => ['frame', 'frame2'].map(id => document.getElementById(id).style.transform)"
        )
        assert "rotate(90deg)" in transforms[0] and transforms[0] == transforms[1]

        # Another series of the shared study keeps the comparison, with its own partner and pairing
        # (the MR series' 3 slices at 0, 5 and 10 mm: the middle one pairs with the prior's slice at 5 mm).
        page.locator("#series button").nth(1).click()
        _wait_loaded(page, 1)
        _wait_prior(page, 1)
        assert page.input_value("#compare") == world.prior_study

        # Off again: one picture.
        page.select_option("#compare", "")
        page.wait_for_function("() => document.getElementById('stage2').hidden")

        # Looking at the prior itself: nothing to compare it with.
        page.select_option("#compare", world.prior_study)
        _wait_prior(page, 1)
        page.locator("#series button").nth(2).click()
        _wait_loaded(page, 1)
        page.wait_for_function("() => document.getElementById('stage2').hidden")
        assert page.locator("#compare-bar").is_hidden()
    finally:
        context.close()
    assert not [e for e in errors if "Failed to load resource" not in e]


def test_no_compare_without_priors(chromium_browser: Any, served: str, world: ShareWorld) -> None:
    created = world.share()
    page = chromium_browser.new_page(viewport={"width": 1000, "height": 800})
    try:
        page.goto(f"{served}/s/{created.token}")
        page.wait_for_selector("body[data-ready='1']")
        _wait_loaded(page, 6)
        assert page.locator("#compare-bar").is_hidden() and page.locator("#stage2").is_hidden()
    finally:
        page.close()
