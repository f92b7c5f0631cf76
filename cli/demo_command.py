"""`longanim demo`: see the colorizer work on a fresh machine, no files or weights needed.

Makes a seeded synthetic shot, colorizes it from its reference keyframe through the
same pipeline as `longanim colorize`, scores it against the truth and draws a
contact sheet (engine/evaluation/demo.py does the work; this module only parses and prints).
"""

from __future__ import annotations

NAME = "demo"
HELP = "colorize a synthetic shot and score it: frames, metrics and a contact sheet"


def add_arguments(parser) -> None:
    parser.add_argument("-o", "--output", default="longanim-demo", metavar="OUTDIR",
                        help="folder for everything the demo writes (default: ./longanim-demo)")
    parser.add_argument("--frames", type=int, default=500, metavar="N", help="shot length (default 500)")
    parser.add_argument("--size", default="480x270", metavar="WxH", help="frame size (default 480x270)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="synthetic shot seed (default 0)")
    parser.add_argument("--backend", default="paint", help="colorizer backend (default: paint)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="backend option, e.g. --set global_memory=false (repeatable)")
    parser.add_argument("--antialias", action="store_true", help="anti-aliased lines")
    parser.add_argument("--broken-lines", action="store_true", help="lines with 1-3 px gaps")
    parser.add_argument("--colored-lines", action="store_true", help="colored inner lines")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def parse_size(text: str) -> tuple[int, int]:
    from longanim.engine.errors import InputError

    w, sep, h = str(text).lower().partition("x")
    if not sep or not w.strip().isdigit() or not h.strip().isdigit():
        raise InputError(f"bad --size '{text}': expected WIDTHxHEIGHT, e.g. 480x270")
    return int(w), int(h)


def run(args) -> int:
    from longanim.engine.errors import InputError
    from longanim.engine.evaluation.demo import format_figures, run_demo
    from longanim.options import parse_options
    from longanim.progress import ProgressBar

    size = parse_size(args.size)
    if args.frames < 1:
        raise InputError(f"--frames must be at least 1, got {args.frames}")
    bars: dict[str, ProgressBar] = {}

    def progress(event: dict) -> None:
        stage = event["stage"]
        if stage not in bars:
            bars[stage] = ProgressBar(stage, event["total"])
        bars[stage].update(event["done"])

    fig = run_demo(args.output, args.frames, size, args.seed, args.backend, parse_options(args.set),
                   antialias=args.antialias, broken_lines=args.broken_lines, colored_lines=args.colored_lines,
                   progress=None if args.quiet else progress)
    paths = fig["paths"]
    print(f"demo: {fig['frames']} frames at {fig['width']}x{fig['height']}, seed {fig['seed']}, "
          f"backend {fig['backend']}, keyframe(s) {', '.join(map(str, fig['keyframes']))}")
    print(format_figures(fig))
    print(f"  {'frames needing review':<22} {fig['needs_review']} (in {fig['review_stretches']} runs of frames)")
    print(f"colorized frames: {paths['colorized']}")
    print(f"metrics:          {paths['metrics']}")
    if paths["contact_sheet"]:
        print(f"contact sheet:    {paths['contact_sheet']}")
    return 0
