"""The frames the Video-XL memory reads, kept bounded however long the shot grows.

The reference re-reads its whole output video before every segment and picks
`np.linspace(0, n - 1, min(n, 650), dtype=int)` of its n frames for the global
memory and the last 20 of those picks for the local memory (so past 650 frames
the local memory is spread over ~20 * n / 650 frames, not the last 20). Holding
or re-decoding every frame costs memory and time that grow with the shot.

`FrameStore` sees each colored frame once, as it is generated, and keeps only
what Video-XL will look at, already reduced to the vision tower's input (the
CLIP processor's shortest-edge bicubic resize and centre crop, so a 576x1024
frame becomes one 336x336 uint8 square, ~0.33 MB):

  * a strided history: every `stride`-th frame, `stride` doubling (and every
    other held frame dropped) whenever more than `capacity` (default 2 x 650)
    are held, so the history always spans the whole shot evenly;
  * the last `recent` frames (default 64).

`sample()` asks for exactly the reference's indices. Up to `capacity` frames
every frame is held, so the picks are the reference's own; beyond it, a pick
the store no longer holds is served by the nearest held frame, at most
`stride / 2` frames away (under half the picks' own spacing), and picks that
land in the recent window stay exact. Memory is bounded by
`(capacity + recent)` squares whatever the shot length (bench/bench_memory_store.py).

Only numpy and PIL: the store sits in the pipeline's CPU loop and imports no torch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np

GLOBAL_FRAMES = 650  # the reference's cap on the global memory's frames
LOCAL_FRAMES = 20  # the local memory: the last 20 global picks
VISION_SIZE = 336  # CLIP ViT-L/14-336 input side


def reference_indices(n: int, global_frames: int = GLOBAL_FRAMES) -> np.ndarray:
    """The frames the reference samples from n generated frames (its own linspace, truncating)."""
    if n < 1:
        raise ValueError(f"no frames to sample from (n={n})")
    return np.linspace(0, n - 1, min(n, global_frames), dtype=int)


def clip_resize_crop(rgb: np.ndarray, size: int = VISION_SIZE) -> np.ndarray:
    """HxWx3 uint8 -> size x size x 3 uint8, as CLIPImageProcessor resizes and crops.

    Shortest edge to `size` with PIL bicubic (long edge truncated, as transformers
    computes it), then the centre `size` x `size` crop.
    """
    from PIL import Image

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"frames must be HxWx3 uint8, got shape {rgb.shape} dtype {rgb.dtype}")
    h, w = rgb.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    if (new_h, new_w) != (h, w):
        rgb = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), resample=Image.Resampling.BICUBIC))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


class FrameStore:
    """Colored frames of one shot, in generation order, bounded and downsampled for Video-XL."""

    def __init__(
        self,
        *,
        global_frames: int = GLOBAL_FRAMES,
        local_frames: int = LOCAL_FRAMES,
        size: int = VISION_SIZE,
        capacity: int | None = None,
        recent: int = 64,
    ):
        if global_frames < 1 or local_frames < 1 or size < 1:
            raise ValueError("global_frames, local_frames and size must be >= 1")
        capacity = 2 * global_frames if capacity is None else capacity
        if capacity < global_frames:
            raise ValueError(f"capacity {capacity} must be >= global_frames {global_frames}")
        if recent < 0:
            raise ValueError(f"recent must be >= 0, got {recent}")
        self.global_frames = global_frames
        self.local_frames = min(local_frames, global_frames)
        self.size = size
        self.capacity = capacity
        self.recent = recent
        self._held: dict[int, np.ndarray] = {}  # frame index -> square, indices multiples of _stride
        self._recent: deque[tuple[int, np.ndarray]] = deque(maxlen=recent or None)
        self._stride = 1
        self._count = 0

    def __len__(self) -> int:
        """Frames added so far (the shot length the next sample is taken over)."""
        return self._count

    @property
    def stride(self) -> int:
        return self._stride

    @property
    def nbytes(self) -> int:
        """Bytes of frame data held (each frame counted once even when in both parts)."""
        ids = {id(a): a.nbytes for a in self._held.values()}
        ids.update({id(a): a.nbytes for _, a in self._recent})
        return sum(ids.values())

    def add(self, frames: Iterable[np.ndarray]) -> None:
        """Append colored frames (HxWx3 uint8, any size) in generation order."""
        for rgb in frames:
            index = self._count
            keep = index % self._stride == 0
            if not keep and not self.recent:
                self._count += 1
                continue
            square = clip_resize_crop(rgb, self.size)
            square.setflags(write=False)
            if keep:
                self._held[index] = square
                if len(self._held) > self.capacity:
                    self._stride *= 2
                    self._held = {i: a for i, a in self._held.items() if i % self._stride == 0}
            if self.recent:
                self._recent.append((index, square))
            self._count += 1

    def state(self) -> dict[str, np.ndarray]:
        """Everything the next samples depend on, as plain arrays (a shot checkpoint stores them):
        each held square once, by frame index, and which of them are the history and the recent."""
        squares = dict(self._held)
        squares.update(self._recent)
        index = sorted(squares)
        frames = (np.stack([squares[i] for i in index]) if index
                  else np.zeros((0, self.size, self.size, 3), np.uint8))
        return {"index": np.array(index, np.int64), "frames": frames,
                "held": np.array(sorted(self._held), np.int64),
                "recent": np.array([i for i, _ in self._recent], np.int64),
                "stride": np.array(self._stride, np.int64), "count": np.array(self._count, np.int64)}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Become the store `state()` described; a state for another size or window is refused
        (ValueError), since its samples would not be the ones the saved run went on to take."""
        index, frames = np.asarray(state["index"]), np.asarray(state["frames"])
        held, recent = np.asarray(state["held"]), np.asarray(state["recent"])
        stride, count = int(state["stride"]), int(state["count"])
        if frames.dtype != np.uint8 or frames.shape != (len(index), self.size, self.size, 3):
            raise ValueError(f"frame store state holds frames of shape {frames.shape}, not {self.size}x{self.size} "
                             "squares")
        if stride < 1 or stride & (stride - 1) or not 0 <= len(held) <= self.capacity or len(recent) > self.recent:
            raise ValueError("frame store state does not fit this store's capacity and recent window")
        squares = {int(i): frames[k] for k, i in enumerate(index)}
        if not set(map(int, held)) | set(map(int, recent)) <= set(squares) or any(i >= count for i in squares):
            raise ValueError("frame store state names frames it does not hold")
        frames.setflags(write=False)
        self._held = {int(i): squares[int(i)] for i in held}
        self._recent = deque(((int(i), squares[int(i)]) for i in recent), maxlen=self.recent or None)
        self._stride, self._count = stride, count

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(global, local, indices): global (G, size, size, 3) uint8 over the shot so far, local its last picks.

        `indices` are the frame numbers actually served (equal to `reference_indices(len(self))`
        while every wanted frame is still held).
        """
        served = self.served_indices()
        frames = np.stack([self._frame(i) for i in served])
        return frames, frames[-self.local_frames :], served

    def served_indices(self) -> np.ndarray:
        """For each of the reference's picks, the held frame nearest to it (the pick itself when held)."""
        wanted = reference_indices(self._count, self.global_frames)
        available = np.array(sorted(set(self._held) | {i for i, _ in self._recent}))
        pos = np.clip(np.searchsorted(available, wanted), 1, len(available) - 1) if len(available) > 1 else None
        if pos is None:
            return np.full_like(wanted, available[0])
        lower, upper = available[pos - 1], available[pos]
        served = np.where(wanted - lower <= upper - wanted, lower, upper)
        return np.where(np.isin(wanted, available), wanted, served)

    def _frame(self, index: int) -> np.ndarray:
        if index in self._held:
            return self._held[index]
        for i, a in self._recent:
            if i == index:
                return a
        raise KeyError(index)
