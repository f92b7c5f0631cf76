"""The LongAnimationColorize node: a Group built by Python, its knobs, and reading them.

Inside the group: Input `lineart` (input 0) and `ref1`..`ref3`, a Read `results` of the
node's cache folder, a Switch `show` (line art until there are results) and the Output.
Every value lives in a knob, so it is saved in the .nk and comes back on reload; the
buttons call one function each in `actions`, and say so plainly when the plug-in's Python
side is missing (the node then still loads and passes its Read through).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import nuke
from longanim.engine.errors import InputError

from longanim_nuke import results
from longanim_nuke.settings import (
    BACKENDS,
    MAX_REFS,
    Settings,
    parse_options_text,
    parse_ref_frames,
)

NODE_NAME = "LongAnimationColorize"
MARK = "longanim_colorize"  # a hidden knob: which Groups are ours (saved with the node)
DEFAULT_ENGINE = "tcp://127.0.0.1:5555"

_BUTTON = """try:
    import longanim_nuke.actions as _longanim
except ImportError as _exc:
    nuke.message("LongAnimation: the plug-in's Python side is missing ({0}); see plugins/nuke/README.md".format(_exc))
else:
    _longanim.{0}(nuke.thisNode())
"""


def create() -> nuke.Group:
    """The menu command: a new node, wired to the selected one like any created node."""
    group = as_group(nuke.createNode("Group", inpanel=False))
    group.setName(NODE_NAME, uncollide=True)
    build(group)
    return group


def build(group: nuke.Group) -> None:
    """Knobs and internals of a fresh Group."""
    root = nuke.root()
    mark = nuke.Int_Knob(MARK, "")
    mark.setValue(1)
    mark.setFlag(nuke.INVISIBLE)
    group.addKnob(nuke.Tab_Knob("longanim", "LongAnimation"))
    group.addKnob(mark)
    engine = nuke.String_Knob("engine", "engine address")
    engine.setValue(os.environ.get("LONGANIM_ENGINE", DEFAULT_ENGINE))
    group.addKnob(engine)
    refs = nuke.String_Knob("ref_frames", "reference frames")
    refs.setValue(str(int(root["first_frame"].value())))
    refs.setTooltip("the frame each reference shows: 1001 1200 (both from ref1) or 1001 2:1200 (the second "
                    f"from ref2); inputs ref1 to ref{MAX_REFS}")
    group.addKnob(refs)
    first = nuke.Int_Knob("frame_first", "frame range")
    first.setValue(int(root["first_frame"].value()))
    last = nuke.Int_Knob("frame_last", "")
    last.setValue(int(root["last_frame"].value()))
    last.clearFlag(nuke.STARTLINE)
    group.addKnob(first)
    group.addKnob(last)
    group.addKnob(nuke.Enumeration_Knob("backend", "backend", list(BACKENDS)))
    options = nuke.String_Knob("options", "backend options")
    options.setTooltip("KEY=VALUE pairs, e.g. gap_close=2 global_memory=false (as longanim colorize --set)")
    group.addKnob(options)
    timeout = nuke.Int_Knob("engine_timeout", "engine timeout (s)")
    timeout.setValue(30)
    group.addKnob(timeout)
    display = nuke.String_Knob("display_space", "OCIO display space")
    display.setTooltip("the sRGB-encoded colour space of the script's OCIO config (blank: found by name); "
                       "without an OCIO config the engine's own sRGB transform is used")
    group.addKnob(display)
    group.addKnob(nuke.File_Knob("cache_dir", "cache folder"))
    for name, label in (("colorize", "Colorize"), ("cancel", "Cancel"), ("bake", "Bake")):
        button = nuke.PyScript_Knob(name, label, _BUTTON.format(name))
        if name != "colorize":
            button.clearFlag(nuke.STARTLINE)
        group.addKnob(button)
    group.addKnob(nuke.Text_Knob("status", "status", "not colorized yet"))

    with group:
        lineart = nuke.nodes.Input(name="lineart")
        for i in range(1, MAX_REFS + 1):
            nuke.nodes.Input(name=f"ref{i}")
        read = nuke.nodes.Read(name="results", raw=True, on_error="black")
        show = nuke.nodes.Switch(name="show", which=0)
        show.setInput(0, lineart)
        show.setInput(1, read)
        nuke.nodes.Output().setInput(0, show)


def as_group(n: nuke.Node) -> nuke.Group:
    if not isinstance(n, nuke.Group):
        raise InputError(f"{n.name()} is a {n.Class()}, not a {NODE_NAME} node")
    return n


def is_colorize(node: nuke.Node | None) -> bool:
    return node is not None and node.knob(MARK) is not None


def all_nodes() -> list[nuke.Node]:
    return [n for n in nuke.allNodes("Group", recurseGroups=True) if is_colorize(n)]


def settings_of(group: nuke.Node) -> Settings:
    """The knobs as plain values (InputError naming a bad one); a blank cache folder is set
    to one beside the script, so the .nk says where its results are."""
    if not group["cache_dir"].value().strip():
        group["cache_dir"].setValue(default_cache_dir(group))
    return Settings(
        engine=str(group["engine"].value()).strip(),
        first=int(group["frame_first"].value()),
        last=int(group["frame_last"].value()),
        refs=parse_ref_frames(str(group["ref_frames"].value())),
        backend=str(group["backend"].value()),
        options=parse_options_text(str(group["options"].value())),
        cache_dir=str(group["cache_dir"].value()).strip(),
        timeout=float(group["engine_timeout"].value()),
    )


def default_cache_dir(group: nuke.Node) -> str:
    script = str(nuke.root()["name"].value())
    base = Path(script).parent if script else Path(os.environ.get("LONGANIM_NUKE_CACHE", Path.home() / "longanim"))
    stem = Path(script).stem if script else "untitled"
    return (base / "longanim_cache" / stem / group.fullName().replace(".", "_")).as_posix()


def ocio_config() -> str | None:
    """The script's OCIO config file, where it uses one: its custom config, Nuke's own
    config of that name, or $OCIO."""
    root = nuke.root()
    mode = root.knob("colorManagement")
    if mode is not None and str(mode.value()) == "OCIO":
        name = str(root["OCIO_config"].value()) if root.knob("OCIO_config") is not None else ""
        if name == "custom" and root.knob("customOCIOConfigPath") is not None:
            return str(root["customOCIOConfigPath"].value()) or None
        bundled = Path(nuke.EXE_PATH).parent / "plugins" / "OCIOConfigs" / "configs" / name / "config.ocio"
        if name and bundled.is_file():
            return str(bundled)
    return os.environ.get("OCIO") or None


def working_space() -> str:
    knob = nuke.root().knob("workingSpaceLUT")
    return str(knob.value()) if knob is not None else ""


def set_status(group: nuke.Node, text: str) -> None:
    group["status"].setValue(text)


def show_results(group: nuke.Group, first: int, last: int) -> None:
    """Point the internal Read at the cache and show it (reloaded: frames were rewritten)."""
    read = group.node("results")
    assert read is not None, f"{group.name()}: its internal Read 'results' was deleted"
    read["file"].setValue(results.result_pattern(group["cache_dir"].value()))
    for name, value in (("first", first), ("last", last), ("origfirst", first), ("origlast", last)):
        read[name].setValue(value)
    cast(nuke.Script_Knob, read["reload"]).execute()  # the Read's reload button (Nuke caches frames)
    show = group.node("show")
    assert show is not None, f"{group.name()}: its internal Switch 'show' was deleted"
    show["which"].setValue(1)
