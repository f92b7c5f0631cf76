"""`longanim colorize --engine URL`: the same job, run by a running engine.

Two ways, both writing files byte-identical to an in-process run:

- the engine has `--roots` (capabilities `input_kinds` holds "path"): it reads and writes
  the files itself through the same pipeline, which needs the paths to mean the same on
  both sides (the same machine, or shared storage mounted at the same place) and to lie
  inside its roots;
- otherwise (the README's plain `longanim serve &`) the in-process pipeline runs here with
  a backend that sends the pixels to the engine as they are read (a bounded stretch ahead
  of the results, never the whole shot) and hands its results to the pipeline's writers.
"""

from __future__ import annotations

import collections
import os
import sys
import time

from longanim.engine.backends.base import Backend, Cancelled, ColoredFrame
from longanim.engine.errors import LonganimError
from longanim.progress import ProgressBar

# Frames sent before their results come back (and as many read ahead): what both sides
# hold. paint and passthrough answer frame by frame; a diffusion backend needs a whole
# segment (81 frames by default) before its first result.
AHEAD_FRAMES = {"paint": 16, "passthrough": 16}
AHEAD_SEGMENTS = 2 * 81
CAUSAL_BACKENDS = ("paint",)  # looks back only (Backend.causal); known here without importing it
FRAME_INDEPENDENT_BACKENDS = ("passthrough",)
USER_ERRORS = ("input_error", "forbidden", "not_found", "invalid_content", "unknown_backend", "too_large")


def run_remote(args, progress=None, cancelled=None) -> int:
    """`progress` (an OpenJD progress writer; None: a bar unless -q) gets the pipeline's
    events; `cancelled` (the SIGTERM flag) stops the run and the engine's job between frames."""
    from longanim.engine.errors import InputError
    from longanim.protocol.client import CurveKeys, EngineClient, EngineError

    timeout = float(getattr(args, "engine_timeout", 30.0) or 30.0)
    keys_dir = getattr(args, "curve_keys", None) or os.environ.get("LONGANIM_CURVE_KEYS")
    curve = CurveKeys.from_dir(keys_dir) if keys_dir else None
    started = time.perf_counter()
    try:
        with EngineClient(args.engine, timeout=timeout, curve=curve, client_name="longanim-cli") as client:
            info = client.hello()
            if "path" in info.get("capabilities", {}).get("input_kinds", []):
                job, cached, written = _colorize_paths(client, args, timeout, progress, cancelled)
            else:
                job, cached, written = _colorize_inline(client, args, timeout, progress, cancelled)
    except EngineError as exc:
        if exc.code in USER_ERRORS:
            raise InputError(f"engine {args.engine}: {exc}") from None
        raise LonganimError(f"engine {args.engine}: {exc}") from None
    if job.state != "done":
        raise LonganimError(f"engine job {job.id} ended {job.state}")
    if progress is not None:
        print(f"openjd_status: {written} frames colorized via {args.engine} (job {job.id})", flush=True)
    elif not getattr(args, "quiet", False):
        seconds = time.perf_counter() - started
        print(f"{written} frames -> {args.output} in {seconds:.1f} s via {args.engine} "
              f"(job {job.id}, {cached} from the cache)", file=sys.stderr)
    return 0


def _colorize_paths(client, args, timeout: float, progress=None, cancelled=None):
    """The engine reads and writes the files (they lie on storage it shares)."""
    from longanim.engine.sequences.reader import parse_frame_range, parse_ref_arg
    from longanim.options import parse_options

    refs = [(os.path.abspath(path), frame) for path, frame in map(parse_ref_arg, args.ref)]
    job = client.submit_paths(
        os.path.abspath(args.lineart), refs, os.path.abspath(args.output),
        backend=args.backend, options=parse_options(getattr(args, "set", []) or []),
        frames=parse_frame_range(args.frames) if getattr(args, "frames", None) else None,
        out_ext=getattr(args, "ext", None), label=_label(args), allow_gaps=getattr(args, "allow_gaps", False),
    )
    bar = None
    try:
        for _ in job.results(timeout=timeout):
            if progress is not None:
                progress({"stage": "frame", "done": job.frames_done})
            elif not getattr(args, "quiet", False) and job.frames_total:
                bar = bar or ProgressBar("colorize (engine)", job.frames_total)
                bar.update(job.frames_done)
            if cancelled is not None and cancelled():
                raise Cancelled(f"cancelled after {job.frames_done} frames (the engine's job too)")
    except (KeyboardInterrupt, Cancelled):
        _cancel(job, timeout)
        raise
    return job, job.summary.get("frames_cached", 0), job.frames_done


def _colorize_inline(client, args, timeout: float, progress=None, cancelled=None):
    """The in-process pipeline reads the frames and writes the results (the same files, byte
    for byte); only the colorizing happens in the engine, through `EngineBackend`."""
    from longanim.engine.pipeline import colorize_shot
    from longanim.engine.sequences.reader import open_sequence, parse_frame_range
    from longanim.options import parse_options, parse_refs

    frames = parse_frame_range(args.frames) if getattr(args, "frames", None) else None
    with open_sequence(args.lineart, frames) as shot:
        total = len(shot.frames)
    backend = EngineBackend(client, args.backend, parse_options(getattr(args, "set", []) or []), timeout, _label(args))
    if progress is None and not getattr(args, "quiet", False):
        progress = ProgressBar("colorize (engine)", total)
    report = colorize_shot(args.lineart, parse_refs(args.ref), args.output, backend=backend, frames=frames,
                           out_ext=getattr(args, "ext", None), progress=progress, cancelled=cancelled,
                           allow_gaps=getattr(args, "allow_gaps", False))
    return backend.job, backend.cached, len(report.frames)  # a warm-up's frames went to the engine, not -o


class EngineBackend(Backend):
    """A backend whose colorizing happens in a running engine: the frames `colorize_shot`
    reads are sent as pixels (read on the client's worker thread, a bounded stretch ahead of
    the results) and its results come back in input order, as the pipeline expects."""

    def __init__(self, client, name: str, options: dict, timeout: float, label: str):
        self.client, self.name, self.options, self.timeout, self.label = client, name, options, timeout, label
        # What the engine's backend is, so the pipeline plans a range the same way as in-process.
        self.causal = name in CAUSAL_BACKENDS
        self.frame_independent = name in FRAME_INDEPENDENT_BACKENDS
        self.job = None
        self.cached = 0

    def ahead(self) -> int:
        segment = self.options.get("segment_length")
        segment = segment if isinstance(segment, int) and not isinstance(segment, bool) else 0
        return AHEAD_FRAMES.get(self.name, max(AHEAD_SEGMENTS, 2 * segment))

    def colorize(self, frames, keyframes, *, progress=None, cancelled=None):
        order: collections.deque = collections.deque()  # numbers as sent, filled on the reader thread

        def numbered():
            for number, rgb in frames:
                order.append(number)
                yield number, rgb

        self.job = self.client.submit_frames(
            numbered(), [(k.number, k.color, k.lineart, k.alpha) for k in keyframes], backend=self.name,
            options=self.options, confidence=True, label=self.label, max_ahead=self.ahead(), timeout=self.timeout)
        waiting: dict = {}  # results that came before an earlier frame's (a resend)
        try:
            for result in self.job.results(timeout=self.timeout):
                self.cached += result.cached
                waiting[result.number] = result
                while order and order[0] in waiting:
                    r = waiting.pop(order.popleft())
                    yield ColoredFrame(r.number, r.rgb, r.confidence, r.info)
                if cancelled is not None and cancelled():
                    raise Cancelled("cancelled")
        except BaseException:  # Ctrl-C, a failed write, the pipeline giving up: stop the engine's job too
            _cancel(self.job, self.timeout)
            raise
        if order:
            raise LonganimError(f"engine job {self.job.id} ended {self.job.state} without results for frames "
                                f"{list(order)[:5]}...")


def _label(args) -> str:
    return f"cli {os.path.basename(os.path.abspath(args.lineart))}"


def _cancel(job, timeout: float) -> None:
    """Stop the engine's job too (waiting a few seconds at most for the answer)."""
    if job is not None and job.id is not None and not job.final:
        try:
            job.cancel(timeout=min(timeout, 5.0))
        except Exception:  # what stopped us is what the user needs to see
            pass
