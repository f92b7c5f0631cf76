"""Objects: regions that hang together in the drawing belong to one character or prop.

Identity is easy to keep for a whole character (it is big and moves as one) and hard for
its parts (the heads of three characters are three circles). So the keyframes are split
into objects: connected groups of regions once the backdrop is set aside (the colors of
big regions: sky, ground, hills). Each object remembers its layout:
where each part sits relative to the whole, in units of the object's size, left and right
folded together so a character that turned around still fits.

In a new frame the regions are grouped the same way and each group votes for the objects
its parts are believed to be. Two things follow. A part may not wear the colors of an
object that is surely elsewhere in the frame (the head on the tall character's body is
not the round character's head when the round one stands over there). And a part that
sits where an object's part sat (the hat on top, the belly in the middle of the body) is
evidence for that part's color, whatever the part's own shape says; so is a smaller region
lying inside a part's outline (what shows of a body half hidden behind another character
sits far from the whole body's middle, but within its outline). A part that alone places its
character sits where its part sat by construction, so it says nothing for itself. A region
followed as a part of a character on screen does not turn into a part of a character off
screen, one last plainly seen at the frame edge (`off_screen`). A color one object has,
already held by a settled region, is unlikely for new content (`claimed`). A part drawn
inside its character (a belly, an eye) never touches the backdrop, which lies behind
everything (`beside_backdrop`).

Size: a part half hidden or squashed may look like anything, but it is never much bigger
than it ever was, so a region more than `TOO_BIG` times the area of every view of a part's
or prop's color is not that color (the strip of hill between a character and the frame
edge is not its arm); sky, ground and hills come in any size and are not judged. A part
that settled regions already show whole (one body, two pupils) is not also another region
as big: two overlapping characters are one group, so this is what keeps the one behind
from wearing the front one's body. Off screen means last plainly seen at the frame edge:
a character that went behind another in mid-frame is still there, and comes out in its
own colors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longanim.engine.backends.paint.regions import RegionStats

BACKDROP_AREA = 0.015  # a color covering at least this share of a keyframe is backdrop
BACKDROP_EDGE_AREA = 0.005  # ... or this much in regions cut by the frame edge
OUTSIDER = 0.02  # how likely a part is to wear the colors of an object seen elsewhere
PRESENT_SHARE = 0.5  # a group holding at least this share of votes for one object is surely it
# Layout: how far a part may sit from where it sat in the keyframe, in object sizes, and how
# much bigger or smaller (log) it may be relative to the object.
LAYOUT_SPREAD = 0.12
AREA_SPREAD = 0.5
CUT_AREA_SPREAD = 1.5  # ... for a part seen cut in pieces, how much bigger it may be
ANCHOR_SURE = 0.8  # parts believed at least this surely place their object
WHOLE_ANCHOR = 0.7  # ... if the object size they imply is at least this share of the biggest implied
CENTRED = 0.2  # parts this close to the object's middle (in object sizes) place it left to right too
TAKEN_SHARE = 0.5  # a settled region this big against the part's keyframe region shows it whole (characters change size with depth)
CLAIMANT_SHARE = 0.3  # ... and a region this big is a second copy of it, not a piece cut off it
# A character off screen: less than this share of its keyframe area believed on screen last frame.
OFF_SCREEN_SHARE = 0.05
OFF_SCREEN_SEEN = 0.25  # ... and where it was last seen with this much in view says where it went
OFF_SCREEN_EDGE = 0.15  # regions this close to the frame edge (share of the frame) may be one coming back
OFF_SCREEN_WEIGHT = 1.5  # nats against an off-screen character's colors for a region followed as another's part
TAKEN_ODDS = 0.05  # how likely a part already shown whole is another region too
TOO_BIG = 2.0  # a region this many times the area of every view of a part's color is not that part
TOO_BIG_WEIGHT = 3.0  # nats against it per e-fold of area beyond that
MIN_PARTS = 3  # objects with fewer own regions have no layout
LAYOUT_ODD = 0.2  # a part anywhere at all (an arm swung wide, a half-hidden head)
LAYOUT_SPECIFIC = 3.0  # nats a part in its place is likelier than anywhere
PIECE_SPECIFIC = 1.0  # nats a piece of a part, inside its outline, is likelier than anywhere
INNER_WEIGHT = 3.0  # nats against a part drawn inside its character (a belly) for a region touching the backdrop
INNER_CONTACT = 0.1  # ... by at least this share of its outline


@dataclass
class _Part:
    obj: int
    color: int
    x: float  # |horizontal offset| from the object's centre, in object sizes
    y: float  # vertical offset (down is positive), in object sizes
    area: float  # log share of the object's area
    cut: bool = False  # seen in pieces in the keyframe (an arm across it): it may well be bigger
    reach: tuple[float, float] = (0.0, 0.0)  # half its width and height, in object sizes


@dataclass
class _Layout:
    """One object's parts side by side, for scoring many regions at once."""
    color: np.ndarray
    xy: np.ndarray
    area: np.ndarray
    cut: np.ndarray
    reach: np.ndarray
    part_of: dict[int, _Part]


class ObjectPalette:
    """Which keyframe objects each palette color belongs to, their layouts, and which colors
    are backdrop."""

    def __init__(self) -> None:
        self.member = np.zeros((0, 0), bool)  # (colors, objects)
        self.backdrop = np.zeros(0, bool)  # (colors,)
        self.loose = np.zeros(0, bool)  # (colors,) seen as a lone prop somewhere (a cloud, a rock)
        self.copies = np.zeros(0, np.int64)  # (colors,) most regions of the color in one keyframe object
        self.whole_area = np.zeros(0)  # (colors,) its biggest region in a keyframe, pixels
        self.part_area = np.zeros(0)  # (colors,) all its regions in one keyframe object together, pixels
        self.inner = np.zeros(0, bool)  # (colors,) drawn inside its character: never beside the backdrop
        self.touches = np.zeros((0, 0), bool)  # (colors, colors) seen side by side in a keyframe
        self.at_edge = np.zeros(0, bool)  # (colors,) seen cut by the frame edge in a keyframe
        self.parts: list[_Part] = []
        self.object_area = np.zeros(0)  # (objects,) pixels in its keyframe
        self.left_by_edge = np.zeros(0, bool)  # (objects,) last seen at the frame edge (or never yet)
        self._layout_cache: dict[int, _Layout] | None = None

    @property
    def objects(self) -> int:
        return self.member.shape[1]

    def learn_keyframe(self, stats: RegionStats, label: np.ndarray, palette_size: int) -> None:
        """Add a keyframe's objects: connected groups of its non-backdrop regions."""
        palette_size = max(palette_size, int(label.max()) + 1)
        self._grow(palette_size, self.objects)
        frame_area = float(stats.grid.size * stats.step * stats.step)
        covered = np.bincount(label[1:], stats.area[1:], minlength=palette_size)
        cut = np.bincount(label[1:], stats.area[1:] * stats.border[1:], minlength=palette_size)
        self.backdrop[(covered >= BACKDROP_AREA * frame_area) | (cut >= BACKDROP_EDGE_AREA * frame_area)] = True
        figure = ~self.backdrop[label]
        figure[0] = False
        group = components(stats, figure)
        first = self.objects
        for g in np.unique(group[group > 0]):
            self._grow(palette_size, self.objects + 1)
            self.member[np.unique(label[group == g]), -1] = True
        # Layouts are measured on the colors only one object has: a cloud that the hat of a
        # tall character happens to touch, or the eye-white every character shares, would
        # shift an object's centre to wherever it is this time.
        own = self.member[:, first:].sum(axis=1) == 1
        for obj, g in enumerate(np.unique(group[group > 0]), start=first):
            members = np.flatnonzero(group == g)
            self.object_area = np.r_[self.object_area, stats.area[members].sum()]
            self.left_by_edge = np.r_[self.left_by_edge, True]
            if members.size < MIN_PARTS:
                self.loose[np.unique(label[members])] = True
            rows = members[own[label[members]]]
            if rows.size < MIN_PARTS:
                continue  # a lone cloud or rock has no layout to speak of
            centre, size, total = _frame_of(stats, rows, np.ones(rows.size))
            # A part is all the object's regions of one color together: a belly the arm cuts
            # into slivers in the keyframe is still one belly, where the slivers are, as big as
            # them all. (Shared colors too: where its eyes are.)
            for c in np.unique(label[members]):
                rows_c = members[label[members] == c]
                # How many regions show it (two pupils, two legs), not counting specks between
                # crossing lines: every region big enough to be a claimant (below) is a copy, or a
                # leg the keyframe shows half behind the coat would bar the second leg for good.
                biggest = float(stats.area[rows_c].max())
                self.copies[c] = max(self.copies[c], int((stats.area[rows_c] >= CLAIMANT_SHARE * biggest).sum()))
                self.whole_area[c] = max(self.whole_area[c], biggest)
                where, _, area = _frame_of(stats, rows_c, np.ones(rows_c.size))
                self.part_area[c] = max(self.part_area[c], area)
                x, y = (where - centre) / size
                # Half-width and half-height of the part (twice the standard deviation: an ellipse's).
                a = stats.area[rows_c][:, None]
                var = ((stats.spread[rows_c] + (stats.centroid[rows_c] - where) ** 2) * a).sum(axis=0) / a.sum()
                reach = 2.0 * np.sqrt(var) / size
                self.parts.append(_Part(obj, int(c), abs(x), y, np.log(area / total), rows_c.size > 1,
                                        (float(reach[0]), float(reach[1]))))
                self._layout_cache = None
        self.member[self.backdrop] = False
        # Parts drawn inside their character (a belly, an eye) touch only its other parts and
        # whatever passes in front; the backdrop is behind everything, so it never touches them.
        # (A part cut by the frame edge may reach the backdrop beyond it.)
        rows, slots = np.nonzero(stats.neighbors[1:] > 0)
        self.touches[label[rows + 1], label[stats.neighbors[rows + 1, slots]]] = True
        self.at_edge[label[np.flatnonzero(stats.border[1:]) + 1]] = True
        beside = self.touches[:, self.backdrop].any(axis=1) | self.at_edge
        self.inner = ~beside & ~self.backdrop & (self.member.sum(axis=1) > 0)

    def beside_backdrop(self, stats: RegionStats, belief: np.ndarray, settled: np.ndarray) -> np.ndarray:
        """((n+1) x colors) log-evidence against parts drawn inside their character, for regions
        beside settled backdrop: the strip of body left beside a character in front looks like
        the belly it hides, but it touches the ground, which no belly does. Only backdrop
        followed cleanly counts (a body walking in is taken for ground at first, and would speak
        against its own belly), and a region followed cleanly as such a part keeps it (a part
        one keyframe showed only within its character, such as an arm across the body, may
        yet swing out into the sky)."""
        k = belief.shape[1]
        self._grow(k, self.objects)
        out = np.zeros((stats.count + 1, k))
        inner = np.flatnonzero(self.inner[:k])
        if not inner.size or not INNER_WEIGHT:
            return out
        backdrop = settled & (belief[:, self.backdrop[:k]].sum(axis=1) >= 0.5)
        beside = (np.where(stats.neighbors > 0, stats.contact, 0.0) * backdrop[stats.neighbors]).sum(axis=1)
        touching = np.flatnonzero(beside >= INNER_CONTACT)
        out[np.ix_(touching, inner)] = -INNER_WEIGHT
        holders = np.flatnonzero(settled)
        out[holders, belief[holders].argmax(axis=1)] = 0.0
        out[0] = 0.0
        return out

    def _grow(self, colors: int, objects: int) -> None:
        member = np.zeros((max(colors, self.member.shape[0]), max(objects, self.objects)), bool)
        member[: self.member.shape[0], : self.objects] = self.member
        self.member = member
        n = member.shape[0]
        self.backdrop, self.loose = _padded(self.backdrop, n), _padded(self.loose, n)
        self.copies, self.whole_area = _padded(self.copies, n), _padded(self.whole_area, n)
        self.part_area = _padded(self.part_area, n)
        self.inner, self.at_edge = _padded(self.inner, n), _padded(self.at_edge, n)
        touches = np.zeros((n, n), bool)
        touches[: self.touches.shape[0], : self.touches.shape[1]] = self.touches
        self.touches = touches

    def evidence(self, stats: RegionStats, belief: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two ((n+1) x colors) log-evidence tables from each region's group: `barred`, low where
        the color's object is surely elsewhere, and `layout`, high where the region sits like
        the part of that color."""
        k = belief.shape[1]
        self._grow(k, self.objects)
        if not self.objects:
            return np.zeros_like(belief), np.zeros_like(belief)
        member = self.member[:k].astype(float)
        # Groups hang together through regions believed to be figure. A small whole region
        # taken for backdrop (sky showing between an arm and a body) joins the group it borders
        # most, so the layout still speaks for it, but links no two groups.
        frame_area = float(stats.grid.size * stats.step * stats.step)
        large = (stats.border & (stats.area >= BACKDROP_EDGE_AREA * frame_area)) | (stats.area >= BACKDROP_AREA * frame_area)
        solid = belief[:, self.backdrop[:k]].sum(axis=1) < 0.5
        solid[0] = False
        loose = ~solid & ~large
        loose[0] = False
        group = components(stats, solid)
        for r in np.flatnonzero(loose):
            sides = stats.neighbors[r][group[stats.neighbors[r]] > 0]
            if sides.size:
                group[r] = group[sides[0]]  # neighbours come longest boundary first
        figure = group > 0
        # Each part votes for the objects its colors belong to, by its size and certainty;
        # a color shared by several objects (every eye-white) splits its vote.
        owners = member / np.maximum(member.sum(axis=1, keepdims=True), 1.0)
        mass = belief @ owners  # (n+1, objects): how much each region is believed to be each object
        votes = mass * np.sqrt(stats.area)[:, None]
        tally = np.zeros((int(group.max()) + 1, self.objects))
        np.add.at(tally, group, votes)
        tally[0] = 0.0
        return self._bar(group, tally, member), self._layout(stats, group, belief, figure)

    def claimed(self, stats: RegionStats, belief: np.ndarray, settled: np.ndarray) -> np.ndarray:
        """Colors of object parts already held by a settled whole region: new content is unlikely
        to be one of them (a piece of the round character's body coming out from behind the tall
        one is not the tall one's body; a belly uncovered as the arm swings away is not the body)."""
        k = belief.shape[1]
        self._grow(k, self.objects)
        held = settled & ~stats.border & (stats.samples >= 6)
        held[0] = False
        count = np.bincount(belief[held].argmax(axis=1), minlength=k)[:k]
        # Only colors one object has (eye-white is everyone's), and only once settled regions
        # hold as many as the keyframes showed of it (two legs, two pupils).
        return (self.member[:k].sum(axis=1) == 1) & (count >= np.maximum(self.copies[:k], 1))

    def _characters_own(self, k: int) -> np.ndarray:
        """Colors (bool, first k) that one character alone has: not backdrop, not a lone prop."""
        return (self.member[:k].sum(axis=1) == 1) & ~self.loose[:k] & ~self.backdrop[:k]

    def off_screen(self, stats: RegionStats, followed: np.ndarray, trust: np.ndarray, last: RegionStats,
                   last_belief: np.ndarray) -> np.ndarray:
        """((n+1) x colors) log-evidence against the colors of characters off screen, for regions
        followed as a part of a character on screen. A character behind another that comes out
        looking like a third one's part (a strip of body shaped like an absent character's
        belly) otherwise drifts into that character's colors, a little every frame, and keeps
        them. Off screen means gone through the frame edge: a character last seen in the middle
        of the frame is behind another one and comes out of it in its own colors. It comes back
        at the frame edge, so regions near it, or in a group reaching it, are not judged; nor is
        new content (`last`, `last_belief`: the last frame's regions and beliefs say who is on
        screen, and where; where each character was last plainly seen is kept from frame to
        frame)."""
        k = followed.shape[1]
        self._grow(k, self.objects)
        out = np.zeros((stats.count + 1, k))
        exclusive = self._characters_own(k)
        own = (self.member[:k] & exclusive[:, None]).astype(float)
        if not own.any() or not OFF_SCREEN_WEIGHT:
            return out
        believed = last_belief[1:, :k] >= 0.5
        shown = (believed * last.area[1:, None]).sum(axis=0) @ own
        # Where each character was when last plainly in view: mostly at the edge, or not.
        size = np.maximum(self.object_area, 1.0)
        at_edge = (believed * (last.area * _near_edge(last))[1:, None]).sum(axis=0) @ own
        plain = shown >= OFF_SCREEN_SEEN * size
        self.left_by_edge[plain] = at_edge[plain] >= 0.5 * shown[plain]
        gone = exclusive & (own @ ((shown < OFF_SCREEN_SHARE * size) & self.left_by_edge) > 0)
        if not gone.any():
            return out
        solid = followed[:, self.backdrop[:k]].sum(axis=1) < 0.5
        solid[0] = False
        group = components(stats, solid)
        reaching = np.unique(group[stats.border & solid])
        held = followed.argmax(axis=1)
        judged = ~_near_edge(stats) & ~np.isin(group, reaching[reaching > 0]) \
            & (trust >= 0.5) & exclusive[held] & ~gone[held]
        judged[0] = False
        out[np.ix_(np.flatnonzero(judged), np.flatnonzero(gone))] = -OFF_SCREEN_WEIGHT
        return out

    def taken(self, stats: RegionStats, belief: np.ndarray, settled: np.ndarray) -> np.ndarray:
        """((n+1) x colors) log-evidence: low for a character's part that settled regions, each
        about as big as the whole part, already show as often as the keyframe did (one body, two
        pupils). Two characters overlapping form one group, so the bar on objects seen elsewhere
        cannot keep the one behind from wearing the front one's colors; this does."""
        k = belief.shape[1]
        self._grow(k, self.objects)
        out = np.zeros((stats.count + 1, k))
        exclusive = self._characters_own(k) & (self.copies[:k] > 0)
        label = belief.argmax(axis=1)
        whole = settled & ~stats.border & (stats.samples >= 6) & exclusive[label] \
            & (stats.area >= TAKEN_SHARE * self.whole_area[:k][label])
        whole[0] = False
        held = np.bincount(label[whole], minlength=k)[:k]
        full = exclusive & (held >= self.copies[:k])
        if not full.any():
            return out
        # Only a region big enough to be another whole copy: a piece an arm cut off is the part too.
        big = stats.area[:, None] >= CLAIMANT_SHARE * self.whole_area[:k][None, :]
        out[:, full] = np.where(big[:, full], np.log(TAKEN_ODDS), 0.0)
        rows = np.flatnonzero(whole)
        out[rows, label[rows]] = 0.0  # the holders themselves
        return out

    def too_big(self, stats: RegionStats, largest_view: np.ndarray) -> np.ndarray:
        """((n+1) x colors) log-evidence against colors of parts and props far smaller than the
        region; `largest_view`: per color, the log area of its biggest view in the global memory.
        A part half hidden, squashed or seen from a new side may look like anything, but it is
        never much bigger than it ever was: the strip of hill beside a character is not the
        character's arm, the body coming out from behind another is not a rock. Backdrop colors
        (sky, ground, hills) come in any size and are not judged."""
        k = largest_view.size
        self._grow(k, self.objects)
        # A part the keyframe showed in pieces (a belly behind an arm) is as big as them all.
        together = self.part_area[:k]
        largest = np.where(together > 0, np.maximum(largest_view, np.log(np.maximum(together, 1.0))), largest_view)
        judged = np.flatnonzero(~self.backdrop[:k] & np.isfinite(largest))
        out = np.zeros((stats.count + 1, k))
        excess = np.log(np.maximum(stats.area, 1.0))[:, None] - largest[judged][None, :] - np.log(TOO_BIG)
        out[:, judged] = -TOO_BIG_WEIGHT * np.maximum(excess, 0.0)
        out[0] = 0.0
        return out

    def _bar(self, group: np.ndarray, tally: np.ndarray, member: np.ndarray) -> np.ndarray:
        """Colors of objects surely seen in another group."""
        n_obj = self.objects
        home = tally.argmax(axis=0)
        mostly = tally[home, np.arange(n_obj)] / np.maximum(tally[home].sum(axis=1), 1e-12)
        held = tally[home, np.arange(n_obj)] / np.maximum(tally.sum(axis=0), 1e-12)
        sure = np.clip(mostly / PRESENT_SHARE, 0.0, 1.0) * held * (tally.sum(axis=0) > 0)
        away = (home[None, :] != group[:, None]) * sure[None, :]  # (n+1, objects)
        away[group == 0] = 0.0
        # A color is barred only as far as every object owning it is away (eye-white is everyone's).
        barred = np.ones((group.size, member.shape[0]))
        for j in range(n_obj):
            barred = np.where(member[:, j][None, :] > 0, np.minimum(barred, away[:, [j]]), barred)
        barred[:, member.sum(axis=1) == 0] = 0.0
        return np.log(1.0 - (1.0 - OUTSIDER) * barred)

    def _layout(self, stats: RegionStats, group: np.ndarray, belief: np.ndarray, figure: np.ndarray) -> np.ndarray:
        """Where each region sits in its group, against where each object's parts sat."""
        k = self.member.shape[0]
        out = np.full((group.size, k), np.log(LAYOUT_ODD))
        layouts = self._layouts()
        if not layouts:
            return out
        exclusive = self.member[:k].sum(axis=1) == 1
        own = belief @ (self.member[:k] & exclusive[:, None]).astype(float)  # (n+1, objects)
        whole = ~stats.border & (stats.samples >= 6)
        cut = np.zeros(group.max() + 1, bool)
        np.logical_or.at(cut, group, stats.border)
        for g in np.unique(group[figure]):
            rows = np.flatnonzero(group == g)
            for obj, lay in layouts.items():
                frame = _anchored_frame(stats, rows, own[rows, obj] * whole[rows], belief[rows], lay)
                placers = None
                if frame is None:
                    # Nothing of the object known here yet: try the group (less whatever is
                    # surely another object) as the whole object, if the frame edge cuts none of it.
                    if cut[g]:
                        continue
                    others = own[rows].sum(axis=1) - own[rows, obj]
                    weight = np.clip(1.0 - others, 0.0, 1.0)
                    if weight.sum() < 1.0:
                        continue
                    centre, size, total = _frame_of(stats, rows, weight)
                else:
                    centre, size, placers = frame
                    total = size * size
                xy = (stats.centroid[rows] - centre) / size
                xy[:, 0] = np.abs(xy[:, 0])
                area = np.log(np.maximum(stats.area[rows], 1.0) / total)
                offset = xy[:, None, :] - lay.xy[None, :, :]
                d2 = np.sum(offset**2, axis=2) / LAYOUT_SPREAD**2
                bigger = area[:, None] - lay.area[None, :]
                spread = np.where((bigger > 0) & lay.cut[None, :], CUT_AREA_SPREAD, AREA_SPREAD)
                d2 += (bigger / spread) ** 2
                score = np.log((1.0 - LAYOUT_ODD) * np.exp(LAYOUT_SPECIFIC - d2 / 2.0) + LAYOUT_ODD)
                if PIECE_SPECIFIC > 0:
                    # ... or a piece of the part, the rest hidden behind something in front: smaller,
                    # and anywhere its own size leaves room for inside the part's outline.
                    share = np.exp(np.minimum(bigger, 0.0))  # piece / part
                    room = lay.reach[None, :, :] * (1.0 - np.sqrt(share))[:, :, None]
                    beyond = np.maximum(np.abs(offset) - room, 0.0) / LAYOUT_SPREAD
                    d2p = np.sum(beyond**2, axis=2) + (np.maximum(bigger, 0.0) / AREA_SPREAD) ** 2
                    piece = np.log((1.0 - LAYOUT_ODD) * np.exp(PIECE_SPECIFIC - d2p / 2.0) + LAYOUT_ODD)
                    score = np.maximum(score, piece)
                if placers is not None and placers.size == 1:
                    # A part that alone places its character sits about where its part sat by
                    # construction (size and height always; across too, if it is centred): it places
                    # the other parts, but says nothing for itself, for any of the character's colors
                    # (a body coming out as another leaves, followed as the leaving one's belly, kept
                    # it that way).
                    score[placers] = np.log(LAYOUT_ODD)
                at = np.ix_(rows, lay.color)  # an object has one part per color
                out[at] = np.maximum(out[at], score)
        return out

    def _layouts(self) -> dict[int, _Layout]:
        """Per object with a layout, its parts as arrays (built once per keyframe learned)."""
        if self._layout_cache is None:
            self._layout_cache = {}
            for obj in sorted({p.obj for p in self.parts}):
                mine = [p for p in self.parts if p.obj == obj]
                self._layout_cache[obj] = _Layout(
                    color=np.array([p.color for p in mine]),
                    xy=np.array([(p.x, p.y) for p in mine]),
                    area=np.array([p.area for p in mine]),
                    cut=np.array([p.cut for p in mine]),
                    reach=np.array([p.reach for p in mine]),
                    part_of={p.color: p for p in mine},
                )
        return self._layout_cache


def _anchored_frame(stats: RegionStats, rows: np.ndarray, sure: np.ndarray, belief: np.ndarray, lay: _Layout):
    """The object's centre and size as its surely identified, whole parts place it: each
    such part says how big the object must be (from its share of the object's area) and
    where its centre is (from where the part sits in it). Works with the object half hidden
    behind another or half out of frame, where the visible regions' own centre would not.
    Returns the centre, the size, and which of `rows` (positions) placed it."""
    anchors = np.flatnonzero(sure >= ANCHOR_SURE)
    if anchors.size == 0:
        return None
    sizes, ys, xs, weights, x_weights, placed = [], [], [], [], [], []
    for a in anchors:
        r = rows[a]
        part = lay.part_of.get(int(belief[a].argmax()))
        if part is None:
            continue
        placed.append(a)
        size = np.sqrt(stats.area[r] / np.exp(part.area))
        sizes.append(size)
        ys.append(stats.centroid[r][1] - part.y * size)
        xs.append(stats.centroid[r][0])
        weights.append(sure[a] * np.sqrt(stats.area[r]))
        x_weights.append(weights[-1] if part.x < CENTRED else 0.0)  # only centred parts place x
    if not sizes:
        return None
    # A piece of a part (the rest hidden behind something in front) says the object is smaller
    # than it is, and puts its centre beside the piece: only anchors that say about the biggest
    # size place it (a strip of body beside the character in front put its head off the head).
    whole = np.array(sizes) >= WHOLE_ANCHOR * max(sizes)
    w = np.array(weights) * whole
    size = _weighted_median(np.array(sizes), w)
    y = _weighted_median(np.array(ys), w)
    xw = np.array(x_weights) * whole
    x = _weighted_median(np.array(xs), xw) if xw.sum() > 0 else _weighted_median(np.array(xs), w)
    return np.array([x, y]), size, np.array(placed)[whole]


def _padded(per_color: np.ndarray, n: int) -> np.ndarray:
    """A per-color array zero-padded to n colors."""
    out = np.zeros(n, per_color.dtype)
    out[: per_color.size] = per_color
    return out


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def _frame_of(stats: RegionStats, rows: np.ndarray, weight: np.ndarray):
    """Centre, size (square root of area) and area of the weighted regions `rows`."""
    area = stats.area[rows] * weight
    total = max(float(area.sum()), 1.0)
    centre = (stats.centroid[rows] * area[:, None]).sum(axis=0) / total
    return centre, np.sqrt(total), total


def _near_edge(stats: RegionStats) -> np.ndarray:
    """Regions cut by the frame edge or centred within OFF_SCREEN_EDGE of it."""
    h, w = stats.grid.shape[0] * stats.step, stats.grid.shape[1] * stats.step
    margin = OFF_SCREEN_EDGE * max(w, h)
    x, y = stats.centroid[:, 0], stats.centroid[:, 1]
    return stats.border | (x < margin) | (x > w - margin) | (y < margin) | (y > h - margin)


def components(stats: RegionStats, keep: np.ndarray) -> np.ndarray:
    """Group id (1..) per region over the adjacency of `keep` regions; 0 elsewhere. Groups are
    numbered by their lowest region number. Found by hooking each edge's larger root under the
    smaller and jumping to roots, in array passes: a busy drawing has thousands of regions, and
    a union-find in Python took tens of ms a call there."""
    n = stats.count
    rows, slots = np.nonzero((stats.neighbors > 0) & keep[:, None])
    nb = stats.neighbors[rows, slots]
    ok = keep[nb] & (nb != rows)
    u, v = rows[ok].astype(np.int64), nb[ok].astype(np.int64)
    root = np.arange(n + 1)
    while u.size:
        ru, rv = root[u], root[v]
        apart = ru != rv
        if not apart.any():
            break
        u, v, ru, rv = u[apart], v[apart], ru[apart], rv[apart]
        np.minimum.at(root, np.maximum(ru, rv), np.minimum(ru, rv))
        while True:
            up = root[root]
            if np.array_equal(up, root):
                break
            root = up
    group = np.zeros(n + 1, np.int64)
    ids = np.unique(root[keep])
    group[keep] = np.searchsorted(ids, root[keep]) + 1
    return group
