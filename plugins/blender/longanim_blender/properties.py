"""Per-scene settings of the Colorize shot operator (shown in the panel)."""

from __future__ import annotations

import bpy

# Blender 4.5+ warns when a path property that does not declare it is set to a "//" path.
_RELATIVE = {"PATH_SUPPORTS_BLEND_RELATIVE"}


class LONGANIM_SceneSettings(bpy.types.PropertyGroup):
    use_scene_range: bpy.props.BoolProperty(name="Scene range", default=True,
                                            description="Colorize the scene's frame range")
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=24)
    key_source: bpy.props.EnumProperty(
        name="Keyframe", default="RENDER",
        items=[("RENDER", "Painted frame", "Render a frame of this object with its fills on (the frame you painted)"),
               ("IMAGE", "Image file", "A painted image at the scene resolution")])
    key_frames: bpy.props.StringProperty(
        name="Key frames", default="1",
        description="The frames you painted, e.g. '1001, 1040' (each is rendered with its fills on, or "
                    "read from the key image)")
    key_image: bpy.props.StringProperty(
        name="Key image", subtype="FILE_PATH", default="", options=_RELATIVE,
        description="A painted image at the scene resolution; for several key frames a pattern such as "
                    "//keys/key.####.png")
    output_format: bpy.props.EnumProperty(
        name="Format", default="PNG",
        items=[("PNG", "PNG", "8-bit sRGB with alpha"),
               ("EXR", "OpenEXR", "Half float, scene-linear, premultiplied alpha")])
    output_dir: bpy.props.StringProperty(name="Output folder", subtype="DIR_PATH", default="//", options=_RELATIVE,
                                         description="Where name.####.png (or .exr) go ('//': beside the .blend)")
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
