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
from longanim.engine.errors import InputError, LonganimError
from longanim.progress import ProgressBar

# Frames sent before their results come back (and as many read ahead): what both sides
# hold. paint and passthrough answer frame by frame; a diffusion backend needs a whole
# segment (81 frames by default) before its first result.
AHEAD_FRAMES = {"paint": 16, "passthrough": 16}
AHEAD_SEGMENTS = 2 * 81
CAUSAL_BACKENDS = ("paint",)  # looks back only (Backend.causal); known here without importing it
FRAME_INDEPENDENT_BACKENDS = ("passthrough",)
# Engine error codes that mean the input or options are wrong: exit 2 (retrying will not help),
# as the same error in-process. Any other (timeout, lost, internal, busy) exits 1.
USER_ERRORS = ("input_error", "forbidden", "not_found", "invalid_content", "unknown_backend", "too_large",
               "backend_error")
CANCEL_SETTLE_S = 15.0  # a cancelled path job's end waited for: half the farm template's notify period
CHECKPOINTS_SINCE = (1, 2)  # the protocol version whose path jobs take checkpoint_every / resume


def run_remote(args, progress=None, cancelled=None) -> int:
    """`progress` (an OpenJD progress writer; None: a bar unless -q) gets the pipeline's
    events; `cancelled` (the SIGTERM flag) stops the run and the engine's job between frames."""
    from longanim.protocol.client import CurveKeys, EngineClient, EngineError

    timeout = float(getattr(args, "engine_timeout", 30.0) or 30.0)
    keys_dir = getattr(args, "curve_keys", None) or os.environ.get("LONGANIM_CURVE_KEYS")
    curve = CurveKeys.from_dir(keys_dir) if keys_dir else None
    started = time.perf_counter()
    try:
        with EngineClient(args.engine, timeout=timeout, curve=curve, client_name="longanim-cli") as client:
            info = client.hello()
            if "path" in info.get("capabilities", {}).get("input_kinds", []):
                checkpoints = _speaks(info.get("protocol_version"), CHECKPOINTS_SINCE)
                if not checkpoints:
                    _no_resume(args, f"the engine speaks protocol {info.get('protocol_version')}, older than 1.2")
                job, cached, written = _colorize_paths(client, args, timeout, progress, cancelled, checkpoints)
            else:
                _no_resume(args, "the engine has no --roots: it colorizes the pixels sent to it and keeps the "
                                 "shot's memory, no checkpoint is written")
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


def _speaks(version, since: tuple[int, int]) -> bool:
    try:
        major, minor = (int(part) for part in str(version).split(".")[:2])
    except ValueError:
        return False
    return major == since[0] and minor >= since[1]


def _no_resume(args, why: str) -> None:
    if getattr(args, "resume", False) and not getattr(args, "quiet", False):
        print(f"longanim colorize: --resume has no effect through this engine ({why}): the shot starts from "
              "its beginning", file=sys.stderr, flush=True)


def _colorize_paths(client, args, timeout: float, progress=None, cancelled=None, checkpoints: bool = True):
    """The engine reads and writes the files (they lie on storage it shares), and keeps the
    checkpoints in the output folder as an in-process run does (`--resume`, `--checkpoint-every`)."""
    from longanim.engine.sequences.reader import parse_frame_range, parse_ref_arg
    from longanim.options import parse_options

    refs = [(os.path.abspath(path), frame) for path, frame in map(parse_ref_arg, args.ref)]
    every = getattr(args, "checkpoint_every", 0) or 0
    if every < 0:
        raise InputError(f"--checkpoint-every must be 0 (never) or more, got {every}")
    job = client.submit_paths(
        os.path.abspath(args.lineart), refs, os.path.abspath(args.output),
        backend=args.backend, options=parse_options(getattr(args, "set", []) or []),
        frames=parse_frame_range(args.frames) if getattr(args, "frames", None) else None,
        out_ext=getattr(args, "ext", None), label=_label(args), allow_gaps=getattr(args, "allow_gaps", False),
        checkpoint_every=every if checkpoints else 0, resume=bool(getattr(args, "resume", False)) and checkpoints,
    )
    bar = None
    told = [False]

    def tell_start() -> None:
        """How the engine began the job (resumed from a checkpoint, warmed up), said as in-process."""
        start = job.start
        if told[0] or not isinstance(start, dict) or not isinstance(start.get("message"), str):
            return
        told[0] = True
        if progress is not None:
            progress({"stage": "plan", **start})
        elif start.get("mode") != "fresh" or "ignored" in start["message"] or start.get("missing_frames"):
            print(f"longanim colorize: {start['message']}", file=sys.stderr, flush=True)

    try:
        # Counted here: the engine's frames_done comes in the progress event after each result.
        for received, result in enumerate(job.results(timeout=timeout), 1):
            tell_start()
            if progress is not None:
                progress({"stage": "frame", "done": received})
            elif not getattr(args, "quiet", False) and job.frames_total:
                bar = bar or ProgressBar("colorize (engine)", job.frames_total)
                bar.update(received)
            if cancelled is not None and cancelled():
                # The engine finishes the frame in hand and saves the checkpoint as the job
                # ends: waited for (within a farm's notify period), so a re-queued task finds it.
                _cancel(job, timeout, settle_s=CANCEL_SETTLE_S)
                saved = "; its checkpoint is in the output folder" if every and checkpoints else ""
                raise Cancelled(f"cancelled after frame {result.number} (the engine's job too{saved})")
    except (KeyboardInterrupt, Cancelled):
        _cancel(job, timeout)
        raise
    finally:
        tell_start()
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


def _cancel(job, timeout: float, settle_s: float = 0.0) -> None:
    """Stop the engine's job too (waiting a few seconds at most for the answer), and with
    `settle_s` until it has ended, that long at most."""
    if job is not None and job.id is not None and not job.final:
        try:
            job.cancel(timeout=min(timeout, 5.0))
            if settle_s:
                job.wait(timeout=settle_s)
        except Exception:  # what stopped us is what the user needs to see
            pass
