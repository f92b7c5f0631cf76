"""A paint shot's whole memory as plain numpy arrays, and back: what a checkpoint holds.

Everything that decides later frames is here: the palette, the local memory (last frame's
regions, flow image, beliefs, assurance), the global memory (shape views, contact tables),
the objects and their layouts, the hidden memory, the scenery bands and the last frame the
hidden memory compares with. What is left out is rebuilt, and rebuilt the same: the DIS
optical-flow object (it keeps nothing from one `calc` to the next and cannot be pickled),
the segmenting look-ahead (it only segments the next frame, which needs no memory), and
caches that are pure functions of the arrays kept (shape features, layouts, histograms).
The keyframes' seeds come from the keyframes, which the caller passes again (a checkpoint
is refused for other keyframes before it gets here).

Only arrays of numbers go in and come out, so the file format (see `pipeline`) can be a
`.npz` read with `allow_pickle=False`: a checkpoint found in a shared output folder is
never code.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from longanim.engine.backends.paint.regions import RegionStats

VERSION = 1  # bump when what is kept, or what it means, changes

_STATS_FIELDS = [f.name for f in dataclasses.fields(RegionStats)]
_STATS_INTS = ("step", "thinning", "count")
_GLOBAL = ("features", "color", "pinned", "last_seen", "_keyframe_contacts", "_learned_contacts")
_OBJECTS = ("member", "backdrop", "loose", "copies", "whole_area", "part_area", "inner", "touches",
            "at_edge", "object_area", "left_by_edge")
_HIDDEN = ("belief", "centroid", "area", "frame")


def snapshot(shot) -> dict[str, np.ndarray]:
    """Copies of everything in `shot` (a `colorizer._Shot`) that decides the frames after the
    last one it colorized."""
    out: dict[str, np.ndarray] = {"version": np.array(VERSION)}
    out["palette.colors"] = shot.palette.colors
    out["palette.opaque"] = shot.palette.opaque
    local = shot.local
    out["local.present"] = np.array(local.stats is not None)
    if local.stats is not None:
        _put_stats(out, "local.stats", local.stats)
        out["local.small"] = local.small
        out["local.belief"] = local.belief
        out["local.assurance"] = local.assurance
    for name in _GLOBAL:
        out[f"global.{name}"] = getattr(shot.global_, name)
    out["global.capacity"] = np.array(shot.global_.capacity)
    out["global.has_adjacency"] = np.array(shot.global_._adjacency is not None)
    if shot.global_._adjacency is not None:  # kept: the palette may have grown since it was made
        out["global.adjacency"] = shot.global_._adjacency
    objects = shot.objects
    for name in _OBJECTS:
        out[f"objects.{name}"] = getattr(objects, name)
    parts = objects.parts
    out["objects.parts.obj"] = np.array([p.obj for p in parts], np.int64)
    out["objects.parts.color"] = np.array([p.color for p in parts], np.int64)
    out["objects.parts.xyarea"] = np.array([(p.x, p.y, p.area) for p in parts], np.float64).reshape(-1, 3)
    out["objects.parts.cut"] = np.array([p.cut for p in parts], bool)
    out["objects.parts.reach"] = np.array([p.reach for p in parts], np.float64).reshape(-1, 2)
    for name in _HIDDEN:
        out[f"hidden.{name}"] = getattr(shot.hidden, name)
    out["hidden.horizon"] = np.array(shot.hidden.horizon)
    out["hidden.capacity"] = np.array(shot.hidden.capacity)
    out["bands.seen"] = shot.bands.seen
    # The last frame, for the hidden memory: after any colorized frame it is the local memory's.
    last = shot.last
    same = last is not None and last[0] is local.stats and last[1] is local.belief
    out["last.kind"] = np.array(0 if last is None else 1 if same else 2)
    if last is not None and not same:
        _put_stats(out, "last.stats", last[0])
        out["last.belief"] = last[1]
    return {k: np.array(v, copy=True) for k, v in out.items()}


def restore(shot, state: dict[str, np.ndarray]) -> None:
    """Put a `snapshot` back into a `_Shot` freshly made from the same keyframes and options."""
    from longanim.engine.backends.paint.objects import _Part  # the objects' own record type

    version = int(state["version"])
    if version != VERSION:
        raise ValueError(f"paint shot state version {version}, this code reads version {VERSION}")
    shot.palette.restore(state["palette.colors"], state.get("palette.opaque"))
    local = shot.local
    if bool(state["local.present"]):
        local.remember(_get_stats(state, "local.stats"), state["local.small"], state["local.belief"],
                       state["local.assurance"])
    g = shot.global_
    for name in _GLOBAL:
        setattr(g, name, state[f"global.{name}"])
    g.capacity = int(state["global.capacity"])
    g._adjacency = state["global.adjacency"] if bool(state["global.has_adjacency"]) else None
    objects = shot.objects
    for name in _OBJECTS:
        setattr(objects, name, state[f"objects.{name}"])
    xyarea, reach = state["objects.parts.xyarea"], state["objects.parts.reach"]
    objects.parts = [
        _Part(int(obj), int(color), float(xyarea[i, 0]), float(xyarea[i, 1]), float(xyarea[i, 2]), bool(cut),
              (float(reach[i, 0]), float(reach[i, 1])))
        for i, (obj, color, cut) in enumerate(zip(state["objects.parts.obj"], state["objects.parts.color"],
                                                  state["objects.parts.cut"]))
    ]
    objects._layout_cache = None
    for name in _HIDDEN:
        setattr(shot.hidden, name, state[f"hidden.{name}"])
    shot.hidden.horizon = int(state["hidden.horizon"])
    shot.hidden.capacity = int(state["hidden.capacity"])
    shot.bands.seen = state["bands.seen"]
    shot.bands._last = None
    kind = int(state["last.kind"])
    shot.last = None if kind == 0 else (local.stats, local.belief) if kind == 1 else (
        _get_stats(state, "last.stats"), state["last.belief"])


def _put_stats(out: dict, prefix: str, stats: RegionStats) -> None:
    for name in _STATS_FIELDS:
        out[f"{prefix}.{name}"] = np.asarray(getattr(stats, name))


def _get_stats(state: dict, prefix: str) -> RegionStats:
    values = {name: state[f"{prefix}.{name}"] for name in _STATS_FIELDS}
    for name in _STATS_INTS:
        values[name] = int(values[name])
    return RegionStats(**values)
