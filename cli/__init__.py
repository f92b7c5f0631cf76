"""longanim: long-shot line-art colorization for Blender, Nuke and render farms."""

__version__ = "0.1.0"
