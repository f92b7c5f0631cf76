from __future__ import annotations

import os

import numpy as np
import pytest

from longanim.engine.sequences import image_files
from longanim.engine.sequences.colorspace import to_display_float
from longanim.engine.errors import InputError, LonganimError
from longanim.engine.sequences.image_files import read_image, write_image
from longanim.engine.sequences.reader import open_sequence
from longanim.engine.sequences.writer import SequenceWriter


def test_path_for_follows_the_dot_convention(tmp_path):
    assert SequenceWriter(tmp_path, "shot").path_for(1001) == tmp_path / "shot.1001.png"
    assert SequenceWriter(tmp_path, "shot", "exr", padding=6).path_for(7) == tmp_path / "shot.000007.exr"
    assert SequenceWriter(tmp_path, "s", ".TIF").path_for(10000) == tmp_path / "s.10000.tif"


def test_defaults_follow_the_format(tmp_path):
    png, exr = SequenceWriter(tmp_path, "a"), SequenceWriter(tmp_path, "a", "exr")
    assert (png.depth, png.colorspace) == ("8", "srgb")
    assert (exr.depth, exr.colorspace) == ("half", "linear")


@pytest.mark.parametrize("kwargs,match", [
    (dict(ext="png", depth="half"), r"\.png output cannot store depth 'half'"),
    (dict(ext="exr", depth="16"), r"\.exr output cannot store depth '16'"),
    (dict(ext="exr", colorspace="srgb"), "scene-linear"),
    (dict(ext="png", colorspace="linear"), "not supported"),
    (dict(ext="gif"), r"unsupported image format '\.gif'"),
    (dict(padding=0), "bad frame padding"),
])
def test_bad_writer_settings(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        SequenceWriter(tmp_path, "a", **kwargs)


def test_bad_name(tmp_path):
    with pytest.raises(InputError, match="without folders"):
        SequenceWriter(tmp_path, "sub/shot")


def test_write_keeps_input_frame_numbers_and_makes_folders(tmp_path):
    src = tmp_path / "in"
    for n in (1001, 1002, 1005):
        write_image(src / f"shot.{n:04d}.png", np.full((4, 4, 3), n % 251, np.uint8))
    seq = open_sequence(src)
    out = SequenceWriter(tmp_path / "out" / "deep", seq.name, seq.ext, padding=seq.padding)
    written = [out.write(n, img.pixels) for n, img in seq]
    assert [p.name for p in written] == ["shot.1001.png", "shot.1002.png", "shot.1005.png"]
    result = open_sequence(tmp_path / "out" / "deep")
    assert result.frames == seq.frames and result.missing == [1003, 1004]
    assert all(np.array_equal(img.pixels, seq.read(n).pixels) for n, img in result)


def test_write_16_bit(tmp_path):
    px = np.random.default_rng(1).integers(0, 65536, (3, 5, 4), dtype=np.uint16)
    path = SequenceWriter(tmp_path, "s", depth="16").write(1, px)
    assert np.array_equal(read_image(path).pixels, px)


@pytest.mark.parametrize("rgb", [np.full((2, 3, 3), 0.5, np.float32), np.full((2, 3, 3), 128, np.uint8)])
def test_write_display_png_with_alpha(tmp_path, rgb):
    alpha = np.array([[0.0, 0.5, 1.0], [1.0, 1.0, 1.0]], np.float32)
    path = SequenceWriter(tmp_path, "c").write_display(12, rgb, alpha=alpha)
    px = read_image(path).pixels
    assert px.dtype == np.uint8 and px.shape == (2, 3, 4)
    assert px[0, :, 3].tolist() == [0, 128, 255]
    assert px[0, 0, :3].tolist() == [128, 128, 128]


def test_write_display_16_bit_without_alpha(tmp_path):
    path = SequenceWriter(tmp_path, "c", "tif", depth="16").write_display(3, np.full((2, 2, 3), 0.25, np.float32))
    px = read_image(path).pixels
    assert px.dtype == np.uint16 and px.shape == (2, 2, 3) and px[0, 0, 0] == round(0.25 * 65535)


@pytest.mark.parametrize("depth", ["half", "float"])
def test_write_display_exr_is_linear_and_premultiplied(tmp_path, depth):
    rgb = np.random.default_rng(2).uniform(0, 1, (4, 5, 3)).astype(np.float32)
    alpha = np.full((4, 5), 0.5, np.float32)
    path = SequenceWriter(tmp_path, "c", "exr", depth=depth).write_display(1001, rgb, alpha=alpha)
    img = read_image(path)
    assert img.colorspace == "linear" and img.depth == depth
    srgb_mid = img.pixels[..., :3].astype(np.float32) / 0.5
    assert not np.allclose(srgb_mid, rgb, atol=0.01)  # really linearised, not stored as display values
    back = to_display_float(img)
    assert np.allclose(back[..., :3], rgb, atol=2e-3) and np.allclose(back[..., 3], 0.5)


def test_write_display_rejects_mismatched_alpha(tmp_path):
    with pytest.raises(InputError, match="alpha of shape"):
        SequenceWriter(tmp_path, "c").write_display(1, np.zeros((2, 2, 3), np.float32), alpha=np.zeros((3, 2)))


def test_failed_write_leaves_no_frame_and_no_temp(tmp_path, monkeypatch):
    out = SequenceWriter(tmp_path, "shot")
    out.write(1, np.zeros((2, 2, 3), np.uint8))

    def boom(src, dst):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(image_files.os, "replace", boom)
    with pytest.raises(LonganimError, match=r"shot\.0002\.png: cannot write: Permission denied"):
        out.write_display(2, np.zeros((2, 2, 3), np.float32))
    assert sorted(os.listdir(tmp_path)) == ["shot.0001.png"]


def test_reader_does_not_see_a_frame_being_written(tmp_path, monkeypatch):
    out = SequenceWriter(tmp_path, "shot")
    out.write(1, np.zeros((2, 2, 3), np.uint8))
    seen = {}
    real = image_files._write_bytes

    def write_then_look(tmp, data):
        real(tmp, data)
        seen["files"] = sorted(os.listdir(tmp_path))
        seen["frames"] = open_sequence(tmp_path).frames
        seen["pattern"] = open_sequence(tmp_path / "shot.####.png").frames

    monkeypatch.setattr(image_files, "_write_bytes", write_then_look)
    out.write(2, np.zeros((2, 2, 3), np.uint8))
    assert len(seen["files"]) == 2  # the temp file really was there
    assert seen["frames"] == [1] and seen["pattern"] == [1]
    assert open_sequence(tmp_path).frames == [1, 2]
