"""The `longanimation` backend: the diffusion pipeline behind the common backend contract.

Every frame is brought to the model resolution as the reference does it
(bicubic resize until it covers 576x1024, centre crop) and turned into the
release's sketch by its line-art network: line art from Blender or Nuke and
color clips (the reference's own input) alike. The sketches are kept as
packed 1-bit masks (what the model reads), so a long shot costs ~1/24 of its
uint8 frames. Results go back to the input size, streamed per finished segment
in input order (frames before the first keyframe come out once their backward
run ends); what the crop cut off gets confidence 0.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from longanim.engine.backends.base import Backend, BackendError, ColoredFrame, Keyframe
from longanim.engine.errors import InputError

_TINY = dict(segment_length=17, overlap=8, fusion_latents=2, steps=4, fusion_steps=2, global_frames=16, local_frames=4)
_MODEL_MULTIPLE = 16  # VAE 8x spatial x patch 2
_SKETCH_BATCH = 16  # frames per pass of the line-art network
_STATE_VERSION = 1  # of the shot state `_state` writes


class LongAnimationBackend(Backend):
    """Options: weights (folder laid out like the release), device ("auto", "cuda", "cuda:1", "cpu"),
    dtype ("auto": bf16 on GPU, fp32 on CPU), steps, cfg, offload ("none": every part on the device;
    "model": one phase's parts at a time, for 24 GB cards, see residency.py; true = "model"), vae_tiling,
    resolution (model resolution: "576x1024", the training size, by default; "768x1360", the
    reference script's; any HxW in multiples of 16; "input": the input's size rounded down to 16),
    height/width (override one side of it), segment_length, overlap, fusion_steps, fusion_latents,
    prompt (a scene description; the release's quality suffix is appended), seed, memory (False: no
    DGLM and no memory encoder needed), tiny (small segments, few steps and the input's resolution,
    for tests).
    """

    name = "longanimation"

    def __init__(
        self, weights: str | Path | None = None, *, device: str = "auto", dtype: str = "auto", steps: int | None = None,
        cfg: float = 6.0, offload: str | bool = "none", vae_tiling: bool = True, resolution: str | None = None,
        height: int | None = None, width: int | None = None, segment_length: int | None = None,
        overlap: int | None = None, fusion_steps: int | None = None, fusion_latents: int | None = None,
        prompt: str | None = None, seed: int = 42, memory: bool = True, tiny: bool = False,
    ):
        from longanim.engine.backends.longanimation.pipeline import Settings
        from longanim.engine.backends.longanimation.resolution import TRAINED, parse_resolution

        if weights is None:
            raise BackendError("the longanimation backend needs `weights`: a folder laid out like the release")
        self.weights = Path(weights)
        if not self.weights.is_dir():
            raise BackendError(f"weights folder {self.weights} not found")
        base = dict(_TINY) if tiny else {}
        given = dict(steps=steps, segment_length=segment_length, overlap=overlap, fusion_steps=fusion_steps,
                     fusion_latents=fusion_latents, prompt=prompt)
        base.update({k: v for k, v in given.items() if v is not None})
        self.settings = Settings(guidance_scale=cfg, seed=seed, **base)
        if fusion_steps is None:  # the release fuses the last 19 of 50 steps; fewer steps fuse them all
            self.settings.fusion_steps = min(self.settings.fusion_steps, self.settings.steps)
        try:
            self.settings.check()
            model_size = parse_resolution(resolution or ("input" if tiny else "x".join(map(str, TRAINED))))
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        for label, value in (("height", height), ("width", width)):
            if value is not None and (value < _MODEL_MULTIPLE or value % _MODEL_MULTIPLE):
                raise BackendError(f"{label} must be a positive multiple of {_MODEL_MULTIPLE}, got {value}")
        self.resolution = (height or (model_size[0] if model_size else None),
                           width or (model_size[1] if model_size else None))
        self.device_option, self.dtype_option = device, dtype
        from longanim.engine.backends.longanimation.residency import parse_offload

        try:
            self.offload = parse_offload(offload)
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        self.vae_tiling, self.memory = vae_tiling, memory
        self._pipeline = None

    def describe(self) -> dict:
        return {"name": self.name, "weights": str(self.weights), "device": self.device_option,
                "segment_length": self.settings.segment_length, "overlap": self.settings.overlap,
                "steps": self.settings.steps, "memory": self.memory,
                "resolution": "x".join(str(v or "input") for v in self.resolution)}

    def cache_identity(self) -> dict:
        """The weight files by name, size, modification time and inode: replacing any of them
        (a new release, a retrained memory encoder) makes earlier results stale. Reading
        gigabytes to hash them would cost more than the check is worth."""
        files = []
        for path in sorted(p for p in self.weights.rglob("*") if p.is_file()):
            st = path.stat()
            files.append([str(path.relative_to(self.weights)), st.st_size, st.st_mtime_ns, st.st_ino])
        return {**super().cache_identity(), "weights": str(self.weights.resolve()), "weight_files": files}

    # --- loading ------------------------------------------------------------------------------

    def _resolve_device(self):
        import torch

        device = self.device_option
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but CUDA is not available")
        dtypes = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                  "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}
        if self.dtype_option == "auto":
            dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        elif self.dtype_option in dtypes:
            dtype = dtypes[self.dtype_option]
        else:
            raise BackendError(f"unknown dtype {self.dtype_option!r}; choose auto, bf16, fp16 or fp32")
        return device, dtype

    def pipeline(self):
        if self._pipeline is None:
            from longanim.engine.backends.longanimation.pipeline import LongAnimationPipeline

            device, dtype = self._resolve_device()
            self._pipeline = LongAnimationPipeline.from_weights(
                self.weights, device=device, dtype=dtype, offload=self.offload, vae_tiling=self.vae_tiling,
                memory=self.memory,
            )
        return self._pipeline

    # --- colorize -----------------------------------------------------------------------------

    resumable = True

    def state_identity(self) -> dict:
        """The weights and code, and every option that decides the frames: the device and dtype
        as resolved ("auto" on another machine may mean another), not offload, which only moves
        parts between devices."""
        device, dtype = self._resolve_device()
        import torch

        return {**self.cache_identity(), "state_version": _STATE_VERSION,
                "options": {"settings": dataclasses.asdict(self.settings), "resolution": list(self.resolution),
                            "device": torch.device(device).type, "dtype": str(dtype), "memory": self.memory,
                            "vae_tiling": self.vae_tiling}}

    def colorize(self, frames, keyframes, *, progress=None, cancelled=None):
        for frame, _ in self.colorize_resumable(frames, keyframes, progress=progress, cancelled=cancelled):
            yield frame

    def colorize_resumable(self, frames, keyframes, state=None, *, progress=None, cancelled=None):
        """The shot can stop where a segment's frames have all come out (`_state`): its memory, the
        fusion tails and the sketches later segments read are then all it needs to go on."""
        from longanim.engine.backends.longanimation.memory_encoder import memory_bank
        from longanim.engine.backends.longanimation.planning import plan_runs, plan_segments

        if not keyframes:
            raise InputError("the longanimation backend needs at least one colored keyframe")
        for key in keyframes:
            _rgb(key.color, f"keyframe {key.number} color")
            if key.lineart is not None:
                _rgb(key.lineart, f"keyframe {key.number} line art")
        saved = _Saved(state) if state is not None else None
        shot = _Shot(self.resolution, self.settings.sketch_threshold, lambda: self._loaded(progress), saved)
        for number, lineart in frames:
            shot.add(number, lineart)
        shot.flush()
        if saved is not None and len(shot.numbers) > shot.given:
            raise InputError(f"the checkpoint was saved for the shot through frame {shot.numbers[-1]}, this run "
                             f"stops at frame {shot.numbers[shot.given - 1]}: the model's segments read the frames "
                             "after theirs, so it cannot go on from that checkpoint; run through the same last "
                             "frame, or delete the checkpoint")
        if not shot.numbers or (saved is not None and saved.next_out == len(shot.numbers)):
            return
        keys = _order_keyframes(keyframes, shot)
        runs = plan_runs(len(shot.numbers), [shot.position.get(k.number) for k in keys])
        pipe = self._loaded(progress)
        if progress is not None:
            progress({"stage": "plan", "frames": len(shot.numbers), "runs": len(runs),
                      "model_size": list(shot.model_size)})
        bank = None
        if pipe.memory_encoder is not None:
            bank = memory_bank(pipe.memory_encoder, global_frames=self.settings.global_frames,
                               local_frames=self.settings.local_frames)
        done: dict[int, np.ndarray] = {}
        next_out = 0
        first_run, first_segment, previous = 0, 0, None
        if saved is not None:
            first_run, first_segment, previous = saved.run, saved.segment, saved.tails(pipe)
            next_out, done = saved.next_out, saved.pending()
            saved.restore_bank(bank)
        for run_index in range(first_run, len(runs)):
            run = runs[run_index]
            segments = plan_segments(len(run.positions), self.settings.segment_length, self.settings.overlap)
            start = first_segment if run_index == first_run else 0
            cursor = {"segment": start, "tails": previous if run_index == first_run else None}

            def on_segment(index, tails, cursor=cursor):
                cursor["segment"], cursor["tails"] = index + 1, tails

            key = keys[run.keyframe]
            ref_rgb = shot.to_model(key.color)
            # The release reads the reference's line art from its colors, through the same network.
            ref_mask = shot.sketch(ref_rgb[None])[0]
            outputs = set(run.outputs)
            label = {"run": run_index + 1, "runs": len(runs)}
            generated = pipe.generate_run(
                lambda i, run=run: shot.mask(run.positions[i]), len(run.positions), ref_rgb, ref_mask, bank,
                self.settings, progress=progress, cancelled=cancelled, label=label, start_segment=start,
                previous=cursor["tails"], on_segment=on_segment,
            )
            for run_pos, rgb in generated:
                position = run.positions[run_pos]
                if position in outputs:
                    done[position] = rgb
                segment_out = run_pos == segments[cursor["segment"] - 1].keep_to - 1
                while next_out in done:
                    frame = shot.colored(next_out, done.pop(next_out), keys, run_index)
                    next_out += 1
                    snapshot = None
                    if segment_out and next_out not in done:
                        where = (run_index, cursor["segment"]) if cursor["segment"] < len(segments) \
                            else (run_index + 1, 0)
                        snapshot = functools.partial(
                            _state, shot, runs, where, cursor["tails"] if where[1] else None, bank, done, next_out,
                            self.settings)
                    yield frame, snapshot

    def _loaded(self, progress):
        if progress is not None and self._pipeline is None:
            progress({"stage": "load", "weights": str(self.weights)})
        return self.pipeline()


def _rgb(image: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"{what} must be an HxWx3 uint8 array, got {getattr(image, 'shape', type(image))}")
    return image


def _order_keyframes(keyframes, shot) -> list[Keyframe]:
    """Keyframes inside the shot first-come; with none inside, the one nearest the shot's start leads."""
    if any(k.number in shot.position for k in keyframes):
        return list(keyframes)
    first = shot.numbers[0]
    return sorted(keyframes, key=lambda k: abs(k.number - first))


class _Shot:
    """Frame numbers, the framing (input size -> model size) and packed sketches at the model size.

    Frames wait in a small batch for the line-art network, which is loaded
    with the pipeline when the first batch is full (a bad frame early in the
    shot is named before the weights are read). Batches start at shot positions
    that are multiples of the batch size, in a resumed run too: a frame's sketch
    then comes from the same batch as in an uninterrupted run, to the last bit.
    A resumed run takes the sketches before its first whole batch from the state.
    """

    def __init__(self, resolution, threshold: float, pipeline, saved: _Saved | None = None):
        self.resolution = resolution
        self.threshold = threshold
        self._pipeline = pipeline
        self.numbers: list[int] = []
        self.position: dict[int, int] = {}
        self._packed: dict[int, np.ndarray] = {}
        self._pending: list[np.ndarray] = []
        self.framing = None
        self.size: tuple[int, int] | None = None  # input (h, w)
        self.model_size: tuple[int, int] | None = None
        self.given = 0  # frames seen, those before the state's included
        self._sketch_from = 0  # first position sketched here
        self._resumed = saved is not None
        if saved is not None:
            self.numbers = list(saved.numbers)
            self.position = {n: i for i, n in enumerate(self.numbers)}
            self._frame_size(saved.size)
            self._packed = dict(saved.masks)
            self.given = saved.next_out
            self._sketch_from = _align_up(saved.next_out)

    def _frame_size(self, size) -> None:
        from longanim.engine.backends.longanimation.resolution import Framing

        self.size = (int(size[0]), int(size[1]))
        h, w = self.size
        mh, mw = self.resolution
        self.model_size = (mh or max(_MODEL_MULTIPLE, h // _MODEL_MULTIPLE * _MODEL_MULTIPLE),
                           mw or max(_MODEL_MULTIPLE, w // _MODEL_MULTIPLE * _MODEL_MULTIPLE))
        self.framing = Framing.fit(self.size, self.model_size)

    def add(self, number: int, image: np.ndarray) -> None:
        _rgb(image, f"frame {number}")
        resumed = self._resumed
        if resumed:
            if self.given >= len(self.numbers):
                raise InputError(f"frame {number} is past the end of the checkpoint's shot (frame {self.numbers[-1]}):"
                                 " its segments were planned for that end, so it cannot be continued further; "
                                 "delete the checkpoint to colorize from the start")
            if self.numbers[self.given] != number:
                raise InputError(f"frame {number} is not the checkpoint's next frame ({self.numbers[self.given]})")
        elif number in self.position:
            raise InputError(f"frame {number} appears twice in the shot")
        if self.size is None:
            self._frame_size(image.shape[:2])
        elif image.shape[:2] != self.size:
            raise InputError(f"frame {number} is {image.shape[1]}x{image.shape[0]}, the shot is "
                             f"{self.size[1]}x{self.size[0]}")
        position = self.given
        if not resumed:
            self.position[number] = position
            self.numbers.append(number)
        self.given += 1
        if position < self._sketch_from:
            return  # its batch began before the state: the sketch, when still read, is in the state
        self._pending.append(self.framing.to_model(image))
        if (position + 1) % _SKETCH_BATCH == 0:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            first = self.given - len(self._pending)
            for k, m in enumerate(self.sketch(np.stack(self._pending))):
                self._packed[first + k] = np.packbits(m)
            self._pending = []

    def sketch(self, frames: np.ndarray) -> np.ndarray:
        return self._pipeline().line_masks(frames, self.threshold)

    def to_model(self, image: np.ndarray) -> np.ndarray:
        """A keyframe's view at the model size: framed like the shot when it has the shot's size."""
        from longanim.engine.backends.longanimation.resolution import Framing

        framing = self.framing if image.shape[:2] == self.size else Framing.fit(image.shape[:2], self.model_size)
        return framing.to_model(image)

    def mask(self, position: int) -> np.ndarray:
        if position not in self._packed:
            raise BackendError(f"no sketch of frame {self.numbers[position]}: the checkpoint does not hold it")
        h, w = self.model_size
        return np.unpackbits(self._packed[position], count=h * w).reshape(h, w).astype(bool)

    def packed(self, positions: list[int]) -> np.ndarray:
        h, w = self.model_size
        if not positions:
            return np.zeros((0, (h * w + 7) // 8), np.uint8)
        return np.stack([self._packed[p] for p in positions])

    def colored(self, position: int, rgb: np.ndarray, keys, run_index: int) -> ColoredFrame:
        number = self.numbers[position]
        h, w = self.size
        rgb, coverage = self.framing.to_input(rgb)
        painted = next((k for k in keys if k.number == number and k.color.shape[:2] == (h, w)), None)
        if painted is not None:
            rgb, coverage = painted.color, np.ones((h, w), np.float32)  # the artist's keyframe is the ground truth
        # The diffusion model gives no per-pixel uncertainty: confidence is 1 where it generated the
        # pixel and 0 where the model's crop did not reach (filled from the nearest generated pixels).
        return ColoredFrame(number, np.ascontiguousarray(rgb), coverage,
                            {"run": run_index + 1, "keyframe": painted is not None,
                             "confidence": "not estimated (0 outside the model's crop)"})


def _align_up(position: int) -> int:
    return -(-position // _SKETCH_BATCH) * _SKETCH_BATCH


def _state(shot: _Shot, runs, where: tuple[int, int], tails, bank, done: dict, next_out: int, settings) -> dict:
    """The shot after its frames up to `next_out` came out, with segment `where[1]` of run `where[0]`
    next: plain arrays (bf16 as its bits), which `_Saved` reads back. Only the sketches that
    the segments still to come read, and that a resumed run would not sketch itself, are kept."""
    from longanim.engine.backends.longanimation.memory_encoder import pack_tensor
    from longanim.engine.backends.longanimation.planning import plan_segments

    run_index, segment = where
    needed: set[int] = set()
    for r in range(run_index, len(runs)):
        segments = plan_segments(len(runs[r].positions), settings.segment_length, settings.overlap)
        for seg in segments[segment if r == run_index else 0:]:
            needed.update(runs[r].positions[seg.start:seg.end])
    kept = sorted(p for p in needed if p < _align_up(next_out))
    mh, mw = shot.model_size
    pending = sorted(done)
    state = {
        "version": np.array(_STATE_VERSION, np.int64),
        "numbers": np.array(shot.numbers, np.int64), "size": np.array(shot.size, np.int64),
        "next_out": np.array(next_out, np.int64), "run": np.array(run_index, np.int64),
        "segment": np.array(segment, np.int64),
        "mask_positions": np.array(kept, np.int64), "masks": shot.packed(kept),
        "pending_positions": np.array(pending, np.int64),
        "pending_frames": np.stack([done[p] for p in pending]) if pending else np.zeros((0, mh, mw, 3), np.uint8),
    }
    if tails:
        import torch

        steps = sorted(tails)
        state["tail_steps"] = np.array(steps, np.int64)
        state["tails"], state["tails_dtype"] = pack_tensor(torch.stack([tails[i] for i in steps]))
    if bank is not None:
        state.update({f"bank/{name}": value for name, value in bank.state().items()})
    return state


class _Saved:
    """A state `_state` wrote, checked as it is read: a state that does not fit is refused by
    name, never half-used."""

    def __init__(self, state: dict):
        try:
            if int(state["version"]) != _STATE_VERSION:
                raise ValueError(f"state version {int(state['version'])}, this backend reads {_STATE_VERSION}")
            self.numbers = [int(n) for n in state["numbers"]]
            self.size = tuple(int(v) for v in state["size"])
            self.next_out, self.run, self.segment = (int(state[k]) for k in ("next_out", "run", "segment"))
            positions, masks = state["mask_positions"], state["masks"]
            if len(positions) != len(masks) or masks.dtype != np.uint8 or len(self.size) != 2:
                raise ValueError("sketches and their positions do not match")
            self.masks = {int(p): m for p, m in zip(positions, masks)}
            if not 0 <= self.next_out <= len(self.numbers) or self.run < 0 or self.segment < 0:
                raise ValueError("its place in the shot is outside the shot")
            self._pending = dict(zip((int(p) for p in state["pending_positions"]), state["pending_frames"]))
            self._state = state
        except (KeyError, ValueError, TypeError) as exc:
            raise BackendError(f"the checkpoint's state is not a longanimation shot state: {exc}") from None

    def pending(self) -> dict[int, np.ndarray]:
        return dict(self._pending)

    def tails(self, pipe) -> dict | None:
        from longanim.engine.backends.longanimation.memory_encoder import unpack_tensor

        if "tails" not in self._state:
            return None
        try:
            tails = unpack_tensor(self._state["tails"], self._state["tails_dtype"])
        except (KeyError, ValueError, TypeError) as exc:
            raise BackendError(f"the checkpoint's fusion tails cannot be read: {exc}") from None
        if tails.dtype != pipe.dtype:
            raise BackendError(f"the checkpoint's fusion tails are {tails.dtype}; this run computes in {pipe.dtype}")
        steps = [int(i) for i in self._state["tail_steps"]]
        return {i: t.to(pipe.device) for i, t in zip(steps, tails.unbind(0))}

    def restore_bank(self, bank) -> None:
        saved = {k[len("bank/"):]: v for k, v in self._state.items() if k.startswith("bank/")}
        if bank is None or not saved:
            if bank is not None or saved:
                raise BackendError("the checkpoint's state and this backend disagree about the memory")
            return
        try:
            bank.restore(saved)
        except (KeyError, ValueError, TypeError) as exc:
            raise BackendError(f"the checkpoint's memory bank cannot be restored: {exc}") from None
