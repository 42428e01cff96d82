"""The patient draws an arrow, a circle and text with the mouse in headless Chromium, through their own link;
the marks persist (reload shows them) in normalised coordinates of the original frame, even when drawn on
a rotated view."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from share.links import create_annotation_link
from store.db import transaction
from store.models import AccessEvent, Annotation, Instance, Patient, Study
from tests.share.conftest import ShareWorld
from tests.share.test_viewer_browser import _centre, _wait_loaded

pytestmark = pytest.mark.chromium

SIDE = 128  # CT_small is 128 x 128


def _drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=6)
    page.mouse.up()


def _rows(world: ShareWorld) -> dict[str, Annotation]:
    with transaction(world.sessions) as session:
        rows = list(session.scalars(select(Annotation).where(Annotation.patient_id == world.patient_id)))
        session.expunge_all()
        return {r.kind: r for r in rows}


def _near(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance


def _geometry(page: Any) -> tuple[float, float, float]:
    """The stage's centre on screen and the screen pixels per frame pixel at zoom 1 (after layout settles)."""
    page.wait_for_timeout(100)
    box = page.locator("#stage").bounding_box()
    assert box is not None
    cx, cy = _centre(page)
    return cx, cy, min(box["width"], box["height"]) / SIDE


def test_patient_draws_marks_that_persist_in_frame_coordinates(
    chromium_browser: Any, served: str, world: ShareWorld
) -> None:
    with transaction(world.sessions) as session:
        patient = session.get(Patient, world.patient_id)
        study = session.scalars(select(Study).where(Study.study_uid == world.main_study)).one()
        assert patient is not None
        created = create_annotation_link(session, patient=patient, study=study, now=world.clock())
    url = f"{served}/s/{created.token}"
    page = chromium_browser.new_page(viewport={"width": 1000, "height": 800})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        _wait_loaded(page, 6)
        cx, cy, fit = _geometry(page)

        # Rotated a quarter turn clockwise, an arrow dragged from (-40, -20) to (+30, +50) screen pixels
        # off the centre lies, in the original frame, at (u, v) = (dy, -dx) frame pixels off its centre.
        page.click("#rotate")
        page.select_option("#tool", "arrow")
        page.fill("#mark-text", "sore spot")
        _drag(page, (cx - 40, cy - 20), (cx + 30, cy + 50))
        page.wait_for_function("() => document.querySelectorAll('#note-list li').length === 1")
        arrow = _rows(world)["arrow"]
        tol = 1.5 / (fit * SIDE)
        assert arrow.x is not None and arrow.y is not None and arrow.x2 is not None and arrow.y2 is not None
        assert _near(arrow.x, 0.5 + (-20) / (fit * SIDE), tol) and _near(arrow.y, 0.5 - (-40) / (fit * SIDE), tol)
        assert _near(arrow.x2, 0.5 + 50 / (fit * SIDE), tol) and _near(arrow.y2, 0.5 - 30 / (fit * SIDE), tol)
        assert arrow.text == "sore spot" and arrow.author == f"share:{created.link.public_id}"
        # The saved arrow is drawn through the rotation: frame offset (u, v) shows at screen offset (-v, u).
        # (The notes list appeared and the picture was refitted, so measure the layout again.)
        page.wait_for_function("() => document.querySelectorAll('#overlay line.note').length === 1")
        gx, gy, gfit = _geometry(page)
        side = gfit * SIDE
        ends = [(gx - (y - 0.5) * side, gy + (x - 0.5) * side) for x, y in ((arrow.x, arrow.y), (arrow.x2, arrow.y2))]
        line = page.locator("#overlay line.note").bounding_box()
        assert line is not None
        xs, ys = [p[0] for p in ends], [p[1] for p in ends]
        assert _near(line["x"], min(xs), 3) and _near(line["x"] + line["width"], max(xs), 3)
        assert _near(line["y"], min(ys), 3) and _near(line["y"] + line["height"], max(ys), 3)
        with transaction(world.sessions) as session:
            instance = session.get(Instance, arrow.instance_id)
            assert instance is not None
            sop = instance.sop_instance_uid
        assert page.evaluate("() => document.getElementById('stage').dataset.loaded") == f"{sop}:0"

        # A circle, then a text note placed with a click (the notes list now takes room: measure again).
        cx, cy, fit = _geometry(page)
        tol = 1.5 / (fit * SIDE)
        page.select_option("#tool", "circle")
        _drag(page, (cx + 10, cy + 10), (cx + 60, cy + 40))
        page.wait_for_function("() => document.querySelectorAll('#note-list li').length === 2")
        circle_fit = fit
        page.select_option("#tool", "note")
        page.fill("#mark-text", "hurts here")
        cx, cy, fit = _geometry(page)  # the list grew by one line
        tol = 1.5 / (fit * SIDE)
        page.mouse.click(cx - 60, cy + 60)
        page.wait_for_function("() => document.querySelectorAll('#note-list li').length === 3")
        rows = _rows(world)
        assert set(rows) == {"arrow", "circle", "note"}
        note = rows["note"]
        assert note.text == "hurts here" and note.x2 is None
        assert note.x is not None and note.y is not None
        # Rotated: screen offset (-60, +60) is frame offset (u, v) = (60, 60).
        assert _near(note.x, 0.5 + 60 / (fit * SIDE), tol) and _near(note.y, 0.5 + 60 / (fit * SIDE), tol)
        circle = rows["circle"]
        assert circle.x is not None and circle.x2 is not None
        assert circle.y is not None and circle.y2 is not None
        ctol = 1.5 / (circle_fit * SIDE)
        assert _near(min(circle.x, circle.x2), 0.5 + 10 / (circle_fit * SIDE), ctol)
        assert _near(max(circle.x, circle.x2), 0.5 + 40 / (circle_fit * SIDE), ctol)
        assert _near(min(circle.y, circle.y2), 0.5 - 60 / (circle_fit * SIDE), ctol)
        assert _near(max(circle.y, circle.y2), 0.5 - 10 / (circle_fit * SIDE), ctol)

        # Reload: the view is upright again and the marks are still there, now where the frame puts them.
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        _wait_loaded(page, 6)
        assert page.locator("#overlay line.note").count() == 1
        assert page.locator("#overlay ellipse.note").count() == 1
        assert "hurts here" in page.text_content("#overlay") and "sore spot" in page.text_content("#overlay")
        line = page.locator("#overlay line.note").bounding_box()
        assert line is not None
        # Upright, the frame point (x, y) shows at screen offset ((x - 0.5) * side, (y - 0.5) * side).
        cx, cy, fit = _geometry(page)
        side = fit * SIDE
        assert _near(line["x"], cx + (arrow.x - 0.5) * side, 3)
        assert _near(line["x"] + line["width"], cx + (arrow.x2 - 0.5) * side, 3)
        assert _near(line["y"], cy + (arrow.y2 - 0.5) * side, 3)
        assert _near(line["y"] + line["height"], cy + (arrow.y - 0.5) * side, 3)
        listed = page.inner_text("#note-list")
        assert "sore spot (slice 7)" in listed and "hurts here (slice 7)" in listed and "circle (slice 7)" in listed

        # Delete the circle from the list.
        page.click("#note-list li:has-text('circle') button.delete-mark")
        page.wait_for_function("() => document.querySelectorAll('#note-list li').length === 2")
        assert set(_rows(world)) == {"arrow", "note"}
        assert page.locator("#overlay ellipse.note").count() == 0
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        _wait_loaded(page, 6)
        assert page.locator("#note-list li").count() == 2
    finally:
        page.close()
    assert not [e for e in errors if "Failed to load resource" not in e]
    with transaction(world.sessions) as session:
        details = sorted(e.detail for e in session.scalars(select(AccessEvent).where(AccessEvent.action == "annotate")))
        assert details == ["add arrow", "add circle", "add note", "delete circle"]


def test_specialist_sees_the_marks_but_has_no_drawing_tools(
    chromium_browser: Any, served: str, world: ShareWorld
) -> None:
    from tests.share.test_viewer_browser import add_note

    add_note(world, slice_index=6, text="look here")
    created = world.share()
    page = chromium_browser.new_page(viewport={"width": 1000, "height": 800})
    try:
        page.goto(f"{served}/s/{created.token}")
        page.wait_for_selector("body[data-ready='1']")
        _wait_loaded(page, 6)
        assert page.locator("#tool option[value=arrow]").count() == 0 and page.locator("#mark-text").is_hidden()
        assert page.locator("#overlay line.note").count() == 1 and "look here" in page.inner_text("#note-list")
        assert page.locator("#note-list button.delete-mark").count() == 0
        assert page.locator("meta[name=csrf-token]").count() == 0
    finally:
        page.close()


def test_a_finger_draws_a_circle_on_a_phone(chromium_browser: Any, served: str, world: ShareWorld) -> None:
    with transaction(world.sessions) as session:
        patient = session.get(Patient, world.patient_id)
        study = session.scalars(select(Study).where(Study.study_uid == world.main_study)).one()
        assert patient is not None
        created = create_annotation_link(session, patient=patient, study=study, now=world.clock())
    context = chromium_browser.new_context(viewport={"width": 390, "height": 780}, device_scale_factor=2,
                                           has_touch=True, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(f"{served}/s/{created.token}")
        page.wait_for_selector("body[data-ready='1']")
        _wait_loaded(page, 6)
        page.select_option("#tool", "circle")
        # A touch drag, as a phone sends it (pointer events of type touch), flipped left-right first.
        page.click("#flip-h")
        page.locator("#stage").scroll_into_view_if_needed()
        cx, cy, fit = _geometry(page)  # after the page scrolled to the button and back
        page.evaluate(
            """([x, y]) => {
            const stage = document.getElementById('stage');
            const ev = (type, px, py) => stage.dispatchEvent(new PointerEvent(type, {
                pointerId: 21, pointerType: 'touch', clientX: px, clientY: py, bubbles: true, isPrimary: true }));
            ev('pointerdown', x - 30, y - 30);
            for (let d = -20; d <= 30; d += 10) ev('pointermove', x + d, y + d / 2);
            ev('pointerup', x + 30, y + 15);
        }""",
            [cx, cy],
        )
        page.wait_for_function("() => document.querySelectorAll('#note-list li').length === 1")
        circle = _rows(world)["circle"]
        assert circle.x is not None and circle.y is not None and circle.x2 is not None and circle.y2 is not None
        side = fit * SIDE
        tol = 1.5 / side
        # Flipped left-right: screen x offsets are mirrored in the frame; y offsets are not.
        assert _near(circle.x, 0.5 + 30 / side, tol) and _near(circle.x2, 0.5 - 30 / side, tol)
        assert _near(circle.y, 0.5 - 30 / side, tol) and _near(circle.y2, 0.5 + 15 / side, tol)
    finally:
        context.close()
