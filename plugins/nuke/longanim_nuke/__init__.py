"""LongAnimation for Nuke: the LongAnimationColorize node.

Nuke-free logic (`settings`, `colour`, `results`, `run`) and a thin layer that touches
`nuke` (`node`: the Group and its knobs; `render`: the inputs to EXR; `actions`: the
buttons, a worker thread and ProgressTask; `farm`: command-line renders and bake).
`register()` is all init.py calls; the `nuke` modules are imported only from here on.
"""

from __future__ import annotations

__version__ = "0.1.0"


def register() -> None:
    """Callbacks for every session, GUI or not (init.py)."""
    import nuke

    from longanim_nuke import farm

    nuke.addBeforeRender(farm.before_render)


def register_menu() -> None:
    """The Nodes menu entry (menu.py, GUI sessions only)."""
    import nuke

    nuke.menu("Nodes").addCommand("LongAnimation/LongAnimationColorize",
                                  "import longanim_nuke.node; longanim_nuke.node.create()")
