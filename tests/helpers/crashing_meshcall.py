"""The real meshcall with one extra route, /test-crash, whose handler raises.

Test-only: it shows that the log check notices a server that crashes on a request.
Run as a script (`python tests/helpers/crashing_meshcall.py ARGS…`); every argument goes
to meshcall unchanged."""

from __future__ import annotations

import sys
from typing import Any

from tornado import web

from meshcall import server
from meshcall.__main__ import main
from meshcall.web import AppContext, SecureHandler, make_app

CRASH_MESSAGE = "deliberate crash to test the log check"


class CrashHandler(SecureHandler):
    def get(self) -> None:
        raise RuntimeError(CRASH_MESSAGE)


def make_crashing_app(ctx: AppContext, **settings: Any) -> web.Application:
    app = make_app(ctx, **settings)
    app.add_handlers(r".*", [(r"/test-crash", CrashHandler)])  # checked before the usual routes
    return app


if __name__ == "__main__":
    server.make_app = make_crashing_app  # type: ignore[assignment]
    sys.exit(main(sys.argv[1:]))
