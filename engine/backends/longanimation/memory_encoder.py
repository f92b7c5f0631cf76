"""Memory encoders turn colored frames into the K/V tokens the DGLM reads, and the
memory bank feeds them incrementally as segments finish.

The released model reads Video-XL (a Qwen2 long-video LLM): the compressed K/V
of three LLM layers, 4 KV heads x 128 = 512-d, from one joint pass over the
sampled frames. `MemoryEncoder` is that contract, so a Video-XL encoder drops
in beside `LightMemoryEncoder`, a small per-frame encoder for tiny configs and
for training from scratch.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class MemoryEncoder(abc.ABC):
    """Frames in, (2, num_layers, tokens, kv_dim) out: keys then values of each memory layer."""

    num_layers: int
    kv_dim: int
    input_size: tuple[int, int]  # (height, width) frames are resized to before `encode`
    # True when a frame's tokens do not depend on the other frames, so they can be cached per frame.
    frame_independent: bool

    @abc.abstractmethod
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (N, 3, H, W) float in [0, 1] at `input_size`."""


class LightMemoryEncoder(ModelMixin, ConfigMixin, MemoryEncoder):
    """Patchify, pool to a few tokens per frame, one K and one V projection per memory layer."""

    frame_independent = True

    @register_to_config
    def __init__(
        self,
        num_layers: int = 3,
        kv_dim: int = 512,
        width: int = 256,
        patch_size: int = 14,
        tokens_per_frame: int = 16,
        image_size: int = 336,
    ):
        super().__init__()
        side = int(round(tokens_per_frame**0.5))
        if side * side != tokens_per_frame:
            raise ValueError(f"tokens_per_frame must be a square number, got {tokens_per_frame}")
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
        self.num_layers = num_layers
        self.kv_dim = kv_dim
        self.input_size = (image_size, image_size)
        self.patch = nn.Conv2d(3, width, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(width)
        self.to_kv = nn.ModuleList(nn.Linear(width, 2 * kv_dim) for _ in range(num_layers))
        self._side = side

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.patch(frames.to(self.dtype) * 2 - 1)
        x = F.adaptive_avg_pool2d(x, self._side).flatten(2).transpose(1, 2)  # (N, t, width)
        x = self.norm(x).flatten(0, 1)  # frames' tokens in order
        kv = torch.stack([proj(x).view(-1, 2, self.kv_dim) for proj in self.to_kv], dim=0)  # (layers, T, 2, d)
        return kv.permute(2, 0, 1, 3).contiguous()


ENCODER_CLASSES = {"LightMemoryEncoder": LightMemoryEncoder}


def load_memory_encoder(folder: Path) -> MemoryEncoder:
    """Build the encoder a folder's config names (`_class_name`)."""
    config_path = Path(folder) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"memory encoder folder {folder} has no config.json")
    name = json.loads(config_path.read_text()).get("_class_name")
    if name not in ENCODER_CLASSES:
        raise ValueError(
            f"memory encoder {folder}: unknown class {name!r}; supported: {', '.join(sorted(ENCODER_CLASSES))} "
            "(the Video-XL encoder is not implemented yet)"
        )
    return ENCODER_CLASSES[name].from_pretrained(folder)


class MemoryBank:
    """Colored frames generated so far, kept small, and the DGLM memory built from them.

    Global memory samples up to `global_frames` frames uniformly over everything
    added; to stay bounded on any shot length the bank keeps at most twice that
    many, dropping every other frame (and doubling its stride) when full. Local
    memory is the latest `local_frames`. Frame-independent encoders get each
    frame's tokens cached once, so nothing is re-encoded as the shot grows.
    """

    def __init__(self, encoder: MemoryEncoder, *, global_frames: int = 650, local_frames: int = 20):
        if global_frames < 1 or local_frames < 1:
            raise ValueError("global_frames and local_frames must be >= 1")
        self.encoder = encoder
        self.global_frames = global_frames
        self.local_frames = local_frames
        self._held: list[tuple[np.ndarray | None, torch.Tensor | None]] = []  # strided history
        self._recent: list[tuple[np.ndarray | None, torch.Tensor | None]] = []
        self._stride = 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, frames_rgb: list[np.ndarray]) -> None:
        """Append colored frames (HxWx3 uint8) in generation order."""
        if not frames_rgb:
            return
        small = [self._resize(f) for f in frames_rgb]
        tokens: list[torch.Tensor | None] = [None] * len(small)
        if self.encoder.frame_independent:
            with torch.no_grad():
                kv = self.encoder.encode(self._to_tensor(small)).cpu()
            tokens = list(kv.chunk(len(small), dim=2))
        for item in zip(small, tokens):
            if self._count % self._stride == 0:
                self._held.append(item)
                if len(self._held) > 2 * self.global_frames:
                    self._held = self._held[::2]
                    self._stride *= 2
            self._recent = (self._recent + [item])[-self.local_frames:]
            self._count += 1

    def state(self) -> dict[str, np.ndarray]:
        """The bank as plain arrays, for a shot checkpoint. A frame-independent encoder's tokens are
        kept as computed (bf16 as its bits): encoding them again in other batches could change
        their last bits, and resumed frames would then drift from an uninterrupted run's."""
        out = {"stride": np.array(self._stride, np.int64), "count": np.array(self._count, np.int64)}
        for part, items in (("held", self._held), ("recent", self._recent)):
            if not items:
                continue
            if self.encoder.frame_independent:
                tokens = [t for _, t in items if t is not None]  # every item has them with such an encoder
                out[f"{part}_tokens"], out["tokens_dtype"] = pack_tensor(torch.stack(tokens))
            else:
                out[f"{part}_frames"] = np.stack([f for f, _ in items if f is not None])
        return out

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Become the bank `state()` described (ValueError when it was written for another encoder)."""
        stride, count = int(state["stride"]), int(state["count"])
        parts: dict[str, list[tuple[np.ndarray | None, torch.Tensor | None]]] = {}
        for part in ("held", "recent"):
            if self.encoder.frame_independent:
                if f"{part}_frames" in state:
                    raise ValueError("memory bank state holds frames; this encoder reads cached tokens")
                tokens = state.get(f"{part}_tokens")
                parts[part] = [] if tokens is None else [
                    (None, t) for t in unpack_tensor(tokens, state["tokens_dtype"]).unbind(0)]
            else:
                if f"{part}_tokens" in state:
                    raise ValueError("memory bank state holds tokens; this encoder reads frames")
                frames = state.get(f"{part}_frames")
                parts[part] = [] if frames is None else [(f, None) for f in frames]
        if stride < 1 or len(parts["held"]) > 2 * self.global_frames or len(parts["recent"]) > self.local_frames:
            raise ValueError("memory bank state does not fit this bank's global and local frames")
        if count < len(parts["held"]) or (count and not parts["held"]):
            raise ValueError(f"memory bank state counts {count} frames but holds {len(parts['held'])}")
        self._held, self._recent = parts["held"], parts["recent"]
        self._stride, self._count = stride, count

    def memory(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(global, local), each (1, 2, layers, tokens, kv_dim)."""
        if not self._count:
            raise RuntimeError("memory bank is empty")
        picks = np.linspace(0, len(self._held) - 1, min(self.global_frames, len(self._held))).round().astype(int)
        return (
            self._encode([self._held[i] for i in picks], device, dtype),
            self._encode(self._recent, device, dtype),
        )

    def _encode(self, items, device, dtype) -> torch.Tensor:
        if self.encoder.frame_independent:
            kv = torch.cat([t for _, t in items], dim=2)
        else:
            with torch.no_grad():
                kv = self.encoder.encode(self._to_tensor([f for f, _ in items]))
        return kv.unsqueeze(0).to(device=device, dtype=dtype)

    def _resize(self, rgb: np.ndarray) -> np.ndarray:
        import cv2

        h, w = self.encoder.input_size
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)

    def _to_tensor(self, frames: list[np.ndarray]) -> torch.Tensor:
        param = next(iter(self.encoder.parameters()), None) if isinstance(self.encoder, nn.Module) else None
        x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
        return x.to(param.device) if param is not None else x


class FrameStoreBank:
    """Video-XL's side of the memory bank interface (`add`, `memory`, `len`) the pipeline calls.

    Video-XL reads all sampled frames in one joint pass (its beacons mix them), so
    nothing is cached per frame: a bounded `FrameStore` keeps the frames it will
    sample and the encoder runs on them when a segment asks for memory.
    """

    def __init__(self, encoder, *, global_frames: int = 650, local_frames: int = 20):
        from longanim.engine.backends.longanimation.memory_store import FrameStore

        self.encoder = encoder
        self.store = FrameStore(global_frames=global_frames, local_frames=local_frames, size=encoder.input_size[0])

    def __len__(self) -> int:
        return len(self.store)

    def add(self, frames_rgb: list[np.ndarray]) -> None:
        self.store.add(frames_rgb)

    def memory(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.memory(self.store, device, dtype)

    def state(self) -> dict[str, np.ndarray]:
        return self.store.state()

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.store.restore(state)


def pack_tensor(tensor: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A tensor as (numpy array, dtype name) that a checkpoint can hold without pickling:
    numpy has no bfloat16, so bf16 travels as its 16-bit patterns, exactly."""
    tensor = tensor.detach().cpu().contiguous()
    name = str(tensor.dtype).removeprefix("torch.")
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16).copy(), np.array(name)
    return tensor.numpy().copy(), np.array(name)


def unpack_tensor(array: np.ndarray, dtype_name) -> torch.Tensor:
    """`pack_tensor` undone (a CPU tensor), refusing an array whose type is not the one named."""
    name = str(np.asarray(dtype_name))
    if name == "bfloat16":
        if array.dtype != np.uint16:
            raise ValueError(f"bfloat16 state stored as {array.dtype}, not its uint16 bits")
        return torch.from_numpy(np.ascontiguousarray(array).view(np.int16).copy()).view(torch.bfloat16)
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or torch.from_numpy(np.zeros(0, array.dtype)).dtype != dtype:
        raise ValueError(f"state array of {array.dtype} does not hold {name}")
    return torch.from_numpy(np.array(array, copy=True))


def memory_bank(encoder, *, global_frames: int = 650, local_frames: int = 20):
    """The bank that fits `encoder`: per-frame token caching for a light encoder, a frame store for Video-XL."""
    if isinstance(encoder, MemoryEncoder):
        return MemoryBank(encoder, global_frames=global_frames, local_frames=local_frames)
    return FrameStoreBank(encoder, global_frames=global_frames, local_frames=local_frames)
