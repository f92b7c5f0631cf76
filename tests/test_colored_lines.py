"""Colored lines through the real CLI: a vivid red line marking where a box's shadow begins
splits the box into its lit and shadowed fills, and in the output it takes their colors
(the finished cel shows no red); black outlines and dark colored ink (a brown stroke) stay
drawn; `--set vivid_lines=keep` draws the red line as before.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from longanim.commands import main
from longanim.engine.sequences.image_files import read_image, write_image

W, H, N, FIRST = 160, 90, 6, 1001
SKY, LIT, SHADOW = (150, 200, 238), (60, 90, 200), (30, 45, 120)
RED, BROWN = (255, 0, 0), (84, 44, 30)


def frame(i: int, colored: bool) -> np.ndarray:
    """The box, moving right a pixel a frame: line art or the finished cel."""
    img = np.full((H, W, 3), 255, np.uint8)
    x0, x1, y0, y1, cut = 40 + i, 110 + i, 20, 70, 50
    if colored:
        img[:] = SKY
        img[y0:cut, x0:x1] = LIT
        img[cut:y1, x0:x1] = SHADOW
    else:
        cv2.line(img, (x0, cut), (x1, cut), RED, 3, cv2.LINE_AA)  # the shadow's edge
        cv2.line(img, (x0 + 15, 35), (x0 + 35, 35), BROWN, 2)  # a stroke of dark colored ink
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 2)
    return img


def write_shot(root: Path) -> tuple[Path, Path]:
    for i in range(N):
        write_image(root / "lineart" / f"shot.{FIRST + i}.png", frame(i, colored=False))
    key = root / "key" / f"shot.{FIRST}.png"
    write_image(key, frame(0, colored=True))
    return root / "lineart", key


def colorize(root: Path, *extra: str) -> Path:
    lineart, key = write_shot(root)
    out = root / "out"
    assert main(["colorize", str(lineart), "--ref", str(key), "-o", str(out), "-q", *extra]) == 0
    return out


def test_a_vivid_line_takes_the_colors_of_the_regions_it_divides(tmp_path):
    out = colorize(tmp_path)
    for i in (0, N - 1):
        line = frame(i, colored=False).astype(int)
        px = read_image(out / f"shot.{FIRST + i}.png").pixels
        red = (line.max(axis=2) - line.min(axis=2)) > 24  # the red line and its anti-aliased edge
        red &= line[..., 0] > 150
        red[:, : 43 + i] = red[:, 108 + i:] = False  # inside the box (its round ends reach the sky)
        assert red.sum() > 150
        shown = {tuple(int(v) for v in c) for c in px[red]}
        assert shown <= {LIT, SHADOW} and len(shown) == 2  # each side of the line takes its own fill
        # Above the line the box is lit, below it in shadow, up to the line itself.
        x = 95 + i  # clear of the brown stroke
        column = [tuple(int(v) for v in px[y, x]) for y in range(23, 68)]
        assert column[:20] == [LIT] * 20 and column[-10:] == [SHADOW] * 10
        assert set(column) <= {LIT, SHADOW}
        # The black outline and the brown ink are drawn over the fills as before.
        assert px[20, 75 + i].max() < 40
        brown = np.all(line == BROWN, axis=2)
        np.testing.assert_array_equal(px[brown], (np.array(LIT) * np.array(BROWN) / 255.0 + 0.5).astype(np.uint8)
                                      [None].repeat(brown.sum(), axis=0))


def test_keep_draws_colored_lines_over_the_fills(tmp_path):
    out = colorize(tmp_path, "--set", "vivid_lines=keep")
    line = frame(0, colored=False)
    px = read_image(out / f"shot.{FIRST}.png").pixels
    core = np.all(line == RED, axis=2)
    assert core.sum() > 100
    assert px[core][:, 1:].max() == 0 and px[core][:, 0].min() > 0  # red multiplied over the fill: no green or blue
