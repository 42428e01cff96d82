"""Marks land on the same spot of the anatomy under rotation and zoom; the grid numbers its cells."""

from __future__ import annotations

import numpy as np
import pytest

from imaging.overlays import MARK_COLOUR, Mark, draw_grid, draw_marks, grid_cell
from imaging.transforms import View


def _yellow(image: np.ndarray) -> np.ndarray:
    return (image[..., 0] > 200) & (image[..., 1] > 150) & (image[..., 2] < 80)


def _centre_of_yellow(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(_yellow(image))
    assert len(xs) > 0
    return xs.mean() / image.shape[1], ys.mean() / image.shape[0]


def test_a_marker_is_drawn_where_it_was_put() -> None:
    grey = np.full((300, 300), 40, dtype=np.uint8)
    out = draw_marks(grey, View(), [Mark("marker", 0.25, 0.75)])
    assert out.shape == (300, 300, 3)
    x, y = _centre_of_yellow(out)
    assert x == pytest.approx(0.25, abs=0.03)
    assert y == pytest.approx(0.75, abs=0.03)


def test_a_marker_follows_a_quarter_turn_clockwise() -> None:
    grey = np.full((300, 300), 40, dtype=np.uint8)
    out = draw_marks(grey, View(rotate=90), [Mark("marker", 0.25, 0.75)])
    x, y = _centre_of_yellow(out)
    # A point at the lower left of the original is at the upper left after a clockwise quarter turn.
    assert x == pytest.approx(0.25, abs=0.03)
    assert y == pytest.approx(0.25, abs=0.03)


def test_a_marker_outside_the_zoomed_region_is_not_drawn() -> None:
    grey = np.full((200, 200), 40, dtype=np.uint8)
    out = draw_marks(grey, View(zoom=(0.0, 0.0, 0.5, 0.5)), [Mark("marker", 0.9, 0.9)])
    assert not _yellow(out).any()
    zoomed = draw_marks(grey, View(zoom=(0.0, 0.0, 0.5, 0.5)), [Mark("marker", 0.25, 0.25)])
    x, y = _centre_of_yellow(zoomed)
    assert (x, y) == (pytest.approx(0.5, abs=0.04), pytest.approx(0.5, abs=0.04))


def test_circles_and_arrows_draw_and_labels_add_pixels() -> None:
    grey = np.zeros((200, 200), dtype=np.uint8)
    plain = draw_marks(grey, View(), [Mark("circle", 0.5, 0.5, 0.6, 0.5)])
    labelled = draw_marks(grey, View(), [Mark("circle", 0.5, 0.5, 0.6, 0.5, label="here")])
    assert _yellow(plain).sum() > 50
    assert _yellow(labelled).sum() > _yellow(plain).sum()
    arrow = draw_marks(grey, View(), [Mark("arrow", 0.5, 0.5, 0.1, 0.1)])
    assert _yellow(arrow)[20:100, 20:100].any()


def test_grid_cells() -> None:
    assert grid_cell(1) == (0.0, 0.0, pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert grid_cell(9)[:2] == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    with pytest.raises(ValueError):
        grid_cell(10)
    grid = draw_grid(np.zeros((90, 90), dtype=np.uint8))
    assert _yellow(grid).any()
    assert tuple(MARK_COLOUR) == (255, 196, 0)


def test_labelled_sheet_tiles_each_picture() -> None:
    from imaging.compose import labelled_sheet
    from imaging.samples import sample_file

    ct, mr = sample_file("CT_small.dcm"), sample_file("MR_small.dcm")
    sheet = labelled_sheet([((ct, 0), "2024"), ((mr, 0), "2025"), ((ct, 0), "2026")], tile_size=64, columns=2)
    assert sheet.shape == (128, 128, 3)
    assert sheet[64:, 64:].max() == 0  # the fourth place is empty
    assert sheet[:64, :64].std() > 5 and sheet[:64, 64:].std() > 5
