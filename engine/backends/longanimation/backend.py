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

from pathlib import Path

import numpy as np

from longanim.engine.backends.base import Backend, BackendError, ColoredFrame, Keyframe
from longanim.engine.errors import InputError

_TINY = dict(segment_length=17, overlap=8, fusion_latents=2, steps=4, fusion_steps=2, global_frames=16, local_frames=4)
_MODEL_MULTIPLE = 16  # VAE 8x spatial x patch 2
_SKETCH_BATCH = 16  # frames per pass of the line-art network


class LongAnimationBackend(Backend):
    """Options: weights (folder laid out like the release), device ("auto", "cuda", "cuda:1", "cpu"),
    dtype ("auto": bf16 on GPU, fp32 on CPU), steps, cfg, offload, vae_tiling, resolution (model
    resolution: "576x1024", the training size, by default; "768x1360", the reference script's; any
    HxW in multiples of 16; "input": the input's size rounded down to 16), height/width (override
    one side of it), segment_length, overlap, fusion_steps, fusion_latents, prompt (a scene
    description; the release's quality suffix is appended), seed, memory (False: no DGLM and no
    memory encoder needed), tiny (small segments, few steps and the input's resolution, for tests).
    """

    name = "longanimation"

    def __init__(
        self, weights: str | Path | None = None, *, device: str = "auto", dtype: str = "auto", steps: int | None = None,
        cfg: float = 6.0, offload: bool = False, vae_tiling: bool = True, resolution: str | None = None,
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
        self.offload, self.vae_tiling, self.memory = offload, vae_tiling, memory
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

    def colorize(self, frames, keyframes, *, progress=None, cancelled=None):
        from longanim.engine.backends.longanimation.memory_encoder import memory_bank
        from longanim.engine.backends.longanimation.planning import plan_runs

        if not keyframes:
            raise InputError("the longanimation backend needs at least one colored keyframe")
        for key in keyframes:
            _rgb(key.color, f"keyframe {key.number} color")
            if key.lineart is not None:
                _rgb(key.lineart, f"keyframe {key.number} line art")
        shot = _Shot(self.resolution, self.settings.sketch_threshold, lambda: self._loaded(progress))
        for number, lineart in frames:
            shot.add(number, lineart)
        shot.flush()
        if not shot.numbers:
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
        for run_index, run in enumerate(runs):
            key = keys[run.keyframe]
            ref_rgb = shot.to_model(key.color)
            # The release reads the reference's line art from its colors, through the same network.
            ref_mask = shot.sketch(ref_rgb[None])[0]
            outputs = set(run.outputs)
            label = {"run": run_index + 1, "runs": len(runs)}
            generated = pipe.generate_run(
                lambda i, run=run: shot.mask(run.positions[i]), len(run.positions), ref_rgb, ref_mask, bank,
                self.settings, progress=progress, cancelled=cancelled, label=label,
            )
            for run_pos, rgb in generated:
                position = run.positions[run_pos]
                if position in outputs:
                    done[position] = rgb
                while next_out in done:
                    yield shot.colored(next_out, done.pop(next_out), keys, run_index)
                    next_out += 1

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
    shot is named before the weights are read).
    """

    def __init__(self, resolution, threshold: float, pipeline):
        self.resolution = resolution
        self.threshold = threshold
        self._pipeline = pipeline
        self.numbers: list[int] = []
        self.position: dict[int, int] = {}
        self._packed: list[np.ndarray] = []
        self._pending: list[np.ndarray] = []
        self.framing = None
        self.size: tuple[int, int] | None = None  # input (h, w)
        self.model_size: tuple[int, int] | None = None

    def add(self, number: int, image: np.ndarray) -> None:
        from longanim.engine.backends.longanimation.resolution import Framing

        _rgb(image, f"frame {number}")
        if number in self.position:
            raise InputError(f"frame {number} appears twice in the shot")
        if self.size is None:
            self.size = image.shape[:2]
            h, w = self.size
            mh, mw = self.resolution
            self.model_size = (mh or max(_MODEL_MULTIPLE, h // _MODEL_MULTIPLE * _MODEL_MULTIPLE),
                               mw or max(_MODEL_MULTIPLE, w // _MODEL_MULTIPLE * _MODEL_MULTIPLE))
            self.framing = Framing.fit(self.size, self.model_size)
        elif image.shape[:2] != self.size:
            raise InputError(f"frame {number} is {image.shape[1]}x{image.shape[0]}, the shot is "
                             f"{self.size[1]}x{self.size[0]}")
        self.position[number] = len(self.numbers)
        self.numbers.append(number)
        self._pending.append(self.framing.to_model(image))
        if len(self._pending) >= _SKETCH_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._packed += [np.packbits(m) for m in self.sketch(np.stack(self._pending))]
            self._pending = []

    def sketch(self, frames: np.ndarray) -> np.ndarray:
        return self._pipeline().line_masks(frames, self.threshold)

    def to_model(self, image: np.ndarray) -> np.ndarray:
        """A keyframe's view at the model size: framed like the shot when it has the shot's size."""
        from longanim.engine.backends.longanimation.resolution import Framing

        framing = self.framing if image.shape[:2] == self.size else Framing.fit(image.shape[:2], self.model_size)
        return framing.to_model(image)

    def mask(self, position: int) -> np.ndarray:
        h, w = self.model_size
        return np.unpackbits(self._packed[position], count=h * w).reshape(h, w).astype(bool)

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
