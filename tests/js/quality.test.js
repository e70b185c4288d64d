// The send-quality policy (quality.js) without a browser: steps by room size, the mesh
// budget, a receiver's view, the reaction to encoder limitation, and the controller
// setting RTCRtpSender parameters on fake senders.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import './fakes.js'; // CustomEvent on old Node
import { Adaptation, choose, POLICY, Quality, rungFor, stepFor } from '../../assets/js/quality.js';

const kbps = (c) => c.maxBitrate / 1000;

test('the step follows the room size', () => {
  assert.equal(stepFor(2).height, 480);
  assert.equal(stepFor(3).height, 360);
  assert.equal(stepFor(4).height, 360);
  assert.equal(stepFor(5).height, 240);
  assert.equal(stepFor(6).height, 240);
  assert.equal(stepFor(12).height, 240);
  const two = choose({ people: 2, connections: 1, sourceHeight: 480, view: null });
  assert.equal(two.scaleResolutionDownBy, 1);
  const six = choose({ people: 6, connections: 5, sourceHeight: 480, view: null });
  assert.equal(six.height, 240);
  assert.equal(six.scaleResolutionDownBy, 2);
  assert.equal(six.maxFramerate, 15);
});

test('the whole mesh stays within the video budget, whatever the room size', () => {
  for (let people = 2; people <= 6; people++) {
    const c = choose({ people, connections: people - 1, sourceHeight: 480, view: null });
    assert.ok(kbps(c) * (people - 1) <= POLICY.videoBudgetKbps, `${people}: ${kbps(c)} each`);
  }
});

test('a camera smaller than the step is never scaled up', () => {
  const c = choose({ people: 2, connections: 1, sourceHeight: 240, view: null });
  assert.equal(c.height, 240);
  assert.equal(c.scaleResolutionDownBy, 1);
});

test('a receiver that shows us small gets less; one that shows none gets no video', () => {
  const large = choose({ people: 3, connections: 2, sourceHeight: 480, view: { width: 1280, height: 720 } });
  const small = choose({ people: 3, connections: 2, sourceHeight: 480, view: { width: 160, height: 120 } });
  assert.equal(large.height, 360, 'the room step still caps a large view');
  assert.equal(small.height, rungFor(120));
  assert.ok(small.scaleResolutionDownBy > large.scaleResolutionDownBy);
  assert.ok(small.maxBitrate < large.maxBitrate);
  const none = choose({ people: 3, connections: 2, sourceHeight: 480, view: { width: 0, height: 0 } });
  assert.equal(none.active, false);
});

test('a view is rounded up to a rung, so the receiver gets at least what it shows', () => {
  assert.equal(rungFor(1), 90);
  assert.equal(rungFor(181), 240);
  assert.equal(rungFor(5000), 1080);
});

test('levels step resolution, bitrate and frame rate down', () => {
  const base = choose({ people: 2, connections: 1, sourceHeight: 480, view: null });
  let last = base;
  for (let level = 1; level < POLICY.levels.length; level++) {
    const c = choose({ people: 2, connections: 1, sourceHeight: 480, view: null, level });
    assert.ok(c.height < last.height && c.maxBitrate < last.maxBitrate, `level ${level}`);
    assert.ok(c.maxFramerate <= last.maxFramerate);
    last = c;
  }
});

/** Feed one reason every 2 s from `from` to `to` (ms); returns the times the level changed. */
function run(a, reason, from, to) {
  const changes = [];
  for (let t = from; t <= to; t += 2000) if (a.sample(reason, t)) changes.push([t, a.level]);
  return changes;
}

test('limited for a while: one level down; clear for a while: one level up', () => {
  const a = new Adaptation(0);
  assert.deepEqual(run(a, 'cpu', 0, 2000), [], 'a short limit changes nothing');
  assert.deepEqual(run(a, 'cpu', 4000, 4000), [[4000, 1]]);
  assert.deepEqual(run(a, 'bandwidth', 6000, 8000), [[8000, 2]], 'each further level waits again');
  assert.deepEqual(run(a, 'none', 10000, 28000), [], 'not clear long enough');
  assert.deepEqual(run(a, 'none', 30000, 30000), [[30000, 1]]);
  assert.deepEqual(run(a, 'none', 32000, 50000), [[50000, 0]]);
  assert.deepEqual(run(a, 'none', 52000, 200000), [], 'never above level 0');
});

test('a connection at the edge does not swing: each failed step up makes the next wait twice as long', () => {
  const a = new Adaptation(0);
  // The encoder is limited whenever we are at level 0, clear at level 1.
  const ups = [];
  for (let t = 0; t <= 600000; t += 2000) {
    const before = a.level;
    a.sample(a.level === 0 ? 'cpu' : 'none', t);
    if (a.level < before) ups.push(t);
  }
  const gaps = ups.slice(1).map((t, i) => t - ups[i]);
  assert.ok(ups.length >= 3 && ups.length <= 6, `ups at ${ups}`);
  for (let i = 1; i < gaps.length; i++) assert.ok(gaps[i] >= gaps[i - 1], `gaps ${gaps}`);
  assert.ok(a.upAfter === POLICY.maxUpAfterMs, 'the wait grew to its cap');
  assert.ok(a.changes < 15, `${a.changes} changes in 10 minutes`);
});

/** A sender as strict as a browser: one setParameters at a time, each with the
 * transactionId of the last getParameters; `refuse` makes the next calls fail. */
class FakeSender {
  constructor() {
    this.params = { transactionId: 't0', encodings: [{ active: true }] };
    this.set = [];
    this.reason = 'none'; // what its encoder would report as qualityLimitationReason
    this.pending = false;
    this.refuse = 0;
    this.transactions = 0;
  }

  getParameters() {
    this.transactions += 1;
    return { ...structuredClone(this.params), transactionId: `t${this.transactions}` };
  }

  async setParameters(p) {
    if (this.pending) throw new Error('InvalidStateError: a previous setParameters is pending');
    if (p.transactionId !== `t${this.transactions}`) throw new Error('InvalidModificationError: stale transactionId');
    this.pending = true;
    await new Promise((resolve) => setTimeout(resolve, 1));
    this.pending = false;
    if (this.refuse > 0) {
      this.refuse -= 1;
      throw new Error('OperationError: refused');
    }
    this.params = p;
    this.set.push(p.encodings[0]);
  }

}

/** Every setParameters in flight has finished (the fake takes a timer tick each). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

function fakeCall(n) {
  const call = new EventTarget();
  call.peers = new Map();
  for (let i = 0; i < n; i++) {
    const peer = {
      id: `p${i}`, state: 'connected',
      senders: { audio: { sender: new FakeSender() }, video: { sender: new FakeSender() } },
      tracks: { audio: {}, video: { getSettings: () => ({ width: 640, height: 480 }) } },
    };
    call.peers.set(peer.id, peer);
  }
  const emit = (type, detail) => call.dispatchEvent(new CustomEvent(type, { detail }));
  return { call, emit };
}

test('the controller shapes every connection, audio first, and follows views and the room size', async () => {
  const { call, emit } = fakeCall(5);
  let now = 0;
  const q = new Quality(call, { now: () => now });
  /** What the Health poller hands over: each connection's encoder limitation. */
  const rows = () => new Map([...call.peers].map(([id, p]) => [id, { limitation: p.senders.video.sender.reason }]));
  for (const id of call.peers.keys()) emit('peer-state', { id, state: 'connected' });
  await settle();
  const p0 = call.peers.get('p0');
  const enc = p0.senders.video.sender.params.encodings[0];
  assert.equal(enc.scaleResolutionDownBy, 2, '6 people: 240 of 480');
  assert.equal(enc.maxFramerate, 15);
  assert.equal(p0.senders.audio.sender.params.encodings[0].priority, 'high');
  assert.equal(p0.senders.audio.sender.params.encodings[0].networkPriority, 'high');
  let total = 0;
  for (const p of call.peers.values()) total += p.senders.video.sender.params.encodings[0].maxBitrate;
  assert.ok(total <= POLICY.videoBudgetKbps * 1000, `${total} b/s`);

  emit('view', { id: 'p1', view: { width: 160, height: 120 } });
  await settle();
  const e1 = call.peers.get('p1').senders.video.sender.params.encodings[0];
  assert.ok(e1.scaleResolutionDownBy > enc.scaleResolutionDownBy);
  emit('view', { id: 'p2', view: { width: 0, height: 0 } });
  await settle();
  assert.equal(call.peers.get('p2').senders.video.sender.params.encodings[0].active, false);

  const sets = p0.senders.video.sender.set.length;
  emit('peer-state', { id: 'p3', state: 'connected' }); // nothing changed for p0
  await settle();
  assert.equal(p0.senders.video.sender.set.length, sets, 'no setParameters when nothing changes');

  // Three people leave: a room of 3 sends 360p.
  for (const id of ['p2', 'p3', 'p4']) {
    call.peers.delete(id);
    emit('peer-removed', { id });
  }
  await settle();
  assert.equal(p0.senders.video.sender.params.encodings[0].scaleResolutionDownBy, 480 / 360);

  // The encoder says it is CPU-limited: after downAfterMs, one level down.
  p0.senders.video.sender.reason = 'cpu';
  for (now = 0; now <= POLICY.downAfterMs; now += 2000) q.readings(rows());
  await settle();
  assert.equal(q.adaptations.get('p0').level, 1);
  assert.ok(p0.senders.video.sender.params.encodings[0].scaleResolutionDownBy > 480 / 360);
  assert.equal(q.reasons.get('p0'), 'cpu');
  assert.equal(q.adaptations.get('p1').level, 0, 'only the limited connection');
});

test('switched off, the controller touches nothing', () => {
  const { call, emit } = fakeCall(2);
  const q = new Quality(call, { enabled: false });
  emit('peer-state', { id: 'p0', state: 'connected' });
  q.applyAll();
  assert.equal(call.peers.get('p0').senders.video.sender.set.length, 0);
});

test('changes that come quickly one after another end in the last choice, and a refused one is tried again', async () => {
  const { call, emit } = fakeCall(2);
  const q = new Quality(call);
  const sender = call.peers.get('p0').senders.video.sender;
  emit('peer-state', { id: 'p0', state: 'connected' });
  // Hidden, shown, hidden, shown: while the first change is in flight.
  for (const view of [{ width: 0, height: 0 }, { width: 320, height: 240 }, { width: 0, height: 0 },
    { width: 320, height: 240 }]) emit('view', { id: 'p0', view });
  await settle();
  await settle();
  assert.equal(sender.params.encodings[0].active, true, 'the last view (shown) is what is sent');

  sender.refuse = 1;
  emit('view', { id: 'p0', view: { width: 0, height: 0 } });
  await settle();
  assert.equal(sender.params.encodings[0].active, true, 'the browser refused the change');
  q.readings(new Map()); // the next round of readings sees it did not apply
  await settle();
  assert.equal(sender.params.encodings[0].active, false, 'tried again and applied');
});
