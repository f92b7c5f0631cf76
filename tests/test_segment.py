"""Line art -> regions: gaps, anti-aliasing, colored lines, slivers."""

import cv2
import numpy as np
import pytest

from longanim.engine.backends.paint.segment import ink_of, segment


def page(h=120, w=160):
    return np.full((h, w, 3), 255, np.uint8)


def test_ink_is_darkness_of_darkest_channel():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    assert np.array_equal(ink_of(img), 255 - img.min(axis=2))


def test_closed_shapes_are_regions_and_lines_are_not():
    img = page()
    cv2.rectangle(img, (20, 20), (70, 90), (0, 0, 0), 3)
    cv2.circle(img, (115, 55), 25, (0, 0, 0), 3)
    seg = segment(img, gap_close=1)
    assert seg.count == 3  # outside, inside the rectangle, inside the circle
    assert seg.labels[55, 45] != seg.labels[55, 115] != seg.labels[5, 5]
    assert seg.labels[20, 45] == 0  # a line core pixel


@pytest.mark.parametrize("gap, gap_close, sealed", [(2, 1, True), (4, 1, False), (4, 2, True)])
def test_small_gaps_in_outlines_are_sealed(gap, gap_close, sealed):
    img = page()
    cv2.rectangle(img, (30, 30), (120, 90), (0, 0, 0), 3)
    assert segment(img, gap_close=gap_close).count == 2
    img[25:36, 70:70 + gap] = 255  # a break through the whole top edge
    seg = segment(img, gap_close=gap_close)
    inside, outside = seg.labels[60, 75], seg.labels[5, 5]
    assert (inside != outside) == sealed


def test_every_fill_pixel_gets_a_region_after_sealing():
    img = page()
    cv2.rectangle(img, (30, 30), (120, 90), (0, 0, 0), 2)
    seg = segment(img, gap_close=2)
    paper = ink_of(img) == 0
    assert (seg.labels[paper] > 0).all()


def test_antialiased_fringe_joins_the_region_it_fades_into():
    img = page()
    cv2.circle(img, (80, 60), 35, (0, 0, 0), 2, cv2.LINE_AA)
    seg = segment(img)
    ink = ink_of(img)
    fringe = (ink > 0) & (ink < 100)
    assert fringe.any()
    assert (seg.labels[fringe] > 0).all()


def test_colored_lines_are_lines():
    img = page()
    cv2.line(img, (0, 60), (160, 60), (200, 30, 30), 3)  # a red shadow line splits the page
    assert segment(img).count == 2


def test_thin_region_narrower_than_the_seal_is_kept():
    img = page()
    cv2.rectangle(img, (20, 20), (140, 100), (0, 0, 0), 2)
    cv2.rectangle(img, (20, 55), (140, 58), (0, 0, 0), 1)  # a 2-px wide stripe between two lines
    seg = segment(img, gap_close=1)
    stripe = seg.labels[56:58, 60]
    assert (stripe > 0).all()
    assert stripe[0] not in (seg.labels[40, 60], seg.labels[80, 60])
