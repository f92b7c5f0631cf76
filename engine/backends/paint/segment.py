"""Line art -> flat regions: the unit the `paint` colorizer reasons about.

Ink is measured as darkness of the darkest channel, so black, grey (anti-aliased)
and colored lines all count as lines. Regions are found with the lines thickened
by `gap_close` pixels, which seals small breaks in the outlines; the labels are
then grown back over that band and the anti-aliased fringe, so every fill pixel
and the soft edge of every line belongs to a region.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

INK_THRESHOLD = 100  # 0..255 darkness of the darkest channel above which a pixel is line


@dataclass
class Segmentation:
    labels: np.ndarray  # HxW int32: 0 = line, 1..count = regions (line fringes included)
    count: int
    ink: np.ndarray  # HxW uint8 darkness, 0 = paper white
    seeds: np.ndarray  # HxW int32 labels before growth: clean interiors, no line fringe

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape  # type: ignore[return-value]


def ink_of(lineart: np.ndarray) -> np.ndarray:
    """Darkness of the darkest channel (0 = white paper, 255 = full ink)."""
    if lineart.ndim == 2:
        return cv2.bitwise_not(lineart)
    h, w, c = lineart.shape
    # A 1x3 erosion over the interleaved row takes min(R, G, B) per pixel; faster than split + min.
    flat = np.ascontiguousarray(lineart[..., :3]).reshape(h, w * 3)
    darkest = cv2.erode(flat, _ROW3, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)[:, ::3]
    return cv2.bitwise_not(np.ascontiguousarray(darkest))


_ROW3 = np.ones((1, 3), np.uint8)


def segment(
    lineart: np.ndarray,
    *,
    gap_close: int = 1,
    ink_threshold: int = INK_THRESHOLD,
    min_lost_area: int = 6,
) -> Segmentation:
    """Split a line-art frame (HxWx3 uint8 on white) into regions.

    `gap_close` is the radius in pixels by which lines are thickened before
    regions are separated: gaps up to 2*gap_close pixels are sealed.
    """
    ink = ink_of(np.ascontiguousarray(lineart))
    return segment_ink(ink, gap_close=gap_close, ink_threshold=ink_threshold, min_lost_area=min_lost_area)


def segment_ink(ink, *, gap_close=1, ink_threshold=INK_THRESHOLD, min_lost_area=6) -> Segmentation:
    line = cv2.compare(ink, ink_threshold, cv2.CMP_GT)  # 255 on lines
    paper = cv2.bitwise_not(line)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap_close + 1,) * 2) if gap_close > 0 else None
    sealed = cv2.dilate(line, kernel) if kernel is not None else line
    count, seeds = cv2.connectedComponents(cv2.bitwise_not(sealed), connectivity=4, ltype=cv2.CV_32S)
    labels = seeds.astype(np.uint16) if count < 65535 else seeds.astype(np.float32)  # both exact, dilate-able
    if kernel is not None:
        _grow(labels, kernel, where=paper)
        # Regions thinner than the seal vanished from `seeds`; real ones get labels of their own,
        # specks inside thick anti-aliased lines stay line.
        lost = cv2.bitwise_and(cv2.compare(labels, 0, cv2.CMP_EQ), paper)
        if cv2.countNonZero(lost) >= min_lost_area:
            count, labels = _keep_lost_regions(lost, labels, count, min_lost_area)
    # Soft line edges take the color of the region they fade into; so do specks of paper
    # left between lines that were too small to be regions.
    soft = cv2.compare(ink, 230, cv2.CMP_LT)
    for _ in range(gap_close + 1):
        _grow(labels, _SQUARE3, where=soft)
    return Segmentation(labels=labels.astype(np.int32), count=count - 1, ink=ink, seeds=seeds)


def _keep_lost_regions(lost, labels, count, min_area):
    """Give paper areas the seal swallowed (thin stripes) labels of their own; touch only
    their pixels, which are few."""
    extra, lost_labels = cv2.connectedComponents(lost, connectivity=4, ltype=cv2.CV_32S)
    where = np.flatnonzero(lost.view(bool).ravel())  # 0/255 read as bool: numpy's fast path
    which = lost_labels.ravel()[where]
    keep = np.bincount(which, minlength=extra) >= min_area
    keep[0] = False
    if not keep.any():
        return count, labels
    remap = np.zeros(extra, np.int64)
    remap[keep] = np.arange(count, count + int(keep.sum()))
    count += int(keep.sum())
    if count >= 65535 and labels.dtype == np.uint16:
        labels = labels.astype(np.float32)
    picked = keep[which]
    labels.ravel()[where[picked]] = remap[which[picked]]
    return count, labels


_SQUARE3 = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))


def _grow(labels: np.ndarray, kernel: np.ndarray, *, where: np.ndarray) -> None:
    """In place: unlabeled pixels allowed by `where` (uint8 mask) take a neighbouring label."""
    grown = cv2.dilate(labels, kernel)
    fill = cv2.bitwise_and(cv2.compare(labels, 0, cv2.CMP_EQ), where)
    np.copyto(labels, grown, where=fill.view(bool))
