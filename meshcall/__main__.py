"""The command line: `meshcall` and `python -m meshcall`."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Sequence

from .server import StartupError, run
from .settings import ConfigError, load


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    # Tornado logs every request and every failed TLS handshake (a browser that does not
    # trust the CA yet); keep those at debug.
    logging.getLogger("tornado.access").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("tornado.general").setLevel(logging.ERROR if level != "DEBUG" else logging.DEBUG)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load(argv)
    except ConfigError as exc:
        print(f"meshcall: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    try:
        return asyncio.run(run(config))
    except StartupError as exc:
        print(f"meshcall: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
