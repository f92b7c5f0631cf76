"""Returns the line art unchanged: measures the engine and I/O without any colorizer cost."""

from __future__ import annotations

import numpy as np

from longanim.engine.backends.base import Backend, Cancelled, ColoredFrame


class PassthroughBackend(Backend):
    name = "passthrough"
    frame_independent = True  # each output depends on its own frame only: cacheable per frame

    def colorize(self, frames, keyframes, *, progress=None, cancelled=None):
        for number, lineart in frames:
            if cancelled is not None and cancelled():
                raise Cancelled(f"cancelled before frame {number}")
            yield ColoredFrame(number, lineart, np.broadcast_to(np.float32(1.0), lineart.shape[:2]))
