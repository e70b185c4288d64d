"""The log check can fail: a server that crashes on a request is reported, in-process
and as a subprocess; a clean server is not."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tornado import httpclient, httpserver, netutil

from helpers.crashing_meshcall import CRASH_MESSAGE, make_crashing_app
from helpers.logcheck import LogCheck, scan
from helpers.procs import ROOT, Meshcall, insecure_context
from meshcall.paths import asset_dir
from meshcall.rooms import Rooms
from meshcall.signaling import Hub
from meshcall.web import AppContext

CRASHING = [sys.executable, str(ROOT / "tests" / "helpers" / "crashing_meshcall.py")]


def fetch_crash(base: str) -> int:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(base + "/test-crash", context=insecure_context(), timeout=5)
    with err.value:
        return err.value.code


def test_a_crash_in_a_server_process_is_reported() -> None:
    mc = Meshcall(command=CRASHING)
    try:
        mc.start()
        assert fetch_crash(mc.url) == 500
        mc.stop()
        check = LogCheck()
        check.watch(mc)
        problems = check.problems()
        assert len(problems) == 1 and CRASH_MESSAGE in problems[0] and "Traceback" in problems[0]
        with pytest.raises(AssertionError, match="meshcall logged errors"):
            mc.assert_clean()
        check.allow(CRASH_MESSAGE + "|Uncaught exception|Traceback|500 GET /test-crash")
        assert check.problems() == []
    finally:
        mc.expect_errors = True  # seen and checked above: the test's own check can pass
        mc.close()


def test_a_crash_in_process_is_reported(server_log: LogCheck) -> None:
    async def scenario() -> int:
        app = make_crashing_app(AppContext(Hub(Rooms(6, 8.0)), asset_dir()))
        socks = netutil.bind_sockets(0, "127.0.0.1")
        server = httpserver.HTTPServer(app)
        server.add_sockets(socks)
        try:
            client = httpclient.AsyncHTTPClient()
            resp = await client.fetch(f"http://127.0.0.1:{socks[0].getsockname()[1]}/test-crash",
                                      raise_error=False)
            return resp.code
        finally:
            server.stop()
            await server.close_all_connections()

    check = LogCheck().install()
    try:
        assert asyncio.run(scenario()) == 500
    finally:
        check.uninstall()
    problems = check.problems()
    assert any(CRASH_MESSAGE in p and "Traceback" in p for p in problems), problems
    # The test-wide check saw it too; this test expects it.
    assert any(CRASH_MESSAGE in p for p in server_log.problems())
    server_log.allow(CRASH_MESSAGE)
    server_log.allow(r"http: 500 GET /test-crash")


def test_a_clean_server_passes(tmp_path: Path) -> None:
    mc = Meshcall(data_dir=tmp_path / "d")
    try:
        mc.start()
        check = LogCheck()
        check.watch(mc)
        assert check.problems() == []
    finally:
        mc.close()


def test_scan_finds_tracebacks_and_error_lines() -> None:
    text = "\n".join([
        "01:00:00 INFO    join: https://127.0.0.1:8443/",
        "01:00:01 ERROR   Uncaught exception GET /x (127.0.0.1)",
        "Traceback (most recent call last):",
        "01:00:02 WARNING a message that mentions errors in passing",
        "01:00:03 CRITICAL out of memory",
    ])
    assert scan(text) == [text.splitlines()[1], text.splitlines()[2], text.splitlines()[4]]
    assert scan(text, [re.compile("Uncaught|Traceback|memory")]) == []


def test_records_below_error_without_a_traceback_pass(server_log: LogCheck) -> None:
    server_log.allow("handled, but logged")  # the test-wide check sees this record too
    check = LogCheck().install()
    try:
        logging.getLogger("meshcall.test").warning("a warning is not an error")
        try:
            raise ValueError("handled, but logged with its traceback")
        except ValueError:
            logging.getLogger("tornado.test").warning("something", exc_info=True)
    finally:
        check.uninstall()
    problems = check.problems()
    assert len(problems) == 1 and "handled, but logged" in problems[0]
    with pytest.raises(AssertionError, match="unexpected errors in the server log"):
        check.check()


INNER_TEST = '''
import sys
sys.path.insert(0, {tests!r})
from helpers.logcheck import pytest_configure, server_log  # as tests/conftest.py does
from helpers.procs import Meshcall
from test_logcheck import CRASHING, fetch_crash


def test_crashes_the_server_without_checking() -> None:
    mc = Meshcall(command=CRASHING)
    try:
        mc.start()
        assert fetch_crash(mc.url) == 500
    finally:
        mc.close()  # no __exit__, no assert_clean: only the test-wide check can notice

'''


def test_the_autouse_check_fails_a_test_whose_server_crashed(tmp_path: Path) -> None:
    """End to end: a test that makes a server process crash and checks nothing fails at
    teardown (test_a_crash_in_a_server_process_is_reported shows expect_errors opting out)."""
    import subprocess

    (tmp_path / "conftest.py").write_text(INNER_TEST.split("from helpers.procs")[0].format(tests=str(ROOT / "tests")))
    (tmp_path / "test_inner.py").write_text(INNER_TEST.format(tests=str(ROOT / "tests")))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                          str(tmp_path / "test_inner.py")], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "ERROR test_inner.py::test_crashes_the_server_without_checking" in out
    assert "unexpected errors in the server log" in out and CRASH_MESSAGE in out


def test_a_deliberate_handler_crash_turns_the_signaling_fuzz_test_red() -> None:
    """The live fuzz test would pass while every frame crashed its handler, were it not
    for the log check: run it with a handler that crashes, and it must fail."""
    import os
    import subprocess

    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
           "tests/test_signaling.py::LiveFuzzTest"]
    env = {**os.environ, "MESHCALL_TEST_CRASH_HANDLER": "1"}
    red = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert red.returncode != 0, red.stdout[-2000:]
    assert "deliberate crash in a signaling handler" in red.stdout
