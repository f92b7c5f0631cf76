"""The Video-XL frame store: the reference's picks, exact while it can hold them, bounded always."""

from __future__ import annotations

import numpy as np
import pytest

from longanim.engine.backends.longanimation.memory_store import (
    FrameStore,
    clip_resize_crop,
    reference_indices,
)

SIZE = 4


def numbered(index: int, shape=(6, 10)) -> np.ndarray:
    """A frame whose centre crop carries its own index (red: low byte, green: high byte, blue: 7)."""
    frame = np.zeros((*shape, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = index % 256, index // 256, 7
    return frame


def index_of(square: np.ndarray) -> int:
    assert (square == square[0, 0]).all()  # a flat frame stays flat through resize and crop
    return int(square[0, 0, 0]) + 256 * int(square[0, 0, 1])


def fill(store: FrameStore, start: int, stop: int, chunk: int = 33) -> None:
    for a in range(start, stop, chunk):  # segment-sized chunks, as the pipeline adds them
        store.add(numbered(i) for i in range(a, min(a + chunk, stop)))


def test_reference_indices_are_the_reference_linspace():
    assert reference_indices(5).tolist() == [0, 1, 2, 3, 4]
    picks = reference_indices(5000)
    assert len(picks) == 650 and picks[0] == 0 and picks[-1] == 4999
    assert (picks == np.linspace(0, 4999, 650).astype(int)).all()
    gaps = np.diff(picks)
    assert gaps.min() >= 7 and gaps.max() <= 8  # even: 4999 / 649 = 7.7
    with pytest.raises(ValueError, match="no frames"):
        reference_indices(0)


@pytest.mark.parametrize("n", [1, 7, 10, 19, 20])
def test_exact_reference_picks_while_everything_is_held(n):
    store = FrameStore(global_frames=10, local_frames=3, size=SIZE, capacity=20, recent=4)
    fill(store, 0, n, chunk=3)
    glob, local, served = store.sample()
    assert served.tolist() == reference_indices(n, 10).tolist()
    assert [index_of(f) for f in glob] == served.tolist()
    assert [index_of(f) for f in local] == served[-3:].tolist()  # local: the last picks, as the reference
    assert glob.shape == (min(n, 10), SIZE, SIZE, 3) and glob.dtype == np.uint8


def test_long_shot_stays_bounded_even_and_close_to_the_reference():
    store = FrameStore(global_frames=10, local_frames=3, size=SIZE, capacity=20, recent=4)
    square = SIZE * SIZE * 3
    done = 0
    for n in [21, 40, 41, 97, 300, 1001, 5000]:
        fill(store, done, n)
        done = n
        wanted = reference_indices(n, 10)
        glob, local, served = store.sample()
        assert len(store) == n
        assert store.nbytes <= (store.capacity + store.recent) * square  # bounded whatever n is
        assert len(store._held) <= store.capacity
        assert np.diff(served).min() > 0  # distinct, in shot order
        assert np.abs(served - wanted).max() <= store.stride / 2  # nearest held frame
        assert served[-1] == n - 1  # the newest frame is always exact
        in_recent = wanted >= n - store.recent
        assert (served[in_recent] == wanted[in_recent]).all()
        assert [index_of(f) for f in glob] == served.tolist()  # the frames really are those frames
        assert [index_of(f) for f in local] == served[-3:].tolist()
    assert store.stride > 1


def test_memory_is_flat_in_shot_length():
    sizes = {}
    store = FrameStore(global_frames=10, local_frames=3, size=SIZE, capacity=20, recent=4)
    done = 0
    for n in (500, 5000):
        fill(store, done, n)
        done = n
        sizes[n] = store.nbytes
    assert sizes[5000] <= sizes[500] * 1.5  # a growing shot would be 10x


def test_frames_are_reduced_as_clip_preprocessing_reduces_them():
    transformers = pytest.importorskip("transformers")
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    mean, std = np.array(processor.image_mean, np.float32), np.array(processor.image_std, np.float32)
    rng = np.random.default_rng(0)
    for shape in [(576, 1024, 3), (1024, 576, 3), (336, 336, 3), (100, 50, 3)]:
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        expected = processor.preprocess([frame], return_tensors="np")["pixel_values"][0]
        ours = ((clip_resize_crop(frame).astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)
        assert np.abs(ours - expected).max() <= 1e-6


def test_store_keeps_only_squares_of_the_vision_size():
    store = FrameStore(size=8)
    store.add([np.zeros((90, 160, 3), np.uint8)])
    glob, _, _ = store.sample()
    assert glob.shape == (1, 8, 8, 3)
    assert store.nbytes == 8 * 8 * 3


def test_bad_input_is_named():
    store = FrameStore(size=SIZE)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        store.add([np.zeros((6, 6), np.uint8)])
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        store.add([np.zeros((6, 6, 3), np.float32)])
    with pytest.raises(ValueError, match="no frames"):
        FrameStore().sample()
    with pytest.raises(ValueError, match="capacity"):
        FrameStore(global_frames=10, capacity=5)


def test_bench_script_runs_end_to_end(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / "bench_memory_store.py"
    spec = importlib.util.spec_from_file_location("bench_memory_store", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "memory_store.md"
    assert bench.main(["--frames", "40", "80", "--height", "8", "--width", "8", "--out", str(out)]) == 0
    table = out.read_text()
    assert "| 40 |" in table and "| 80 |" in table and "80 vs 40 frames" in table
    assert list(tmp_path.iterdir()) == [out]


def test_state_round_trip_past_a_stride_doubling_samples_the_same_frames(tmp_path):
    """A shot checkpoint holds the store as plain arrays (an .npz without pickles); restored,
    it serves what the store it was taken from serves, now and as the shot goes on."""
    store = FrameStore(global_frames=10, local_frames=3, size=SIZE, capacity=12, recent=5)
    fill(store, 0, 40, chunk=7)
    assert store.stride > 1  # the history has thinned out at least once
    np.savez(tmp_path / "state.npz", **store.state())
    with np.load(tmp_path / "state.npz", allow_pickle=False) as z:
        again = FrameStore(global_frames=10, local_frames=3, size=SIZE, capacity=12, recent=5)
        again.restore({name: z[name] for name in z.files})
    for _ in range(2):
        assert len(again) == len(store) and again.stride == store.stride
        for mine, theirs in zip(again.sample(), store.sample()):
            np.testing.assert_array_equal(mine, theirs)
        fill(store, len(store), len(store) + 30, chunk=7)
        fill(again, len(again), len(again) + 30, chunk=7)


def test_a_state_for_another_store_is_refused():
    store = FrameStore(global_frames=10, local_frames=3, size=SIZE, capacity=12, recent=5)
    fill(store, 0, 20)
    with pytest.raises(ValueError, match="squares"):
        FrameStore(global_frames=10, local_frames=3, size=SIZE + 1).restore(store.state())
    with pytest.raises(ValueError, match="capacity"):
        FrameStore(global_frames=4, local_frames=3, size=SIZE, capacity=4, recent=2).restore(store.state())
