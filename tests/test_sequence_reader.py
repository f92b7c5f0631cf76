from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from longanim.engine.sequences import reader
from longanim.engine.errors import InputError
from longanim.engine.sequences.image_files import write_image
from longanim.engine.sequences.reader import (frame_number_from_path, open_sequence, parse_frame_range,
                                         parse_ref_arg)


def make_frames(folder: Path, pattern: str, numbers, size=(6, 8), channels=3, dtype=np.uint8):
    """Frame n is filled with n % 251 so reads can be checked against their number."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    paths = []
    for n in numbers:
        path = folder / pattern.format(n)
        write_image(path, np.full((h, w, channels), n % 251, dtype))
        paths.append(path)
    return paths


# ----------------------------------------------------------------- discovery

def test_folder_with_one_sequence(tmp_path):
    make_frames(tmp_path, "shot.{:04d}.png", range(1001, 1006))
    (tmp_path / "notes.txt").write_text("ignored")
    seq = open_sequence(tmp_path)
    assert (seq.name, seq.ext, seq.padding, seq.width, seq.height) == ("shot", "png", 4, 8, 6)
    assert seq.frames == [1001, 1002, 1003, 1004, 1005] and seq.missing == []
    assert seq.path_for(1003) == tmp_path / "shot.1003.png"
    assert seq.path_for(999) is None
    assert seq.read(1004).pixels[0, 0, 0] == 1004 % 251


@pytest.mark.parametrize("pattern", ["shot.####.exr", "shot.%04d.exr", "shot.%d.exr"])
def test_patterns(tmp_path, pattern):
    make_frames(tmp_path, "shot.{:04d}.exr", [1, 2, 3], dtype=np.float16)
    make_frames(tmp_path, "other.{:04d}.exr", [1, 2], dtype=np.float16)
    seq = open_sequence(tmp_path / pattern)
    assert seq.frames == [1, 2, 3] and seq.padding == 4 and seq.ext == "exr"
    assert seq.read(2).colorspace == "linear"


def test_hash_count_is_exact_padding(tmp_path):
    make_frames(tmp_path, "a.{:03d}.png", [1, 2])
    make_frames(tmp_path, "a.{:04d}.png", [5, 6])
    assert open_sequence(tmp_path / "a.###.png").frames == [1, 2]
    assert open_sequence(tmp_path / "a.####.png").frames == [5, 6]
    with pytest.raises(InputError, match=r"a\.#####\.png: no files match .*a\.01001\.png"):
        open_sequence(tmp_path / "a.#####.png")


def test_single_hash_is_unpadded(tmp_path):
    make_frames(tmp_path, "u.{}.png", [1, 2, 10, 11])
    seq = open_sequence(tmp_path / "u.#.png")
    assert seq.frames == [1, 2, 10, 11] and seq.padding == 1
    assert seq.missing == list(range(3, 10))


def test_frames_past_the_padding_belong_to_the_sequence(tmp_path):
    make_frames(tmp_path, "s.{:04d}.png", [9998, 9999, 10000])
    assert open_sequence(tmp_path).frames == [9998, 9999, 10000]
    assert open_sequence(tmp_path / "s.####.png").frames == [9998, 9999, 10000]


def test_unpadded_four_digit_frames(tmp_path):
    make_frames(tmp_path, "s.{}.png", [1001, 1002])
    seq = open_sequence(tmp_path)
    assert seq.padding == 4 and seq.frames == [1001, 1002]


@pytest.mark.parametrize("pattern,name", [("shot_{:04d}.tif", "shot"), ("shot{:05d}.tif", "shot")])
def test_other_naming_conventions(tmp_path, pattern, name):
    make_frames(tmp_path, pattern, [7, 8])
    seq = open_sequence(tmp_path)
    assert seq.name == name and seq.frames == [7, 8] and seq.ext == "tif"
    assert seq.path_for(8) == tmp_path / pattern.format(8)


def test_blender_default_names_take_the_folder_name(tmp_path):
    make_frames(tmp_path / "render", "{:04d}.png", [1, 2])
    seq = open_sequence(tmp_path / "render")
    assert seq.name == "render" and seq.frames == [1, 2]


def test_single_file_is_a_one_frame_sequence(tmp_path):
    make_frames(tmp_path, "shot.{:04d}.png", [1039, 1040, 1041])
    seq = open_sequence(tmp_path / "shot.1040.png")
    assert seq.frames == [1040] and seq.name == "shot" and seq.padding == 4
    assert seq.read(1040).pixels[0, 0, 0] == 1040 % 251


def test_unnumbered_single_file_is_frame_one(tmp_path):
    write_image(tmp_path / "ref.png", np.zeros((3, 3, 4), np.uint8))
    seq = open_sequence(tmp_path / "ref.png")
    assert seq.frames == [1] and seq.name == "ref" and seq.path_for(1) == tmp_path / "ref.png"
    assert seq.read(1).pixels.shape == (3, 3, 4)


def test_in_flight_temp_files_are_not_frames(tmp_path):
    make_frames(tmp_path, "shot.{:04d}.png", [1, 2])
    (tmp_path / ".shot.0003.png.partial-0123abcd").write_bytes(b"half a png")
    assert open_sequence(tmp_path).frames == [1, 2]
    assert open_sequence(tmp_path / "shot.####.png").frames == [1, 2]


# ----------------------------------------------------------------- ranges and gaps

def test_gaps_are_reported_and_skipped(tmp_path):
    make_frames(tmp_path, "g.{:04d}.png", [1, 2, 5, 6, 9])
    seq = open_sequence(tmp_path)
    assert seq.missing == [3, 4, 7, 8]
    assert [n for n, _ in seq] == [1, 2, 5, 6, 9]
    with pytest.raises(InputError, match=r"frame 3 is not in the sequence .*1-9, 5 frames, 4 missing"):
        seq.read(3)


def test_frame_range_restricts(tmp_path):
    make_frames(tmp_path, "g.{:04d}.png", [1001, 1002, 1004, 1005, 1006])
    seq = open_sequence(tmp_path, frames=(1002, 1005))
    assert seq.frames == [1002, 1004, 1005] and seq.missing == [1003]
    with pytest.raises(InputError, match="frame 1001 is not in"):
        seq.read(1001)


@pytest.mark.parametrize("source", ["", "g.####.png"])
def test_frame_range_outside_names_available_range(tmp_path, source):
    make_frames(tmp_path, "g.{:04d}.png", range(1001, 1011))
    with pytest.raises(InputError, match=r"no frames in the requested range 2000-2100; available: 1001-1010"):
        open_sequence(tmp_path / source, frames=(2000, 2100))


def test_iteration_streams_one_frame_at_a_time(tmp_path, monkeypatch):
    make_frames(tmp_path, "s.{:04d}.png", range(1, 6))
    seq = open_sequence(tmp_path)
    reads = []
    real = reader.read_image
    monkeypatch.setattr(reader, "read_image", lambda p: reads.append(Path(p).name) or real(p))
    it = iter(seq)
    n, img = next(it)
    assert n == 1 and reads == ["s.0001.png"]
    assert [n for n, _ in it] == [2, 3, 4, 5]
    assert len(reads) == 5


# ----------------------------------------------------------------- video

def _write_video(path: Path, fourcc: str, n=6, size=(48, 32)):
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 24, (w, h))
    if not writer.isOpened():
        pytest.skip(f"cv2 cannot write {fourcc} {path.suffix} here")
    for i in range(n):
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[..., 2] = 40 * i  # red ramps with the frame index
        bgr[..., 0] = 200     # constant blue
        writer.write(bgr)
    writer.release()
    return path


def _red(img):
    return float(img.pixels[..., 0].mean())


@pytest.mark.parametrize("name,fourcc", [("clip.mp4", "mp4v"), ("clip.avi", "MJPG")])
def test_video_sequence(tmp_path, name, fourcc):
    path = _write_video(tmp_path / name, fourcc)
    with open_sequence(path) as seq:
        assert seq.is_video
        assert (seq.name, seq.ext, seq.padding) == ("clip", "png", 4)
        assert seq.frames == [1, 2, 3, 4, 5, 6] and (seq.width, seq.height) == (48, 32)
        assert seq.path_for(1) is None
        reds = [_red(img) for _, img in seq]
        assert reds == pytest.approx([40 * i for i in range(6)], abs=6)
        first = seq.read(1).pixels
        assert first.shape == (32, 48, 3) and first[..., 2].mean() == pytest.approx(200, abs=6)  # RGB order
        # random access, backwards and forwards, and repeats from the cache
        for n in (5, 2, 6, 3, 3, 1):
            assert _red(seq.read(n)) == pytest.approx(40 * (n - 1), abs=6)


def test_video_frame_range(tmp_path):
    path = _write_video(tmp_path / "clip.mp4", "mp4v")
    with open_sequence(path, frames=(3, 4)) as seq:
        assert seq.frames == [3, 4]
        assert _red(seq.read(4)) == pytest.approx(120, abs=6)
    with pytest.raises(InputError, match=r"clip\.mp4: no frames in the requested range 10-12; available: 1-6"):
        open_sequence(path, frames=(10, 12))


def test_corrupt_video(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"not a movie at all")
    with pytest.raises(InputError, match=r"junk\.mp4: cannot open video"):
        open_sequence(tmp_path / "junk.mp4")


# ----------------------------------------------------------------- bad input

def test_missing_path(tmp_path):
    with pytest.raises(InputError, match=r"nowhere: no such file or folder"):
        open_sequence(tmp_path / "nowhere")


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match=rf"{tmp_path.name}: no image sequence found"):
        open_sequence(tmp_path)


def test_folder_with_only_unnumbered_images(tmp_path):
    write_image(tmp_path / "poster.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(InputError, match=r"no image sequence found.*poster\.png"):
        open_sequence(tmp_path)


def test_two_sequences_in_one_folder(tmp_path):
    make_frames(tmp_path, "line.{:04d}.png", [1, 2])
    make_frames(tmp_path, "matte.{:04d}.png", [1, 2, 3])
    with pytest.raises(InputError, match=r"several image sequences: line\.####\.png \(1-2, 2 frames\); "
                                         r"matte\.####\.png \(1-3, 3 frames\)\. Pass one as a pattern"):
        open_sequence(tmp_path)


def test_same_name_with_two_paddings_is_two_sequences(tmp_path):
    make_frames(tmp_path, "a.{:03d}.png", [1, 2])
    make_frames(tmp_path, "a.{:04d}.png", [1, 2])
    with pytest.raises(InputError, match=r"a\.###\.png.*a\.####\.png"):
        open_sequence(tmp_path)
    with pytest.raises(InputError, match="several image sequences"):
        open_sequence(tmp_path / "a.%d.png")


def test_mismatched_frame_sizes(tmp_path):
    make_frames(tmp_path, "m.{:04d}.png", [1, 2])
    make_frames(tmp_path, "m.{:04d}.png", [3], size=(10, 8))
    seq = open_sequence(tmp_path)
    with pytest.raises(InputError, match=r"m\.0003\.png: size 8x10 differs from the sequence's 8x6"):
        list(seq)


def test_truncated_first_frame(tmp_path):
    paths = make_frames(tmp_path, "t.{:04d}.png", [1, 2], size=(32, 32))
    paths[0].write_bytes(paths[0].read_bytes()[:40])
    with pytest.raises(InputError, match=r"t\.0001\.png: cannot decode"):
        open_sequence(tmp_path)


def test_truncated_later_frame(tmp_path):
    paths = make_frames(tmp_path, "t.{:04d}.png", [1, 2, 3], size=(32, 32))
    paths[1].write_bytes(paths[1].read_bytes()[:-20])
    seq = open_sequence(tmp_path)
    assert seq.read(1).pixels.shape == (32, 32, 3)
    with pytest.raises(InputError, match=r"t\.0002\.png: cannot decode"):
        seq.read(2)


def test_pattern_in_missing_folder(tmp_path):
    with pytest.raises(InputError, match=r"folder .*nope does not exist"):
        open_sequence(tmp_path / "nope" / "shot.####.png")


def test_pattern_with_two_tokens(tmp_path):
    with pytest.raises(InputError, match="exactly one frame token"):
        open_sequence(tmp_path / "s.##.%04d.png")


def test_unsupported_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"notes\.txt: unsupported file type '\.txt'"):
        open_sequence(tmp_path / "notes.txt")


# ----------------------------------------------------------------- argument parsing

@pytest.mark.parametrize("text,expected", [
    ("1001-1100", (1001, 1100)), ("1001", (1001, 1001)), (" 5 - 7 ", (5, 7)), ("0-0", (0, 0)),
])
def test_parse_frame_range(text, expected):
    assert parse_frame_range(text) == expected


@pytest.mark.parametrize("text,match", [
    ("10-5", "end 5 is before start 10"), ("a-b", "expected START-END"), ("", "expected START-END"),
    ("-5", "expected START-END"), ("1-2-3", "expected START-END"), ("1.5", "expected START-END"),
])
def test_parse_frame_range_rejects(text, match):
    with pytest.raises(InputError, match=match):
        parse_frame_range(text)


@pytest.mark.parametrize("text,path,frame", [
    ("ref.png:1040", "ref.png", 1040),
    ("ref.png", "ref.png", None),
    ("C:\\x\\ref.png:12", "C:\\x\\ref.png", 12),
    ("C:\\x\\ref.png", "C:\\x\\ref.png", None),
    ("/mnt/a:b/ref.png", "/mnt/a:b/ref.png", None),
    ("/mnt/a:b/ref.png:7", "/mnt/a:b/ref.png", 7),
    ("shot.1001.png:0", "shot.1001.png", 0),
])
def test_parse_ref_arg(text, path, frame):
    assert parse_ref_arg(text) == (Path(path), frame)


def test_parse_ref_arg_rejects_negative_frames():
    with pytest.raises(InputError, match="non-negative"):
        parse_ref_arg("ref.png:-3")


def test_parse_ref_arg_prefers_an_existing_file(tmp_path):
    odd = tmp_path / "take:12"
    odd.write_bytes(b"")
    assert parse_ref_arg(str(odd)) == (odd, None)


@pytest.mark.parametrize("name,frame", [
    ("shot.1040.png", 1040), ("shot_0007.exr", 7), ("shot0012.tif", 12), ("/a/b/0001.png", 1),
    ("ref.png", None), ("shot.1040", None), (".shot.1040.png.partial-ab12", None),
])
def test_frame_number_from_path(name, frame):
    assert frame_number_from_path(name) == frame


def test_parse_ref_arg_rejects_a_missing_frame_number():
    with pytest.raises(InputError, match="missing frame number after ':'"):
        parse_ref_arg("ref.png:")


def test_reversed_range_is_refused(tmp_path):
    make_frames(tmp_path, "g.{:04d}.png", [1, 2])
    with pytest.raises(InputError, match="end is before start"):
        open_sequence(tmp_path, frames=(2, 1))


def test_stray_far_away_frame_is_refused_not_listed_as_millions_missing(tmp_path):
    make_frames(tmp_path, "s.{:04d}.png", [1, 2])
    make_frames(tmp_path, "s.{}.png", [20241124])
    with pytest.raises(InputError, match=r"from 1 to 20241124.*s\.20241124\.png"):
        open_sequence(tmp_path)
    assert open_sequence(tmp_path, frames=(1, 100)).frames == [1, 2]


def test_folder_with_only_a_video_says_to_pass_it(tmp_path):
    (tmp_path / "take.mov").write_bytes(b"x")
    with pytest.raises(InputError, match=r"no image sequence found.*take\.mov\): pass one by its path"):
        open_sequence(tmp_path)


def test_missing_frames_are_named_as_compact_ranges():
    assert reader.frame_ranges([1004]) == "1004"
    assert reader.frame_ranges([1009, 1004, 1007, 1008, 1010]) == "1004, 1007-1010"
    many = [2 * n for n in range(20)]  # 20 single-frame gaps
    assert reader.frame_ranges(many, most=3) == "0, 2, 4 and 17 more frames in 17 more ranges"
