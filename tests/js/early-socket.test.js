// The socket a page that joins at once opens early (early-socket.js): opened only for such a
// page, handed over once, and never opened once room.js has taken over.
import assert from 'node:assert/strict';
import { test } from 'node:test';

class FakeSocket {
  /** @type {FakeSocket[]} */
  static made = [];
  constructor(url) {
    this.url = url;
    FakeSocket.made.push(this);
  }
}

let fresh = 0;
/** A new instance of the module, as a new page load gets. */
async function load() {
  globalThis.location = { protocol: 'https:', host: 'box:8443' };
  globalThis.WebSocket = FakeSocket;
  FakeSocket.made = [];
  fresh += 1;
  return import(`../../assets/js/early-socket.js?page=${fresh}`);
}

test('a link with a name or a room display opens the socket once, and hands it over once', async () => {
  for (const query of ['name=Ada', 'display=1']) {
    const early = await load();
    early.openEarly(new URLSearchParams(query));
    early.openEarly(new URLSearchParams(query));
    assert.equal(FakeSocket.made.length, 1, query);
    assert.equal(FakeSocket.made[0].url, 'wss://box:8443/ws');
    assert.equal(early.takeEarly(), FakeSocket.made[0]);
    assert.equal(early.takeEarly(), null, 'handed over once');
  }
});

test('a page that asks for a name opens nothing early', async () => {
  const early = await load();
  for (const query of ['', 'name=', 'name=%20%20', 'name=%01%02', 'display=0']) early.openEarly(new URLSearchParams(query));
  assert.equal(FakeSocket.made.length, 0);
  assert.equal(early.takeEarly(), null);
});

test('once room.js has asked, the early module opens nothing (room.js has its own socket)', async () => {
  const early = await load();
  assert.equal(early.takeEarly(), null); // room.js ran first
  early.openEarly(new URLSearchParams('name=Ada'));
  assert.equal(FakeSocket.made.length, 0);
});
