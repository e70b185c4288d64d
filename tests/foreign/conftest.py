"""Fixtures for tests with a peer no one here wrote: an aiortc participant next to real pages.

aioice never gathers loopback addresses, so these tests get a veth test LAN (198.18.0.x)
inside the private network namespace, made before Chromium starts."""

from __future__ import annotations

import gc
from typing import Any, Callable, Iterator

import pytest

from browser.conftest import open_page, server  # noqa: F401  (fixtures, used by name)
from helpers.aiortc_client import Participant
from helpers.browser import chromium
from helpers.netns import private_lan
from helpers.procs import Meshcall


@pytest.fixture(scope="module")
def lan() -> Iterator[tuple[str, str]]:
    with private_lan() as addresses:
        yield addresses


@pytest.fixture(scope="module")
def browser(lan: tuple[str, str]) -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def aiortc_peer(server: Meshcall, lan: tuple[str, str]) -> Iterator[Callable[..., Participant]]:  # noqa: F811
    """aiortc_peer(room, name="Py") -> a Participant (not joined yet); closed at the end. Any
    exception inside the participant's own handlers fails the test."""
    made: list[Participant] = []

    def make(room: str, name: str = "Py") -> Participant:
        participant = Participant(server.url, room, name)
        made.append(participant)
        return participant

    try:
        yield make
    finally:
        problems: list[str] = []
        for participant in made:  # each one closed, whatever the one before did
            problems += participant.problems()
            try:
                participant.close()
            except Exception as exc:  # noqa: BLE001  (reported below, after the others are closed)
                problems.append(f"closing it: {exc!r}")
        # A socket or task a participant left behind is reported now, against this test,
        # rather than whenever the collector next runs, in some later test.
        gc.collect()
    assert not problems, f"the aiortc participant failed: {problems}"
