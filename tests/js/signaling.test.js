// The signaling client's connection handling without a browser: a fake WebSocket and
// Node's mock timers.
import assert from 'node:assert/strict';
import { mock, test } from 'node:test';

import { OPEN_TIMEOUT, RETRY_MAX, SignalingClient } from '../../assets/js/signaling.js';

/** A socket that never opens unless told to (a SYN or a handshake lost on the way). */
class HangingSocket extends EventTarget {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  /** @type {HangingSocket[]} */
  static made = [];

  constructor(url) {
    super();
    this.url = url;
    this.readyState = HangingSocket.CONNECTING;
    this.sent = [];
    this.closedWith = null;
    this.onopen = this.onmessage = this.onclose = null;
    HangingSocket.made.push(this);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close(code) {
    this.closedWith = code ?? 1005;
    this.readyState = HangingSocket.CLOSED;
  }

  open() {
    this.readyState = HangingSocket.OPEN;
    this.onopen && this.onopen(new Event('open'));
  }
}

test('a socket that hangs while opening is given up after OPEN_TIMEOUT and tried again', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
  globalThis.WebSocket = HangingSocket;
  HangingSocket.made = [];
  try {
    const client = new SignalingClient('wss://box/ws', { room: 'r', name: 'n', audio: true, video: true });
    client.start();
    assert.equal(HangingSocket.made.length, 1);
    mock.timers.tick(OPEN_TIMEOUT - 1);
    assert.equal(HangingSocket.made[0].closedWith, null, 'not before its time');
    mock.timers.tick(1);
    assert.equal(HangingSocket.made[0].closedWith, 4000, 'given up like a lost connection');
    assert.equal(client.state, 'lost');
    mock.timers.tick(RETRY_MAX);
    assert.equal(HangingSocket.made.length, 2, 'and tried again');
    // This one opens: it joins, and no later timer gives it up.
    HangingSocket.made[1].open();
    assert.deepEqual(HangingSocket.made[1].sent.map((m) => m.type), ['join']);
    for (let t = 0; t < OPEN_TIMEOUT * 2; t += 2000) { // a live server: a frame every 2 s
      mock.timers.tick(2000);
      HangingSocket.made[1].onmessage({ data: '{"type":"pong"}' });
    }
    assert.equal(HangingSocket.made[1].closedWith, null);
    assert.equal(HangingSocket.made.length, 2);
    client.stop();
  } finally {
    mock.timers.reset();
    delete globalThis.WebSocket;
  }
});

test('a socket opened ahead of time joins at once, whether it is open already or still opening', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
  globalThis.WebSocket = HangingSocket;
  HangingSocket.made = [];
  const join = { room: 'r', name: 'n', audio: true, video: false };
  try {
    const open = new HangingSocket('wss://box/ws');
    open.open(); // its open event has passed before the client takes it over
    const a = new SignalingClient('wss://box/ws', join, /** @type {any} */ (open));
    a.start();
    assert.equal(HangingSocket.made.length, 1, 'no second socket');
    assert.deepEqual(open.sent, [{ type: 'join', ...join }]);
    a.stop();

    const opening = new HangingSocket('wss://box/ws');
    const b = new SignalingClient('wss://box/ws', join, /** @type {any} */ (opening));
    b.start();
    assert.deepEqual(opening.sent, [], 'not before it opens');
    opening.open();
    assert.deepEqual(opening.sent, [{ type: 'join', ...join }]);
    assert.equal(HangingSocket.made.length, 2, 'still no socket of its own');
    b.stop();
  } finally {
    mock.timers.reset();
    delete globalThis.WebSocket;
  }
});
