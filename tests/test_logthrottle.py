"""LogThrottle: N lines per template per interval, then one summary; an injected clock."""

from __future__ import annotations

import logging
from typing import Iterator

import pytest

from meshcall.logthrottle import LogThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def setup() -> Iterator[tuple[logging.Logger, Lines, LogThrottle, Clock]]:
    logger = logging.getLogger("meshcall.test-throttle")
    logger.setLevel(logging.INFO)
    lines, clock = Lines(), Clock()
    logger.addHandler(lines)
    throttle = LogThrottle(burst=3, interval=10.0, clock=clock).attach(logger)
    try:
        yield logger, lines, throttle, clock
    finally:
        throttle.detach()
        logger.removeHandler(lines)
        logger.setLevel(logging.NOTSET)


def test_burst_then_one_summary_when_the_window_ends(setup: tuple) -> None:
    logger, lines, throttle, clock = setup
    for i in range(1000):
        logger.info("http: 400 GET %s from %s", f"/static/{i}", "10.0.0.9")
    assert lines.lines == [f"http: 400 GET /static/{i} from 10.0.0.9" for i in range(3)]
    assert throttle.suppressed == 997
    clock.now += 10
    logger.info("http: 400 GET %s from %s", "/again", "10.0.0.9")
    assert lines.lines[3:] == [
        "suppressed 997 similar lines in the last 10 s, the last: http: 400 GET /static/999 from 10.0.0.9",
        "http: 400 GET /again from 10.0.0.9",
    ]


def test_templates_are_counted_apart(setup: tuple) -> None:
    logger, lines, throttle, clock = setup
    for _ in range(5):
        logger.info("first kind %d", 1)
        logger.info("second kind %d", 2)
    assert lines.lines.count("first kind 1") == 3 and lines.lines.count("second kind 2") == 3


def test_flush_writes_summaries_of_floods_that_stopped(setup: tuple) -> None:
    logger, lines, throttle, clock = setup
    for _ in range(10):
        logger.warning("flood %s", "x")
    throttle.flush()  # the window is still open: nothing yet
    assert len(lines.lines) == 3
    clock.now += 11
    throttle.flush()
    assert lines.lines[-1] == "suppressed 7 similar lines in the last 10 s, the last: flood x"
    throttle.flush(force=True)
    assert len(lines.lines) == 4  # written once


def test_detach_writes_what_is_pending_and_stops_filtering(setup: tuple) -> None:
    logger, lines, throttle, clock = setup
    for _ in range(4):
        logger.info("once more")
    throttle.detach()
    assert lines.lines[-1].startswith("suppressed 1 similar lines")
    for _ in range(5):
        logger.info("free again")
    assert lines.lines.count("free again") == 5


def test_distinct_texts_past_max_keys_share_one_key() -> None:
    logger = logging.getLogger("meshcall.test-throttle-keys")
    logger.setLevel(logging.INFO)
    lines, clock = Lines(), Clock()
    logger.addHandler(lines)
    throttle = LogThrottle(burst=2, interval=10.0, clock=clock, max_keys=10).attach(logger)
    try:
        for i in range(1000):
            logger.info(f"an f-string line {i}")  # each text its own template
        assert len(lines.lines) == 10 + 2  # ten keys of their own, then one shared key (burst 2)
        assert len(throttle._windows) <= 11
    finally:
        throttle.detach()
        logger.removeHandler(lines)
        logger.setLevel(logging.NOTSET)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        LogThrottle(burst=0)
    with pytest.raises(ValueError):
        LogThrottle(interval=0)
