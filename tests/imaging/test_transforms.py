"""Rotate, flip, zoom, fit, Telegram's photo rules, and the View that maps overlays."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from imaging import transforms
from imaging.encode import encode, encode_within
from imaging.render import photo_bytes, render, render_frame, telegram_photo_bytes
from imaging.transforms import View


def _file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path))


def _marked(rows: int = 40, cols: int = 60) -> np.ndarray:
    image = np.zeros((rows, cols), dtype=np.uint8)
    image[2, 5] = 255  # near the top-left corner
    return image


def test_rotate_clockwise_and_flip() -> None:
    image = _marked()
    r90 = transforms.rotate(image, 90)
    assert r90.shape == (60, 40)
    assert r90[5, 40 - 1 - 2] == 255  # top-left goes to top-right
    assert transforms.rotate(image, 180)[40 - 1 - 2, 60 - 1 - 5] == 255
    assert transforms.rotate(image, 270)[60 - 1 - 5, 2] == 255
    assert transforms.flip(image, "h")[2, 60 - 1 - 5] == 255
    assert transforms.flip(image, "v")[40 - 1 - 2, 5] == 255
    with pytest.raises(ValueError):
        transforms.rotate(image, 45)


def test_view_maps_original_points_onto_the_output() -> None:
    image = _marked(40, 60)
    point = ((5 + 0.5) / 60, (2 + 0.5) / 40)
    for degrees in (0, 90, 180, 270):
        for direction in (None, "h", "v"):
            out = transforms.rotate(image, degrees)
            if direction:
                out = transforms.flip(out, direction)
            x, y = View(rotate=degrees, flip=direction).to_output(*point)
            row, col = int(y * out.shape[0]), int(x * out.shape[1])
            assert out[row, col] == 255, (degrees, direction)


def test_zoom_region_of_the_rotated_picture_is_cut_from_the_right_place() -> None:
    path = _file("CT_small.dcm")
    full = render_frame(path, rotate=90, max_size=0)
    region = (0.5, 0.25, 0.5, 0.5)
    zoomed = render_frame(path, rotate=90, zoom=region, max_size=0)
    expected = transforms.crop(full, region)
    assert zoomed.shape == expected.shape
    assert np.array_equal(zoomed, expected)


def test_zoom_must_be_inside_the_picture() -> None:
    with pytest.raises(ValueError):
        transforms.validate_region((0.5, 0.5, 0.6, 0.2))
    with pytest.raises(ValueError):
        transforms.validate_region((0, 0, 0, 1))


def test_fit_keeps_the_aspect_ratio_and_never_upscales() -> None:
    image = np.zeros((1955, 1841), dtype=np.uint8)
    fitted = transforms.fit(image, 1280)
    assert fitted.shape == (1280, round(1841 * 1280 / 1955))
    assert transforms.fit(image, 0) is image
    small = np.zeros((64, 64), dtype=np.uint8)
    assert transforms.fit(small, 1280).shape == (64, 64)


def test_invert() -> None:
    assert transforms.invert(np.array([[0, 100, 255]], dtype=np.uint8)).tolist() == [[255, 155, 0]]


@pytest.mark.parametrize("shape", [(30, 3000), (3000, 30), (9000, 6000), (1, 1)])
def test_telegram_rules_always_hold(shape: tuple[int, int]) -> None:
    image = np.random.default_rng(3).integers(0, 256, size=shape, dtype=np.uint8)
    data = photo_bytes(image)
    with Image.open(io.BytesIO(data)) as pil:
        width, height = pil.size
        assert pil.format == "JPEG"
    assert width + height <= 10_000
    assert max(width, height) / min(width, height) <= 20
    assert len(data) <= 10 * 1024 * 1024


def test_chat_preview_of_a_big_radiograph() -> None:
    data = telegram_photo_bytes(_file("RG1_UNCR.dcm"))
    with Image.open(io.BytesIO(data)) as pil:
        assert max(pil.size) == 1280
    assert len(data) < 1_500_000


def test_encodings_round_trip() -> None:
    picture = render_frame(_file("CT_small.dcm"), max_size=0)
    png = Image.open(io.BytesIO(encode(picture, "png")))
    assert np.array_equal(np.asarray(png), picture)  # PNG is exact
    jpeg = np.asarray(Image.open(io.BytesIO(encode(picture, "jpeg")))).astype(float)
    webp = np.asarray(Image.open(io.BytesIO(encode(picture, "webp"))).convert("L")).astype(float)
    assert np.abs(jpeg - picture).mean() < 3 and np.abs(webp - picture).mean() < 4
    with pytest.raises(ValueError):
        encode(picture, "bmp")


def test_jpeg_quality_steps_down_to_fit_a_budget() -> None:
    noise = np.random.default_rng(4).integers(0, 256, size=(512, 512), dtype=np.uint8)
    generous = encode_within(noise, 10_000_000)
    tight = encode_within(noise, 150_000)
    assert len(tight) < len(generous)


def test_overlay_runs_last_on_the_output() -> None:
    seen: list[tuple[tuple[int, ...], View]] = []

    def overlay(pixels: np.ndarray, view: View) -> np.ndarray:
        seen.append((pixels.shape, view))
        out = pixels.copy()
        out[0, 0] = 255
        return out

    result = render(_file("CT_small.dcm"), rotate=90, max_size=64, overlay=overlay)
    assert seen == [((64, 64), View(rotate=90))]
    assert result.pixels[0, 0] == 255


def test_rendered_pictures_can_be_drawn_on() -> None:
    for name in ("SC_rgb.dcm", "CT_small.dcm", "OBXXXX1A.dcm"):
        picture = render_frame(_file(name), max_size=0)
        picture[0, 0] = 0  # must not raise "assignment destination is read-only"
