from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Modules that build the executable or start many real processes: left out of the quick
# tier (`./scripts/test --quick`), which also leaves out every browser test.
SLOW_MODULES = {"test_binary.py", "test_cli.py", "test_coturn_clients.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


# Every test fails on an unexpected error in the log of a server it ran (helpers/logcheck.py).
from helpers.logcheck import pytest_configure, server_log  # noqa: E402,F401
# A SIGTERM to the run still stops what the tests started (helpers/sigterm.py).
from helpers.sigterm import pytest_sessionstart  # noqa: E402,F401
