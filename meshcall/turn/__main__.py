"""Run a standalone TURN server: ``python -m meshcall.turn --listen 127.0.0.1 --secret s``.

Useful for benchmarks, tests and trying clients against it. It stops on
SIGINT or SIGTERM and prints its statistics as one JSON line on stderr.
Its defaults are :class:`~meshcall.turn.config.TurnConfig`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys

from .config import TurnConfig
from .server import TurnServer

DEFAULTS = {f.name: f.default for f in dataclasses.fields(TurnConfig)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = DEFAULTS
    parser = argparse.ArgumentParser(prog="python -m meshcall.turn", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", action="append", required=True, help="address to bind (repeatable)")
    parser.add_argument("--port", type=int, default=d["port"], help="UDP and TCP port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--secret", required=True, help="TURN REST shared secret")
    parser.add_argument("--realm", default=d["realm"], help="authentication realm (default: %(default)s)")
    parser.add_argument("--allow-loopback-peers", action="store_true", default=d["allow_loopback_peers"],
                        help="let relays reach loopback peers")
    parser.add_argument("--min-port", type=int, default=d["relay_min_port"], help="lowest relay port (default: %(default)s)")
    parser.add_argument("--max-port", type=int, default=d["relay_max_port"], help="highest relay port (default: %(default)s)")
    parser.add_argument("--max-allocations", type=int, default=d["max_allocations"],
                        help="allocations in total (default: %(default)s)")
    parser.add_argument("--max-allocations-per-user", type=int, default=d["max_allocations_per_user"],
                        help="allocations per user (default: %(default)s)")
    parser.add_argument("--bandwidth", type=int, default=d["bandwidth_per_allocation"],
                        help="bytes/s per allocation (default: %(default)s)")
    parser.add_argument("--forbidden-port", type=int, action="append", default=[], help="own port peers may not reach")
    parser.add_argument("--verbose", action="store_true", help="log every allocation")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> dict[str, int]:
    config = TurnConfig(
        listen=args.listen,
        port=args.port,
        secret=args.secret.encode(),
        realm=args.realm,
        relay_min_port=args.min_port,
        relay_max_port=args.max_port,
        allow_loopback_peers=args.allow_loopback_peers,
        forbidden_ports=frozenset(args.forbidden_port),
        max_allocations=args.max_allocations,
        max_allocations_per_user=args.max_allocations_per_user,
        bandwidth_per_allocation=args.bandwidth,
    )
    server = TurnServer(config)
    await server.start()
    # The one line a parent process waits for.
    sys.stdout.write(json.dumps({"port": server.port}) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    stats = server.stats()
    await server.stop()
    return stats


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    try:
        stats = asyncio.run(serve(args))
    except OSError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stderr.write(json.dumps(stats) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
