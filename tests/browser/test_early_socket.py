"""The signaling socket of a page that joins at once opens while the page loads, and it is
the only one: room.js joins on it."""

from __future__ import annotations

import pytest

from browser.meet import joined_id, room_url, state, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.netns]

# Every WebSocket the page makes, with the script that made it.
COUNT_SOCKETS = """(() => {
  const made = [];
  Object.defineProperty(window, '__sockets', { value: made });
  const Orig = window.WebSocket;
  window.WebSocket = function (...args) {
    made.push(String(new Error().stack));
    return new Orig(...args);
  };
  window.WebSocket.prototype = Orig.prototype;
  Object.setPrototypeOf(window.WebSocket, Orig);
})()"""


def test_a_link_with_a_name_joins_on_the_one_socket_the_early_module_opened(server, browser):
    context = browser.new_context(ignore_https_errors=True)
    try:
        context.add_init_script(COUNT_SOCKETS)
        page = context.new_page()
        page.goto(room_url(server.url, "early", "Ada"))
        joined_id(page)
        made = page.evaluate("() => window.__sockets")
        assert len(made) == 1, made
        assert "early-socket.js" in made[0], made[0]
    finally:
        context.close()


def test_a_page_that_asks_for_a_name_opens_its_socket_only_on_join(server, browser):
    context = browser.new_context(ignore_https_errors=True)
    try:
        context.add_init_script(COUNT_SOCKETS)
        page = context.new_page()
        page.goto(room_url(server.url, "early"))
        page.locator("#prejoin").wait_for()
        wait_for(lambda: page.evaluate("() => document.getElementById('preview').videoWidth > 0"), 20,
                 what="camera preview")
        assert page.evaluate("() => window.__sockets.length") == 0
        assert state(page)["phase"] == "prejoin"
        page.fill("#prejoin-name", "Grace")
        page.click("#prejoin-join")
        joined_id(page)
        made = page.evaluate("() => window.__sockets")
        assert len(made) == 1 and "early-socket.js" not in made[0], made
    finally:
        context.close()
