"""`longanim status --engine URL`: what a running engine is doing."""

from __future__ import annotations

NAME = "status"
HELP = "List the jobs of a running engine."


def add_arguments(parser) -> None:
    parser.add_argument("--engine", default="tcp://127.0.0.1:5555", help="engine address (default: %(default)s)")
    parser.add_argument("--job", default=None, help="show only this job id")
    parser.add_argument("--token-file", default=None,
                        help="the engine's token file, to list every client's jobs "
                             "(default: the file `longanim serve` writes for this address)")
    parser.add_argument("--curve-keys", metavar="DIR", default=None, help="client keys from `longanim keys`")
    parser.add_argument("--engine-timeout", type=float, default=5.0, help="seconds to wait for the engine")


def run(args) -> int:
    from pathlib import Path

    from longanim.engine.errors import LonganimError
    from longanim.protocol import messages as M
    from longanim.protocol.client import (
        CurveKeys,
        EngineClient,
        EngineError,
        default_token_path,
    )

    curve = CurveKeys.from_dir(args.curve_keys) if args.curve_keys else None
    token_path = Path(args.token_file) if args.token_file else default_token_path(args.engine)
    try:
        token = token_path.read_text().strip()
    except OSError:
        token = None  # not the engine's user: a fresh client has no jobs of its own to list
    query = {"job_id": args.job} if args.job else ({"all": True, "token": token} if token else {})
    try:
        with EngineClient(args.engine, timeout=args.engine_timeout, curve=curve) as client:
            info = client.hello()
            reply = client.request(M.STATUS, query).content
    except EngineError as exc:
        raise LonganimError(str(exc)) from None
    jobs = reply["jobs"]
    hidden = reply.get("jobs_hidden", 0)
    note = f" ({hidden} of other clients not shown: pass --token-file as the engine's user)" if hidden else ""
    print(f"engine {args.engine}: longanim {printable(info.get('engine_version'))}, "
          f"protocol {printable(info.get('protocol_version'))}, {len(jobs)} job(s){note}")
    for job in jobs:
        total = job.get("frames_total")
        frames = f"{job['frames_done']}/{total if total is not None else '?'}"
        eta = f" eta {job['eta_s']:.0f}s" if job.get("eta_s") and job["state"] == "running" else ""
        err = f"  error: {printable(job['error'].get('message'))}" if job.get("error") else ""
        print(f"{printable(job['job_id'])}  {printable(job['state']):<9} {printable(job['backend']):<12} "
              f"frames {frames:<9} cached {job['frames_cached']}{eta}  {printable(job.get('label', ''))}{err}")
    return 0


def printable(value) -> str:
    """Labels and messages come from clients: control characters (terminal escapes) are shown
    escaped, never sent to the terminal."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
