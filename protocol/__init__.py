"""The engine's wire protocol and client library (see PROTOCOL.md).

Needs only pyzmq and msgpack (numpy when pixels are sent or received), so Blender
and Nuke can import it; it never imports `longanim.engine`.
"""

from longanim.protocol.wire import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION"]
