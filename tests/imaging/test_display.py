"""The display pipeline stages on small arrays and on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space

from imaging import display
from imaging.decode import decode_frame, open_image
from imaging.display import WindowChoice
from imaging.render import render_frame


def _file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path))


def _ds(**attrs: object) -> Dataset:
    ds = Dataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def test_rescale_slope_and_intercept() -> None:
    stored = np.array([[0, 1000], [2000, 4095]], dtype=np.uint16)
    out = display.apply_modality_lut(stored, _ds(RescaleSlope="2", RescaleIntercept="-1024"))
    assert out.tolist() == [[-1024, 976], [2976, 7166]]


def test_modality_lut_sequence_on_a_real_file() -> None:
    image = open_image(_file("mlut_18.dcm"))
    stored = decode_frame(image).pixels
    item = image.ds.ModalityLUTSequence[0]
    first = int(item.LUTDescriptor[1])
    lut = np.frombuffer(item.LUTData, "<u2") if isinstance(item.LUTData, bytes) else np.asarray(item.LUTData)
    out = display.apply_modality_lut(stored, image.ds)
    expected = lut[np.clip(stored.astype(int) - first, 0, len(lut) - 1)]
    assert np.array_equal(out, expected)
    assert not np.array_equal(out, stored)  # the LUT really changed the values


def test_linear_window_follows_the_dicom_formula() -> None:
    # c=40, w=80: x <= c - 0.5 - (w-1)/2 = 0 gives 0; x > c - 0.5 + (w-1)/2 = 79 gives 1.
    x = np.array([-100, 0, 1, 39.5, 79, 80, 500], dtype=np.float32)
    out = display.apply_window(x, 40, 80, "LINEAR")
    assert out[0] == 0 and out[1] == 0 and out[5] == 1 and out[6] == 1
    assert out[3] == pytest.approx(0.5)
    assert out[2] == pytest.approx(1 / 79)


def test_linear_exact_and_sigmoid() -> None:
    x = np.array([0, 20, 40, 60, 80], dtype=np.float32)
    assert display.apply_window(x, 40, 80, "LINEAR_EXACT").tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    sig = display.apply_window(x, 40, 80, "SIGMOID")
    assert sig[2] == pytest.approx(0.5)
    assert sig[4] == pytest.approx(1 / (1 + np.exp(-2)))
    assert np.all(np.diff(sig) > 0)


def test_stored_windows_with_explanations() -> None:
    ds = _ds(WindowCenter=["40", "400"], WindowWidth=["80", "1800"],
             WindowCenterWidthExplanation=["BRAIN", "BONE"], VOILUTFunction="SIGMOID")
    windows = display.stored_windows(ds)
    assert [(w.center, w.width, w.explanation, w.function) for w in windows] == [
        (40, 80, "BRAIN", "SIGMOID"), (400, 1800, "BONE", "SIGMOID")]
    values = np.array([400.0], dtype=np.float32)
    unit, applied = display.apply_voi(values, ds, WindowChoice.stored(1))
    assert applied.explanation == "BONE" and unit[0] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        display.apply_voi(values, ds, WindowChoice.stored(5))


def test_voi_lut_sequence_on_a_real_file() -> None:
    image = open_image(_file("vlut_04.dcm"))
    stored = decode_frame(image).pixels
    modality = display.apply_modality_lut(stored, image.ds)
    unit, applied = display.apply_voi(modality, image.ds)
    assert applied.kind == "voi-lut"
    item = image.ds.VOILUTSequence[0]
    lut = np.asarray(item.LUTData, dtype=float)
    first = int(item.LUTDescriptor[1])
    expected = lut[np.clip(modality.astype(int) - first, 0, len(lut) - 1)]
    bits = int(item.LUTDescriptor[2])
    assert np.allclose(unit * (2**bits - 1), expected)


def test_presets_by_name() -> None:
    assert set(display.CT_PRESETS) == {"brain", "subdural", "stroke", "lung", "mediastinum", "abdomen",
                                       "liver", "bone"}
    hu = np.array([-1000, 0, 40, 80, 1000], dtype=np.float32)
    unit, applied = display.apply_voi(hu, Dataset(), WindowChoice.preset("Brain"))
    assert applied.kind == "preset" and applied.explanation == "brain"
    assert unit[0] == 0 and unit[-1] == 1 and 0.45 < unit[2] < 0.55
    with pytest.raises(ValueError):
        WindowChoice.preset("kidney")


def test_explicit_window_must_be_sane() -> None:
    with pytest.raises(ValueError):
        WindowChoice.explicit(40, 0)
    assert WindowChoice.explicit(-600, 1500).center == -600


def test_auto_window_ignores_padding_and_a_hot_pixel() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(100, 10, size=(64, 64)).astype(np.float32)
    values[:8] = -2000  # padding outside the field of view
    values[40, 40] = 60000  # one hot pixel
    mask = values == -2000
    center, width = display.auto_window(values, mask)
    assert 60 < center - width / 2 < 80 and 120 < center + width / 2 < 140


def test_auto_window_keeps_the_full_range_of_an_ordinary_image() -> None:
    values = np.linspace(0, 1000, 10000, dtype=np.float32)
    center, width = display.auto_window(values)
    assert (center, width) == pytest.approx((500, 1000))


def test_padding_mask_with_range_limit() -> None:
    stored = np.array([[0, 5, 10, 11]], dtype=np.int16)
    mask = display.padding_mask(stored, _ds(PixelPaddingValue=10, PixelPaddingRangeLimit=0))
    assert mask is not None and mask.tolist() == [[True, True, True, False]]


def test_saturated_window_is_white_not_black() -> None:
    # Every value above the window: the picture is white (nominal range, no min-max stretch).
    stored = np.full((4, 4), 3000, dtype=np.int16)
    ds = _ds(WindowCenter="40", WindowWidth="80", PhotometricInterpretation="MONOCHROME2")
    from imaging.render import grey_to_uint8

    out, _ = grey_to_uint8(stored, ds, "MONOCHROME2", WindowChoice())
    assert out.min() == 255


def test_monochrome1_is_inverted() -> None:
    unit = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    out = display.apply_presentation(unit, Dataset(), "MONOCHROME1")
    assert out.tolist() == [[1.0, 0.75, 0.0]]
    inverse = display.apply_presentation(unit, _ds(PresentationLUTShape="INVERSE"), "MONOCHROME2")
    assert inverse.tolist() == [[1.0, 0.75, 0.0]]


def test_ybr_full_to_rgb_matches_pydicom() -> None:
    rng = np.random.default_rng(2)
    ybr = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    ours = display.ybr_to_rgb(ybr)
    theirs = convert_color_space(ybr, "YBR_FULL", "RGB").astype(np.float32)
    assert np.abs(ours - theirs).max() <= 1.0


def test_ybr_full_422_file_renders_like_its_rgb_original() -> None:
    rgb = render_frame(_file("SC_rgb.dcm"), max_size=0).astype(float)
    ybr = render_frame(_file("SC_ybr_full_422_uncompressed.dcm"), max_size=0).astype(float)
    assert np.abs(rgb - ybr).mean() < 3


def test_big_endian_palette_is_not_black() -> None:
    little = render_frame(_file("OBXXXX1A.dcm"), max_size=0)
    big = render_frame(_file("OBXXXX1A_expb.dcm"), max_size=0)
    assert little.ndim == 3 and len(np.unique(little.reshape(-1, 3), axis=0)) > 10
    assert np.array_equal(little, big)
    # pydicom 3.0.2's apply_color_lut reads the big-endian LUT words as little-endian:
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(_file("OBXXXX1A_expb.dcm"))
    theirs = apply_color_lut(ds.pixel_array, ds) / 257.0
    assert np.abs(theirs - little).mean() > 5  # theirs is nearly black where ours is right


def test_palette_lookup_matches_the_lut() -> None:
    image = open_image(_file("OBXXXX1A.dcm"))
    stored = decode_frame(image).pixels
    rgb = display.apply_palette(stored, image.ds)
    red = np.frombuffer(image.ds.RedPaletteColorLookupTableData, "<u2")
    first = int(image.ds.RedPaletteColorLookupTableDescriptor[1])
    expected = red[np.clip(stored.astype(int) - first, 0, len(red) - 1)] / 65535.0
    assert np.allclose(rgb[..., 0], expected, atol=1e-6)


def test_segmented_palette_renders_in_colour() -> None:
    ds = pydicom.dcmread(_file("gdcm-US-ALOKA-16.dcm"))
    assert "SegmentedRedPaletteColorLookupTableData" in ds
    out = render_frame(_file("gdcm-US-ALOKA-16.dcm"), max_size=0)
    assert out.ndim == 3 and len(np.unique(out.reshape(-1, 3), axis=0)) > 10


def test_to_uint8_rounds_over_the_full_range() -> None:
    assert display.to_uint8(np.array([0.0, 0.5, 1.0, 1.2, -0.1], dtype=np.float32)).tolist() == [
        0, 128, 255, 255, 0]


def test_default_window_is_the_first_stored_one() -> None:
    ds = pydicom.dcmread(_file("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = ["40", "400"], ["80", "1800"]
    first = render_frame(ds, max_size=0)
    explicit = render_frame(ds, window=WindowChoice.explicit(40, 80), max_size=0)
    second = render_frame(ds, window=WindowChoice.stored(1), max_size=0)
    assert np.array_equal(first, explicit)
    assert not np.array_equal(first, second)


def test_fast_8_bit_ybr_conversion_matches_the_formula() -> None:
    rng = np.random.default_rng(5)
    ybr = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    fast = display.ybr_to_rgb_8bit(ybr).astype(float)
    exact = display.ybr_to_rgb(ybr)
    assert np.abs(fast - exact).max() <= 2.0


def test_values_beyond_bits_stored_clamp_instead_of_wrapping() -> None:
    from imaging.render import grey_to_uint8

    ds = _ds(BitsStored=12, WindowCenter="2048", WindowWidth="4096")
    stored = np.array([[0, 4095, 5000, 65535]], dtype=np.uint16)
    out, _ = grey_to_uint8(stored, ds, "MONOCHROME2", WindowChoice())
    assert out.tolist() == [[0, 255, 255, 255]]
    signed = np.array([[-2048, 2047, 3000, -3000]], dtype=np.int16)
    ds_signed = _ds(BitsStored=12, WindowCenter="0", WindowWidth="4096")
    out, _ = grey_to_uint8(signed, ds_signed, "MONOCHROME2", WindowChoice())
    assert out.tolist() == [[0, 255, 255, 0]]


def test_enhanced_ct_window_and_rescale_come_from_the_functional_groups() -> None:
    path = _file("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert "WindowCenter" not in ds and "RescaleIntercept" not in ds
    frame_ds = display.frame_attributes(ds, 1)
    assert float(frame_ds.WindowCenter) == 49 and float(frame_ds.RescaleIntercept) == -1024
    from imaging.render import render

    result = render(path, 1, max_size=0)
    assert result.voi is not None and (result.voi.kind, result.voi.center, result.voi.width) == ("stored", 49, 102)
    hu_window = render_frame(path, 1, WindowChoice.explicit(49, 102), max_size=0)
    assert np.array_equal(result.pixels, hu_window)


def test_palette_to_rgb_fast_paths_agree_with_a_plain_lookup() -> None:
    from imaging.render import palette_to_rgb

    rng = np.random.default_rng(6)
    table = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    stored = rng.integers(0, 256, (50, 60), dtype=np.uint8)
    assert np.array_equal(palette_to_rgb(stored, table, 0), table[stored])
    table16 = rng.integers(0, 256, (4096, 3), dtype=np.uint8)
    stored16 = rng.integers(0, 5000, (50, 60)).astype(np.uint16)
    expected = table16[np.clip(stored16.astype(int) - 100, 0, 4095)]
    assert np.array_equal(palette_to_rgb(stored16, table16, 100), expected)


def test_counting_auto_window_agrees_with_the_sorting_one() -> None:
    from imaging.render import _auto_window_by_counting

    rng = np.random.default_rng(7)
    for dtype in (np.uint8, np.uint16, np.int16):
        for slope in (2.0, -1.0):
            values = rng.normal(100, 20, 50_000).astype(dtype)
            values[:5] = np.iinfo(dtype).max  # a few hot pixels
            ds = _ds(RescaleSlope=slope, RescaleIntercept=-1000)
            expected = display.auto_window(display.apply_modality_lut(values, ds))
            assert _auto_window_by_counting(values, None, ds, True) == pytest.approx(expected, abs=slope * 1.0)
