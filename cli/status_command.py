"""`longanim status --engine URL`: what a running engine is doing."""

from __future__ import annotations

NAME = "status"
HELP = "List the jobs of a running engine."


def add_arguments(parser) -> None:
    parser.add_argument("--engine", default="tcp://127.0.0.1:5555", help="engine address (default: %(default)s)")
    parser.add_argument("--job", default=None, help="show only this job id")
    parser.add_argument("--curve-keys", metavar="DIR", default=None, help="client keys from `longanim keys`")
    parser.add_argument("--engine-timeout", type=float, default=5.0, help="seconds to wait for the engine")


def run(args) -> int:
    from longanim.engine.errors import LonganimError
    from longanim.protocol.client import CurveKeys, EngineClient, EngineError

    curve = CurveKeys.from_dir(args.curve_keys) if args.curve_keys else None
    try:
        with EngineClient(args.engine, timeout=args.engine_timeout, curve=curve) as client:
            info = client.hello()
            jobs = client.status(args.job)
    except EngineError as exc:
        raise LonganimError(str(exc)) from None
    print(f"engine {args.engine}: longanim {info.get('engine_version')}, protocol {info.get('protocol_version')}, "
          f"{len(jobs)} job(s)")
    for job in jobs:
        total = job.get("frames_total")
        frames = f"{job['frames_done']}/{total if total is not None else '?'}"
        eta = f" eta {job['eta_s']:.0f}s" if job.get("eta_s") and job["state"] == "running" else ""
        err = f"  error: {job['error']['message']}" if job.get("error") else ""
        print(f"{job['job_id']}  {job['state']:<9} {job['backend']:<12} frames {frames:<9} "
              f"cached {job['frames_cached']}{eta}  {job.get('label', '')}{err}")
    return 0
