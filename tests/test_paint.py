"""The `paint` colorizer: tracking, keyframes anywhere, the global memory's comeback, bounds."""

import cv2
import numpy as np
import pytest

from longanim.engine.backends import create_backend
from longanim.engine.backends.base import Cancelled, Keyframe
from longanim.engine.backends.paint import PaintBackend
from longanim.engine.memory import GlobalMemory, Observation
from longanim.engine.regions import NEIGHBORS

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


def test_cancel_stops_between_frames():
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        list(PaintBackend().colorize(((i, scene(i, False)) for i in range(10)),
                                     [Keyframe(0, scene(0, True), scene(0, False))], cancelled=cancelled))


def test_global_memory_stays_bounded():
    memory = GlobalMemory(capacity=32)
    rng = np.random.default_rng(0)
    for frame in range(200):
        k = 8
        obs = Observation(
            features=rng.normal(size=(k, memory.features.shape[1])).astype(np.float32) * 3,
            context=np.full((k, NEIGHBORS, 3), -1, np.int16),
            contact=np.zeros((k, NEIGHBORS), np.float32),
            color=rng.integers(0, 256, (k, 3), dtype=np.uint8),
        )
        memory.remember(obs, frame, pinned=frame == 0)
        assert len(memory) <= 32 + 8  # pinned keyframe prototypes are kept on top of the budget
    assert memory.pinned.sum() == 8


def test_options_are_checked_by_name():
    with pytest.raises(Exception, match="gap_close"):
        create_backend("paint", gap_close=-1)
    with pytest.raises(Exception, match="bad options"):
        create_backend("paint", no_such_option=1)


def test_hidden_memory_remembers_what_vanished_in_place():
    from longanim.engine.memory import HiddenMemory
    from longanim.engine.regions import measure
    from longanim.engine.segment import segment

    def frame(with_patch):
        img = np.full((H, W, 3), 255, np.uint8)
        cv2.rectangle(img, (20, 20), (220, 115), (0, 0, 0), 2)
        if with_patch:
            cv2.circle(img, (80, 60), 15, (0, 0, 0), 2)
        return img

    before = measure(segment(frame(True)), 1)
    now = measure(segment(frame(False)), 1)
    patch = before.grid[60, 80]
    color = np.full((before.count + 1, 3), 200, np.uint8)
    color[patch] = GOLD
    hidden = HiddenMemory(horizon=10)
    now_color = np.full((now.count + 1, 3), 200, np.uint8)
    hidden.update(before, color, np.ones(before.count + 1), now, now_color, frame=5)

    found, trust = hidden.match(np.array([82.0, 58.0]), area=400.0, frame=7)
    assert tuple(found) == GOLD and trust > 0.5
    assert hidden.match(np.array([200.0, 100.0]), area=400.0, frame=7)[0] is None  # elsewhere
    assert hidden.match(np.array([82.0, 58.0]), area=5000.0, frame=7)[0] is None  # far too big
    hidden.update(now, now_color, np.ones(now.count + 1), now, now_color, frame=30)
    assert hidden.match(np.array([82.0, 58.0]), area=400.0, frame=30)[0] is None  # forgotten



def post_and_slab(i: int, colored: bool):
    """A tall red post and a wide blue slab drifting right."""
    img = np.full((H, W, 3), 255, np.uint8)
    for color, (x, y, w, h) in ((RED, (40 + i, 25, 30, 90)), (BLUE, (130 + i, 45, 80, 50))):
        cv2.rectangle(img, (x, y), (x + w, y + h), color if colored else (255, 255, 255), -1)
        cv2.rectangle(img, (x, y), (x + w, y + h), (0, 0, 0), 2)
    return img


@pytest.mark.parametrize("doubt_enabled", [True, False])
def test_a_color_the_global_memory_keeps_contradicting_is_overturned(monkeypatch, doubt_enabled):
    """The local memory follows a wrong color faithfully (as after two parts swapped during an
    occlusion); the global memory naming the right one frame after frame overturns it."""
    from concurrent.futures import Future

    from longanim.engine.backends import paint

    if not doubt_enabled:
        monkeypatch.setattr(paint, "SWITCH_DOUBT", np.inf)
    shot = paint._Shot(PaintBackend(), [Keyframe(0, post_and_slab(0, True), post_and_slab(0, False))])

    def step(i):
        looked = Future()
        looked.set_result(shot.look(post_and_slab(i, False)))
        return shot.colorize(i, post_and_slab(i, False), looked)

    step(0)
    step(1)
    assert shot.local.grid.shape == (H, W)  # at this size every pixel is a sample
    post = shot.local.grid[70, 57]  # the post's region in frame 1
    shot.local.color[post] = BLUE  # the swap: the post now carries the slab's color, surely
    shot.local.confidence[post] = 1.0
    colors = [tuple(step(i).rgb[70, 57 + i]) for i in range(2, 14)]
    assert colors[0] == BLUE  # followed at first
    if doubt_enabled:
        assert colors[-1] == RED
    else:  # the control: without the doubt the wrong color would stand
        assert colors[-1] == BLUE
