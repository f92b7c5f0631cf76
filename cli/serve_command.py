"""`longanim serve`: the engine process that Blender, Nuke and the farm CLI talk to."""

from __future__ import annotations

import os
import sys

NAME = "serve"
WATCH_S = 0.5  # how often --exit-with-parent looks at its process
HELP = "Run the colorization engine: a ZeroMQ server that keeps the model warm for clients."


def add_arguments(parser) -> None:
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555",
                        help="address to listen on (default: %(default)s, loopback only)")
    parser.add_argument("--roots", nargs="+", default=[], metavar="DIR",
                        help="directories clients may read and write by path; none: inline pixels only")
    parser.add_argument("--weights-roots", nargs="+", default=[], metavar="DIR",
                        help="directories holding model weights that clients may name (options.weights, "
                             "e.g. the longanimation release); none: clients may name no weights")
    parser.add_argument("--cache", metavar="DIR", default=None,
                        help="result cache directory (default: $XDG_CACHE_HOME/longanim/results)")
    parser.add_argument("--no-cache", action="store_true", help="do not cache results")
    parser.add_argument("--cache-max-gb", type=float, default=20.0,
                        help="cache size limit; least recently used results go first (default: %(default)s)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback --bind without CurveZMQ keys (trusted networks only)")
    parser.add_argument("--curve-keys", metavar="DIR", default=None,
                        help="directory from `longanim keys`: encrypt and authenticate with CurveZMQ")
    parser.add_argument("--allowed-clients", metavar="DIR", default=None,
                        help="directory of client public keys (*.key) allowed in (default: --curve-keys DIR)")
    parser.add_argument("--devices", default="cpu",
                        help="comma-separated devices, one worker each, e.g. cuda:0,cuda:1 (default: %(default)s)")
    parser.add_argument("--max-message-mb", type=float, default=1024.0,
                        help="largest accepted message in MiB (default: %(default)s)")
    parser.add_argument("--forget-after", type=float, default=None, metavar="S",
                        help="a client silent this long is forgotten: the replies kept for its retries and its "
                             "stalled mark are released; its jobs run on (default: 20 stall timeouts, 600 s)")
    parser.add_argument("--backlog-mb", type=float, default=512.0,
                        help="results kept for clients that stopped reading, to catch up on when the result "
                             "cache does not hold them (--no-cache, a job's cache: false), in MiB for all "
                             "jobs together (default: %(default)s)")
    parser.add_argument("--stall-timeout", type=float, default=30.0, metavar="S",
                        help="a client silent this long is stalled: its events are dropped, and its job "
                             "fails if it was waiting for more input frames (default: %(default)s)")
    parser.add_argument("--max-queued-mb", type=float, default=8192.0,
                        help="inline frames held for unfinished jobs, in MiB; more are refused as busy "
                             "(default: %(default)s)")
    parser.add_argument("--max-queued-jobs", type=int, default=64, metavar="N",
                        help="unfinished jobs one client may have; more are refused as busy (default: %(default)s)")
    parser.add_argument("--token-file", default=None,
                        help="where to write the shutdown token (default: ~/.cache/longanim/engine-HOST-PORT.token)")
    parser.add_argument("--exit-with-parent", type=int, default=None, metavar="PID",
                        help="stop (cancelling running jobs) once process PID has exited, e.g. the render-farm "
                             "worker that started this engine, so a killed worker leaves no engine behind; "
                             f"checked every {WATCH_S:g} s")


def run(args) -> int:
    import logging
    from pathlib import Path

    from longanim.engine.errors import InputError
    from longanim.engine.server.control_loop import (
        EngineServer,
        ServeConfig,
        is_loopback,
    )

    if not args.max_message_mb > 0:
        raise InputError("--max-message-mb must be positive")
    if args.forget_after is not None and not args.forget_after > 0:
        raise InputError("--forget-after must be a positive number of seconds")
    if not args.backlog_mb >= 0:
        raise InputError("--backlog-mb must be 0 or more")
    if args.max_queued_jobs < 1:
        raise InputError("--max-queued-jobs must be at least 1")
    watched = None
    if args.exit_with_parent is not None:
        from longanim.process_watch import WatchedProcess

        watched = WatchedProcess(args.exit_with_parent)  # refuses a process that is not running now
    cache = None
    if not args.no_cache:
        cache = args.cache or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                                  / "longanim" / "results")
    for flag, dirs in (("--roots", args.roots), ("--weights-roots", args.weights_roots)):
        for root in dirs:
            if not Path(root).is_dir():
                raise InputError(f"{flag} {root}: not a directory")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s longanim serve: %(message)s")
    config = ServeConfig(
        bind=args.bind,
        roots=args.roots,
        weights_roots=args.weights_roots,
        cache_dir=cache,
        cache_max_bytes=int(args.cache_max_gb * (1 << 30)),
        insecure=args.insecure,
        curve_keys=args.curve_keys,
        allowed_clients=args.allowed_clients,
        devices=[d.strip() for d in args.devices.split(",") if d.strip()],
        max_message_bytes=int(args.max_message_mb * 1024 * 1024),
        max_queued_bytes=int(args.max_queued_mb * 1024 * 1024),
        max_queued_jobs=args.max_queued_jobs,
        token_file=args.token_file,
        stall_timeout_s=args.stall_timeout,
        backlog_bytes=int(args.backlog_mb * 1024 * 1024),
        forget_after_s=args.forget_after,
    )
    server = EngineServer(config)
    if args.insecure and not args.curve_keys and not is_loopback(args.bind):
        print(f"longanim serve: warning: {args.bind} is reachable from the network without encryption or "
              "authentication (--insecure)", file=sys.stderr, flush=True)
    security = "CurveZMQ" if args.curve_keys else "no encryption"
    print(f"longanim serve: listening on {server.endpoint} ({security}; devices {', '.join(config.devices)}; "
          f"cache {cache or 'off'}; shutdown token in {server.token_path}; pid {os.getpid()})", flush=True)
    if watched is not None:
        watched.on_exit(server.stop, WATCH_S, f"longanim serve: process {watched.pid} has exited; stopping")
    server.serve_forever()
    print("longanim serve: stopped", flush=True)
    return 0
