"""Frames in and out: finding a shot on disk, reading and writing its images (PNG, EXR,
TIFF, JPEG, video in), and the colour spaces between files and backends.

Nothing here knows about backends, the engine server or evaluation: both the CLI and the
engine process read and write through these modules, so a shot comes out byte-identical
whichever way it was colorized.
"""
