"""`longanim colorize`: a line-art sequence plus colored keyframes -> a colored sequence."""

from __future__ import annotations

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
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    if args.engine:
        from longanim.remote_colorize import run_remote

        return run_remote(args)
    from longanim.engine.pipeline import colorize_shot
    from longanim.engine.sequences.reader import open_sequence, parse_frame_range
    from longanim.options import parse_options, parse_refs
    from longanim.progress import ProgressBar

    frames = parse_frame_range(args.frames) if args.frames else None
    refs = parse_refs(args.ref)
    options = parse_options(args.set)
    total = len(open_sequence(args.lineart, frames).frames)
    progress = None if args.quiet else ProgressBar("colorize", total)
    report = colorize_shot(args.lineart, refs, args.output, backend=args.backend, backend_options=options,
                           frames=frames, out_ext=args.ext, progress=progress)
    if not args.quiet:
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
