"""Which frames each diffusion segment generates, and which of its frames are kept.

Pure arithmetic (no torch) so it is tested on any shot length. The reference
slides 81-frame windows by 65 and drops whatever is left after the last full
window, producing nothing for a shot under 81 frames. Here a shorter last
segment (padded to the VAE's 4k+1 frames with copies of its last frame) covers
the tail, so every frame is generated.

Keyframes split a shot into runs. The image-to-video model treats its
reference as the first frame, so each run starts at a keyframe: forward to the
next keyframe, and, before the first keyframe, backward (frames reversed).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SEGMENT_LENGTH = 81
DEFAULT_OVERLAP = 16
TEMPORAL_COMPRESSION = 4


@dataclass(frozen=True)
class Segment:
    start: int  # first frame, as a position in the run
    end: int  # one past the last real frame
    keep_from: int  # first position this segment's output is used for (the rest of the overlap is the previous one's)
    keep_to: int  # one past the last position used

    @property
    def frames(self) -> int:
        return self.end - self.start

    @property
    def padded_frames(self) -> int:
        """Frames the model generates: the next 4k+1 (the VAE's temporal grid)."""
        return _next_4k1(self.frames)


@dataclass(frozen=True)
class Run:
    keyframe: int  # index into the keyframe list of the reference for this run
    positions: tuple[int, ...]  # shot positions in processing order; positions[0] is the keyframe's (when in shot)
    output_from: int = 0  # positions[output_from:] are this run's output (a backward run leaves its keyframe's frame)

    @property
    def outputs(self) -> tuple[int, ...]:
        return self.positions[self.output_from:]


def _next_4k1(n: int) -> int:
    return ((max(n, 1) - 1 + TEMPORAL_COMPRESSION - 1) // TEMPORAL_COMPRESSION) * TEMPORAL_COMPRESSION + 1


def check_segment_options(segment_length: int, overlap: int) -> None:
    if segment_length < 5 or (segment_length - 1) % TEMPORAL_COMPRESSION:
        raise ValueError(f"segment length must be 4k+1 frames (k >= 1), got {segment_length}")
    if overlap < TEMPORAL_COMPRESSION or overlap % TEMPORAL_COMPRESSION or overlap >= segment_length - 1:
        raise ValueError(
            f"overlap must be a multiple of {TEMPORAL_COMPRESSION}, at least {TEMPORAL_COMPRESSION} and under "
            f"the segment length minus one, got {overlap} for segments of {segment_length}"
        )


def plan_segments(
    num_frames: int, segment_length: int = DEFAULT_SEGMENT_LENGTH, overlap: int = DEFAULT_OVERLAP
) -> list[Segment]:
    """Segments covering positions 0..num_frames-1; the kept ranges tile them exactly once.

    Consecutive segments overlap by `overlap` frames; the earlier keeps the first
    half of the overlap, the later (whose first latents were cross-faded toward
    the earlier's) the second half.
    """
    check_segment_options(segment_length, overlap)
    if num_frames < 1:
        return []
    spans = []
    start = 0
    while True:
        end = min(start + segment_length, num_frames)
        spans.append((start, end))
        if end >= num_frames:
            break
        start = end - overlap
    half = overlap // 2
    segments = []
    for i, (start, end) in enumerate(spans):
        keep_from = 0 if i == 0 else start + half
        keep_to = num_frames if i == len(spans) - 1 else spans[i + 1][0] + half
        segments.append(Segment(start, end, keep_from, keep_to))
    return segments


def plan_runs(num_frames: int, keyframe_positions: list[int | None]) -> list[Run]:
    """Runs over shot positions 0..num_frames-1 for keyframes at the given positions (None: not in the shot).

    With no keyframe inside the shot, one forward run from position 0 uses the
    first keyframe given (the caller picks which, e.g. the nearest).
    """
    if num_frames < 1:
        return []
    if not keyframe_positions:
        raise ValueError("at least one keyframe is needed")
    inside = sorted(
        {p: i for i, p in reversed(list(enumerate(keyframe_positions))) if p is not None and 0 <= p < num_frames}.items()
    )
    if not inside:
        return [Run(0, tuple(range(num_frames)))]
    runs = []
    first_pos, first_key = inside[0]
    if first_pos > 0:
        # Backward from the first keyframe: its own frame is output by the forward run.
        backward = tuple(range(first_pos, -1, -1))
        runs.append(Run(first_key, backward, output_from=1))
    for n, (pos, key) in enumerate(inside):
        stop = inside[n + 1][0] if n + 1 < len(inside) else num_frames
        runs.append(Run(key, tuple(range(pos, stop))))
    return runs

