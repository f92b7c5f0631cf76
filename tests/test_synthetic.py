"""The synthetic shot generator: deterministic, consistent across its outputs, and hard in
the ways it promises (nesting, occlusion, re-entry, blinks, broken/colored/AA lines)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from longanim.engine.evaluation import synthetic as S
from longanim.engine.evaluation.synthetic import make_shot, region_id


@pytest.fixture(scope="module")
def shot():
    return make_shot(400, 160, 90, seed=3)


def test_outputs_have_documented_types_and_shapes(shot):
    assert shot.keyframes == [0] and shot.num_frames == 400
    la, co, cm, lm, rm = shot.lineart(7), shot.color(7), shot.character_mask(7), shot.line_mask(7), shot.region_map(7)
    assert la.shape == co.shape == (90, 160, 3) and la.dtype == co.dtype == np.uint8
    assert cm.shape == lm.shape == rm.shape == (90, 160)
    assert cm.dtype == np.int16 and lm.dtype == bool
    with pytest.raises(IndexError):
        shot.color(400)


def test_frames_are_a_pure_function_of_seed_and_index():
    a = make_shot(400, 160, 90, seed=3)
    b = make_shot(400, 160, 90, seed=3)
    late_first = a.color(250)
    for i in (0, 17, 3):
        a.color(i)
    np.testing.assert_array_equal(late_first, a.color(250))
    np.testing.assert_array_equal(b.color(250), late_first)
    np.testing.assert_array_equal(a.lineart(99), b.lineart(99))
    assert not np.array_equal(make_shot(400, 160, 90, seed=4).color(250), late_first)
    assert not np.array_equal(a.color(11), a.color(12))  # things move every frame


def test_lineart_and_color_share_the_same_lines(shot):
    for i in (0, 123, 321):
        la, co, lm = shot.lineart(i), shot.color(i), shot.line_mask(i)
        assert set(np.unique(la)) <= {0, 255}  # black ink on white, no AA by default
        assert (la[~lm] == 255).all()  # fills of the line art are white
        assert (co[lm] == 0).all()  # the same pixels are ink on the colored frame
        assert 0.02 < lm.mean() < 0.4
        # Colored frame: many flat colors outside the lines.
        flat = co[~lm].reshape(-1, 3)
        assert len(np.unique(flat, axis=0)) >= 12


def test_characters_have_nested_regions_with_distinct_palettes():
    shot = make_shot(60, 480, 270, seed=3)
    i = 0
    rm, cm = shot.region_map(i), shot.character_mask(i)
    assert set(np.unique(cm)) == {0, 1, 2, 3}
    bodies = []
    for k in (1, 2, 3):
        c = shot._characters[k - 1]
        bodies.append(c.palette[S.BODY])
        assert len(set(c.palette.values())) >= 8  # many flat colors per character
        for outer, inner in ((S.EYE_L, S.PUPIL_L), (S.HEAD, S.EYE_R), (S.BODY, S.BELLY)):
            region = rm == region_id(k, inner)
            assert region.sum() > 3
            # Enclosed: everything around it is its parent region, ink, or (for the
            # belly) the arm that swings over it.
            ring = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~region
            assert set(np.unique(rm[ring])) <= {S.LINE, region_id(k, outer), region_id(k, S.ARM),
                                                region_id(k, S.PUPIL_R)}
        assert (cm[rm // 16 == k] == k).all()
    assert len(set(bodies)) == 3
    # Eye whites are shared by all characters: realistic, and makes matching harder.
    assert len({shot._characters[k].palette[S.EYE_L] for k in range(3)}) == 1


def test_region_map_colors_are_flat(shot):
    co, rm = shot.color(50), shot.region_map(50)
    for rid in np.unique(rm):
        if rid == S.LINE:
            continue
        colors = np.unique(co[rm == rid].reshape(-1, 3), axis=0)
        if rid < 16:  # background: each class may hold several instances (two hill greens)
            assert len(colors) <= 2
        else:
            assert len(colors) == 1


def test_scenery_map_names_each_piece_of_scenery_the_same_in_every_frame(shot):
    seen_color = {}
    for i in (0, 60, 399):
        ids, co, cm = shot.scenery_map(i), shot.color(i), shot.character_mask(i)
        assert (ids[cm > 0] == 0).all()  # characters are not scenery
        assert (ids[shot.region_map(i) == S.LINE] == 0).all()
        for piece in set(np.unique(ids)) - {0}:
            colors = np.unique(co[ids == piece].reshape(-1, 3), axis=0)
            assert len(colors) == 1  # one piece, one flat color ...
            assert seen_color.setdefault(piece, tuple(colors[0])) == tuple(colors[0])  # ... in every frame
    first, last = set(np.unique(shot.scenery_map(0))), set(np.unique(shot.scenery_map(399)))
    assert last - first, "the pan brings new scenery into view"
    assert {1} <= first & last  # the sky is one piece


@pytest.mark.parametrize("seed", [8, 9, 11])
def test_the_opening_frame_shows_every_belly(seed):
    # A reference frame shows every part: with the arm swung across it, a belly of 9 pixels was
    # all the keyframe showed of it in these seeds, so its color could only be guessed later.
    shot = make_shot(500, 480, 270, seed=seed)
    for k in range(1, 4):
        belly = region_id(k, S.BELLY)
        later = [int((shot.region_map(i) == belly).sum()) for i in range(10, 200, 20)]
        assert (shot.region_map(0) == belly).sum() >= 0.5 * np.median([n for n in later if n] or [0])


def test_a_character_leaves_and_comes_back_after_150_frames(shot):
    re = shot.reentries()
    assert re and all(away >= 150 for _, _, away in re)
    k, back, away = re[0]
    for i in range(back - away, back, 37):
        assert not (shot.character_mask(i) == k).any()
    assert (shot.character_mask(back) == k).any()
    assert (shot.character_mask(back - away - 1) == k).any()
    assert make_shot(120, 64, 36).reentries() == []  # too short for an exit
    assert len(make_shot(1000, 64, 36).reentries()) >= 2


def test_characters_occlude_each_other_and_change_z_order(shot):
    orders = set()
    overlaps = 0
    for i in range(0, 400, 4):
        orders.add(tuple(c.index for c in shot._drawing_order(i)))
        boxes = {}
        for c in shot._characters:
            boxes[c.index] = shot._bbox(c, i)
        a, b = boxes[2], boxes[3]
        overlaps += a[0] < b[2] and b[0] < a[2]
    assert len(orders) >= 3 and overlaps > 0


def test_characters_trade_places_in_depth_only_while_apart():
    # An animator never pops a character in front of one it overlaps; seed 2's depth
    # curves cross at frame 360 while characters 1 and 2 overlap, so that swap must wait.
    shot = make_shot(500, 480, 270, seed=2)
    swaps = 0
    before = [c.index for c in shot._drawing_order(0)]
    for i in range(1, 500):
        now = [c.index for c in shot._drawing_order(i)]
        for x in now:
            for y in now:
                if x < y and (before.index(x) < before.index(y)) != (now.index(x) < now.index(y)):
                    swaps += 1
                    bx, by = shot._bbox(shot._characters[x - 1], i), shot._bbox(shot._characters[y - 1], i)
                    apart = bx[2] <= by[0] or by[2] <= bx[0] or bx[3] <= by[1] or by[3] <= bx[1]
                    assert apart, f"characters {x} and {y} swapped depth at frame {i} while overlapping"
        before = now
    assert swaps >= 4
    assert [c.index for c in shot._drawing_order(360)] == [c.index for c in shot._drawing_order(359)]


def test_blinks_remove_the_eye_regions_for_a_few_frames(shot):
    c = shot._characters[1]
    start = int(next(b for b in c.blinks if 0 < b < 390))
    shut = [i for i in range(start, start + 6) if shot._openness(c, i) == 0]
    assert len(shut) == 2
    eye = region_id(2, S.EYE_L)
    # the eye region is gone while shut (the character may be hidden: then it is gone too)
    for i in shut:
        assert not (shot.region_map(i) == eye).any()


def test_squash_and_stretch_change_the_silhouette():
    s = make_shot(200, 320, 180, seed=1, camera_pan=False)
    c = s._characters[0]
    poses = [s._pose(c, i) for i in range(60)]
    squash = [p[3] for p in poses]
    assert max(squash) - min(squash) > 0.1


def test_camera_pan_moves_the_background():
    pan, still = make_shot(200, 160, 90, seed=2), make_shot(200, 160, 90, seed=2, camera_pan=False)
    top = slice(0, 12)  # sky and clouds, above the characters' hats
    assert not np.array_equal(pan.region_map(0)[top], pan.region_map(40)[top])
    np.testing.assert_array_equal(still.region_map(0)[top], still.region_map(40)[top])


def test_line_variants():
    base = make_shot(50, 320, 180, seed=5)
    aa = make_shot(50, 320, 180, seed=5, antialias=True)
    la = aa.lineart(10)
    gray = (la > 0) & (la < 255)
    assert gray.any()  # anti-aliased edges
    np.testing.assert_array_equal(aa.region_map(10), base.region_map(10))

    broken = make_shot(50, 320, 180, seed=5, broken_lines=True)
    lb, lu = broken.line_mask(10), base.line_mask(10)
    assert lb.sum() < lu.sum()
    assert (lb & ~lu).sum() <= 0.01 * lu.sum()  # gaps remove ink, they do not move it
    closed = cv2.morphologyEx(lb.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8)).astype(bool)
    assert (lu & ~closed).sum() <= 0.02 * lu.sum()  # and they are small

    colored = make_shot(50, 320, 180, seed=5, colored_lines=True)
    ink = colored.lineart(10)[colored.line_mask(10)].astype(int)
    chroma = ink.max(axis=1) - ink.min(axis=1)
    assert (chroma > 40).any() and (ink.max(axis=1) < 160).all()  # dark, and not all gray


def test_line_width_scales_with_resolution():
    assert make_shot(10, 480, 270).thickness == 3
    assert make_shot(10, 1920, 1080).thickness == 6
    assert make_shot(10, 64, 36).thickness == 2


def test_save_writes_numbered_files_atomically(tmp_path, shot):
    paths = shot.save(tmp_path, kinds=("lineart", "color", "mask"), frames=[0, 5])
    assert sorted(p.name for p in (tmp_path / "color").iterdir()) == ["shot.1001.png", "shot.1006.png"]
    assert len(paths) == 6
    back = cv2.cvtColor(cv2.imread(str(tmp_path / "color" / "shot.1006.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, shot.color(5))
    la = cv2.cvtColor(cv2.imread(str(tmp_path / "lineart" / "shot.1001.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(la, shot.lineart(0))
    mask = cv2.imread(str(tmp_path / "mask" / "shot.1001.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint16
    np.testing.assert_array_equal(mask, shot.character_mask(0))
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    with pytest.raises(ValueError, match="unknown kind"):
        shot.save(tmp_path, kinds=("depth",))
    with pytest.raises(ValueError, match="outside"):
        shot.save(tmp_path, frames=[400])


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="keyframe"):
        make_shot(10, 64, 36, keyframes=(10,))
    with pytest.raises(ValueError, match="16x16"):
        make_shot(10, 8, 36)
    with pytest.raises(ValueError, match="num_characters"):
        make_shot(10, 64, 36, num_characters=0)
    assert make_shot(10, 64, 36, keyframes=(0, 9)).keyframes == [0, 9]


def test_characters_differ_in_shape_unless_asked_to_look_alike():
    def body_plans(shot):
        return {tuple(round(v, 2) for v in vars(c.design).values()) for c in shot._characters}

    assert len(body_plans(make_shot(60, 480, 270, seed=3))) == 3
    assert len(body_plans(make_shot(60, 480, 270, seed=3, look_alike=True))) == 1
    # and the difference shows in the drawing: head sizes at the same depth differ
    distinct = make_shot(60, 480, 270, seed=3)
    radii = sorted(c.design.head_r for c in distinct._characters)
    assert radii[-1] / radii[0] > 1.25


def test_the_opening_frame_shows_every_character_whole():
    """Frame 0 is the default reference keyframe: a character hidden there could not be
    colored from it by anyone."""
    for seed in range(6):
        rm = make_shot(500, 480, 270, seed=seed).region_map(0)
        for k in (1, 2, 3):
            for part in (S.BODY, S.HEAD, S.CROWN, S.BRIM):
                assert (rm == region_id(k, part)).sum() > 100, (seed, k, S.PART_NAMES[part])
