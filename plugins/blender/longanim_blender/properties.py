"""Per-scene settings of the Colorize shot operator (shown in the panel)."""

from __future__ import annotations

import bpy


class LONGANIM_SceneSettings(bpy.types.PropertyGroup):
    use_scene_range: bpy.props.BoolProperty(name="Scene range", default=True,
                                            description="Colorize the scene's frame range")
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=24)
    key_source: bpy.props.EnumProperty(
        name="Keyframe", default="RENDER",
        items=[("RENDER", "Painted frame", "Render a frame of this object with its fills on (the frame you painted)"),
               ("IMAGE", "Image file", "A painted image at the scene resolution")])
    key_frame: bpy.props.IntProperty(name="Key frame", default=1,
                                     description="Frame number of the keyframe")
    key_image: bpy.props.StringProperty(name="Key image", subtype="FILE_PATH", default="")
    output_dir: bpy.props.StringProperty(name="Output folder", subtype="DIR_PATH", default="//",
                                         description="Where name.####.png go ('//': beside the .blend)")
    output_name: bpy.props.StringProperty(name="Name", default="",
                                          description="File name before .####.png (empty: the object's name)")
    use_cache: bpy.props.BoolProperty(name="Engine cache", default=True,
                                      description="An unchanged range is served from the engine's cache")


def register():
    bpy.utils.register_class(LONGANIM_SceneSettings)
    bpy.types.Scene.longanim = bpy.props.PointerProperty(type=LONGANIM_SceneSettings)


def unregister():
    del bpy.types.Scene.longanim
    bpy.utils.unregister_class(LONGANIM_SceneSettings)
