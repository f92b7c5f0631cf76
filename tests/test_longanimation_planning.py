"""Segment and run planning: every frame of any shot is generated and output exactly once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longanim.engine.backends.longanimation.planning import (
    Segment,
    check_segment_options,
    plan_runs,
    plan_segments,
)


def _kept(segments):
    return [p for s in segments for p in range(s.keep_from, s.keep_to)]


def test_release_windows_on_a_long_shot():
    segments = plan_segments(500)
    assert [(s.start, s.end) for s in segments[:3]] == [(0, 81), (65, 146), (130, 211)]
    assert all(s.frames == 81 for s in segments[:-1])
    # The reference stops at the last full window (455 + 81 > 500 drops 45 frames); we cover the tail.
    assert segments[-1].end == 500 and segments[-1].start == 455
    assert segments[-1].padded_frames == 45  # 44 real frames padded to 4k+1
    assert _kept(segments) == list(range(500))


def test_overlap_is_split_half_and_half():
    first, second = plan_segments(100)[:2]
    assert (first.start, first.end, second.start, second.end) == (0, 81, 65, 100)
    assert first.keep_to == second.keep_from == 65 + 8


def test_shots_shorter_than_one_segment():
    assert plan_segments(0) == []
    assert plan_segments(1) == [Segment(0, 1, 0, 1)]
    (only,) = plan_segments(50)
    assert (only.start, only.end, only.padded_frames) == (0, 50, 53)
    (exact,) = plan_segments(81)
    assert exact.padded_frames == 81


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 2000),
    shape=st.sampled_from([(81, 16), (17, 8), (9, 4), (33, 8), (49, 12)]),
)
def test_any_length_is_tiled_exactly_once(n, shape):
    length, overlap = shape
    segments = plan_segments(n, length, overlap)
    assert _kept(segments) == list(range(n))
    for s in segments:
        assert 1 <= s.frames <= length
        assert (s.padded_frames - 1) % 4 == 0 and s.frames <= s.padded_frames < s.frames + 4
        assert s.start <= s.keep_from < s.keep_to <= s.end
    for a, b in zip(segments, segments[1:]):
        assert a.end - b.start == overlap  # fusion aligns the same latent frames every time
        assert a.frames == length  # only the last segment may be short
        # A tail segment still holds the frames fusion reads.
        assert b.frames >= overlap + 1


@pytest.mark.parametrize("length,overlap", [(80, 16), (81, 15), (81, 0), (81, 80), (3, 4)])
def test_bad_segment_options_are_named(length, overlap):
    with pytest.raises(ValueError, match="segment length|overlap"):
        check_segment_options(length, overlap)


def test_runs_start_at_keyframes_and_cover_the_shot_once():
    runs = plan_runs(10, [4, None, 7])
    assert [(r.keyframe, r.positions, r.outputs) for r in runs] == [
        (0, (4, 3, 2, 1, 0), (3, 2, 1, 0)),  # backward to the shot's start
        (0, (4, 5, 6), (4, 5, 6)),
        (2, (7, 8, 9), (7, 8, 9)),
    ]
    assert sorted(p for r in runs for p in r.outputs) == list(range(10))


def test_runs_without_keyframe_in_shot_and_duplicates():
    assert plan_runs(5, [None, 12]) == plan_runs(5, [None])
    (run,) = plan_runs(5, [None])
    assert run.positions == (0, 1, 2, 3, 4) and run.keyframe == 0
    # Two keyframes on one frame: the first given anchors the run.
    runs = plan_runs(4, [0, 0])
    assert len(runs) == 1 and runs[0].keyframe == 0
    with pytest.raises(ValueError, match="keyframe"):
        plan_runs(4, [])
