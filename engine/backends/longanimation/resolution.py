"""The model resolution, and how a frame gets there and back.

The release was trained at 576x1024 (its inference script runs 768x1360); a
1080p plate is outside that range and several times the compute. Frames reach
the model as the reference scripts prepare them: a bicubic resize (antialiased,
as torchvision does for tensors) until the frame covers the model size, then a
centre crop. Results go back by the inverse: resized to the covered window of
the input and placed there. What the crop cut off was never generated; it is
filled from the nearest generated pixels and marked with confidence 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAINED = (576, 1024)  # (height, width) of the release's training clips
SCRIPT = (768, 1360)  # the reference inference script's size
NAMED = {"576x1024": TRAINED, "768x1360": SCRIPT}
MULTIPLE = 16  # VAE 8x spatial x patch 2


def parse_resolution(value: str) -> tuple[int, int] | None:
    """'576x1024' / '768x1360' / 'HxW' -> (h, w); 'input' -> None (the input's size rounded down to 16)."""
    text = str(value).strip().lower()
    if text == "input":
        return None
    try:
        h, w = (int(v) for v in text.split("x"))
    except ValueError:
        raise ValueError(f"resolution must be HEIGHTxWIDTH (576x1024, 768x1360) or 'input', got {value!r}") from None
    for label, side in (("height", h), ("width", w)):
        if side < MULTIPLE or side % MULTIPLE:
            raise ValueError(f"resolution {label} must be a positive multiple of {MULTIPLE}, got {side}")
    return h, w


@dataclass(frozen=True)
class Framing:
    """Input (h, w) -> model (h, w) through a resize to `scaled` and a crop at (top, left)."""

    input_size: tuple[int, int]
    model_size: tuple[int, int]
    scaled: tuple[int, int]
    top: int
    left: int

    @classmethod
    def fit(cls, input_size: tuple[int, int], model_size: tuple[int, int]) -> "Framing":
        """The reference's rule: the side whose ratio is the tighter one is matched, the other is cropped
        centrally (the longer side rounded down, as `int()` does there)."""
        h, w = input_size
        mh, mw = model_size
        if w / h > mw / mh:
            scaled = (mh, int(w * mh / h))
        else:
            scaled = (int(h * mw / w), mw)
        return cls(tuple(input_size), tuple(model_size), scaled, (scaled[0] - mh) // 2, (scaled[1] - mw) // 2)

    def to_model(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 at the input size -> the model's view of it (uint8)."""
        if image.shape[:2] != self.input_size:
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, expected "
                             f"{self.input_size[1]}x{self.input_size[0]}")
        scaled = bicubic_resize(image, self.scaled)
        mh, mw = self.model_size
        return np.ascontiguousarray(scaled[self.top:self.top + mh, self.left:self.left + mw])

    def covered(self) -> tuple[slice, slice]:
        """The input rows and columns the model's view covers."""
        h, w = self.input_size
        sh, sw = self.scaled
        mh, mw = self.model_size
        y0, y1 = round(self.top * h / sh), round((self.top + mh) * h / sh)
        x0, x1 = round(self.left * w / sw), round((self.left + mw) * w / sw)
        return slice(y0, y1), slice(x0, x1)

    def to_input(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model-size result -> (input-size HxWx3 uint8, HxW float32 coverage: 1 generated, 0 filled in)."""
        import cv2

        h, w = self.input_size
        rows, cols = self.covered()
        coverage = np.zeros((h, w), np.float32)
        coverage[rows, cols] = 1.0
        window = (rows.stop - rows.start, cols.stop - cols.start)
        if rgb.shape[:2] != window:
            rgb = bicubic_resize(rgb, window)
        if window == (h, w):
            return np.ascontiguousarray(rgb), coverage
        out = cv2.copyMakeBorder(rgb, rows.start, h - rows.stop, cols.start, w - cols.stop, cv2.BORDER_REPLICATE)
        return out, coverage


def bicubic_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWxC uint8 -> size (h, w) uint8: torch's antialiased bicubic in float, clipped, rounded.

    That is how torchvision's tensor `resize` (the reference's, antialias on by
    default) treats uint8 frames; the antialiased kernel differs from plain
    bicubic even when enlarging. A same-size call returns the frame untouched, as there.
    """
    import torch
    import torch.nn.functional as F

    if image.shape[:2] == tuple(size):
        return image
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float()
    y = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False, antialias=True)
    return y.clamp(0, 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
