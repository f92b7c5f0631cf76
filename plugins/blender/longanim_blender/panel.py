"""The Properties editor panel (Object tab) of a Grease Pencil object."""

from __future__ import annotations

import bpy

from .operators import active_session, connection_state


class LONGANIM_PT_colorize(bpy.types.Panel):
    bl_label = "LongAnimation Colorize"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "object"

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type in ("GREASEPENCIL", "GPENCIL")

    def draw(self, context):
        layout = self.layout
        props = context.scene.longanim
        col = layout.column()
        col.prop(props, "use_scene_range")
        row = col.row(align=True)
        row.enabled = not props.use_scene_range
        row.prop(props, "frame_start")
        row.prop(props, "frame_end")
        col.prop(props, "key_source")
        col.prop(props, "key_frames")
        if props.key_source == "IMAGE":
            col.prop(props, "key_image")
        col.prop(props, "output_dir")
        col.prop(props, "output_name")
        col.prop(props, "output_format")
        col.prop(props, "use_cache")
        session = active_session(context.scene)
        if session is None:
            layout.operator("longanim.colorize_shot", icon="BRUSH_DATA")
            layout.label(text=f"Engine: {connection_state()}")
            layout.operator("longanim.check_engine")
        else:
            layout.progress(factor=session.progress, text=session.message)
            layout.operator("longanim.cancel_colorize", icon="CANCEL")


classes = (LONGANIM_PT_colorize,)

register, unregister = bpy.utils.register_classes_factory(classes)
