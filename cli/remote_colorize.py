"""`longanim colorize --engine URL`: the same job, run by a running engine.

The engine reads and writes the files itself, through the same pipeline as the
in-process run, so the output is byte-identical; this needs the paths to mean the
same on both sides (the same machine, or shared storage mounted at the same place)
and to lie inside the engine's --roots.
"""

from __future__ import annotations

import os
import sys
import time

from longanim.progress import ProgressBar


def run_remote(args) -> int:
    from longanim.engine.errors import InputError, LonganimError
    from longanim.engine.sequences.reader import parse_frame_range, parse_ref_arg
    from longanim.options import parse_options
    from longanim.protocol.client import CurveKeys, EngineClient, EngineError

    frames = parse_frame_range(args.frames) if getattr(args, "frames", None) else None
    refs = []
    for text in args.ref:
        path, frame = parse_ref_arg(text)
        refs.append((os.path.abspath(path), frame))
    options = parse_options(getattr(args, "set", []) or [])
    timeout = float(getattr(args, "engine_timeout", 30.0) or 30.0)
    keys_dir = getattr(args, "curve_keys", None) or os.environ.get("LONGANIM_CURVE_KEYS")
    curve = CurveKeys.from_dir(keys_dir) if keys_dir else None
    quiet = getattr(args, "quiet", False)
    started = time.perf_counter()
    job = None
    try:
        with EngineClient(args.engine, timeout=timeout, curve=curve, client_name="longanim-cli") as client:
            client.hello()
            job = client.submit_paths(
                os.path.abspath(args.lineart), refs, os.path.abspath(args.output),
                backend=args.backend, options=options, frames=frames, out_ext=getattr(args, "ext", None),
                label=f"cli {os.path.basename(os.path.abspath(args.lineart))}",
            )
            bar = None
            try:
                for _ in job.results(timeout=timeout):
                    if not quiet and job.frames_total:
                        bar = bar or ProgressBar("colorize (engine)", job.frames_total)
                        bar.update(job.frames_done)
            except KeyboardInterrupt:
                client.cancel(job.id, timeout=min(timeout, 5.0))
                raise
    except EngineError as exc:
        if exc.code in ("input_error", "forbidden", "not_found", "invalid_content", "unknown_backend"):
            raise InputError(f"engine {args.engine}: {exc}") from None
        raise LonganimError(f"engine {args.engine}: {exc}") from None
    if job.state != "done":
        raise LonganimError(f"engine job {job.id} ended {job.state}")
    if not quiet:
        seconds = time.perf_counter() - started
        print(f"{job.frames_done} frames -> {args.output} in {seconds:.1f} s via {args.engine} "
              f"(job {job.id}, {job.summary.get('frames_cached', 0)} from the cache)", file=sys.stderr)
    return 0
