from __future__ import annotations

import os

import cv2
import numpy as np
import OpenEXR
import pytest

from longanim.engine.sequences import image_files
from longanim.engine.errors import InputError, LonganimError
from longanim.engine.sequences.image_files import ImageData, read_image, write_image
from longanim.engine.sequences.reader import FRAME_RE

RNG = np.random.default_rng(7)


def _random(dtype, shape):
    if np.dtype(dtype).kind == "u":
        return RNG.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    return RNG.uniform(-0.5, 4.0, size=shape).astype(dtype)


def _write_exr_channels(path, channels, header=None):
    OpenEXR.File(header or {}, channels).write(str(path))


# ----------------------------------------------------------------- round trips

@pytest.mark.parametrize("ext", ["png", "tif", "tiff"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_integer_formats_round_trip(tmp_path, ext, dtype, channels):
    pixels = _random(dtype, (5, 7, channels))
    path = tmp_path / f"shot.1001.{ext}"
    write_image(path, pixels)
    img = read_image(path)
    assert img.pixels.dtype == dtype and img.pixels.shape == (5, 7, channels)
    assert np.array_equal(img.pixels, pixels)
    assert img.colorspace == "srgb"
    assert img.depth == {np.uint8: "8", np.uint16: "16"}[dtype]


def test_float_tiff_round_trip(tmp_path):
    pixels = _random(np.float32, (4, 6, 4))
    write_image(tmp_path / "f.tif", pixels)
    img = read_image(tmp_path / "f.tif")
    assert img.depth == "float" and img.colorspace == "srgb"
    assert np.array_equal(img.pixels, pixels)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_channel_order_on_disk_is_what_other_tools_expect(tmp_path, ext):
    red = np.zeros((2, 2, 4), np.uint8)
    red[..., 0] = 255
    red[..., 3] = 77
    write_image(tmp_path / f"r.{ext}", red)
    bgra = cv2.imread(str(tmp_path / f"r.{ext}"), cv2.IMREAD_UNCHANGED)
    assert bgra[0, 0].tolist() == [0, 0, 255, 77]
    assert read_image(tmp_path / f"r.{ext}").pixels[0, 0].tolist() == [255, 0, 0, 77]


@pytest.mark.parametrize("depth,dtype", [("half", np.float16), ("float", np.float32)])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_exr_round_trip(tmp_path, depth, dtype, channels):
    pixels = _random(dtype, (6, 5, channels))
    path = tmp_path / "beauty.0001.exr"
    write_image(path, pixels)
    img = read_image(path)
    assert img.colorspace == "linear" and img.depth == depth
    assert img.pixels.shape == (6, 5, channels)
    assert np.array_equal(img.pixels, pixels)
    names = set(OpenEXR.File(str(path), separate_channels=True).channels())
    assert names == {1: {"Y"}, 3: {"R", "G", "B"}, 4: {"R", "G", "B", "A"}}[channels]


def test_exr_separately_named_channels_are_stacked_in_rgba_order(tmp_path):
    planes = {c: np.full((3, 4), v, np.float32) for c, v in zip("RGBA", (0.1, 0.2, 0.3, 0.4))}
    _write_exr_channels(tmp_path / "sep.exr", planes)
    px = read_image(tmp_path / "sep.exr").pixels
    assert px.shape == (3, 4, 4)
    assert np.allclose(px[0, 0], [0.1, 0.2, 0.3, 0.4])


def test_exr_mixed_half_and_float_channels_promote_to_float(tmp_path):
    planes = {"R": np.full((2, 2), 0.5, np.float16), "G": np.full((2, 2), 0.25, np.float16),
              "B": np.full((2, 2), 2.0, np.float16), "A": np.full((2, 2), 0.75, np.float32)}
    _write_exr_channels(tmp_path / "mix.exr", planes)
    img = read_image(tmp_path / "mix.exr")
    assert img.depth == "float"
    assert img.pixels[1, 1].tolist() == [0.5, 0.25, 2.0, 0.75]


def test_exr_luminance_with_alpha_becomes_grey_rgba(tmp_path):
    _write_exr_channels(tmp_path / "ya.exr", {"Y": np.full((2, 3), 0.3, np.float32),
                                              "A": np.full((2, 3), 0.6, np.float32)})
    px = read_image(tmp_path / "ya.exr").pixels
    assert px.shape == (2, 3, 4)
    assert np.allclose(px[0, 0], [0.3, 0.3, 0.3, 0.6])


def test_exr_single_layer_prefix_is_accepted(tmp_path):
    planes = {f"beauty.{c}": np.full((2, 2), v, np.float32) for c, v in zip("RGB", (1.0, 2.0, 3.0))}
    planes["depth.Z"] = np.zeros((2, 2), np.float32)
    _write_exr_channels(tmp_path / "layer.exr", planes)
    assert read_image(tmp_path / "layer.exr").pixels[0, 0].tolist() == [1.0, 2.0, 3.0]


def test_exr_blender_multilayer_picks_the_combined_pass(tmp_path):
    planes = {}
    for layer, v in (("ViewLayer.Combined", 0.5), ("ViewLayer.DiffCol", 0.9)):
        for c in "RGBA":
            planes[f"{layer}.{c}"] = np.full((2, 2), v, np.float32)
    _write_exr_channels(tmp_path / "blender.exr", planes)
    assert read_image(tmp_path / "blender.exr").pixels[0, 0].tolist() == [0.5] * 4


def test_exr_several_layers_is_an_error_naming_them(tmp_path):
    planes = {f"{layer}.{c}": np.zeros((2, 2), np.float32) for layer in ("diffuse", "specular") for c in "RGB"}
    _write_exr_channels(tmp_path / "two.exr", planes)
    with pytest.raises(InputError, match=r"two\.exr.*diffuse.*specular"):
        read_image(tmp_path / "two.exr")


def test_exr_without_colour_channels_is_an_error(tmp_path):
    _write_exr_channels(tmp_path / "z.exr", {"Z": np.zeros((2, 2), np.float32)})
    with pytest.raises(InputError, match=r"z\.exr.*no R,G,B or Y.*Z"):
        read_image(tmp_path / "z.exr")


def test_exr_data_window_is_placed_on_the_display_window(tmp_path):
    header = {"dataWindow": (np.array([2, 1], np.int32), np.array([4, 2], np.int32)),
              "displayWindow": (np.array([0, 0], np.int32), np.array([5, 3], np.int32))}
    _write_exr_channels(tmp_path / "crop.exr", {"Y": np.ones((2, 3), np.float32)}, header)
    px = read_image(tmp_path / "crop.exr").pixels[..., 0]
    expected = np.zeros((4, 6), np.float32)
    expected[1:3, 2:5] = 1
    assert np.array_equal(px, expected)


# ----------------------------------------------------------------- bad input

def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.png: no such file"):
        read_image(tmp_path / "nope.png")


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)


def test_unsupported_extension(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match=r"notes\.txt: unsupported image format '\.txt'"):
        read_image(tmp_path / "notes.txt")


def test_truncated_png(tmp_path):
    path = tmp_path / "cut.png"
    write_image(path, _random(np.uint8, (32, 32, 3)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.png: cannot decode .*truncated"):
        read_image(path)


def test_empty_png(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.png"):
        read_image(tmp_path / "empty.png")


def test_not_an_exr(tmp_path):
    (tmp_path / "fake.exr").write_bytes(b"PNG pretending")
    with pytest.raises(InputError, match=r"fake\.exr: not an OpenEXR file"):
        read_image(tmp_path / "fake.exr")


def test_truncated_exr(tmp_path):
    path = tmp_path / "cut.exr"
    write_image(path, _random(np.float32, (64, 64, 3)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match=r"cut\.exr"):
        read_image(path)


# ----------------------------------------------------------------- writing

def test_depth_conversion_rescales_without_colour_change(tmp_path):
    px16 = np.array([[[0, 257, 65535]]], np.uint16)
    write_image(tmp_path / "a.png", px16, depth="8")
    assert read_image(tmp_path / "a.png").pixels.tolist() == [[[0, 1, 255]]]
    write_image(tmp_path / "b.exr", np.array([[[0, 51, 255]]], np.uint8), depth="float")
    assert np.allclose(read_image(tmp_path / "b.exr").pixels, [[[0, 0.2, 1.0]]])


def test_2d_array_is_written_as_one_channel(tmp_path):
    write_image(tmp_path / "g.png", np.full((3, 4), 9, np.uint8))
    assert read_image(tmp_path / "g.png").pixels.shape == (3, 4, 1)


@pytest.mark.parametrize("name,pixels,depth,match", [
    ("a.png", np.zeros((2, 2, 3), np.float16), None, r"\.png cannot store depth 'half'"),
    ("a.exr", np.zeros((2, 2, 3), np.uint8), "8", r"\.exr cannot store depth '8'"),
    ("a.png", np.zeros((2, 2, 2), np.uint8), None, "shape"),
    ("a.png", np.zeros((2, 2, 3), np.int32), None, "dtype int32"),
    ("a.bmp", np.zeros((2, 2, 3), np.uint8), None, r"unsupported image format '\.bmp'"),
    ("a.jpg", np.zeros((2, 2, 4), np.uint8), None, "JPEG cannot store alpha"),
])
def test_write_rejects_what_the_format_cannot_hold(tmp_path, name, pixels, depth, match):
    with pytest.raises(InputError, match=match):
        write_image(tmp_path / name, pixels, depth=depth)
    assert os.listdir(tmp_path) == []


def test_write_creates_missing_folders(tmp_path):
    write_image(tmp_path / "a" / "b" / "x.png", np.zeros((1, 1, 3), np.uint8))
    assert (tmp_path / "a" / "b" / "x.png").is_file()


def test_temp_name_is_hidden_and_never_a_frame():
    for target in ("shot.1001.png", "0001.exr", "shot_0001.tif", "x.png"):
        tmp = image_files.temp_path_for(image_files.Path("/out") / target)
        assert tmp.parent == image_files.Path("/out")
        assert tmp.name.startswith(".")
        assert FRAME_RE.match(tmp.name) is None


@pytest.mark.parametrize("ext", ["png", "exr"])
def test_failed_rename_leaves_no_file_and_no_temp(tmp_path, monkeypatch, ext):
    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(image_files.os, "replace", boom)
    with pytest.raises(LonganimError, match=rf"shot\.1001\.{ext}: cannot write: No space"):
        write_image(tmp_path / f"shot.1001.{ext}", np.ones((4, 4, 3), np.float32 if ext == "exr" else np.uint8))
    assert os.listdir(tmp_path) == []


def test_encoder_failure_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "shot.1001.png"
    write_image(target, np.zeros((4, 4, 3), np.uint8))
    before = target.read_bytes()

    def half_then_fail(tmp, data):
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(image_files, "_write_bytes", half_then_fail)
    with pytest.raises(LonganimError, match="Input/output error"):
        write_image(target, np.full((4, 4, 3), 200, np.uint8))
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["shot.1001.png"]


def test_exr_encoder_failure_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(OpenEXR.File, "write", fail)
    with pytest.raises(LonganimError, match=r"shot\.1001\.exr: cannot write EXR: encoder exploded"):
        write_image(tmp_path / "shot.1001.exr", np.ones((2, 2, 3), np.float16))
    assert os.listdir(tmp_path) == []


def test_image_data_properties():
    img = ImageData(np.zeros((3, 5, 4), np.float16), "linear")
    assert (img.height, img.width, img.channels, img.depth) == (3, 5, 4, "half")


def test_float_to_half_clamps_instead_of_overflowing(tmp_path):
    write_image(tmp_path / "big.exr", np.array([[[1e6, -1e6, 3.5]]], np.float32), depth="half")
    assert read_image(tmp_path / "big.exr").pixels.tolist() == [[[65504.0, -65504.0, 3.5]]]
