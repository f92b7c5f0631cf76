"""The line-art network the released model was trained behind, and the binary sketch it makes.

The release never sees line art as drawn: every frame, line art or color, goes
through the informative-drawings generator (`sk_model.pth`, 3 residual
blocks), whose output (paper near 1, strokes near 0) is cut at 0.78. The
SketchDiT then reads strokes as +1 on a -1 paper. Feeding the model any other
sketch (a threshold of the darkest channel, the opposite polarity) conditions
it on inputs it never saw in training, so the project runs the same network.

Submodule names and indices follow the checkpoint's keys (`model0.1.weight`,
`model2.0.conv_block.5.bias`, ...), so the file loads with no renaming; the
instance norms carry no parameters, as in the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

LINEART_FILE = "sk_model.pth"
THRESHOLD = 0.78  # the release's cut on the network's output


def _conv_norm_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.InstanceNorm2d(channels), nn.ReLU()]


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class LineartNetwork(nn.Module):
    """RGB in [0, 1] (N, 3, H, W) -> line drawing in [0, 1] (N, 1, H, W): 1 is paper.

    Two stride-2 stages down and up, so H and W must be multiples of 4; the
    model resolutions (multiples of 16) always are.
    """

    def __init__(self, width: int = 64, residual_blocks: int = 3):
        super().__init__()
        w1, w2, w4 = width, 2 * width, 4 * width
        self.model0 = nn.Sequential(nn.ReflectionPad2d(3), *_conv_norm_relu(nn.Conv2d(3, w1, 7), w1))
        self.model1 = nn.Sequential(
            *_conv_norm_relu(nn.Conv2d(w1, w2, 3, stride=2, padding=1), w2),
            *_conv_norm_relu(nn.Conv2d(w2, w4, 3, stride=2, padding=1), w4),
        )
        self.model2 = nn.Sequential(*(_Residual(w4) for _ in range(residual_blocks)))
        self.model3 = nn.Sequential(
            *_conv_norm_relu(nn.ConvTranspose2d(w4, w2, 3, stride=2, padding=1, output_padding=1), w2),
            *_conv_norm_relu(nn.ConvTranspose2d(w2, w1, 3, stride=2, padding=1, output_padding=1), w1),
        )
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w1, 1, 7), nn.Sigmoid())

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.model4(self.model3(self.model2(self.model1(self.model0(rgb)))))

    @property
    def device(self) -> torch.device:
        return self.model0[1].weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model0[1].weight.dtype

    def line_masks(self, frames: np.ndarray, threshold: float = THRESHOLD, batch: int = 8) -> np.ndarray:
        """(N, H, W, 3) uint8 frames at the model resolution -> (N, H, W) bool, True on strokes.

        A stroke is where the network's output is not above `threshold` (the
        release keeps `output > 0.78` as paper). Batches bound the activations:
        at 576x1024 one frame's widest stage holds 256 x 144 x 256 values.
        """
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        h, w = frames.shape[1:3]
        if h % 4 or w % 4 or min(h, w) < 8:
            raise ValueError(f"the line-art network needs sides that are multiples of 4 and at least 8, got {w}x{h}")
        out = np.empty(frames.shape[:3], dtype=bool)
        with torch.no_grad():
            for start in range(0, len(frames), batch):
                x = torch.from_numpy(frames[start:start + batch]).to(self.device).permute(0, 3, 1, 2)
                drawing = self(x.to(self.dtype) / 255.0)[:, 0]
                out[start:start + batch] = (~(drawing > threshold)).cpu().numpy()
        return out


def expected_shapes(width: int = 64, residual_blocks: int = 3) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = LineartNetwork(width, residual_blocks)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, memory-mapped (a plain `torch.save` state dict, read with weights_only)."""
    from longanim.engine.backends.longanimation.weights import WeightsError

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise WeightsError(f"{path}: not a readable PyTorch state dict: {exc}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def check_lineart_network(path: Path) -> list[str]:
    from longanim.engine.backends.longanimation import weights as W

    try:
        state = read_state_dict(path)
    except W.WeightsError as exc:
        return [str(exc)]
    return W.compare_shapes(expected_shapes(), {k: tuple(v.shape) for k, v in state.items()})


def load_lineart_network(path: Path) -> LineartNetwork:
    """The release-sized network from `path`; every key and shape must be the checkpoint's."""
    from longanim.engine.backends.longanimation import weights as W

    state = read_state_dict(path)
    problems = W.compare_shapes(expected_shapes(), {k: tuple(v.shape) for k, v in state.items()})
    if problems:
        raise W.WeightsError(f"{path} does not match the line-art network:\n  " + "\n  ".join(problems))
    net = LineartNetwork()
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)
