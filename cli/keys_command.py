"""`longanim keys DIR`: CurveZMQ keys for an engine that listens beyond loopback."""

from __future__ import annotations

NAME = "keys"
HELP = "Write a CurveZMQ server and client keypair for `longanim serve --curve-keys`."


def add_arguments(parser) -> None:
    parser.add_argument("directory", help="where to write server.key[_secret] and client.key[_secret]")


def run(args) -> int:
    from longanim.engine.server.curve_keys import write_keys

    paths = write_keys(args.directory)
    print(f"engine:  longanim serve --curve-keys {args.directory}   (keep {paths['server_secret']} private)")
    print(f"clients: need {paths['client_secret']} and {paths['server']}")
    return 0
