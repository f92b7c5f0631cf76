"""FID, FVD and LPIPS: scores that need pretrained networks, which cannot ship with us.

They load the standard TorchScript files from a path the user gives, with an error that
says which file to fetch when it is missing. Features are folded into running statistics
(`FeatureStats`) so a 2,000-frame shot holds no list of features.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from longanim.engine.errors import LonganimError


# --------------------------------------------------------------------------- Frechet distance
def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Frechet distance between Gaussians: |mu1-mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2).
    tr (S1 S2)^1/2 = tr (S1^1/2 S2 S1^1/2)^1/2, a symmetric PSD product, so two symmetric
    eigendecompositions replace the general sqrtm (no scipy)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ s2 @ root1
    ev = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(ev, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


class FeatureStats:
    """Running mean and covariance of feature vectors, so FID over a 2,000-frame shot needs
    no list of 2,000 features (sums in float64)."""

    def __init__(self) -> None:
        self.n = 0
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    def add(self, feats: np.ndarray) -> None:
        f = np.asarray(feats, np.float64).reshape(len(feats), -1)
        if self._sum is None:
            self._sum = np.zeros(f.shape[1])
            self._outer = np.zeros((f.shape[1], f.shape[1]))
        self.n += len(f)
        self._sum += f.sum(axis=0)
        self._outer += f.T @ f

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise ValueError("need at least two feature vectors for a covariance")
        mu = self._sum / self.n
        cov = (self._outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, cov


# --------------------------------------------------------------------------- feature models
# The standard TorchScript files and how each is called (checked against clean-fid,
# StyleGAN2-ADA/3 and StyleGAN-V, which publish them):
#   FID  inception-2015-12-05.pt: model(x, return_features=True) -> (N, 2048); x float32
#        NCHW RGB in [0, 255]. We resize to 299x299 ourselves (cv2 area/cubic), so the
#        network's own resize is a no-op; numbers track clean-fid but are not bit-identical.
#   FVD  i3d_torchscript.pt: model(x, rescale=False, resize=False, return_features=True)
#        -> (N, 400); x float32 NCTHW in [-1, 1] at 224x224, clips of 16 frames.
#   LPIPS: either StyleGAN's vgg16.pt, model(x, resize_images=False, return_lpips=True)
#        -> embedding, x in [0, 255] (256x256 when larger), distance = squared L2 of the
#        embeddings; or any TorchScript model(a, b) -> distance with a, b in [-1, 1]
#        (the `lpips` package convention, e.g. a traced lpips.LPIPS(net="alex")).
FID_FILE, FVD_FILE, LPIPS_FILE = "inception-2015-12-05.pt", "i3d_torchscript.pt", "vgg16.pt"
FVD_CLIP = 16


def load_torchscript(path, metric: str, filename: str, flag: str, device=None):
    """torch.jit.load with an error that tells the user which file to fetch and pass."""
    hint = f"{metric} needs the TorchScript file {filename}; download it and pass its path with {flag} PATH"
    if path is None:
        raise LonganimError(hint)
    p = Path(path)
    if not p.is_file():
        raise LonganimError(f"{hint} ({str(p)!r} is not a file)")
    import torch

    try:
        model = torch.jit.load(str(p), map_location=device or "cpu")
    except Exception as exc:  # torch raises RuntimeError/ValueError/zip errors for bad files
        raise LonganimError(f"{metric}: {str(p)!r} is not a loadable TorchScript file ({exc}); {hint}") from exc
    return model.eval()


def _device(device=None):
    import torch

    return torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _resize(frame: np.ndarray, w: int, h: int) -> np.ndarray:
    if frame.shape[1] == w and frame.shape[0] == h:
        return frame
    shrink = frame.shape[1] > w or frame.shape[0] > h
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


class InceptionFeatures:
    """Pool3 features of frames for FID, batched."""

    def __init__(self, path, device=None, batch: int = 8):
        self.device = _device(device)
        self.model = load_torchscript(path, "FID", FID_FILE, "--fid-weights", self.device)
        self.batch = batch
        self._pending: list[np.ndarray] = []
        self.stats = FeatureStats()

    def add(self, frame: np.ndarray) -> None:
        self._pending.append(_resize(frame, 299, 299))
        if len(self._pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        import torch

        x = torch.from_numpy(np.stack(self._pending)).to(self.device).permute(0, 3, 1, 2).float()
        self._pending = []
        with torch.no_grad():
            feats = self.model(x, return_features=True)
        self.stats.add(feats.reshape(feats.shape[0], -1).double().cpu().numpy())


class I3DFeatures:
    """I3D features of consecutive non-overlapping 16-frame clips for FVD; a tail shorter
    than a clip is dropped."""

    def __init__(self, path, device=None, clip: int = FVD_CLIP):
        self.device = _device(device)
        self.model = load_torchscript(path, "FVD", FVD_FILE, "--fvd-weights", self.device)
        self.clip = clip
        self._frames: list[np.ndarray] = []
        self.stats = FeatureStats()

    def add(self, frame: np.ndarray) -> None:
        self._frames.append(_resize(frame, 224, 224))
        if len(self._frames) == self.clip:
            import torch

            x = torch.from_numpy(np.stack(self._frames)).to(self.device).float() / 127.5 - 1
            self._frames = []
            x = x.permute(3, 0, 1, 2).unsqueeze(0)  # 1, C, T, H, W
            with torch.no_grad():
                feats = self.model(x, rescale=False, resize=False, return_features=True)
            self.stats.add(feats.reshape(1, -1).double().cpu().numpy())


class Lpips:
    """Per-frame LPIPS through one of the two TorchScript conventions described above."""

    def __init__(self, path, device=None):
        self.device = _device(device)
        self.model = load_torchscript(path, "LPIPS", LPIPS_FILE, "--lpips-weights", self.device)
        try:
            schema = str(self.model.forward.schema)
        except Exception:
            schema = ""
        self.embedding = "return_lpips" in schema

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> float:
        import torch

        x = torch.from_numpy(np.stack([pred, gt])).to(self.device).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            if self.embedding:
                if x.shape[2] > 256:
                    x = torch.nn.functional.interpolate(x, size=(256, 256), mode="area")
                e = self.model(x, resize_images=False, return_lpips=True)
                return float((e[0] - e[1]).square().sum())
            x = x / 127.5 - 1
            d = self.model(x[:1], x[1:])
            return float(d.reshape(-1)[0])
