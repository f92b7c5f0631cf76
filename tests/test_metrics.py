"""Metrics: color science against published data, closed forms, and the TorchScript loading
path exercised with tiny scripted stand-ins for the real feature networks."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from longanim.engine.evaluation import feature_metrics as F
from longanim.engine.evaluation import pixel_metrics as M
from longanim.engine.evaluation import report as R
from longanim.engine.evaluation.drift_plot import drift_image, nice_ticks
from longanim.engine.errors import InputError, LonganimError

# Sharma, Wu, Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes,
# supplementary test data, and mathematical observations", Table 1.
SHARMA = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -1.1848, -84.8006), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -0.9009, -85.5211), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0010), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0012), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0010, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 1.8634, 0.5757), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_ciede2000_matches_sharma_table_vectorized_and_symmetric():
    lab1 = np.array([p[0] for p in SHARMA])
    lab2 = np.array([p[1] for p in SHARMA])
    expected = np.array([p[2] for p in SHARMA])
    np.testing.assert_allclose(M.ciede2000(lab1, lab2), expected, atol=5e-5)
    np.testing.assert_allclose(M.ciede2000(lab2, lab1), expected, atol=5e-5)
    # Broadcasts over image-shaped arrays too.
    img = M.ciede2000(lab1.reshape(2, 17, 3), lab2.reshape(2, 17, 3))
    np.testing.assert_allclose(img.ravel(), expected, atol=5e-5)


def test_srgb_to_lab_reference_colors():
    rgb = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]], np.uint8)
    lab = M.srgb_to_lab(rgb)
    expected = [[100, 0, 0], [0, 0, 0], [53.24, 80.09, 67.20], [87.73, -86.18, 83.18],
                [32.30, 79.19, -107.86], [53.59, 0, 0]]
    np.testing.assert_allclose(lab, expected, atol=0.02)
    with pytest.raises(TypeError):
        M.srgb_to_lab(rgb.astype(np.float32))


def test_delta_e_map_zero_only_where_equal():
    gt = np.full((8, 10, 3), 120, np.uint8)
    pred = gt.copy()
    pred[2, 3] = (121, 120, 120)
    pred[5, 5] = (0, 0, 255)
    de = M.delta_e_map(pred, gt)
    assert de.dtype == np.float32 and de.shape == (8, 10)
    assert (de == 0).sum() == 78
    assert 0 < de[2, 3] < 1 < 30 < de[5, 5]
    expected = M.ciede2000(M.srgb_to_lab(pred[5, 5]), M.srgb_to_lab(gt[5, 5]))
    assert de[5, 5] == pytest.approx(float(expected), rel=1e-6)


def test_psnr_known_mse_and_cap():
    gt = np.zeros((4, 4, 3), np.uint8)
    assert M.psnr(gt, gt) == M.PSNR_CAP_DB
    assert M.psnr(gt + 1, gt) == pytest.approx(10 * math.log10(255**2), abs=1e-9)
    pred = gt.copy()
    pred[0, 0, 0] = 48  # mse = 48^2 / 48
    assert M.psnr(pred, gt) == pytest.approx(10 * math.log10(255**2 / 48.0), abs=1e-9)


def test_ssim_identity_constant_closed_form_and_monotonic():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert M.ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    a, b = 100, 140
    c1 = (0.01 * 255) ** 2
    got = M.ssim(np.full((30, 30, 3), a, np.uint8), np.full((30, 30, 3), b, np.uint8))
    assert got == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-4)
    smooth = cv2.GaussianBlur(img, (9, 9), 3)
    s = [M.ssim(np.clip(smooth + rng.normal(0, sd, smooth.shape), 0, 255).astype(np.uint8), smooth)
         for sd in (2, 10, 40)]
    assert 1 > s[0] > s[1] > s[2]


def _two_region_frame():
    """Left half red, right half blue, a 2-px black line between them."""
    gt = np.zeros((20, 30, 3), np.uint8)
    gt[:, :14] = (220, 40, 40)
    gt[:, 16:] = (40, 40, 220)
    lines = np.zeros((20, 30), bool)
    lines[:, 14:16] = True
    return gt, lines


def test_countable_mask_excludes_one_pixel_around_lines_and_applies_mask():
    gt, lines = _two_region_frame()
    keep = M.countable_mask(gt, lines)
    assert not keep[:, 13:17].any() and keep[:, :13].all() and keep[:, 17:].all()
    mask = np.zeros((20, 30), np.int16)
    mask[:, 20:] = 3
    keep = M.countable_mask(gt, lines, mask)
    assert keep.sum() == 20 * 10
    # Guessed lines (no line art): the color edge and the black ink are excluded.
    guessed = M.countable_mask(gt)
    assert not guessed[:, 12:18].any() and guessed[:, :12].all()


def test_flat_region_accuracy_counts_the_recolored_share_and_honors_tolerance():
    gt, lines = _two_region_frame()
    pred = gt.copy()
    pred[:5, 17:] = (40, 220, 40)  # 5 rows x 13 countable columns wrong
    keep = M.countable_mask(gt, lines)
    expected = 1 - 5 * 13 / keep.sum()
    assert M.flat_region_accuracy(pred, gt, lines) == pytest.approx(expected)
    near = gt.copy()
    near[:, :14] = (221, 41, 40)  # far below dE 3
    assert M.flat_region_accuracy(near, gt, lines) == 1.0
    assert M.flat_region_accuracy(near, gt, lines, tolerance=1e-4) == 0.5  # left half now counts as wrong
    empty = np.zeros((20, 30), bool)
    assert math.isnan(M.flat_region_accuracy(pred, gt, lines, mask=empty))


def test_flicker_only_counts_pixels_the_truth_held_still():
    gt0, _ = _two_region_frame()
    gt1 = gt0.copy()
    gt1[:10] = (0, 200, 0)  # truth changes in the top half: not flicker
    pred0, pred1 = gt0.copy(), gt1.copy()
    assert M.flicker(pred0, pred1, gt0, gt1) == (0.0, 0.0)
    pred1[15:, :10] = pred1[15:, :10] + np.array([30, 0, 0], np.uint8)  # 50 still pixels move by 30 in one channel
    mae, frac = M.flicker(pred0, pred1, gt0, gt1)
    still = 10 * 30
    assert frac == pytest.approx(50 / still)
    assert mae == pytest.approx(50 * 30 / (still * 3))
    assert all(math.isnan(v) for v in M.flicker(pred0, pred1, gt0, 255 - gt0))


def test_frechet_distance_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 with s the standard deviations.
    assert F.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    # Diagonal: the sum of the 1-D terms.
    d1, d2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(d1) - np.sqrt(d2)) ** 2).sum()
    assert F.frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(want)
    # Non-commuting 2x2: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for M with positive eigenvalues.
    a = np.array([[2.0, 0.8], [0.8, 1.0]])
    b = np.array([[1.0, -0.3], [-0.3, 3.0]])
    m = a @ b
    tr_sqrt = math.sqrt(np.trace(m) + 2 * math.sqrt(np.linalg.det(m)))
    assert F.frechet_distance([0, 0], a, [0, 0], b) == pytest.approx(np.trace(a) + np.trace(b) - 2 * tr_sqrt)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 6))
    cov = np.cov(x, rowvar=False)
    assert abs(F.frechet_distance(x.mean(0), cov, x.mean(0), cov)) < 1e-8
    with pytest.raises(ValueError):
        F.frechet_distance([0, 0], a, [0, 0, 0], np.eye(3))


def test_feature_stats_match_numpy_cov():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(37, 5)) * [1, 2, 3, 4, 5] + 10
    s = F.FeatureStats()
    for chunk in np.array_split(x, 4):
        s.add(chunk)
    mu, cov = s.mean_cov()
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), atol=1e-9)


# ---------------------------------------------------------------- TorchScript stand-ins
torch = pytest.importorskip("torch")


class TinyInception(torch.nn.Module):
    """Same calling convention as inception-2015-12-05.pt: x NCHW in [0, 255]."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert x.shape[1] == 3 and x.shape[2] == 299 and x.shape[3] == 299
        m = x.mean(dim=(2, 3)) / 255.0
        s = x.std(dim=(2, 3)) / 255.0
        feats = torch.cat([m, s, m * m], dim=1)
        if return_features:
            return feats
        return feats.sum(dim=1, keepdim=True)


class TinyI3D(torch.nn.Module):
    """Same calling convention as i3d_torchscript.pt: x NCTHW in [-1, 1]."""

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        assert x.shape[1] == 3 and x.shape[2] == 16 and x.shape[3] == 224
        assert not rescale and not resize and return_features
        assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
        m = x.mean(dim=(3, 4))  # N, C, T
        return torch.cat([m.mean(dim=2), m.std(dim=2)], dim=1)


class TinyPairLpips(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1)


class TinyVgg(torch.nn.Module):
    def forward(self, x: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x / 255.0, 4).flatten(1)


def _save(module, path):
    torch.jit.script(module).save(str(path))
    return path


def _frames(n, seed, shift=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f = np.full((36, 48, 3), 60 + shift, np.uint8)
        f[5:20, 8 + i % 7:30] = rng.integers(0, 255, 3)
        out.append(f)
    return out


def test_fid_fvd_lpips_load_torchscript_files_and_compare(tmp_path):
    fid_w = _save(TinyInception(), tmp_path / "inception-2015-12-05.pt")
    fvd_w = _save(TinyI3D(), tmp_path / "i3d_torchscript.pt")
    lp_w = _save(TinyPairLpips(), tmp_path / "lpips.pt")
    gt = _frames(40, seed=0)
    same = R.evaluate(iter(gt), iter(gt), fid_weights=fid_w, fvd_weights=fvd_w, lpips_weights=lp_w, device="cpu")
    assert abs(same.summary["fid"]) < 1e-6 and abs(same.summary["fvd"]) < 1e-6
    assert same.summary["fvd_clips"] == 2  # 40 frames -> two 16-frame clips, tail dropped
    assert same.summary["lpips_mean"] == 0.0
    other = _frames(40, seed=5, shift=40)
    diff = R.evaluate(iter(other), iter(gt), fid_weights=fid_w, fvd_weights=fvd_w, lpips_weights=lp_w, device="cpu")
    assert diff.summary["fid"] > 0.01 and diff.summary["fvd"] > 0.01
    want_lpips = np.abs(other[0] / 127.5 - gt[0] / 127.5).mean()  # the stand-in's mean |a - b| in [-1, 1]
    assert diff.rows[0]["lpips"] == pytest.approx(want_lpips, rel=1e-4)
    # The FID really is the Frechet distance of the features the file returns.
    ref = F.InceptionFeatures(fid_w, "cpu"), F.InceptionFeatures(fid_w, "cpu")
    for p, g in zip(other, gt):
        ref[0].add(p)
        ref[1].add(g)
    for r in ref:
        r.flush()
    want = F.frechet_distance(*ref[0].stats.mean_cov(), *ref[1].stats.mean_cov())
    assert diff.summary["fid"] == pytest.approx(want)


def test_lpips_stylegan_embedding_convention(tmp_path):
    w = _save(TinyVgg(), tmp_path / "vgg16.pt")
    lp = F.Lpips(w, "cpu")
    assert lp.embedding
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.full((16, 16, 3), 255, np.uint8)
    assert lp(a, a) == 0.0
    assert lp(a, b) == pytest.approx(16 * 3)  # 4x4 pooled cells x 3 channels, each (1 - 0)^2


def test_missing_or_bad_weights_say_which_file_and_flag(tmp_path):
    with pytest.raises(LonganimError, match=r"inception-2015-12-05\.pt.*--fid-weights"):
        R.evaluate([np.zeros((8, 8, 3), np.uint8)] * 2, [np.zeros((8, 8, 3), np.uint8)] * 2,
                   fid_weights=tmp_path / "nope.pt")
    with pytest.raises(LonganimError, match=r"i3d_torchscript\.pt.*--fvd-weights"):
        F.I3DFeatures(None)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(LonganimError, match="not a loadable TorchScript"):
        F.Lpips(bad)


def test_fvd_needs_two_clips(tmp_path):
    fvd_w = _save(TinyI3D(), tmp_path / "i3d.pt")
    f = _frames(20, 0)
    with pytest.raises(InputError, match="FVD needs at least 32 frames"):
        R.evaluate(f, f, fvd_weights=fvd_w, device="cpu")


# ---------------------------------------------------------------- evaluate / report
def test_evaluate_streams_generators_and_reports_drift(tmp_path):
    gt, lines = _two_region_frame()
    consumed = []

    def gts(n):
        for i in range(n):
            consumed.append(i)
            yield gt

    def preds(n):
        for i in range(n):
            p = gt.copy()
            p[: i // 2, 17:] = (40, 220, 40)  # an error that grows along the shot
            yield p

    rep = R.evaluate(preds(30), gts(30), masks=(np.ones((20, 30)) for _ in range(30)),
                     line_masks=(lines for _ in range(30)), frame_numbers=range(1001, 1031))
    assert consumed == list(range(30))
    assert [r["frame"] for r in rep.rows] == list(range(1001, 1031))
    assert rep.summary["drift_slope_per_100"] > 0
    assert rep.summary["accuracy_first_10pct"] > rep.summary["accuracy_last_10pct"]
    assert rep.summary["worst_frames"][0] == 1030
    assert math.isnan(rep.rows[0]["flicker_mae"]) and rep.rows[5]["flicker_mae"] >= 0
    keep = M.countable_mask(gt, lines)
    wrong = sum(min(i // 2, 20) * 13 for i in range(30))
    assert rep.summary["accuracy"] == pytest.approx(1 - wrong / (30 * keep.sum()))
    assert rep.summary["accuracy_characters"] == pytest.approx(rep.summary["accuracy"])

    paths = R.write_report(rep, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["summary"]["frames"] == 30 and data["frames"][0]["flicker_mae"] is None
    csv_lines = paths["csv"].read_text().splitlines()
    assert csv_lines[0].startswith("frame,psnr,ssim") and len(csv_lines) == 31
    png = cv2.imread(str(paths["plot"]))
    assert png is not None and png.shape == (600, 1000, 3) and (png < 128).any()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["drift.png", "metrics.json", "per_frame.csv"]


def test_evaluate_rejects_mismatched_inputs():
    a = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InputError, match="sizes differ"):
        R.evaluate([a], [np.zeros((8, 9, 3), np.uint8)])
    with pytest.raises(InputError, match="more frames than the ground truth"):
        R.evaluate([a, a], [a])
    with pytest.raises(InputError, match="ground truth has more frames"):
        R.evaluate([a], [a, a])
    with pytest.raises(InputError, match="no frames"):
        R.evaluate([], [])
    with pytest.raises(InputError, match="uint8"):
        R.evaluate([a.astype(np.float32)], [a])


def test_drift_plot_ticks_and_gaps():
    assert nice_ticks(0, 97, 5) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(1001, 1500, 10)[0] <= 1001 and nice_ticks(1001, 1500, 10)[-1] >= 1500
    img = drift_image(np.arange(10), np.array([0, 1, np.nan, 3, 4, 5, 6, 7, 8, 9.0]), np.full(10, 0.95), 3.0)
    assert img.shape == (600, 1000, 3)
    blue = (img[:, :, 2] > 150) & (img[:, :, 0] < 100)
    assert blue.any()
    one = drift_image(np.array([5]), np.array([1.0]), np.array([1.0]), 3.0)  # a single frame still plots
    assert ((one[:, :, 2] > 150) & (one[:, :, 0] < 100)).any()
