"""`longanim colorize`: a line-art sequence plus colored keyframes -> a colored sequence."""

from __future__ import annotations

import signal
import sys
import threading

from longanim.engine.errors import InputError

NAME = "colorize"
HELP = "colorize a line-art sequence from colored reference keyframes"


def add_arguments(parser) -> None:
    parser.add_argument("lineart", help="folder, name.####.ext / name.%%04d.ext pattern, or video file")
    parser.add_argument("--ref", action="append", required=True, metavar="REF[:FRAME]",
                        help="colored reference image and the frame it shows (repeatable; "
                             "FRAME defaults to the number in the file name, else the first frame)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the colored frames")
    parser.add_argument("--backend", default="paint", help="colorizer backend (default: paint)")
    parser.add_argument("--frames", metavar="A-B", help="only these frames of the sequence")
    parser.add_argument("--ext", help="output format: png, tif or exr (default: as the input)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="backend option, e.g. --set global_memory=false (repeatable)")
    parser.add_argument("--engine", metavar="URL",
                        help="use a running engine, e.g. tcp://127.0.0.1:5555 (it reads the files itself when "
                             "they lie inside its --roots; otherwise the pixels are sent)")
    parser.add_argument("--curve-keys", metavar="DIR",
                        help="client keys from `longanim keys` for an engine that requires CurveZMQ")
    parser.add_argument("--engine-timeout", type=float, default=30.0, metavar="S",
                        help="seconds without any word from the engine before giving up, also when none "
                             "is running (default 30)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint a killed or cancelled run left in OUTDIR (none there: "
                             "start from the beginning; one made for another shot, keyframes or options: refused)")
    parser.add_argument("--checkpoint-every", type=int, default=CHECKPOINT_EVERY, metavar="N",
                        help=f"save the shot's memory in OUTDIR every N frames, at the end and on SIGTERM, for "
                             f"--resume and for later --frames chunks (default {CHECKPOINT_EVERY}; 0: never)")
    parser.add_argument("--allow-gaps", action="store_true",
                        help="colorize a sequence with frames missing from its numbering, skipping them (listed in "
                             "report.json); without it a gap is an error naming the missing frames")
    parser.add_argument("--progress", choices=("bar", "openjd"), default="bar",
                        help="progress as a bar / log lines (default) or as Open Job Description "
                             "'openjd_progress:' and 'openjd_status:' lines on stdout (render farms)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


CHECKPOINT_EVERY = 25
# Exit codes (the table is in farm/README.md): 0 done; 2 bad input, bad options or a refused
# checkpoint, from main() (retrying will not help); 1 failed, worth a retry; 143 cancelled.
EXIT_CANCELLED = 143  # 128 + SIGTERM, as a shell reports a process stopped by it
EXIT_ENGINE_FAILED = 1  # the engine failed the job or went away: unlike bad input (2), worth a retry


def run(args) -> int:
    if args.engine:
        return _run_remote(args)
    from longanim.engine.pipeline import colorize_shot
    from longanim.engine.sequences.reader import open_sequence, parse_frame_range
    from longanim.options import parse_options, parse_refs
    from longanim.progress import ProgressBar

    from longanim.engine.backends.base import Cancelled

    frames = parse_frame_range(args.frames) if args.frames else None
    refs = parse_refs(args.ref)
    options = parse_options(args.set)
    if args.checkpoint_every < 0:
        raise InputError(f"--checkpoint-every must be 0 (never) or more, got {args.checkpoint_every}")
    total = len(open_sequence(args.lineart, frames).frames)
    if args.progress == "openjd":
        progress = OpenJDProgress(total)
    else:
        # How a run starts is said even with -q when it is not fresh: it decides what the frames are.
        progress = _with_plan(None if args.quiet else ProgressBar("colorize", total))
    with _TermCancels() as term:
        try:
            report = colorize_shot(args.lineart, refs, args.output, backend=args.backend, backend_options=options,
                                   frames=frames, out_ext=args.ext, progress=progress, cancelled=term.is_set,
                                   resume=args.resume, checkpoint_every=args.checkpoint_every,
                                   allow_gaps=args.allow_gaps)
        except Cancelled as exc:
            if args.progress == "openjd":
                print(f"openjd_status: {exc}", flush=True)
            print(f"longanim colorize: {exc}", file=sys.stderr)
            return EXIT_CANCELLED
    if args.progress == "openjd":
        print(f"openjd_status: {len(report.frames)} frames colorized, "
              f"{len(report.needs_review)} need review", flush=True)
    elif not args.quiet:
        print(f"{len(report.frames)} frames -> {args.output} in {report.seconds:.1f} s "
              f"({len(report.frames) / max(report.seconds, 1e-9):.1f} fps)")
        if report.needs_review:
            stretches = report.review_stretches
            shown = ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in stretches[:8])
            more = " ..." if len(stretches) > 8 else ""
            runs = f"{len(stretches)} stretch" + ("es" if len(stretches) != 1 else "")
            print(f"{len(report.needs_review)} frames need review, in {runs}: {shown}{more} "
                  "(see confidence/ and report.json)")
    return 0


def _run_remote(args) -> int:
    """Through an engine: the same progress lines and SIGTERM handling as in-process (a farm
    task is cancelled the same way either way). An engine that reads the files itself (its
    --roots) keeps the checkpoints in the output folder, so --resume applies as in-process;
    one that is sent the pixels holds the shot's memory and keeps none. An engine that is lost,
    or fails the job for any reason but its input, exits 1 whatever --progress says: a farm
    retries it, while 2 says the input is wrong and a retry would fail the same way."""
    from longanim.engine.backends.base import Cancelled
    from longanim.engine.errors import LonganimError
    from longanim.engine.sequences.reader import open_sequence, parse_frame_range
    from longanim.remote_colorize import run_remote

    progress = None
    if args.progress == "openjd":
        frames = parse_frame_range(args.frames) if args.frames else None
        with open_sequence(args.lineart, frames) as shot:
            progress = OpenJDProgress(len(shot.frames))
    with _TermCancels() as term:
        try:
            return run_remote(args, progress=progress, cancelled=term.is_set)
        except Cancelled as exc:
            if args.progress == "openjd":
                print(f"openjd_status: {exc}", flush=True)
            print(f"longanim colorize: {exc}", file=sys.stderr)
            return EXIT_CANCELLED
        except LonganimError as exc:
            if isinstance(exc, InputError):
                raise
            if args.progress == "openjd":
                print(f"openjd_fail: {exc}", flush=True)
            print(f"longanim colorize: error: {exc}", file=sys.stderr)
            return EXIT_ENGINE_FAILED


class OpenJDProgress:
    """Progress as Open Job Description reads it from a task's stdout: `openjd_progress: P`
    (percent) per frame, `openjd_status: ...` for what the run is doing."""

    def __init__(self, total: int, stream=None) -> None:
        self.total = max(total, 1)
        self.stream = stream or sys.stdout
        self._warm_shown = -1

    def __call__(self, event: dict) -> None:
        stage = event.get("stage")
        if stage == "plan":
            self._line(f"openjd_status: {event['message']}")
        elif stage == "warm-up":
            tenth = int(event["done"]) * 10 // max(int(event["total"]), 1)
            if tenth != self._warm_shown:
                self._warm_shown = tenth
                self._line(f"openjd_status: warm-up {event['done']}/{event['total']} frames")
        elif stage == "frame":
            self._line(f"openjd_progress: {100.0 * int(event['done']) / self.total:.1f}")

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def _with_plan(bar):
    """The bar (None: -q), and the line saying how the run starts (resumed, warmed up) when it is not fresh."""

    def progress(event: dict) -> None:
        if event.get("stage") == "plan" and "message" in event:  # the pipeline's plan, not a backend's
            if event.get("mode") != "fresh" or "ignored" in event.get("message", "") or event.get("missing_frames"):
                print(f"longanim colorize: {event['message']}", file=sys.stderr, flush=True)
        elif bar is not None:
            bar(event)

    return progress


class _TermCancels:
    """SIGTERM (a farm's cancel, NOTIFY_THEN_TERMINATE) becomes a cancel: the run finishes the
    frame in hand and the files in flight, saves its checkpoint and exits EXIT_CANCELLED,
    leaving no partial file. Only in the main thread, where Python runs signal handlers."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def __enter__(self) -> "_TermCancels":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda signum, frame: self._event.set())
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
