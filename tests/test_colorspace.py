from __future__ import annotations

import numpy as np
import pytest

from longanim.engine.sequences.colorspace import (from_display_float, linear_to_srgb, srgb_to_linear,
                                        to_display_float, to_uint8_display)
from longanim.engine.errors import InputError
from longanim.engine.sequences.image_files import ImageData, read_image, write_image


def test_transfer_function_reference_values():
    # IEC 61966-2-1 values, computed by hand from the piecewise definition.
    assert srgb_to_linear(0.5) == pytest.approx(0.21404114, abs=1e-6)
    assert linear_to_srgb(0.18) == pytest.approx(0.46135613, abs=1e-6)
    assert srgb_to_linear(0.04045) == pytest.approx(0.04045 / 12.92, abs=1e-7)
    assert linear_to_srgb(0.002) == pytest.approx(0.002 * 12.92, abs=1e-7)
    assert srgb_to_linear(1.0) == pytest.approx(1.0, abs=1e-6)
    assert linear_to_srgb(1.0) == pytest.approx(1.0, abs=1e-6)


def test_transfer_functions_are_float32_monotonic_and_inverse():
    x = np.linspace(0, 1, 4097, dtype=np.float32)
    lin = srgb_to_linear(x)
    back = linear_to_srgb(lin)
    assert lin.dtype == np.float32 and back.dtype == np.float32
    assert np.all(np.diff(lin) > 0) and np.all(np.diff(back) > 0)
    assert np.max(np.abs(back - x)) < 2e-6
    # continuous at the knees
    assert abs(float(srgb_to_linear(0.04045 + 1e-6)) - float(srgb_to_linear(0.04045))) < 1e-6
    assert abs(float(linear_to_srgb(0.0031308 + 1e-7)) - float(linear_to_srgb(0.0031308))) < 1e-5


def test_out_of_range_linear_clips_for_display():
    out = linear_to_srgb(np.array([-1.0, 0.0, 1.0, 7.5, np.nan, np.inf, -np.inf], np.float32))
    assert out.tolist() == pytest.approx([0, 0, 1, 1, 0, 1, 0], abs=1e-6)


def test_integer_images_scale_exactly():
    img8 = ImageData(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), "srgb")
    disp = to_display_float(img8)
    assert disp.dtype == np.float32 and disp.min() == 0 and disp.max() == 1
    assert np.array_equal(from_display_float(disp, "8", "srgb"), img8.pixels)
    assert np.array_equal(to_uint8_display(img8), img8.pixels)

    img16 = ImageData(np.arange(65536, dtype=np.uint16).reshape(256, 256, 1), "srgb")
    assert np.array_equal(from_display_float(to_display_float(img16), "16", "srgb"), img16.pixels)
    assert to_uint8_display(img16)[0, 128, 0] == 0 and to_uint8_display(img16)[255, 255, 0] == 255


def test_rounding_is_to_nearest():
    assert from_display_float(np.array([[[0.5, 0.499, 0.002]]], np.float32), "8", "srgb").tolist() == \
        [[[128, 127, 1]]]
    assert from_display_float(np.array([[[-0.2, 1.7, np.nan]]], np.float32), "16", "srgb").tolist() == \
        [[[0, 65535, 0]]]


def test_png_alpha_is_not_gamma_converted():
    img = ImageData(np.array([[[255, 128, 0, 128]]], np.uint8), "srgb")
    assert to_display_float(img)[0, 0, 3] == pytest.approx(128 / 255)


def test_exr_goes_through_the_transfer_function():
    img = ImageData(np.array([[[0.18, 1.0, 4.0]]], np.float16), "linear")
    disp = to_display_float(img)
    assert disp.dtype == np.float32
    assert disp[0, 0].tolist() == pytest.approx([float(linear_to_srgb(np.float16(0.18))), 1.0, 1.0], abs=1e-6)
    assert to_uint8_display(img)[0, 0].tolist() == [118, 255, 255]


def test_exr_alpha_is_untouched_and_colour_unpremultiplied():
    straight = np.array([0.18, 0.5, 0.02], np.float32)
    alpha = np.float32(0.25)
    img = ImageData(np.array([[[*(straight * alpha), alpha]]], np.float32), "linear")
    disp = to_display_float(img)
    assert disp[0, 0, 3] == pytest.approx(0.25)
    assert disp[0, 0, :3] == pytest.approx(linear_to_srgb(straight), abs=1e-6)


def test_float_tiff_is_display_referred():
    img = ImageData(np.array([[[0.5, 1.5, -0.1]]], np.float32), "srgb")
    assert to_display_float(img)[0, 0].tolist() == pytest.approx([0.5, 1.0, 0.0])


@pytest.mark.parametrize("depth,dtype", [("half", np.float16), ("float", np.float32)])
@pytest.mark.parametrize("channels", [3, 4])
def test_exr_linear_display_linear_round_trip_within_half_precision(tmp_path, depth, dtype, channels):
    rng = np.random.default_rng(3)
    pixels = rng.uniform(0, 1, (8, 9, channels)).astype(np.float32)
    if channels == 4:
        pixels[..., 3] = rng.uniform(0.05, 1, (8, 9))
        pixels[..., :3] *= pixels[..., 3:]  # valid premultiplied data
    pixels = pixels.astype(dtype)
    write_image(tmp_path / "lin.exr", pixels)
    img = read_image(tmp_path / "lin.exr")
    back = from_display_float(to_display_float(img), depth, "linear")
    assert back.dtype == dtype
    tol = np.abs(pixels.astype(np.float32)) * (2.0 ** -10) + 1e-6 if dtype == np.float16 else 1e-5
    assert np.all(np.abs(back.astype(np.float32) - pixels.astype(np.float32)) <= tol)


def test_from_display_accepts_uint8_and_two_dimensional():
    out = from_display_float(np.full((2, 2), 255, np.uint8), "float", "linear")
    assert out.shape == (2, 2, 1) and np.allclose(out, 1.0)


@pytest.mark.parametrize("depth,colorspace,match", [
    ("8", "linear", "cannot hold scene-linear"),
    ("half", "acescg", "unknown colorspace"),
    ("12", "srgb", "unknown depth"),
])
def test_from_display_rejects_bad_targets(depth, colorspace, match):
    with pytest.raises(InputError, match=match):
        from_display_float(np.zeros((2, 2, 3), np.float32), depth, colorspace)


def test_from_display_rejects_bad_shapes():
    with pytest.raises(InputError, match="shape"):
        from_display_float(np.zeros((2, 2, 2), np.float32), "8", "srgb")


# The lookup tables for half and 8-bit values must give the transfer function's own bits.

def _every_half(channels: int) -> np.ndarray:
    """Every one of the 65,536 half floats (NaNs, infinities, negatives and subnormals
    included) in each colour channel, at shuffled places."""
    rng = np.random.default_rng(7)
    bits = np.stack([rng.permutation(65536) for _ in range(channels)], axis=-1).astype(np.uint16)
    return bits.reshape(256, 256, channels).view(np.float16)


def test_half_exr_to_display_is_the_transfer_functions_bits():
    pixels = _every_half(3)
    looked_up = to_display_float(ImageData(pixels, "linear"))
    computed = to_display_float(ImageData(pixels.astype(np.float32), "linear"))  # float32: no table
    assert looked_up.dtype == np.float32
    np.testing.assert_array_equal(looked_up.view(np.uint32), computed.view(np.uint32))


def test_half_rgba_to_display_is_the_transfer_functions_bits():
    pixels = _every_half(4)
    alpha = pixels[..., 3]
    alpha[:64] = 1.0  # opaque rows, clear rows, soft rows (and, from the shuffle, every odd alpha)
    alpha[64:128] = 0.0
    alpha[128:160] = np.float16(0.37)
    looked_up = to_display_float(ImageData(pixels, "linear"))
    computed = to_display_float(ImageData(pixels.astype(np.float32), "linear"))
    np.testing.assert_array_equal(looked_up.view(np.uint32), computed.view(np.uint32))


@pytest.mark.parametrize("depth", ["half", "float"])
@pytest.mark.parametrize("channels", [3, 4])
def test_8bit_display_to_linear_is_the_transfer_functions_bits(depth, channels):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (64, 256, channels), dtype=np.uint8)
    rgb[0, :, :3] = np.arange(256)[:, None]  # every value
    looked_up = from_display_float(rgb, depth, "linear")
    computed = from_display_float(rgb.astype(np.float32) / np.float32(255), depth, "linear")
    assert looked_up.dtype == computed.dtype
    np.testing.assert_array_equal(looked_up, computed)


def test_8bit_display_with_a_separate_alpha_is_premultiplied_as_before():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    alpha = rng.random((32, 64), dtype=np.float32)
    alpha[:8] = 1.0
    computed = from_display_float(np.concatenate([rgb / np.float32(255), alpha[..., None]], axis=-1), "half", "linear")
    np.testing.assert_array_equal(from_display_float(rgb, "half", "linear", alpha=alpha), computed)
    # Display formats: the same 8-bit colour and the alpha quantized beside it.
    png = from_display_float(rgb, "8", "srgb", alpha=alpha)
    assert png.shape == (32, 64, 4) and np.array_equal(png[..., :3], rgb)
