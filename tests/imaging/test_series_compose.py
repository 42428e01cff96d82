"""Slice order, key slice, plane, and the compositions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from imaging import compose, series
from imaging.geometry import slice_location
from imaging.render import render_frame


def _file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path))


def _slice(position: float, number: int | None, orientation: list[float] | None = None) -> Dataset:
    ds = Dataset()
    ds.ImageOrientationPatient = orientation or [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, position]
    if number is not None:
        ds.InstanceNumber = number
    return ds


def test_sort_along_the_normal_not_by_instance_number() -> None:
    stack = [_slice(30, 1), _slice(10, 2), _slice(20, 3)]
    assert [int(ds.ImagePositionPatient[2]) for ds in series.sort_instances(stack)] == [10, 20, 30]


def test_sagittal_stack_sorts_along_x() -> None:
    sag = [0, 1, 0, 0, 0, -1]
    stack = [_slice(0, 1, sag), _slice(0, 2, sag)]
    stack[0].ImagePositionPatient = [5, 0, 0]
    stack[1].ImagePositionPatient = [-5, 0, 0]
    ordered = series.sort_instances(stack)
    assert series.plane_of(ordered[0]) == "sagittal"
    assert [float(ds.ImagePositionPatient[0]) for ds in ordered] == sorted(
        [5.0, -5.0], key=lambda x: float(np.dot(series.slice_normal(sag), [x, 0, 0])))


def test_fallback_to_instance_number() -> None:
    a, b, c = Dataset(), Dataset(), Dataset()
    a.InstanceNumber, b.InstanceNumber, c.InstanceNumber = 3, 1, 2
    assert [ds.InstanceNumber for ds in series.sort_instances([a, b, c])] == [1, 2, 3]


def test_sort_real_files_with_a_key_function() -> None:
    folder = _file("dicomdirtests/77654033/CT2/17106").parent
    paths = sorted(folder.iterdir())
    ordered = series.sort_instances(paths, lambda p: pydicom.dcmread(p, stop_before_pixels=True))
    locations = [slice_location(ds.ImageOrientationPatient, ds.ImagePositionPatient)
                 for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in ordered)]
    assert locations == sorted(locations)  # type: ignore[type-var]


def test_key_slice_and_even_spacing() -> None:
    assert series.key_slice(1) == 0 and series.key_slice(10) == 4 and series.key_slice(11) == 5
    assert series.evenly_spaced(100, 5) == [0, 25, 50, 74, 99]
    assert series.evenly_spaced(3, 9) == [0, 1, 2]


def test_frame_order_of_a_multiframe_object() -> None:
    ds = pydicom.dcmread(_file("emri_small.dcm"), stop_before_pixels=True)
    order = series.frame_order(ds)
    assert sorted(order) == list(range(10))


def test_montage_has_the_chosen_slices_in_order() -> None:
    path = _file("emri_small.dcm")
    sheet = compose.montage([(path, n) for n in range(10)], 4, tile_size=64, numbers=False)
    assert sheet.shape == (128, 128, 3)
    for tile, frame in enumerate([0, 3, 6, 9]):
        expected = render_frame(path, frame, max_size=0)
        top, left = (tile // 2) * 64, (tile % 2) * 64
        assert np.array_equal(sheet[top : top + 64, left : left + 64, 0], expected)


def test_montage_numbers_are_drawn() -> None:
    path = _file("emri_small.dcm")
    plain = compose.montage([(path, n) for n in range(10)], 4, tile_size=128, numbers=False)
    numbered = compose.montage([(path, n) for n in range(10)], 4, tile_size=128)
    assert not np.array_equal(plain, numbered)


def test_side_by_side_uses_one_window_for_both() -> None:
    ct = _file("CT_small.dcm")
    dark = pydicom.dcmread(ct)
    dark.RescaleIntercept = float(dark.RescaleIntercept) + 500  # same anatomy, shifted values
    pair = compose.side_by_side((ct, 0), (dark, 0), ("12 Jan 2024", "3 Mar 2025"), max_size=128)
    assert pair.shape[1] == 128 + 8 + 128
    left, right = pair[-128:, :128].astype(float), pair[-128:, -128:].astype(float)
    assert right.mean() > left.mean() + 20  # the same window shows the shift; separate ones would hide it


def test_cine_gif_is_bounded_and_decodes() -> None:
    us = _file("color3d_jpeg_baseline.dcm")
    data = compose.cine_gif([(us, n) for n in range(120)], max_size=160, max_frames=12, max_bytes=2_000_000)
    assert len(data) <= 2_000_000
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.format == "GIF" and gif.n_frames == 12
        assert max(gif.size) == 160


def test_a_long_caption_is_made_smaller_to_stay_over_its_own_picture() -> None:
    from imaging.samples import sample_file

    path = sample_file("CT_small.dcm")
    pixels = compose.side_by_side((path, 0), (path, 0), ("12 марта 2025 г.", ""), max_size=320)
    left_width = (pixels.shape[1] - 8) // 2  # side_by_side leaves an 8-pixel gap
    band = pixels[:20].min(axis=2) if pixels.ndim == 3 else pixels[:20]
    columns = np.flatnonzero((band > 200).any(axis=0))
    assert columns.size and columns.max() < left_width  # drawn, and ends over the left picture
