"""The `paint` colorizer: tracking, keyframes anywhere, the global memory's comeback, bounds."""

import cv2
import numpy as np
import pytest

from longanim.engine.backends import create_backend
from longanim.engine.backends.base import Cancelled, Keyframe
from longanim.engine.backends.paint.colorizer import PaintBackend, region_colors
from longanim.engine.backends.paint.memory_global import GlobalMemory, Palette
from longanim.engine.backends.paint.regions import measure
from longanim.engine.backends.paint.scenery_bands import SceneryBands
from longanim.engine.backends.paint.segment import segment

W, H = 240, 135
SKY, GROUND = (150, 200, 238), (196, 184, 120)
RED, CREAM, BLUE, GOLD = (200, 60, 60), (250, 240, 220), (60, 90, 200), (230, 190, 40)


def scene(i: int, colored: bool, *, leave=None, aa=False):
    """A ball-headed red character walking right and a blue box character bobbing.

    `leave=(start, back)` sends the red character out of the frame between those frames.
    """
    line = cv2.LINE_AA if aa else cv2.LINE_8
    img = np.empty((H, W, 3), np.uint8)
    img[:80] = SKY if colored else (255, 255, 255)
    img[80:] = GROUND if colored else (255, 255, 255)
    cv2.line(img, (0, 80), (W, 80), (0, 0, 0), 2, line)
    x = 40 + i
    if leave and leave[0] <= i < leave[1]:
        x = -100
    elif leave and i >= leave[1]:
        x = 40 + (i - leave[1])
    # blue box character with a gold window
    by = 60 + int(6 * np.sin(i / 6))
    cv2.rectangle(img, (150, by), (200, by + 45), BLUE if colored else (255,) * 3, -1)
    cv2.rectangle(img, (150, by), (200, by + 45), (0, 0, 0), 2, line)
    cv2.rectangle(img, (165, by + 10), (185, by + 25), GOLD if colored else (255,) * 3, -1)
    cv2.rectangle(img, (165, by + 10), (185, by + 25), (0, 0, 0), 2, line)
    # red round character with a cream face patch
    if x > -60:
        cv2.circle(img, (x, 70), 22, RED if colored else (255,) * 3, -1)
        cv2.circle(img, (x, 70), 22, (0, 0, 0), 2, line)
        cv2.ellipse(img, (x + 6, 66), (9, 6), 0, 0, 360, CREAM if colored else (255,) * 3, -1)
        cv2.ellipse(img, (x + 6, 66), (9, 6), 0, 0, 360, (0, 0, 0), 2, line)
    return img


def run(n, keys, backend=None, **scene_kw):
    backend = backend or PaintBackend()
    keyframes = [Keyframe(k, scene(k, True, **scene_kw), scene(k, False, **scene_kw)) for k in keys]
    frames = ((i, scene(i, False, **scene_kw)) for i in range(n))
    return list(backend.colorize(frames, keyframes))


def fill_accuracy(out, i, mask=None, **scene_kw):
    """Share of fill pixels (away from lines) whose color is exactly right (+-4)."""
    truth = scene(i, True, **scene_kw)
    ink = 255 - scene(i, False, **scene_kw).min(axis=2)
    keep = cv2.dilate((ink > 8).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0
    if mask is not None:
        keep &= mask
    right = np.abs(out.rgb.astype(int) - truth.astype(int)).max(axis=2) <= 4
    return right[keep].mean()


def red_character_mask(i, **scene_kw):
    truth = scene(i, True, **scene_kw)
    return np.all(truth == RED, axis=2) | np.all(truth == CREAM, axis=2)


def test_keyframe_frame_is_reproduced_exactly():
    out = run(1, [0])
    assert fill_accuracy(out[0], 0) == 1.0
    assert out[0].info["source"] == "keyframe"


def test_moving_characters_keep_their_colors():
    out = run(60, [0])
    assert min(fill_accuracy(o, o.number) for o in out) > 0.995


def test_antialiased_lines_are_filled_and_shaded():
    out = run(30, [0], aa=True)
    assert min(fill_accuracy(o, o.number, aa=True) for o in out) > 0.99
    # Anti-aliased edge pixels are the fill darkened by the ink, never a foreign color.
    edge = out[10].rgb[80:82, 5]
    assert np.all(edge <= np.array(SKY)) or np.all(edge <= np.array(GROUND))


def test_a_keyframe_at_the_end_colors_the_frames_before_it():
    out = run(40, [39])
    assert min(fill_accuracy(o, o.number) for o in out) > 0.99


def test_between_two_keyframes_both_count():
    out = run(50, [0, 49])
    assert out[49].info["source"] == "keyframe"
    assert min(fill_accuracy(o, o.number) for o in out) > 0.99


def test_a_character_coming_back_gets_its_colors_from_the_global_memory():
    leave = dict(leave=(20, 90))  # out of frame for 70 frames, then walks back in
    comeback = range(110, 130)  # fully back in view

    def red_accuracy(out):
        return np.mean([fill_accuracy(out[i], i, red_character_mask(i, **leave), **leave) for i in comeback])

    with_memory = red_accuracy(run(130, [0], **leave))
    local_only = red_accuracy(run(130, [0], backend=PaintBackend(global_memory=False), **leave))
    assert with_memory > 0.98
    assert local_only < 0.5  # the ablation shows the gap the global memory closes


def test_unseen_regions_are_flagged_for_review():
    out = run(30, [0])
    assert out[5].confidence.min() >= 0.0 and out[5].confidence.max() <= 1.0
    # A green region that no keyframe shows: the colorizer cannot know it and must say so.
    frames = [(i, scene(i, False)) for i in range(3)]
    odd = frames[2][1].copy()
    cv2.rectangle(odd, (20, 100), (60, 125), (0, 0, 0), 2)
    frames[2] = (2, odd)
    result = list(PaintBackend().colorize(iter(frames), [Keyframe(0, scene(0, True), scene(0, False))]))[2]
    assert result.confidence[112, 40] < PaintBackend().review_threshold
    assert result.info["review_fraction"] > 0.0


@pytest.mark.parametrize("seed", [3, 10])
def test_the_review_mask_holds_most_of_the_mistakes(seed):
    """Over a long synthetic shot the colorizer does make mistakes (scenery uncovered behind a
    character, pieces coming out from behind another one); most of them must be flagged, and
    the flags must not cover the picture. Of seeds 0-11 at this size only 2, 3, 6 and 10 still
    have mistakes to find (0.7-1.8% of the pixels wrong; seed 7, once one of them, is down to
    0.4%). The mask holds 90% and 99% of them on 3 and 10, but 66% on 6 and 7% on 2, where one
    confident swap lasts: a regression guard, not the figure (that is the 12-shot bench's)."""
    from longanim.engine.evaluation.synthetic import make_shot

    shot = make_shot(300, 160, 90, seed)
    backend = PaintBackend()
    keyframes = [Keyframe(0, shot.color(0), shot.lineart(0))]
    wrong = flagged_wrong = flagged = counted = 0
    for out in backend.colorize(((i, shot.lineart(i)) for i in range(shot.num_frames)), keyframes):
        keep = cv2.dilate(shot.line_mask(out.number).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0
        bad = keep & np.any(out.rgb != shot.color(out.number), axis=2)
        flag = keep & (out.confidence < backend.review_threshold)
        wrong, flagged_wrong = wrong + bad.sum(), flagged_wrong + (bad & flag).sum()
        flagged, counted = flagged + flag.sum(), counted + keep.sum()
    assert wrong > 0.005 * counted  # there are mistakes to find
    assert flagged_wrong >= 0.75 * wrong
    assert flagged <= 0.08 * counted


def test_a_region_followed_over_a_long_shot_keeps_its_confidence():
    """Nothing happens to the sky and the ground in 600 frames: their confidence must not drain
    away (a chance of 'something else' mixed in every frame did: 0.68 at frame 599)."""
    out = run(600, [0])
    assert out[599].confidence[10, 10] >= 0.95  # sky
    assert out[599].confidence[120, 100] >= 0.95  # ground
    assert fill_accuracy(out[599], 599) > 0.99


def test_cancel_stops_between_frames():
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        list(PaintBackend().colorize(((i, scene(i, False)) for i in range(10)),
                                     [Keyframe(0, scene(0, True), scene(0, False))], cancelled=cancelled))


def test_global_memory_stays_bounded():
    """Learned shape views are capped; the keyframes' own views are kept on top of the cap."""
    palette = Palette()
    memory = GlobalMemory(palette, capacity=32)
    rng = np.random.default_rng(0)

    def frame(seed):
        img = np.full((H, W, 3), 255, np.uint8)
        r = np.random.default_rng(seed)
        for _ in range(12):  # twelve blobs of random shape
            x, y = r.integers(20, W - 20), r.integers(20, H - 20)
            cv2.ellipse(img, (int(x), int(y)), (int(r.integers(4, 15)), int(r.integers(4, 15))),
                        float(r.uniform(0, 180)), 0, 360, (0, 0, 0), 2)
        return img

    key = measure(segment(frame(0)), 1)
    labels = palette.add(rng.integers(0, 256, (key.count + 1, 3), dtype=np.uint8))
    everywhere = np.ones(key.count + 1, bool)
    memory.learn(key, labels, everywhere, 0, keyframe=True)
    pinned = int(memory.pinned.sum())
    assert pinned > 0
    for i in range(1, 200):
        stats = measure(segment(frame(i)), 1)
        memory.learn(stats, rng.integers(0, len(palette), stats.count + 1), np.ones(stats.count + 1, bool), i)
        assert int((~memory.pinned).sum()) <= 32
    assert int(memory.pinned.sum()) == pinned
    assert memory.adjacency.shape == (len(palette), len(palette))
    assert np.allclose(memory.adjacency.sum(axis=1), 1.0)


def test_options_are_checked_by_name():
    with pytest.raises(Exception, match="gap_close"):
        create_backend("paint", gap_close=-1)
    with pytest.raises(Exception, match="whole number of pixels, 0..8, got 'two'"):
        create_backend("paint", gap_close="two")  # as `--set gap_close=two` passes it
    with pytest.raises(Exception, match="has no option no_such_option; its options: gap_close"):
        create_backend("paint", no_such_option=1)


def test_hidden_memory_remembers_what_vanished_in_place():
    from longanim.engine.backends.paint.memory_local import HiddenMemory

    def frame(with_patch):
        img = np.full((H, W, 3), 255, np.uint8)
        cv2.rectangle(img, (20, 20), (220, 115), (0, 0, 0), 2)
        if with_patch:
            cv2.circle(img, (80, 60), 15, (0, 0, 0), 2)
        return img

    before = measure(segment(frame(True)), 1)
    now = measure(segment(frame(False)), 1)
    patch = before.grid[60, 80]
    gold, grey = np.eye(2)  # beliefs over a two-color palette: gold, grey
    belief = np.tile(grey, (before.count + 1, 1))
    belief[patch] = gold
    hidden = HiddenMemory(horizon=10)
    now_belief = np.tile(grey, (now.count + 1, 1))
    hidden.update(before, belief, now, now_belief, frame=5)

    found, trust = hidden.match(np.array([82.0, 58.0]), area=400.0, frame=7)
    assert found.argmax() == 0 and trust > 0.5
    assert hidden.match(np.array([200.0, 100.0]), area=400.0, frame=7)[0] is None  # elsewhere
    assert hidden.match(np.array([82.0, 58.0]), area=5000.0, frame=7)[0] is None  # far too big
    hidden.update(now, now_belief, now, now_belief, frame=30)
    assert hidden.match(np.array([82.0, 58.0]), area=400.0, frame=30)[0] is None  # forgotten


def post_and_slab(i: int, colored: bool):
    """A tall red post and a wide blue slab drifting right."""
    img = np.full((H, W, 3), 255, np.uint8)
    for color, (x, y, w, h) in ((RED, (40 + i, 25, 30, 90)), (BLUE, (130 + i, 45, 80, 50))):
        cv2.rectangle(img, (x, y), (x + w, y + h), color if colored else (255, 255, 255), -1)
        cv2.rectangle(img, (x, y), (x + w, y + h), (0, 0, 0), 2)
    return img


@pytest.mark.parametrize("evidence_counts", [True, False])
def test_a_color_the_global_memory_keeps_contradicting_is_overturned(monkeypatch, evidence_counts):
    """The local memory follows a wrong color faithfully (as after two parts swapped during an
    occlusion); the global memory naming the right one frame after frame overturns it."""
    from concurrent.futures import Future

    from longanim.engine.backends.paint import colorizer as paint

    if not evidence_counts:
        monkeypatch.setattr(paint, "DEAD_ZONE", 1e9)  # the control: no evidence is clear enough
    shot = paint._Shot(PaintBackend(), [Keyframe(0, post_and_slab(0, True), post_and_slab(0, False))])

    def step(i):
        looked = Future()
        looked.set_result(shot.look(post_and_slab(i, False)))
        return shot.colorize(i, post_and_slab(i, False), looked)

    step(0)
    step(1)
    assert shot.local.stats.grid.shape == (H, W)  # at this size every pixel is a sample
    post = shot.local.stats.grid[70, 57]  # the post's region in frame 1
    blue = shot.palette.add(np.array([BLUE], np.uint8))[0]
    shot.local.belief[post] = 0.0
    shot.local.belief[post, blue] = 1.0  # the swap: the post now carries the slab's color, surely
    colors = [tuple(step(i).rgb[70, 57 + i]) for i in range(2, 22)]
    assert colors[0] == BLUE  # followed at first
    if evidence_counts:
        assert colors[-1] == RED
    else:  # without the global memory's word the wrong color would stand
        assert colors[-1] == BLUE


def test_a_character_that_turns_around_keeps_its_colors():
    """Mirrored from one frame to the next, as when a character turns to walk the other way:
    the arm jumps to where the body was and the belly to the other side. Following pixels
    alone would paint the arm in the body's color."""
    arm, belly = (150, 40, 40), (250, 220, 200)

    def character(i, colored):
        facing = 1 if (i // 12) % 2 == 0 else -1  # turns every 12 frames
        img = np.full((H, W, 3), 255, np.uint8)
        img[95:] = GROUND if colored else (255, 255, 255)
        cv2.line(img, (0, 95), (W, 95), (0, 0, 0), 2)
        x = 110 + (i % 12)
        cv2.ellipse(img, (x, 62), (18, 28), 0, 0, 360, RED if colored else (255,) * 3, -1)  # body
        cv2.ellipse(img, (x, 62), (18, 28), 0, 0, 360, (0, 0, 0), 2)
        cv2.ellipse(img, (x + 6 * facing, 66), (9, 14), 0, 0, 360, belly if colored else (255,) * 3, -1)
        cv2.ellipse(img, (x + 6 * facing, 66), (9, 14), 0, 0, 360, (0, 0, 0), 2)
        ax = x + 12 * facing  # the arm hangs from the shoulder, over the body's edge
        pts = np.array([[ax, 45], [ax + 18 * facing, 60], [ax + 14 * facing, 66], [ax - 3 * facing, 52]], np.int32)
        cv2.fillPoly(img, [pts], arm if colored else (255,) * 3)
        cv2.polylines(img, [pts], True, (0, 0, 0), 2)
        return img

    keyframes = [Keyframe(0, character(0, True), character(0, False))]
    out = list(PaintBackend().colorize(((i, character(i, False)) for i in range(48)), keyframes))
    turns = [12, 13, 24, 25, 36, 37]
    for i in turns:
        truth = character(i, True)
        ink = 255 - character(i, False).min(axis=2)
        keep = cv2.dilate((ink > 8).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0
        right = np.abs(out[i].rgb.astype(int) - truth.astype(int)).max(axis=2) <= 4
        for color in (arm, belly, RED):
            mask = np.all(truth == color, axis=2) & keep
            assert right[mask].mean() > 0.95, (i, color)


TILE_HIGH, TILE_LOW = (120, 170, 120), (170, 120, 90)


def tiled_wall(i: int, colored: bool):
    """A wall of tiles panning left: a high row of green tiles over a low row of brown ones.
    A tile coming in at the right edge is cut by it (no shape) and touches one green and one
    brown tile (no context either way); only its height says which row it belongs to."""
    img = np.full((H, W, 3), 255, np.uint8)
    top, mid, bottom, size = 20, 65, 110, 45
    shift = 2 * i
    first = shift // size
    for j in range(first, first + W // size + 2):
        x0 = j * size - shift
        for y0, y1, fill in ((top, mid, TILE_HIGH), (mid, bottom, TILE_LOW)):
            if colored:
                cv2.rectangle(img, (x0, y0), (x0 + size, y1), fill, -1)
            cv2.rectangle(img, (x0, y0), (x0 + size, y1), (0, 0, 0), 2)
    return img


def test_scenery_coming_in_at_the_frame_edge_takes_the_color_seen_at_its_height():
    n = 80
    keys = [Keyframe(0, tiled_wall(0, True), tiled_wall(0, False))]
    outs = list(PaintBackend().colorize(((i, tiled_wall(i, False)) for i in range(n)), keys))
    for i in (30, 60, 79):
        truth = tiled_wall(i, True)
        fill = (tiled_wall(i, False).min(axis=2) == 255) & (truth.min(axis=2) < 255)
        fill = cv2.erode(fill.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        right = np.all(outs[i].rgb == truth, axis=2)
        assert right[fill].mean() > 0.99, f"frame {i}: {right[fill].mean():.1%} of the tiles right"


def test_scenery_bands_judge_only_scenery_colors():
    img = tiled_wall(0, False)
    seg = segment(img)
    stats = measure(seg, 1)
    truth = tiled_wall(0, True)
    palette = Palette()
    label = np.zeros(seg.count + 1, np.int64)
    label[1:] = palette.add(region_colors(truth, seg)[1:])
    backdrop = np.zeros(len(palette), bool)
    backdrop[label[1:]] = True
    figure = len(palette)  # a character's color: not scenery
    bands = SceneryBands()
    bands.learn(stats, label, np.r_[backdrop, False])
    ev = bands.evidence(stats, np.r_[backdrop, False], figure + 1)
    high = palette.add(np.array([TILE_HIGH], np.uint8))[0]
    low = palette.add(np.array([TILE_LOW], np.uint8))[0]
    for r in range(1, seg.count + 1):
        own = label[r]
        if own in (high, low):
            assert ev[r, own] == 0.0
            other = low if own == high else high
            assert ev[r, other] < -1.0, "a tile judged against the other row's color"
        assert ev[r, figure] == 0.0



def test_what_a_part_uncovers_as_it_moves_on_does_not_take_its_color():
    """Seed 4: a character turns round at the frame edge and the hill behind it comes out a sliver
    at a time, on pixels that were the character's. Taking its colors (then growing with the
    hill) put 0.8% of the scenery pixels of these 200 frames wrong; not counting a region's old
    pixels for whatever took them where the region goes on whole elsewhere, 0.2%."""
    wrong, counted = scenery_wrong(seed=4, frames=range(200))
    assert wrong < 0.004 * counted, f"{wrong / counted:.2%} of the scenery wrong"


def scenery_wrong(seed, frames):
    """(wrong, counted) scenery pixels away from lines over `frames`."""
    return pixels_wrong(seed, frames, lambda shot, n: shot.character_mask(n) == 0)


def pixels_wrong(seed, frames, where):
    """(wrong, counted) pixels away from lines, and where `where(shot, frame)` says, over `frames`
    of a 480x270 synthetic shot colorized from its first frame."""
    return pixels_wrong_each(seed, frames, {"": where})[""]


def pixels_wrong_each(seed, frames, wheres):
    """`pixels_wrong` for several masks (name -> where) over one colorizing pass."""
    from longanim.engine.evaluation.synthetic import make_shot

    shot = make_shot(500, 480, 270, seed=seed)
    keyframes = [Keyframe(0, shot.color(0), shot.lineart(0))]
    counts = {name: [0, 0] for name in wheres}
    for out in PaintBackend().colorize(((i, shot.lineart(i)) for i in range(frames.stop)), keyframes):
        if out.number not in frames:
            continue
        keep = cv2.dilate(shot.line_mask(out.number).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0
        wrong = np.any(out.rgb != shot.color(out.number), axis=2)
        for name, where in wheres.items():
            judged = keep & where(shot, out.number)
            counts[name][0] += int((judged & wrong).sum())
            counts[name][1] += int(judged.sum())
    return {name: tuple(c) for name, c in counts.items()}


def test_a_strip_of_scenery_is_not_taken_for_a_part_far_smaller_than_it():
    """Seed 0: as a character walks to the frame edge, the strip of hill between it and the
    edge is cut off by it, a region on the character's side of the old outline. Taken for one
    of the character's parts, it went on so as it widened, to several times any size that
    part ever had: 0.21% of the scenery of frames 70-99 was wrong. A region far bigger than
    every view of a part is not that part: 0.05%."""
    wrong, counted = scenery_wrong(seed=0, frames=range(70, 100))
    assert wrong < 0.001 * counted, f"{wrong / counted:.3%} of the scenery wrong"


def test_a_big_frame_is_followed_on_the_thinned_grid_and_keeps_its_colors():
    """At 960x540 and above the regions are followed on a grid thinned to about 480x270 (a
    1080p grid is half a million samples; following on it cost more than everything else
    the colorizer does per frame). The characters keep their colors as well as at 480x270."""
    from longanim.engine.evaluation.synthetic import make_shot

    shot = make_shot(60, 960, 540, seed=1)
    seg = segment(shot.lineart(0))
    stats = measure(seg, 1)
    assert stats.thinning == 2 and stats.sparse.shape == (270, 480)
    keyframes = [Keyframe(0, shot.color(0), shot.lineart(0))]
    right = counted = 0
    for out in PaintBackend().colorize(((i, shot.lineart(i)) for i in range(60)), keyframes):
        keep = cv2.dilate(shot.line_mask(out.number).astype(np.uint8), np.ones((3, 3), np.uint8)) == 0
        chars = keep & (shot.character_mask(out.number) > 0)
        right += (chars & np.all(out.rgb == shot.color(out.number), axis=2)).sum()
        counted += chars.sum()
    assert right > 0.99 * counted, f"{right / counted:.3%} of the characters right"


def test_a_character_on_screen_does_not_drift_into_the_colors_of_one_off_screen():
    """Seed 6: one character walks out from behind another; the strip of its body that shows is
    shaped like the belly of a character that left the frame a while ago, and its shape evidence
    pulled it, a little every frame, into that character's colors, which it then kept for ~90
    frames: 4.75% of the characters' pixels of frames 150-199 were wrong. A region followed as a
    part of a character on screen does not turn into a part of one off screen: 0.52%."""
    wrong, counted = characters_wrong(seed=6, frames=range(150, 200))
    assert wrong < 0.015 * counted, f"{wrong / counted:.3%} of the characters wrong"


def test_a_character_hidden_behind_another_is_not_off_screen():
    """Seed 2: a character walks behind another in the middle of the frame and comes out again.
    Counted as off screen, what showed of it could not leave the front one's colors it was first
    read in (3.65% of the characters' pixels of frames 60-129 wrong). Off screen is where a
    character went when last plainly in view at the frame edge: 1.16%."""
    wrong, counted = characters_wrong(seed=2, frames=range(60, 130))
    assert wrong < 0.02 * counted, f"{wrong / counted:.3%} of the characters wrong"


def test_what_shows_of_a_head_behind_another_is_not_taken_for_a_slice_of_hill():
    """Seed 2: a character comes back behind another; what shows of its head beside the front
    one's matched a view of a hill (hills are cut into pieces of every shape, and the memory
    holds them all) better than its head: 30% of that head's pixels of frames 300-321 were
    hill-green. Shape evidence for backdrop colors is capped (BACKDROP_SHAPE): 4.9%; and with
    only whole parts placing the character (a strip of its body had put its frame off): 0.6%."""
    from longanim.engine.evaluation.synthetic import PART_NAMES

    head = 1 * 16 + PART_NAMES.index("head")  # character 1's head in the region map
    wrong, counted = pixels_wrong(2, range(300, 322), lambda shot, n: shot.region_map(n) == head)
    assert counted > 5000 and wrong < 0.12 * counted, f"{wrong / counted:.1%} of the head wrong"


def test_a_character_back_behind_another_keeps_its_colors():
    """Seed 2: a character comes back after 193 frames away and walks behind another, out on
    its other side. Once its belly slides behind the front one, the strip of body still showing
    has the belly's size and sits where it sat: 34% of that body's pixels of frames 300-325 wore
    the belly's color. The strip touches the ground, which no belly, drawn inside its body, ever
    does (`INNER_WEIGHT`): 0.1% (31% without that rule). Over the 100 frames after it is back,
    95.2% of its pixels were right; with that, and with neighbours counted by the length of
    boundary they share (the specks between a body's crossing lines made it its own likeliest
    neighbour, so pieces coming out beside the front body looked like more of it), 98.8%. The
    target is 98%."""
    from longanim.engine.evaluation.synthetic import PART_NAMES

    body = 1 * 16 + PART_NAMES.index("body")  # character 1's body in the region map
    (strip_wrong, strip), (back_wrong, back) = pixels_wrong_each(2, range(300, 402), {
        "strip": lambda shot, n: (shot.region_map(n) == body) & (n < 326),
        "back": lambda shot, n: (shot.character_mask(n) == 1) & (n >= 302),
    }).values()
    assert strip > 10000 and strip_wrong < 0.03 * strip, f"{strip_wrong / strip:.1%} of the body wrong"
    assert back > 100000 and back_wrong < 0.02 * back, f"{1 - back_wrong / back:.2%} of the character right"


def characters_wrong(seed, frames):
    """(wrong, counted) character pixels away from lines over `frames`."""
    return pixels_wrong(seed, frames, lambda shot, n: shot.character_mask(n) > 0)
