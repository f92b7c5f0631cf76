"""Command-line renders and farms: colorize before a Write renders, or bake the node away.

`nuke -x script.nk` renders the script's Writes; `before_render` (a beforeRender callback
registered by init.py) finds the LongAnimationColorize nodes upstream of the Write being
rendered and, outside the GUI, colorizes each one whose cache folder is not current, on
the render's own thread, blocking until the frames exist. A failure raises, and Nuke
documents that an exception in beforeRender aborts the render; the command then exits
non-zero. In the GUI nothing is colorized behind the artist's back: an out-of-date node
stops the render with a message to press Colorize.

`bake` replaces a node by a stock Read of its results, for farms without the plug-in.
"""

from __future__ import annotations

import sys
from typing import TextIO

import nuke
from longanim.engine.errors import InputError, LonganimError

from longanim_nuke import node, results
from longanim_nuke.render import render_inputs
from longanim_nuke.run import ColorizeRun, Outcome, Progress


def before_render() -> None:
    write = nuke.thisNode()
    for group in upstream_colorize_nodes(write):
        settings = node.settings_of(group)
        if results.is_current(settings.cache_dir, settings.key()):
            continue
        if nuke.GUI:
            raise RuntimeError(f"{group.name()} is not colorized for its current settings; press Colorize "
                               f"on it (or Bake it) before rendering {write.name()}")
        colorize_blocking(group)


def upstream_colorize_nodes(start: nuke.Node) -> list[nuke.Node]:
    """Our nodes above `start`, the furthest up first (a chain colorizes in order)."""
    found: list[nuke.Node] = []
    seen: set[str] = set()

    def visit(n: nuke.Node) -> None:
        if n.fullName() in seen:
            return
        seen.add(n.fullName())
        for up in n.dependencies(nuke.INPUTS | nuke.HIDDEN_INPUTS):
            visit(up)
        if node.is_colorize(n):
            found.append(n)

    visit(start)
    return found


def colorize_blocking(found: nuke.Node, out: TextIO | None = None) -> Outcome:
    """Colorize on this thread until the frames exist; raises LonganimError on failure."""
    from longanim_nuke.actions import prepare

    group = node.as_group(found)
    settings, transform = prepare(group)
    rendered = render_inputs(group, settings)
    name = group.fullName()
    last = [-1]

    def progress(p: Progress) -> None:
        if p.done != last[0] and (p.done == p.total or p.done % 10 == 0):
            last[0] = p.done
            print(f"LongAnimation {name}: {p.message}", file=out or sys.stdout, flush=True)

    try:
        outcome = ColorizeRun(settings, rendered.lineart, rendered.keyframes, transform,
                              label=f"nuke -x {name}").run(progress=progress)
    finally:
        rendered.discard()
    if outcome.written:
        node.show_results(group, settings.first, settings.last)
    node.set_status(group, f"{outcome.state}: {outcome.message}")
    if outcome.state != "done":
        raise LonganimError(f"{name}: colorize {outcome.state}: {outcome.message}")
    return outcome


def colorize_all() -> int:
    """Every out-of-date node of the open script, blocking (`nuke -t` pre-render task);
    returns how many were colorized."""
    count = 0
    for group in node.all_nodes():
        settings = node.settings_of(group)
        if not results.is_current(settings.cache_dir, settings.key()):
            colorize_blocking(group)
            count += 1
    return count


def main(argv: list[str]) -> int:
    """`nuke -t longanim_nuke/farm.py SHOT.nk`: colorize the script's out-of-date nodes once,
    before a farm's render tasks (which then find them current). Exit status 1 on failure."""
    if len(argv) != 2:
        print("usage: nuke -t farm.py SCRIPT.nk", file=sys.stderr)
        return 2
    nuke.scriptOpen(argv[1])
    try:
        count = colorize_all()
    except LonganimError as exc:
        print(f"LongAnimation: {exc}", file=sys.stderr)
        return 1
    print(f"LongAnimation: {count} node(s) colorized, the others were current")
    return 0


def bake(group: nuke.Node) -> nuke.Node:
    """Replace `group` by a Read of its results wired to the same outputs; refused while
    the cache folder does not hold a finished run for the node's current settings."""
    settings = node.settings_of(group)
    if not results.is_current(settings.cache_dir, settings.key()):
        raise InputError(f"{group.name()}: its cache folder {settings.cache_dir} has no finished run for the "
                         "current settings; Colorize first")
    name, x, y = group.name(), group.xpos(), group.ypos()
    users = [(user, i) for user in group.dependent(nuke.INPUTS | nuke.HIDDEN_INPUTS, forceEvaluate=False)
             for i in range(user.inputs()) if _same(user.input(i), group)]
    with _parent_of(group):  # beside the node, whichever group the button was pressed from
        read = nuke.nodes.Read(file=results.result_pattern(settings.cache_dir), first=settings.first,
                               last=settings.last, origfirst=settings.first, origlast=settings.last, raw=True,
                               label=f"baked from {name}")
        read.setXYpos(x, y)
        for user, i in users:
            user.setInput(i, read)
        nuke.delete(group)
        read.setName(f"{name}_baked", uncollide=True)
    return read


def _parent_of(n: nuke.Node) -> nuke.Group:
    path = n.fullName().rpartition(".")[0]
    parent = nuke.toNode(path) if path else None
    return node.as_group(parent) if parent is not None else nuke.root()


def _same(a: nuke.Node | None, b: nuke.Node) -> bool:
    return a is not None and a.fullName() == b.fullName()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
