"""Add-on preferences: where the engine is and how to reach it."""

from __future__ import annotations

import bpy

ADDON = __package__


class LONGANIM_Preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON

    engine_url: bpy.props.StringProperty(
        name="Engine address", default="tcp://127.0.0.1:5555",
        description="ZeroMQ address of a running `longanim serve`")
    timeout: bpy.props.FloatProperty(
        name="Timeout", default=5.0, min=0.5, max=120.0, unit="TIME_ABSOLUTE",
        description="Seconds to wait for the engine's answer to one request before saying it is down")
    path_roots: bpy.props.StringProperty(
        name="Engine path roots", default="",
        description="Folders the engine was started with (--roots), separated by ';'. An output folder "
                    "inside one is a path job (the engine reads and writes the files); else the pixels are sent")
    engine_python: bpy.props.StringProperty(
        name="Engine Python", subtype="FILE_PATH", default="",
        description="For Start: the python of the environment longanim is installed in "
                    "(empty: `longanim` on PATH)")
    curve_dir: bpy.props.StringProperty(
        name="CurveZMQ key folder", subtype="DIR_PATH", default="",
        description="Folder with client.key_secret and server.key (from `longanim keys DIR`); "
                    "empty for an engine on this machine without CurveZMQ")
    backend: bpy.props.StringProperty(name="Backend", default="paint",
                                      description="Engine backend: paint (CPU) or longanimation (GPU, weights)")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "engine_url")
        layout.prop(self, "timeout")
        layout.prop(self, "backend")
        layout.prop(self, "curve_dir")
        layout.prop(self, "path_roots")
        from . import local_engine
        from .operators import connection_state

        row = layout.row()
        row.label(text=f"Engine: {connection_state()}")
        row.operator("longanim.check_engine", text="Check")
        box = layout.box()
        box.prop(self, "engine_python")
        row = box.row()
        row.label(text=f"Local engine: {local_engine.state()}")
        row.operator("longanim.start_engine", text="Start")
        row.operator("longanim.stop_engine", text="Stop")
        if local_engine.log_path() is not None:
            row.operator("longanim.open_engine_log", text="Open Log")
            col = box.column(align=True)
            for line in local_engine.log_tail():
                col.label(text=line[-160:])

    def roots(self) -> list[str]:
        return [r.strip() for r in self.path_roots.split(";") if r.strip()]


def get(context=None) -> "LONGANIM_Preferences":
    context = context or bpy.context
    return context.preferences.addons[ADDON].preferences


classes = (LONGANIM_Preferences,)

register, unregister = bpy.utils.register_classes_factory(classes)
