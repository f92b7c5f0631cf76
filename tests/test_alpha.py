"""Line art on transparent film through the real CLI: a character comes out an opaque
character, lines included, on transparent film, in PNG, TIFF and EXR, and
`--set output_alpha=lineart` keeps the old output (the line art's own alpha).

The shot: a ball with a white eye rolling past a box, outlined in black on transparent
film (RGBA, paper alpha 0); the keyframe paints the ball, its eye and the box and leaves
the film transparent. The eye is white like the film is on the way in: it must stay
opaque where the film stays clear.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from longanim.commands import main
from longanim.engine.sequences.colorspace import linear_to_srgb, srgb_to_linear
from longanim.engine.sequences.image_files import read_image, write_image

W, H, N, FIRST = 160, 90, 8, 1001
BALL, BOX, EYE = (220, 60, 60), (60, 90, 200), (255, 255, 255)


def _ball(i: int) -> tuple[int, int]:
    return 40 + 3 * i, 50


def frame(i: int, colored: bool) -> np.ndarray:
    """RGBA uint8: line art (colored=False) or the painted keyframe, on transparent film."""
    rgb = np.full((H, W, 3), 255, np.uint8)
    cover = np.zeros((H, W), np.uint8)  # what is painted or inked
    x, y = _ball(i)
    shapes = [(lambda im, c, t: cv2.rectangle(im, (100, 30), (140, 70), c, t), BOX),
              (lambda im, c, t: cv2.circle(im, (x, y), 16, c, t), BALL),
              (lambda im, c, t: cv2.circle(im, (x + 6, y - 5), 5, c, t), EYE)]
    for draw, color in shapes:
        if colored:
            draw(rgb, color, -1)
            draw(cover, 255, -1)
        draw(rgb, (0, 0, 0), 2)
        draw(cover, 255, 2)
    return np.dstack([rgb, cover])


def write_shot(root: Path, ext: str = "png", convert=lambda rgba: rgba) -> tuple[Path, Path]:
    for i in range(N):
        write_image(root / "lineart" / f"shot.{FIRST + i}.{ext}", convert(frame(i, colored=False)))
    key = root / "key" / f"shot.{FIRST}.png"
    write_image(key, frame(0, colored=True))
    return root / "lineart", key


def colorize(lineart: Path, key: Path, out: Path, *extra: str) -> None:
    assert main(["colorize", str(lineart), "--ref", str(key), "-o", str(out), "-q", *extra]) == 0


def places(i: int) -> dict[str, tuple[int, int]]:
    """(row, column) of telling pixels in frame i."""
    x, y = _ball(i)
    return {"ball": (y + 8, x - 6), "eye": (y - 5, x + 6), "box": (50, 120), "film": (10, 10),
            "outline": (y, x - 16), "box_line": (50, 100)}


def test_a_character_on_film_comes_out_opaque_on_film_png(tmp_path):
    lineart, key = write_shot(tmp_path)
    colorize(lineart, key, tmp_path / "out")
    for i in (0, N - 1):  # the keyframe and a frame followed from it
        px = read_image(tmp_path / "out" / f"shot.{FIRST + i}.png").pixels
        assert px.shape == (H, W, 4) and px.dtype == np.uint8
        at = {name: px[r, c] for name, (r, c) in places(i).items()}
        assert tuple(at["ball"]) == (*BALL, 255) and tuple(at["box"]) == (*BOX, 255)
        assert tuple(at["eye"]) == (*EYE, 255)  # white, and opaque: not the film
        assert at["film"][3] == 0
        assert at["outline"][3] == 255 and at["outline"][:3].max() < 40  # the lines are opaque ink
        assert at["box_line"][3] == 255
        # Opaque exactly where the character is painted or inked (the specks of film that cv2
        # leaves inside its outlines where they cross included), clear film everywhere else.
        np.testing.assert_array_equal(px[..., 3], frame(i, colored=True)[..., 3])


def test_the_old_alpha_is_an_option(tmp_path):
    lineart, key = write_shot(tmp_path)
    colorize(lineart, key, tmp_path / "out", "--set", "output_alpha=lineart")
    px = read_image(tmp_path / "out" / f"shot.{FIRST}.png").pixels
    np.testing.assert_array_equal(px[..., 3], frame(0, colored=False)[..., 3])  # the line art's alpha
    r, c = places(0)["ball"]
    assert tuple(px[r, c]) == (*BALL, 0)  # colored, under alpha 0: what a compositor shows as nothing


def test_a_keyframe_without_alpha_makes_every_fill_opaque(tmp_path):
    lineart, key = write_shot(tmp_path)
    write_image(key, frame(0, colored=True)[..., :3])  # painted on white paper, no alpha
    colorize(lineart, key, tmp_path / "out")
    px = read_image(tmp_path / "out" / f"shot.{FIRST + 3}.png").pixels
    assert px[..., 3].min() == 255


def test_tiff16_keeps_depth_and_makes_fills_opaque(tmp_path):
    lineart, key = write_shot(tmp_path, "tif", convert=lambda rgba: rgba.astype(np.uint16) * 257)
    colorize(lineart, key, tmp_path / "out")
    px = read_image(tmp_path / "out" / f"shot.{FIRST + N - 1}.tif").pixels
    assert px.dtype == np.uint16 and px.shape == (H, W, 4)
    at = {name: px[r, c] for name, (r, c) in places(N - 1).items()}
    assert tuple(at["ball"]) == tuple(v * 257 for v in (*BALL, 255)) and at["film"][3] == 0


def test_exr_is_premultiplied_and_keeps_the_fill_colors(tmp_path):
    def linear_premultiplied(rgba):
        a = rgba[..., 3:] / 255.0
        return np.concatenate([srgb_to_linear(rgba[..., :3] / 255.0) * a, a], axis=-1).astype(np.float16)

    lineart, key = write_shot(tmp_path, "exr", convert=linear_premultiplied)
    colorize(lineart, key, tmp_path / "out")
    img = read_image(tmp_path / "out" / f"shot.{FIRST + N - 1}.exr")
    assert img.colorspace == "linear" and img.pixels.shape == (H, W, 4)
    px = img.pixels.astype(np.float32)
    at = {name: px[r, c] for name, (r, c) in places(N - 1).items()}
    assert at["ball"][3] == 1.0 and at["film"][3] == 0.0 and tuple(at["film"][:3]) == (0.0, 0.0, 0.0)
    # Alpha 1, so premultiplied is the color itself: the ball's red, in linear light.
    np.testing.assert_allclose(at["ball"][:3], srgb_to_linear(np.array(BALL) / 255.0), atol=2e-3)
    np.testing.assert_allclose(np.round(linear_to_srgb(at["box"][:3]) * 255), BOX, atol=1)


@pytest.mark.parametrize("value", ["maybe", "none"])
def test_a_bad_alpha_option_names_the_choices(tmp_path, capsys, value):
    lineart, key = write_shot(tmp_path)
    code = main(["colorize", str(lineart), "--ref", str(key), "-o", str(tmp_path / "out"), "-q",
                 "--set", f"output_alpha={value}"])
    assert code == 2 and "output_alpha must be keyframe or lineart" in capsys.readouterr().err


def test_a_range_resumed_from_a_checkpoint_keeps_the_fills_opacity(tmp_path, capsys):
    """What is opaque is part of the saved shot state: a second chunk started from the first
    one's checkpoint writes the same files as one whole run."""
    lineart, key = write_shot(tmp_path)
    colorize(lineart, key, tmp_path / "whole")
    chunks = tmp_path / "chunks"
    colorize(lineart, key, chunks, "--frames", f"{FIRST}-{FIRST + 3}")
    colorize(lineart, key, chunks, "--frames", f"{FIRST + 4}-{FIRST + N - 1}")
    assert "resumed from the checkpoint after frame 1004" in capsys.readouterr().err
    for i in range(N):
        name = f"shot.{FIRST + i}.png"
        assert (chunks / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def _soft_frame(i: int, colored: bool) -> np.ndarray:
    """`frame` with anti-aliased ink, as Blender, Nuke and scans give it: the strokes' edges
    are partly transparent on film."""
    x, y = _ball(i)
    rgb = np.full((H, W, 3), 255, np.uint8)
    ink = np.zeros((H, W), np.uint8)
    painted = np.zeros((H, W), np.uint8)
    for (cx, cy, r), color in (((x, y, 16), BALL), ((x + 6, y - 5, 5), EYE)):
        if colored:
            cv2.circle(rgb, (cx, cy), r, color, -1, cv2.LINE_AA)
            cv2.circle(painted, (cx, cy), r, 255, -1, cv2.LINE_AA)
        cv2.circle(ink, (cx, cy), r, 255, 2, cv2.LINE_AA)
    a = ink.astype(np.float32)[..., None] / 255.0
    rgb = np.round(rgb * (1.0 - a)).astype(np.uint8)  # black ink over the paint (or the white paper)
    return np.dstack([rgb, np.maximum(ink, painted)])


def test_soft_strokes_inside_a_character_are_opaque_and_its_silhouette_stays_soft(tmp_path):
    for i in range(N):
        write_image(tmp_path / "lineart" / f"shot.{FIRST + i}.png", _soft_frame(i, colored=False))
    write_image(tmp_path / "key" / f"shot.{FIRST}.png", _soft_frame(0, colored=True))
    colorize(tmp_path / "lineart", tmp_path / "key" / f"shot.{FIRST}.png", tmp_path / "out")
    yy, xx = np.mgrid[:H, :W]
    for i in (0, N - 1):
        px = read_image(tmp_path / "out" / f"shot.{FIRST + i}.png").pixels
        line_alpha = _soft_frame(i, colored=False)[..., 3]
        x, y = _ball(i)
        r = np.hypot(xx - x, yy - y)
        # The eye's outline lies between the eye's fill and the ball's, both opaque: no seam.
        eye_ring = (np.hypot(xx - (x + 6), yy - (y - 5)) <= 8) & (line_alpha > 0)
        assert eye_ring.sum() > 40 and (px[..., 3][eye_ring] == 255).all(), np.unique(px[..., 3][eye_ring])
        # Outside the ball's outline there is film: the stroke's soft outer edge keeps its own alpha.
        outer = (r > 16.5) & (line_alpha > 0)
        assert outer.sum() > 40
        np.testing.assert_allclose(px[..., 3][outer], line_alpha[outer], atol=1)
        assert (px[..., 3][r > 20] == 0).all()
