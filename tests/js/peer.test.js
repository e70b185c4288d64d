// peer.js without a browser: perfect negotiation roles, the collision path for a client
// that cannot roll back (fake timers), the negotiation watchdog, odd offer layouts.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  COLLISION_WAIT_MS, CONNECT_TIMEOUT, ICE_PATIENCE, NEGOTIATION_TIMEOUT, OFFER_RESENDS, Peer, REBUILD_AFTER_RESTART,
} from '../../assets/js/peer.js';
import { FakeStream, FakeTrack, fakeEnv, sdp, settle } from './fakes.js';

const AV = [{ kind: 'audio', direction: 'sendrecv' }, { kind: 'video', direction: 'sendrecv' }];

/** One Peer with fakes; `sent` collects what it sends. */
function makePeer({ localId = 'p000001', id = 'p000002', initiator = true, conn = 'c0' } = {}) {
  const { env, clock, pcs } = fakeEnv();
  const audio = new FakeTrack('audio');
  const video = new FakeTrack('video');
  /** @type {any[]} */
  const sent = [];
  const peer = new Peer({
    id, localId, conn, initiator, env, config: { iceServers: [] },
    tracks: { audio, video }, stream: new FakeStream([audio, video]), send: (p) => sent.push(p),
  });
  const descriptions = () => sent.filter((p) => p.description).map((p) => p.description.type);
  return { peer, pc: pcs[0], clock, sent, descriptions, audio, video };
}

/** Bring an initiating peer to stable with the first offer answered. */
async function established(o) {
  const t = makePeer(o);
  await settle();
  await t.peer.handleSignal({ conn: t.peer.conn, description: { type: 'answer', sdp: sdp(9, 1, AV) } });
  t.pc.setConnectionState('connected');
  assert.equal(t.pc.signalingState, 'stable');
  return t;
}

test('impolite: a colliding offer from a client that cannot roll back is answered after COLLISION_WAIT_MS', async () => {
  const t = await established({ localId: 'p000001', id: 'p000002' }); // we are impolite
  t.pc.restartIce(); // a change of ours: a new offer goes out
  await settle();
  assert.deepEqual(t.descriptions(), ['offer', 'offer']);
  assert.equal(t.pc.signalingState, 'have-local-offer');
  // The other side offers too and, unable to roll back, waits for our answer.
  await t.peer.handleSignal({ conn: 'c0', description: { type: 'offer', sdp: sdp(77, 2, AV) } });
  await t.peer.handleSignal({ conn: 'c0', candidate: { candidate: 'candidate:7 1 udp 1 127.0.0.1 7 typ host', sdpMid: '0' } });
  assert.equal(t.pc.signalingState, 'have-local-offer', 'ignored for now');
  await t.clock.advance(COLLISION_WAIT_MS - 1);
  assert.deepEqual(t.descriptions(), ['offer', 'offer'], 'nothing before the wait is over');
  await t.clock.advance(1);
  assert.equal(t.pc.rollbacks, 1);
  assert.equal(t.pc.remoteDescription.sdp, sdp(77, 2, AV), 'the kept offer was applied');
  // Our answer to it, then our own change offered again (negotiationneeded once stable).
  assert.deepEqual(t.descriptions(), ['offer', 'offer', 'answer', 'offer']);
  assert.ok(t.sent.filter((p) => p.description).every((p) => p.conn === 'c0'));
  assert.equal(t.pc.added.length, 1, 'the candidate that came with the kept offer is applied');
});

test('impolite: when our answer comes in time, the kept offer is forgotten', async () => {
  const t = await established({ localId: 'p000001', id: 'p000002' });
  t.pc.restartIce();
  await settle();
  await t.peer.handleSignal({ conn: 'c0', description: { type: 'offer', sdp: sdp(77, 2, AV) } });
  // A perfect-negotiation peer rolls back and answers ours.
  await t.peer.handleSignal({ conn: 'c0', description: { type: 'answer', sdp: sdp(9, 2, AV) } });
  assert.equal(t.pc.signalingState, 'stable');
  await t.clock.advance(COLLISION_WAIT_MS * 2);
  assert.deepEqual(t.descriptions(), ['offer', 'offer']);
  assert.equal(t.pc.rollbacks, 0);
  assert.equal(t.peer.keptOffer, null);
});

test('polite: a colliding offer wins at once (our own offer is rolled back)', async () => {
  const t = await established({ localId: 'p000009', id: 'p000002' }); // we are polite
  t.pc.restartIce();
  await settle();
  assert.equal(t.pc.signalingState, 'have-local-offer');
  await t.peer.handleSignal({ conn: 'c0', description: { type: 'offer', sdp: sdp(77, 2, AV) } });
  await settle();
  assert.equal(t.pc.rollbacks, 1);
  assert.deepEqual(t.descriptions().slice(0, 3), ['offer', 'offer', 'answer']);
  assert.deepEqual(t.descriptions().slice(3), ['offer'], 'our change is offered again afterwards');
  assert.equal(t.clock.timers.size > 0, true);
  await t.clock.advance(COLLISION_WAIT_MS);
  assert.equal(t.pc.rollbacks, 1, 'no collision timer on the polite side');
});

test('an unanswered offer is sent again, then the negotiation is rolled back and retried with an ICE restart', async () => {
  const t = await established();
  t.pc.restartIce();
  await settle();
  assert.equal(t.pc.signalingState, 'have-local-offer');
  const restartsBefore = t.peer.iceRestarts;
  const offers = t.sent.filter((p) => p.description && p.description.type === 'offer');
  await t.clock.advance(NEGOTIATION_TIMEOUT - 1);
  assert.equal(t.peer.iceRestarts, restartsBefore);
  await t.clock.advance(1);
  const again = t.sent.filter((p) => p.description && p.description.type === 'offer');
  assert.equal(again.length, offers.length + 1, 'the same offer once more');
  assert.equal(again.at(-1).description.sdp, offers.at(-1).description.sdp);
  assert.equal(t.pc.rollbacks, 0, 'nothing thrown away');
  await t.clock.advance(OFFER_RESENDS * NEGOTIATION_TIMEOUT - 1);
  assert.equal(t.peer.iceRestarts, restartsBefore);
  await t.clock.advance(1); // the answer never came
  assert.equal(t.peer.iceRestarts, restartsBefore + 1);
  assert.equal(t.pc.rollbacks, 1);
  assert.equal(t.descriptions().at(-1), 'offer', 'a fresh offer went out');
  assert.equal(t.pc.signalingState, 'have-local-offer');
});

test('a connection that never connects is ICE-restarted, then asks for a rebuild', async () => {
  const t = makePeer();
  await settle();
  await t.peer.handleSignal({ conn: 'c0', description: { type: 'answer', sdp: sdp(9, 1, AV) } });
  let rebuilds = 0;
  t.peer.addEventListener('rebuild', () => { rebuilds += 1; });
  await t.clock.advance(15000);
  assert.equal(t.peer.iceRestarts, 1);
  assert.equal(t.peer.state, 'reconnecting');
  // The other side answers the restart, but ICE still gets nowhere.
  await t.peer.handleSignal({ conn: 'c0', description: { type: 'answer', sdp: sdp(9, 2, AV) } });
  await t.clock.advance(10000);
  assert.equal(rebuilds, 1);
  assert.equal(t.peer.state, 'failed');
});

test('a restart offer still being sent again holds the rebuild off, within ICE_PATIENCE', async () => {
  const t = makePeer();
  await settle();
  await t.peer.handleSignal({ conn: 'c0', description: { type: 'answer', sdp: sdp(9, 1, AV) } });
  let rebuilds = 0;
  t.peer.addEventListener('rebuild', () => { rebuilds += 1; });
  await t.clock.advance(CONNECT_TIMEOUT); // restart: an offer that no answer follows
  await t.clock.advance(REBUILD_AFTER_RESTART);
  assert.equal(rebuilds, 0, 'the offer is being resent: not yet');
  await t.clock.advance(REBUILD_AFTER_RESTART * ICE_PATIENCE);
  assert.equal(rebuilds, 1, 'but not for ever');
});

test('an answer to an audio-only offer sends audio and keeps no video slot', async () => {
  const t = makePeer({ initiator: false, conn: 'x' });
  await t.peer.handleSignal({ conn: 'x', description: { type: 'offer', sdp: sdp(1, 1, [{ kind: 'audio', direction: 'sendrecv' }]) } });
  assert.deepEqual(t.descriptions(), ['answer']);
  const ts = t.pc.getTransceivers();
  assert.deepEqual(ts.map((x) => [x.receiver.track.kind, x.direction, x.sender.track]), [['audio', 'sendrecv', t.audio]]);
  await t.peer.setTrack('video', null); // camera off: nothing to replace, nothing fails
  assert.equal(t.peer.senders.video, null);
});

test('extra m-lines from a foreign client are received; our track goes on the first of each kind', async () => {
  const t = makePeer({ initiator: false, conn: 'x' });
  const mlines = [{ kind: 'audio', direction: 'sendrecv' }, { kind: 'video', direction: 'sendrecv' },
    { kind: 'video', direction: 'sendonly' }, { kind: 'application', direction: 'sendrecv' }];
  await t.peer.handleSignal({ conn: 'x', description: { type: 'offer', sdp: sdp(1, 1, mlines) } });
  assert.deepEqual(t.descriptions(), ['answer']);
  const ts = t.pc.getTransceivers();
  assert.deepEqual(ts.slice(0, 3).map((x) => [x.receiver.track.kind, x.direction, x.sender.track && x.sender.track.kind]),
    [['audio', 'sendrecv', 'audio'], ['video', 'sendrecv', 'video'], ['video', 'recvonly', null]]);
  // A renegotiation adding one more audio m-line: answered, our slots unchanged.
  await t.peer.handleSignal({ conn: 'x', description: { type: 'offer', sdp: sdp(2, 1, [...mlines, { kind: 'audio', direction: 'sendrecv' }]) } });
  assert.deepEqual(t.descriptions(), ['answer', 'answer']);
  assert.equal(t.peer.senders.audio, ts[0]);
});

test('a late answer to a resent offer completes the negotiation', async () => {
  const t = await established();
  t.pc.restartIce();
  await settle();
  await t.clock.advance(NEGOTIATION_TIMEOUT);
  await t.peer.handleSignal({ conn: 'c0', description: { type: 'answer', sdp: sdp(9, 2, AV) } });
  assert.equal(t.pc.signalingState, 'stable');
  await t.clock.advance(3 * NEGOTIATION_TIMEOUT);
  assert.equal(t.pc.rollbacks, 0);
  assert.equal(t.peer.offerResends, 0);
});

test('ICE checks under way earn a connection a little patience, but not for ever', async () => {
  const t = makePeer();
  await settle();
  await t.peer.handleSignal({ conn: 'c0', description: { type: 'answer', sdp: sdp(9, 1, AV) } });
  t.pc.iceConnectionState = 'checking'; // a slow peer: checks running, not done yet
  let rebuilds = 0;
  t.peer.addEventListener('rebuild', () => { rebuilds += 1; });
  await t.clock.advance(CONNECT_TIMEOUT * (ICE_PATIENCE + 1) - 1);
  assert.equal(t.peer.iceRestarts, 0, 'waited while ICE worked');
  await t.clock.advance(1);
  assert.equal(t.peer.iceRestarts, 1, 'patience is bounded');
  await t.clock.advance(REBUILD_AFTER_RESTART);
  assert.equal(rebuilds, 1, 'and spent: the rebuild comes on time');
});

test('the connect wait starts again when the first exchange is done: a late offer is not a dead connection', async () => {
  const t = makePeer({ initiator: false, conn: null });
  await t.clock.advance(CONNECT_TIMEOUT - 100); // a starved peer takes this long to offer
  await t.peer.handleSignal({ conn: 'x', description: { type: 'offer', sdp: sdp(1, 1, AV) } });
  assert.deepEqual(t.descriptions(), ['answer']);
  await t.clock.advance(CONNECT_TIMEOUT - 1);
  assert.equal(t.peer.iceRestarts, 0, 'ICE got its whole wait after the answer');
  await t.clock.advance(1);
  assert.equal(t.peer.iceRestarts, 1);
});

test('a DTLS handshake under way (ICE connected, connection connecting) earns the same patience as ICE checks', async () => {
  const t = makePeer();
  await settle();
  await t.peer.handleSignal({ conn: 'c0', description: { type: 'answer', sdp: sdp(9, 1, AV) } });
  t.pc.iceConnectionState = 'connected';
  t.pc.setConnectionState('connecting');
  await t.clock.advance(CONNECT_TIMEOUT * (ICE_PATIENCE + 1) - 1);
  assert.equal(t.peer.iceRestarts, 0, 'waited while DTLS worked');
  await t.clock.advance(1);
  assert.equal(t.peer.iceRestarts, 1, 'patience is bounded');
});

test('a connection still waiting for its first offer, or making its answer, waits a little longer before repairing', async () => {
  const t = makePeer({ initiator: false, conn: null });
  await t.clock.advance(CONNECT_TIMEOUT * (ICE_PATIENCE + 1) - 1);
  assert.equal(t.peer.iceRestarts, 0, 'no offer of ours to collide with a late one');
  await t.clock.advance(1);
  assert.equal(t.peer.iceRestarts, 1, 'patience is bounded');

  const u = makePeer({ initiator: false, conn: null });
  let rebuilds = 0;
  u.peer.addEventListener('rebuild', () => { rebuilds += 1; });
  await u.clock.advance(CONNECT_TIMEOUT * (ICE_PATIENCE + 1)); // restarted: rebuild timer running
  u.peer.patience = 0; // a fresh allowance, as a rebuilt connection has
  u.pc.signalingState = 'have-remote-offer'; // the peer's offer came; our answer is under way
  await u.clock.advance(REBUILD_AFTER_RESTART);
  assert.equal(rebuilds, 0, 'not given up in the middle of answering');
});
