"""A browser that dies without a word (its process killed, say a laptop lid shut hard):
no leave, no close frame — the server must notice alone and the others drop its tile."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time

import pytest

from browser.meet import decoding_from, joined_id, room_url, state, wait_for
from helpers.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.netns]


def test_killed_browser_process_disappears_from_the_grid_within_ten_seconds(server, open_page):
    a = open_page(room_url(server.url, "killed", "Ada"))
    ida = joined_id(a)
    with tempfile.TemporaryDirectory(prefix="meshcall-victim-") as home:
        # A second, separate Chromium that this test owns by PID (and process group).
        victim = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_ARGS, "--ignore-certificate-errors", f"--user-data-dir={home}/profile",
             room_url(server.url, "killed", "Victim")],
            env={**os.environ, "XDG_CONFIG_HOME": home, "HOME": home}, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            vid = wait_for(lambda: next(iter(state(a)["peers"]), None), 30, what="the victim to join")
            wait_for(lambda: decoding_from(a, {vid}), 30, what="video from the victim")
            assert vid != ida
            t0 = time.monotonic()
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(10)
            wait_for(lambda: a.locator(f'.tile[data-peer-id="{vid}"]').count() == 0, 15, 0.1,
                     what="the victim's tile to go")
            took = time.monotonic() - t0
        finally:
            if victim.poll() is None:
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait(10)
    assert took <= 10, took
    assert f"peer {vid}: left (gone)" in server.output()  # no close frame: it went by the grace period
    print(f"\nkilled browser: tile gone {took:.2f}s after SIGKILL")
