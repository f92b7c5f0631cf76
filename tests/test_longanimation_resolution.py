"""The model resolution: the reference's resize and centre crop, and the way back to the input."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from longanim.engine.backends.longanimation.resolution import (  # noqa: E402
    Framing,
    bicubic_resize,
    parse_resolution,
)


def test_named_and_custom_resolutions():
    assert parse_resolution("576x1024") == (576, 1024)
    assert parse_resolution("768X1360") == (768, 1360)
    assert parse_resolution("input") is None
    with pytest.raises(ValueError, match="multiple of 16"):
        parse_resolution("570x1024")
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        parse_resolution("1080p")


@pytest.mark.parametrize("size,scaled,top,left", [
    ((1080, 1920), (576, 1024), 0, 0),  # 16:9 as trained: a plain resize
    ((1080, 1440), (768, 1024), 96, 0),  # 4:3: width matched, rows cropped
    ((1080, 2560), (576, 1365), 0, 170),  # wider: height matched, columns cropped (int() rounds down)
    ((1920, 1080), (1820, 1024), 622, 0),  # portrait
])
def test_fit_follows_the_reference_rule(size, scaled, top, left):
    framing = Framing.fit(size, (576, 1024))
    assert (framing.scaled, framing.top, framing.left) == (scaled, top, left)


def test_to_model_and_back():
    y, x = np.mgrid[0:60, 0:80]
    image = np.stack([x * 3, y * 4, np.full_like(x, 128)], axis=-1).astype(np.uint8)  # 4:3 into 32x64 (2:1)
    framing = Framing.fit(image.shape[:2], (32, 64))
    assert framing.scaled == (48, 64) and framing.top == 8
    model = framing.to_model(image)
    assert model.shape == (32, 64, 3) and model.dtype == np.uint8
    back, coverage = framing.to_input(model)
    assert back.shape == image.shape and coverage.shape == (60, 80)
    rows, cols = framing.covered()
    assert (rows.start, rows.stop, cols.start, cols.stop) == (10, 50, 0, 80)
    assert coverage[rows, cols].all() and not coverage[:10].any() and not coverage[50:].any()
    np.testing.assert_array_equal(back[:10], np.repeat(back[10:11], 10, axis=0))  # filled from the nearest row
    # The covered part is the image again, in place, up to two resizes of a smooth ramp.
    assert np.abs(back[rows, cols].astype(int) - image[rows, cols]).mean() < 2
    with pytest.raises(ValueError, match="expected 80x60"):
        framing.to_model(image[:, :70])


def test_bicubic_resize():
    image = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert bicubic_resize(image, (16, 16)) is image  # untouched, as torchvision returns a same-size frame
    flat = np.full((20, 30, 3), 77, np.uint8)
    np.testing.assert_array_equal(bicubic_resize(flat, (8, 12)), np.full((8, 12, 3), 77, np.uint8))
    edge = np.zeros((8, 8, 3), np.uint8)
    edge[:, 4:] = 255
    up = bicubic_resize(edge, (16, 16))
    assert up.dtype == np.uint8 and up.min() == 0 and up.max() == 255  # overshoot clipped, not wrapped
