// The page's dead-socket check: silence is counted in the page's own running time, so a
// starved page does not take its own stalls for a dead server.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DEAD_AFTER, DEAD_AFTER_MAX, Liveness, STALL_AFTER, TICK } from '../../assets/js/signaling.js';

test('a silent server is dead after DEAD_AFTER of regular ticks', () => {
  const l = new Liveness(0);
  let t = 0;
  let dead = false;
  while (!dead) {
    t += TICK;
    dead = l.tick(t);
  }
  assert.ok(t > DEAD_AFTER && t <= DEAD_AFTER + TICK, `dead at ${t}`);
});

test('a frame heard resets the silence', () => {
  const l = new Liveness(0);
  for (let t = TICK; t <= DEAD_AFTER; t += TICK) {
    assert.equal(l.tick(t), false);
    if (t === DEAD_AFTER - TICK) l.heard(t);
  }
  assert.equal(l.silence, TICK);
});

test('stalls of the page count only STALL_AFTER each: a starved page is not declared dead', () => {
  const l = new Liveness(0);
  // The page runs once every 4 s (far apart ticks); the answers sit queued behind them.
  let t = 0;
  for (let i = 0; i < 4; i++) {
    t += 4000;
    assert.equal(l.tick(t), false, `tick ${i}`);
    l.heard(t + 1); // the pong queued behind the tick is processed next
  }
  assert.equal(l.stalls, 4);
  assert.equal(l.maxStall, 4000);
  assert.ok(l.maxSilence <= STALL_AFTER);
});

test('but a page that runs, stalls and hears nothing is dead in the end', () => {
  const l = new Liveness(0);
  let t = 0;
  let ticks = 0;
  while (!l.tick((t += 5000))) ticks += 1;
  // Every stall counts STALL_AFTER: the check fires after DEAD_AFTER / STALL_AFTER of them.
  assert.equal(ticks, Math.floor(DEAD_AFTER / STALL_AFTER));
});

test('the wait for an answer to a ping is measured from the first unanswered ping', () => {
  const l = new Liveness(0);
  l.pinged(1000);
  l.pinged(3500); // still unanswered: the wait runs from the first
  l.heard(4000);
  assert.equal(l.maxPongWait, 3000);
  l.heard(5000); // no ping out: nothing to measure
  assert.equal(l.maxPongWait, 3000);
});

test('a page whose answers come late waits longer before it gives up, within a bound', () => {
  const l = new Liveness(0);
  assert.equal(l.deadAfter(), DEAD_AFTER);
  l.pinged(0);
  l.heard(6000); // a starved browser: the answer took 6 s
  assert.equal(l.deadAfter(), 18000);
  l.pinged(7000);
  l.heard(7000 + 20000);
  assert.equal(l.deadAfter(), DEAD_AFTER_MAX);
  for (let i = 0; i < 8; i++) {
    l.pinged(30000 + i * 100);
    l.heard(30000 + i * 100 + 50);
  }
  assert.equal(l.deadAfter(), DEAD_AFTER, 'quick answers again: back to the normal check');
});
