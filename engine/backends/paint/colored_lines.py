"""Vivid colored lines as the artist means them: where a shadow or a highlight ends.

In a cel, the red, blue or green lines drawn between a lit area and its shadow are
boundaries for the painter, not ink: the finished frame shows the two fills meeting.
`segment` already takes them as lines (their darkest channel is dark), so they split
the regions; here they are found again and each of their pixels is given to the region
beside it, both sides growing into the line until they meet in its middle. The fill is
then drawn there instead of the line.

Ink stays ink: black and grey lines, and dark colored ink (a brown eye line, a dark red
mouth, lines colored to match their fill), are drawn as they are. What tells the two
apart is how vivid the line is: far from grey, and bright in its brightest channel.
"""

from __future__ import annotations

import cv2
import numpy as np

VIVID_CHROMA = 96  # brightest minus darkest channel (0..255) of a vivid line's core
VIVID_BRIGHT = 150  # its brightest channel; dark colored ink is below this
FRINGE_CHROMA = 24  # the anti-aliased edge of a vivid line is still at least this colored
FRINGE_REACH = 2  # px from a core an edge pixel may lie
MAX_HALF_WIDTH = 16  # px; a line wider than twice this keeps what is left of its middle drawn

_ROW3 = np.ones((1, 3), np.uint8)
_SQUARE3 = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))


def vivid_lines(lineart: np.ndarray, ink: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The pixels of vivid lines (HxW bool) and the label image with every one of them given
    to a region (the line's own pixels were label 0), or None when the frame has none: the
    common case costs one pass over the frame. `ink` is `segment`'s darkness (255 - darkest
    channel), so only the brightest channel is computed here."""
    h, w = labels.shape
    flat = np.ascontiguousarray(lineart[..., :3]).reshape(h, w * 3)
    brightest = np.ascontiguousarray(cv2.dilate(flat, _ROW3, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)[:, ::3])
    darkest = cv2.bitwise_not(ink)
    chroma = cv2.subtract(brightest, darkest)
    core = cv2.bitwise_and(cv2.compare(chroma, VIVID_CHROMA, cv2.CMP_GT),
                           cv2.compare(brightest, VIVID_BRIGHT, cv2.CMP_GT))
    if not cv2.countNonZero(core):
        return None
    near = cv2.dilate(core, _SQUARE3, iterations=FRINGE_REACH)
    mask = cv2.bitwise_or(core, cv2.bitwise_and(near, cv2.compare(chroma, FRINGE_CHROMA, cv2.CMP_GT)))
    grown = labels.astype(np.uint16) if labels.max() < 65535 else labels.astype(np.float32)  # dilate-able, exact
    holes = cv2.bitwise_and(mask, cv2.compare(grown, 0, cv2.CMP_EQ))
    for _ in range(MAX_HALF_WIDTH):
        if not cv2.countNonZero(holes):
            break
        np.copyto(grown, cv2.dilate(grown, _SQUARE3), where=holes.view(bool))
        holes = cv2.bitwise_and(holes, cv2.compare(grown, 0, cv2.CMP_EQ))
    given = cv2.bitwise_and(mask, cv2.compare(grown, 0, cv2.CMP_GT))  # a speck with no region stays drawn
    return given.view(bool), grown.astype(np.int32)
