"""`colorize_shot` through real files: formats, frame numbers, keyframes, reports, bad input.

Most tests use a tiny hand-drawn shot (a ball rolling past a box over sky and ground,
thick outlines, 160x90): its regions are unambiguous, so the colors a backend must
put on a keyframe frame are known exactly. Nothing here asserts how accurate `paint`
is between keyframes; that is the benchmark's job.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from longanim.engine.backends.base import Backend, BackendError, Cancelled, ColoredFrame
from longanim.engine.sequences.colorspace import linear_to_srgb, srgb_to_linear
from longanim.engine.errors import InputError, LonganimError
from longanim.engine.sequences.image_files import read_image, write_image
from longanim.engine.pipeline import REPORT_NAME, RefSpec, ShotReport, colorize_shot
from longanim.engine.evaluation.synthetic import make_shot

W, H, N = 160, 90, 16
FIRST = 1001
SKY, GROUND, BALL, BOX = (150, 200, 238), (196, 184, 120), (220, 60, 60), (60, 90, 200)
GREEN_BOX = (40, 170, 80)
PAPER, INK = (255, 255, 255), (0, 0, 0)


def toy(i: int, colored: bool = True, box=BOX) -> np.ndarray:
    """Frame index i of the toy shot: line art (colored=False) or its truth."""
    img = np.empty((H, W, 3), np.uint8)
    horizon = H * 3 // 5
    img[:horizon] = SKY if colored else PAPER
    img[horizon:] = GROUND if colored else PAPER
    cv2.line(img, (0, horizon), (W, horizon), INK, 2)
    cv2.rectangle(img, (W - 60, horizon - 30), (W - 30, horizon + 10), box if colored else PAPER, -1)
    cv2.rectangle(img, (W - 60, horizon - 30), (W - 30, horizon + 10), INK, 2)
    cv2.circle(img, (20 + 2 * i, horizon - 5), 14, BALL if colored else PAPER, -1)
    cv2.circle(img, (20 + 2 * i, horizon - 5), 14, INK, 2)
    return img


def write_lineart(folder: Path, ext: str = "png", n: int = N, convert=lambda rgb: rgb) -> Path:
    for i in range(n):
        write_image(folder / f"shot.{FIRST + i:04d}.{ext}", convert(toy(i, colored=False)))
    return folder


def write_ref(path: Path, i: int, **kw) -> Path:
    write_image(path, toy(i, **kw))
    return path


def rgb8(path: Path) -> np.ndarray:
    from longanim.engine.sequences.colorspace import to_uint8_display

    return to_uint8_display(read_image(path))[..., :3]


def big_colors(img: np.ndarray, share: float = 0.01) -> set[tuple[int, int, int]]:
    """Colors covering more than `share` of the frame: the fills and the ink."""
    colors, counts = np.unique(img.reshape(-1, 3), axis=0, return_counts=True)
    return {tuple(int(v) for v in c) for c, k in zip(colors, counts) if k > share * img.shape[0] * img.shape[1]}


def frame_files(folder: Path, ext: str = "png") -> list[str]:
    return sorted(p.name for p in folder.glob(f"shot.*.{ext}"))


@pytest.fixture
def lineart(tmp_path) -> Path:
    return write_lineart(tmp_path / "lineart")


@pytest.fixture
def ref0(tmp_path) -> Path:
    return write_ref(tmp_path / "refs" / f"shot.{FIRST}.png", 0)


# --------------------------------------------------------------------------- formats

def test_png8_keeps_frame_numbers_and_reproduces_the_keyframe(lineart, ref0, tmp_path):
    out = tmp_path / "out"
    report = colorize_shot(lineart, [RefSpec(ref0)], out)
    numbers = list(range(FIRST, FIRST + N))
    assert report.frames == numbers and report.keyframes == [FIRST]
    assert frame_files(out) == [f"shot.{n}.png" for n in numbers]
    img = read_image(out / f"shot.{FIRST}.png")
    assert img.pixels.dtype == np.uint8 and img.pixels.shape == (H, W, 3)
    np.testing.assert_array_equal(img.pixels, toy(0))
    later = rgb8(out / f"shot.{FIRST + N - 1}.png")
    assert later.shape == (H, W, 3)


def test_png16_with_alpha_keeps_alpha_and_depth(tmp_path):
    alpha = np.full((H, W), 65535, np.uint16)
    alpha[:20, :30] = 0
    alpha[70:, 100:] = 30000

    def rgba16(rgb):
        return np.concatenate([rgb.astype(np.uint16) * 257, alpha[..., None]], axis=2)

    src = write_lineart(tmp_path / "in", convert=rgba16)
    ref = write_ref(tmp_path / "ref.png", 0)
    # output_alpha=lineart: the line art's own alpha, as it is (the default decides it per fill: an
    # opaque keyframe, as here, paints every fill opaque; see test_alpha.py).
    for alpha_option, want in (("lineart", alpha), ("keyframe", np.full_like(alpha, 65535))):
        out = tmp_path / alpha_option
        colorize_shot(src, [RefSpec(ref, FIRST)], out, backend_options={"output_alpha": alpha_option})
        for n in (FIRST, FIRST + N - 1):
            px = read_image(out / f"shot.{n}.png").pixels
            assert px.dtype == np.uint16 and px.shape == (H, W, 4)
            np.testing.assert_array_equal(px[..., 3], want)
        key = read_image(out / f"shot.{FIRST}.png").pixels
        opaque = alpha == 65535
        np.testing.assert_array_equal(key[..., :3][opaque], toy(0).astype(np.uint16)[opaque] * 257)


def test_exr_half_linear_in_linear_out(tmp_path):
    src = write_lineart(tmp_path / "in", "exr", convert=lambda rgb: srgb_to_linear(rgb / 255.0).astype(np.float16))
    ref = write_ref(tmp_path / "ref.png", 0)
    out = tmp_path / "out"
    colorize_shot(src, [RefSpec(ref, FIRST)], out)
    assert frame_files(out, "exr") == [f"shot.{FIRST + i}.exr" for i in range(N)]
    img = read_image(out / f"shot.{FIRST}.exr")
    assert img.colorspace == "linear" and img.pixels.dtype == np.float16 and img.pixels.shape == (H, W, 3)
    stored = img.pixels.astype(np.float32)
    truth = toy(0)
    sky = np.all(truth == SKY, axis=2)
    # Stored values are linear: the sky is srgb_to_linear(sky), far from its display value.
    np.testing.assert_allclose(stored[sky].mean(axis=0), srgb_to_linear(np.array(SKY) / 255.0), atol=2e-3)
    assert abs(stored[sky][:, 2].mean() - SKY[2] / 255.0) > 0.05
    # Back through display space the keyframe's colors come back within half-float rounding.
    shown = np.round(linear_to_srgb(stored) * 255.0)
    assert np.abs(shown - truth).max() <= 1.0


def test_exr_output_from_png_input(lineart, ref0, tmp_path):
    out = tmp_path / "out"
    colorize_shot(lineart, [RefSpec(ref0)], out, out_ext="exr")
    img = read_image(out / f"shot.{FIRST}.exr")
    assert img.pixels.dtype == np.float16
    assert np.abs(np.round(linear_to_srgb(img.pixels.astype(np.float32)) * 255) - toy(0)).max() <= 1


def test_tiff_in_tiff_out(tmp_path):
    src = write_lineart(tmp_path / "in", "tif")
    ref = write_ref(tmp_path / "ref.tif", 0)
    out = tmp_path / "out"
    colorize_shot(src, [RefSpec(ref, FIRST)], out)
    assert frame_files(out, "tif") == [f"shot.{FIRST + i}.tif" for i in range(N)]
    np.testing.assert_array_equal(read_image(out / f"shot.{FIRST}.tif").pixels, toy(0))


def test_video_source_gives_png_numbered_from_one(tmp_path):
    video = tmp_path / "lineart.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 24, (W, H))
    assert writer.isOpened()
    for i in range(N):
        writer.write(cv2.cvtColor(toy(i, colored=False), cv2.COLOR_RGB2BGR))
    writer.release()
    ref = write_ref(tmp_path / "ref.png", 0)
    out = tmp_path / "out"
    report = colorize_shot(video, [RefSpec(ref, 1)], out)
    assert report.frames == list(range(1, N + 1))
    assert sorted(p.name for p in out.glob("*.png")) == [f"lineart.{n:04d}.png" for n in range(1, N + 1)]
    assert read_image(out / "lineart.0001.png").pixels.shape == (H, W, 3)
    assert (out / REPORT_NAME).is_file()


def test_synthetic_shot_saved_from_1001(tmp_path):
    shot = make_shot(12, 160, 90, seed=3)
    shot.save(tmp_path, kinds=("lineart", "color"))
    out = tmp_path / "out"
    report = colorize_shot(tmp_path / "lineart", [RefSpec(tmp_path / "color" / "shot.1001.png")], out)
    assert report.frames == list(range(1001, 1013)) and report.keyframes == [1001]
    assert frame_files(out) == [f"shot.{n}.png" for n in range(1001, 1013)]
    assert len(list((out / "confidence").glob("shot.*.png"))) == 12


# --------------------------------------------------------------------------- keyframes

@pytest.mark.parametrize("key", [N // 2, N - 1], ids=["middle", "end"])
def test_keyframe_later_in_the_shot(lineart, tmp_path, key):
    ref = write_ref(tmp_path / "ref.png", key)
    out = tmp_path / "out"
    report = colorize_shot(lineart, [RefSpec(ref, FIRST + key)], out)
    assert report.keyframes == [FIRST + key] and report.frames == list(range(FIRST, FIRST + N))
    np.testing.assert_array_equal(rgb8(out / f"shot.{FIRST + key}.png"), toy(key))


@pytest.mark.parametrize("key", [N // 2, N - 1], ids=["middle", "end"])
def test_frames_before_a_later_keyframe_get_its_colors(lineart, tmp_path, key):
    ref = write_ref(tmp_path / "ref.png", key)
    out = tmp_path / "out"
    colorize_shot(lineart, [RefSpec(ref, FIRST + key)], out)
    for i in (0, key - 1):
        assert big_colors(rgb8(out / f"shot.{FIRST + i}.png")) == big_colors(toy(i)), f"frame {FIRST + i}"


def test_two_keyframes_each_gives_its_own_frame_its_colors(lineart, tmp_path):
    first = write_ref(tmp_path / "refs" / f"shot.{FIRST}.png", 0)
    last = write_ref(tmp_path / "refs" / "last.png", N - 1, box=GREEN_BOX)
    out = tmp_path / "out"
    report = colorize_shot(lineart, [RefSpec(last, FIRST + N - 1), RefSpec(first)], out)
    assert report.keyframes == [FIRST, FIRST + N - 1]
    np.testing.assert_array_equal(rgb8(out / f"shot.{FIRST}.png"), toy(0))
    np.testing.assert_array_equal(rgb8(out / f"shot.{FIRST + N - 1}.png"), toy(N - 1, box=GREEN_BOX))
    assert big_colors(rgb8(out / f"shot.{FIRST + 1}.png")) & {BOX, GREEN_BOX}, "the box takes a keyframe's color"


def test_frame_subrange_with_keyframe_outside_it(lineart, ref0, tmp_path):
    out = tmp_path / "out"
    report = colorize_shot(lineart, [RefSpec(ref0)], out, frames=(FIRST + 4, FIRST + 9))
    assert report.frames == list(range(FIRST + 4, FIRST + 10)) and report.keyframes == [FIRST]
    assert frame_files(out) == [f"shot.{n}.png" for n in range(FIRST + 4, FIRST + 10)]
    data = json.loads((out / REPORT_NAME).read_text())
    assert data["frames"] == report.frames


def test_ref_frame_taken_from_its_file_name(lineart, tmp_path):
    ref = write_ref(tmp_path / f"paint.{FIRST + 5}.png", 5)
    report = colorize_shot(lineart, [RefSpec(ref)], tmp_path / "out")
    assert report.keyframes == [FIRST + 5]


# --------------------------------------------------------------------------- report and confidence

class _Unsure(Backend):
    """Line art back unchanged; every third frame fully unsure."""

    name = "unsure"

    def colorize(self, frames, keyframes, *, progress=None, cancelled=None):
        for number, rgb in frames:
            if cancelled is not None and cancelled():
                raise Cancelled(number)
            unsure = number % 3 == 0
            conf = np.full(rgb.shape[:2], 0.0 if unsure else 0.5, np.float32)
            yield ColoredFrame(number, rgb, conf, {"review_fraction": 1.0 if unsure else 0.0})


def test_report_written_last_and_lists_needs_review(lineart, ref0, tmp_path):
    out = tmp_path / "out"
    seen = []

    def on_frame(result, path):
        assert Path(path).is_file()
        seen.append((result.number, (out / REPORT_NAME).exists()))

    report = colorize_shot(lineart, [RefSpec(ref0)], out, backend=_Unsure(), on_frame=on_frame)
    assert [n for n, _ in seen] == list(range(FIRST, FIRST + N))
    assert not any(had_report for _, had_report in seen)
    data = json.loads((out / REPORT_NAME).read_text())
    expected = [n for n in range(FIRST, FIRST + N) if n % 3 == 0]
    assert data["needs_review"] == expected == report.needs_review
    assert data["review_stretches"] == [[n, n] for n in expected]
    assert data["frames"] == list(range(FIRST, FIRST + N)) and data["backend"] == "unsure"
    assert data["keyframes"] == [FIRST]
    newest_frame = max(p.stat().st_mtime_ns for p in out.rglob("shot.*.png"))
    assert (out / REPORT_NAME).stat().st_mtime_ns >= newest_frame


def test_frames_needing_review_are_grouped_into_stretches_in_shot_order():
    """One doubtful decision is followed on for many frames; the artist looks at each stretch.
    Frames next to each other in the shot (a --frames selection may skip numbers) are one stretch."""
    report = ShotReport("paint", "in", "out", frames=[1, 2, 3, 4, 6, 8, 9, 12])
    report.review_fraction = {1: 0.5, 2: 0.5, 3: 0.0, 4: 0.5, 6: 0.5, 8: 0.0, 9: 0.0, 12: 0.5}
    assert report.review_stretches == [(1, 2), (4, 6), (12, 12)]
    assert ShotReport("paint", "in", "out", frames=[5]).review_stretches == []


def test_confidence_images_exist_for_every_frame(lineart, ref0, tmp_path):
    out = tmp_path / "out"
    colorize_shot(lineart, [RefSpec(ref0)], out, backend=_Unsure())
    conf_dir = out / "confidence"
    assert frame_files(conf_dir) == [f"shot.{n}.png" for n in range(FIRST, FIRST + N)]
    sure = read_image(conf_dir / f"shot.{FIRST}.png").pixels
    unsure = read_image(conf_dir / f"shot.{1002}.png").pixels
    assert sure.dtype == np.uint8 and sure.shape[:2] == (H, W)
    assert np.all(sure == 128) and np.all(unsure == 0)


def test_paint_confidence_is_full_on_the_keyframe(lineart, ref0, tmp_path):
    out = tmp_path / "out"
    report = colorize_shot(lineart, [RefSpec(ref0)], out)
    assert np.all(read_image(out / "confidence" / f"shot.{FIRST}.png").pixels == 255)
    assert FIRST not in report.needs_review


def test_backend_options_reach_the_backend(lineart, ref0, tmp_path):
    report = colorize_shot(lineart, [RefSpec(ref0)], tmp_path / "out", backend_options={"review_threshold": 1.01})
    assert report.needs_review == list(range(FIRST, FIRST + N))


# --------------------------------------------------------------------------- bad input

def _assert_nothing_written(out: Path):
    assert not (out / REPORT_NAME).exists()
    assert not out.exists() or not list(out.rglob("*"))


@pytest.mark.parametrize("case, words", [
    ("missing folder", ["no such file or folder"]),
    ("empty folder", ["no image sequence"]),
    ("ref missing", ["nope.png", "no such file"]),
    ("ref size", ["80x45", "160x90"]),
    ("ref frame outside", ["frame 999", "outside"]),
    ("two refs one frame", ["two references", "1001"]),
    ("no refs", ["reference"]),
    ("unknown backend", ["unknown backend", "paint"]),
    ("bad option", ["has no option", "no_such_option", "gap_close"]),
    ("bad option value", ["gap_close"]),
])
def test_bad_input_is_refused_before_anything_is_written(lineart, ref0, tmp_path, case, words):
    source, refs, kwargs = lineart, [RefSpec(ref0)], {}
    if case == "missing folder":
        source = tmp_path / "not-there"
    elif case == "empty folder":
        source = tmp_path / "empty"
        source.mkdir()
    elif case == "ref missing":
        refs = [RefSpec(tmp_path / "nope.png", FIRST)]
    elif case == "ref size":
        small = tmp_path / "small.png"
        write_image(small, cv2.resize(toy(0), (80, 45)))
        refs = [RefSpec(small, FIRST)]
    elif case == "ref frame outside":
        refs = [RefSpec(ref0, 999)]
    elif case == "two refs one frame":
        refs = [RefSpec(ref0), RefSpec(ref0, FIRST)]
    elif case == "no refs":
        refs = []
    elif case == "unknown backend":
        kwargs = {"backend": "no-such-backend"}
    elif case == "bad option":
        kwargs = {"backend_options": {"no_such_option": 1}}
    elif case == "bad option value":
        kwargs = {"backend_options": {"gap_close": -3}}
    out = tmp_path / "out"
    with pytest.raises(LonganimError) as info:
        colorize_shot(source, refs, out, **kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, message
    if case not in ("unknown backend", "bad option", "bad option value"):
        assert isinstance(info.value, InputError)
    else:
        assert isinstance(info.value, BackendError)
    _assert_nothing_written(out)


def test_output_folder_equal_to_input_folder_is_refused(lineart, ref0):
    before = {p.name: p.stat().st_mtime_ns for p in lineart.iterdir()}
    with pytest.raises(InputError, match="overwrite"):
        colorize_shot(lineart, [RefSpec(ref0)], lineart)
    assert {p.name: p.stat().st_mtime_ns for p in lineart.iterdir()} == before


def test_frame_of_another_size_mid_shot_leaves_no_report(lineart, ref0, tmp_path):
    write_image(lineart / f"shot.{FIRST + 6}.png", cv2.resize(toy(6, colored=False), (W // 2, H // 2)))
    out = tmp_path / "out"
    with pytest.raises(InputError, match=str(FIRST + 6)):
        colorize_shot(lineart, [RefSpec(ref0)], out)
    assert not (out / REPORT_NAME).exists()
    assert not (out / f"shot.{FIRST + 6}.png").exists()


def test_cancel_leaves_no_report(lineart, ref0, tmp_path):
    out = tmp_path / "out"
    done = []
    with pytest.raises(Cancelled):
        colorize_shot(lineart, [RefSpec(ref0)], out, cancelled=lambda: len(done) >= 3,
                      on_frame=lambda result, path: done.append(result.number))
    # The backend stops at its next frame; frames already colorized and being written finish.
    from longanim.engine.pipeline import _OrderedWrites

    assert 3 <= len(done) <= 3 + _OrderedWrites.IN_FLIGHT + 1
    assert done == list(range(FIRST, FIRST + len(done)))
    assert len(done) < N
    assert not (out / REPORT_NAME).exists()


def test_a_rerun_clears_temporaries_and_the_report_of_a_killed_run(lineart, ref0, tmp_path):
    out = tmp_path / "out"
    (out / "confidence").mkdir(parents=True)
    stale = [out / f".shot.{FIRST}.png.partial-dead", out / "confidence" / f".shot.{FIRST}.png.partial-dead"]
    for path in stale:
        path.write_bytes(b"\x89PNG half a frame")
    (out / "report.json").write_text("{}")  # from an older run: must not survive a failing one
    with pytest.raises(InputError):
        colorize_shot(lineart, [RefSpec(ref0, FIRST)], out, frames=(FIRST + 500, FIRST + 600))
    assert (out / "report.json").exists()  # input errors are found before anything is touched
    colorize_shot(lineart, [RefSpec(ref0, FIRST)], out)
    assert not any(path.exists() for path in stale)
    assert json.loads((out / "report.json").read_text())["frames"][0] == FIRST
