"""LongAnimation Colorize: colorize a Grease Pencil shot through a longanim engine.

The engine client is a copy of the repository's protocol/ package made by build.py
(`.protocol`); pyzmq and msgpack come from the extension's wheels. Modules, in the order
a run goes through them: properties (scene settings), preferences (engine address, the
local engine), local_engine (a `longanim serve` this Blender starts and stops, no bpy),
panel, operators (modal timer), session (the steps), lineart_render (bpy renders),
frames (pixels, PNG and EXR files, no bpy), compositor (the node group).
"""

from __future__ import annotations

from . import operators, panel, preferences, properties

_modules = (properties, preferences, operators, panel)


def register():
    for module in _modules:
        module.register()


def unregister():
    for module in reversed(_modules):
        module.unregister()
