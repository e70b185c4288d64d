// call.js without a browser: welcome reconciliation, which connection a signal belongs
// to (`conn`), rebuilds, and the room-full outcome.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Call } from '../../assets/js/call.js';
import { MAX_SLOWNESS, NEGOTIATION_TIMEOUT, REBUILD_AFTER_RESTART } from '../../assets/js/peer.js';
import { FakeSignaling, FakeTrack, fakeEnv, fakeMedia, sdp, settle } from './fakes.js';

const ME = 'p000010';
const A = 'p000001'; // smaller than ME: we are polite towards A
const B = 'p000020'; // larger than ME: we are impolite towards B
const C = 'p000030';

const info = (id, name = id) => ({ id, name, audio: true, video: true });

function welcome(o = {}) {
  return { type: 'welcome', id: ME, token: 't', room: 'r', peers: [], iceServers: [], iceTransportPolicy: 'all',
    maxPeers: 6, resumed: false, version: '0', ...o };
}

/** A Call joined through a fake signaling client, recording every event it emits. */
function joinedCall() {
  const { env, clock, pcs } = fakeEnv();
  const call = new Call({ env });
  call.useMedia(fakeMedia());
  const sig = new FakeSignaling();
  /** @type {{type: string, detail: any}[]} */
  const events = [];
  for (const type of ['phase', 'joined', 'peer-added', 'peer-updated', 'peer-removed', 'peer-state',
    'remote-stream', 'counters', 'notice', 'error']) {
    call.addEventListener(type, (ev) => events.push({ type, detail: ev.detail }));
  }
  call.join(sig);
  return { call, sig, clock, pcs, events };
}

const offer = (conn, session = 111, version = 1, mlines = [{ kind: 'audio', direction: 'sendrecv' }, { kind: 'video', direction: 'sendrecv' }]) => ({
  conn, description: { type: 'offer', sdp: sdp(session, version, mlines) },
});

test('a fresh welcome calls everyone listed, audio then video, each on its own new connection', async () => {
  const { call, sig, pcs, events } = joinedCall();
  sig.emit('welcome', welcome({ peers: [info(A, 'Ada'), info(B, 'Grace')] }));
  await settle();
  assert.equal(call.phase, 'joined');
  assert.deepEqual(events.filter((e) => e.type === 'joined').map((e) => e.detail),
    [{ id: ME, previousId: 'self', resumed: false }]);
  assert.deepEqual(events.filter((e) => e.type === 'peer-added').map((e) => [e.detail.id, e.detail.info.name]),
    [[A, 'Ada'], [B, 'Grace']]);
  assert.equal(pcs.length, 2);
  for (const pc of pcs) {
    assert.deepEqual(pc.getTransceivers().map((t) => [t.receiver.track.kind, t.direction]),
      [['audio', 'sendrecv'], ['video', 'sendrecv']]);
    assert.deepEqual(pc.getTransceivers().map((t) => t.sender.track && t.sender.track.kind), ['audio', 'video']);
  }
  const offers = [A, B].map((id) => sig.descriptions(id));
  assert.deepEqual(offers.map((o) => o.map((d) => d.type)), [['offer'], ['offer']]);
  assert.ok(offers[0][0].conn && offers[1][0].conn && offers[0][0].conn !== offers[1][0].conn);
  // Candidates name the connection too.
  const cand = sig.sent.find((s) => s.to === A && s.payload.candidate);
  assert.equal(cand.payload.conn, offers[0][0].conn);
});

test('a resumed welcome keeps the open connections and catches up on who came and went', async () => {
  const { call, sig, pcs, events } = joinedCall();
  sig.emit('welcome', welcome({ peers: [info(A), info(B)] }));
  await settle();
  const [pcA, pcB] = pcs;
  sig.drop();
  assert.equal(call.phase, 'reconnecting');
  sig.emit('welcome', welcome({ peers: [info(B, 'Grace L.'), info(C)], resumed: true }));
  await settle();
  assert.equal(call.phase, 'joined');
  assert.equal(pcA.signalingState, 'closed', 'A left meanwhile');
  assert.notEqual(pcB.signalingState, 'closed');
  assert.equal(call.peers.get(B).pc, pcB, 'B keeps its connection');
  assert.deepEqual([...call.peers.keys()].sort(), [B, C]);
  assert.equal(sig.descriptions(C).length, 1, 'C came meanwhile: we call it');
  assert.equal(sig.descriptions(B).length, 1, 'no new offer to B');
  assert.ok(events.some((e) => e.type === 'peer-removed' && e.detail.id === A));
  assert.ok(events.some((e) => e.type === 'peer-updated' && e.detail.info.name === 'Grace L.'));
  assert.equal(call.rebuilds, 0);
});

test('a fresh welcome after a lost session drops every connection and calls again under the new id', async () => {
  const { call, sig, pcs, events } = joinedCall();
  sig.emit('welcome', welcome({ peers: [info(A)] }));
  await settle();
  sig.drop();
  sig.emit('welcome', welcome({ id: 'p000011', peers: [info(A)], resumed: false }));
  await settle();
  assert.equal(pcs.length, 2);
  assert.equal(pcs[0].signalingState, 'closed');
  assert.equal(call.peers.get(A).pc, pcs[1]);
  assert.equal(call.id, 'p000011');
  assert.deepEqual(events.filter((e) => e.type === 'joined').at(-1).detail,
    { id: 'p000011', previousId: ME, resumed: false });
  const offers = sig.descriptions(A);
  assert.equal(offers.length, 2);
  assert.notEqual(offers[0].conn, offers[1].conn);
});

test('the answering side adopts the conn of the offer that created its connection', async () => {
  const { call, sig, pcs } = joinedCall();
  sig.emit('welcome', welcome());
  sig.emit('peer-joined', info(B));
  assert.equal(pcs.length, 1);
  assert.equal(sig.sent.length, 0, 'an existing member waits for the newcomer');
  sig.emit('signal', { from: B, ...offer('xyz') });
  await settle();
  const answers = sig.descriptions(B);
  assert.deepEqual(answers.map((d) => [d.type, d.conn]), [['answer', 'xyz']]);
  assert.equal(call.peers.get(B).conn, 'xyz');
  // Our tracks go out on the transceivers the offer created, with our stream as msid.
  const ts = pcs[0].getTransceivers();
  assert.deepEqual(ts.map((t) => [t.receiver.track.kind, t.direction, t.sender.track && t.sender.track.kind]),
    [['audio', 'sendrecv', 'audio'], ['video', 'sendrecv', 'video']]);
  assert.equal(ts[0].sender.streams[0], call.media.stream);
});

test('an offer with a new conn replaces the connection once, closing the old one first', async () => {
  const { call, sig, pcs, events } = joinedCall();
  sig.emit('welcome', welcome());
  sig.emit('peer-joined', info(B));
  sig.emit('signal', { from: B, ...offer('one') });
  await settle();
  const old = pcs[0];
  sig.emit('signal', { from: B, ...offer('two', 222) });
  await settle();
  assert.equal(pcs.length, 2);
  assert.equal(old.signalingState, 'closed');
  assert.equal(call.peers.get(B).pc, pcs[1]);
  assert.equal(call.rebuilds, 1);
  assert.deepEqual(sig.descriptions(B).map((d) => [d.type, d.conn]), [['answer', 'one'], ['answer', 'two']]);
  assert.ok(events.some((e) => e.type === 'counters' && e.detail.rebuilds === 1));
  // Late signals of the closed connection change nothing.
  sig.emit('signal', { from: B, conn: 'one', candidate: { candidate: 'candidate:9 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0' } });
  sig.emit('signal', { from: B, ...offer('one', 333) });
  await settle();
  assert.equal(pcs.length, 2);
  assert.deepEqual(pcs[1].added, []);
  assert.equal(call.rebuilds, 1);
});

test('renegotiation with a new o= line and the same conn keeps the connection', async () => {
  const { call, sig, pcs } = joinedCall();
  sig.emit('welcome', welcome());
  sig.emit('peer-joined', info(B));
  sig.emit('signal', { from: B, ...offer('same', 111, 1) });
  await settle();
  // A foreign stack changes the session id on every offer; that is not a new connection.
  sig.emit('signal', { from: B, ...offer('same', 98765, 1) });
  await settle();
  // Without conn at all, a signal belongs to the current connection too.
  sig.emit('signal', { from: B, description: { type: 'offer', sdp: sdp(55555, 7, [{ kind: 'audio', direction: 'sendrecv' }, { kind: 'video', direction: 'sendrecv' }]) } });
  await settle();
  assert.equal(pcs.length, 1);
  assert.equal(call.peers.get(B).pc, pcs[0]);
  assert.notEqual(pcs[0].signalingState, 'closed');
  assert.equal(call.rebuilds, 0);
  assert.deepEqual(sig.descriptions(B).map((d) => [d.type, d.conn]),
    [['answer', 'same'], ['answer', 'same'], ['answer', 'same']]);
});

test('an answer or candidate with a stale conn is dropped', async () => {
  const { call, sig, pcs } = joinedCall();
  sig.emit('welcome', welcome({ peers: [info(B)] }));
  await settle();
  const mine = sig.descriptions(B)[0];
  const pc = pcs[0];
  sig.emit('signal', { from: B, conn: 'old', description: { type: 'answer', sdp: sdp(1, 1, []) } });
  sig.emit('signal', { from: B, conn: 'old', candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0' } });
  await settle();
  assert.equal(pc.signalingState, 'have-local-offer');
  assert.equal(pc.remoteDescription, null);
  sig.emit('signal', { from: B, conn: mine.conn, description: { type: 'answer', sdp: sdp(1, 1, []) } });
  await settle();
  assert.equal(pc.signalingState, 'stable');
  // Once established, a stale answer still changes nothing (towards a polite or impolite peer alike).
  sig.emit('signal', { from: B, conn: 'old', description: { type: 'answer', sdp: sdp(1, 2, []) } });
  sig.emit('signal', { from: B, conn: 'old', candidate: { candidate: 'candidate:2 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0' } });
  await settle();
  assert.deepEqual(pc.added, []);
  assert.equal(call.rebuilds, 0);
  assert.equal(pcs.length, 1);
});

test('a stale answer from a polite-side peer is dropped too', async () => {
  const { call, sig, pcs } = joinedCall();
  sig.emit('welcome', welcome({ peers: [info(A)] }));
  await settle();
  sig.emit('signal', { from: A, conn: 'old', description: { type: 'answer', sdp: sdp(1, 1, []) } });
  await settle();
  assert.equal(pcs[0].signalingState, 'have-local-offer');
  assert.equal(call.peers.get(A).pc, pcs[0]);
  assert.equal(pcs.length, 1);
});

test('signals other than an offer from an unknown peer create nothing', async () => {
  const { call, sig, pcs, events } = joinedCall();
  sig.emit('welcome', welcome());
  sig.emit('signal', { from: C, conn: 'x', candidate: null });
  sig.emit('signal', { from: C, conn: 'x', description: { type: 'answer', sdp: sdp(1, 1, []) } });
  await settle();
  assert.equal(pcs.length, 0);
  assert.equal(call.peers.size, 0);
  assert.ok(!events.some((e) => e.type === 'peer-added'));
});

test('both sides building a fresh connection at once: the impolite side keeps its own', async () => {
  const { call, sig, pcs } = joinedCall();
  sig.emit('welcome', welcome({ peers: [info(B), info(A)] }));
  await settle();
  const toB = sig.descriptions(B)[0].conn;
  // Towards B we are impolite: B's fresh offer is ignored, ours stands.
  sig.emit('signal', { from: B, ...offer('theirs') });
  // Towards A we are polite: we drop ours and answer A's.
  sig.emit('signal', { from: A, ...offer('fromA') });
  await settle();
  assert.equal(call.peers.get(B).conn, toB);
  assert.equal(call.peers.get(B).pc.signalingState, 'have-local-offer');
  // B may never have seen our offer (it offered because ours was lost): it goes again.
  assert.deepEqual(sig.descriptions(B).map((d) => [d.type, d.conn]), [['offer', toB], ['offer', toB]]);
  assert.equal(call.peers.get(A).conn, 'fromA');
  assert.deepEqual(sig.descriptions(A).map((d) => d.type), ['offer', 'answer']);
  assert.equal(pcs.filter((pc) => pc.signalingState === 'closed').length, 1);
});

test('after a failed ICE restart the impolite side offers on a fresh connection; the polite side keeps its own and waits', async () => {
  const { call, sig, pcs, clock } = joinedCall();
  sig.emit('welcome', welcome({ peers: [info(A), info(B)] }));
  await settle();
  const [pcA, pcB] = pcs;
  for (const id of [A, B]) {
    const d = sig.descriptions(id)[0];
    sig.emit('signal', { from: id, conn: d.conn, description: { type: 'answer', sdp: sdp(5, 1, []) } });
  }
  await settle();
  pcA.setConnectionState('connected');
  pcB.setConnectionState('connected');
  pcA.setConnectionState('failed');
  pcB.setConnectionState('failed');
  await settle();
  assert.equal(call.counters().iceRestarts, 2);
  assert.equal(pcA.iceRestarts, 1);
  // Both answer the restart offers; the paths still fail.
  for (const id of [A, B]) {
    const d = sig.descriptions(id).at(-1);
    sig.emit('signal', { from: id, conn: d.conn, description: { type: 'answer', sdp: sdp(5, 2, []) } });
  }
  await settle();
  const before = { A: sig.descriptions(A).length, B: sig.descriptions(B).length };
  await clock.advance(REBUILD_AFTER_RESTART);
  assert.equal(call.rebuilds, 1);
  assert.equal(pcB.signalingState, 'closed');
  // A (we are polite): ours stays open, so a restart A sends on it can still repair it.
  assert.notEqual(pcA.signalingState, 'closed');
  assert.equal(call.peers.get(A).pc, pcA);
  assert.equal(call.peers.get(A).state, 'reconnecting');
  // B (we are impolite): a fresh connection and an offer with a new conn.
  const newB = sig.descriptions(B).slice(before.B);
  assert.deepEqual(newB.map((d) => d.type), ['offer']);
  assert.notEqual(newB[0].conn, sig.descriptions(B)[0].conn);
  // and it sends nothing until A offers on a fresh connection.
  assert.equal(sig.descriptions(A).length, before.A);
  sig.emit('signal', { from: A, ...offer('rebuiltByA') });
  await settle();
  assert.equal(pcA.signalingState, 'closed');
  assert.deepEqual(sig.descriptions(A).slice(before.A).map((d) => [d.type, d.conn]), [['answer', 'rebuiltByA']]);
  assert.equal(call.rebuilds, 2, 'the fresh connection from A is the second rebuild');
  assert.equal(call.counters().iceRestarts, 2, 'restarts of closed connections still count');
  assert.equal(pcs.filter((pc) => pc.signalingState !== 'closed').length, 2, 'one live connection per pair');
});

test('an answer that comes after its connection was given up makes that peer\'s repair timers longer', async () => {
  const { call, sig, pcs, clock } = joinedCall();
  sig.emit('welcome', welcome({ peers: [info(B), info(C)] }));
  await settle();
  const first = { B: sig.descriptions(B)[0].conn, C: sig.descriptions(C)[0].conn };
  for (const id of [B, C]) {
    sig.emit('signal', { from: id, conn: first[id], description: { type: 'answer', sdp: sdp(5, 1, []) } });
  }
  await settle();
  for (const pc of pcs) pc.setConnectionState('failed');
  await settle();
  for (const id of [B, C]) { // the restarts are answered, and the paths still fail
    sig.emit('signal', { from: id, conn: first[id], description: { type: 'answer', sdp: sdp(5, 2, []) } });
  }
  await settle();
  await clock.advance(REBUILD_AFTER_RESTART); // both rebuilt on fresh connections (we are impolite)
  assert.equal(call.rebuilds, 2);
  // B was only slow: an answer on the connection we gave up (to an offer of ours sent
  // again, say) comes now.
  sig.emit('signal', { from: B, conn: first.B, candidate: { candidate: 'x', sdpMid: '0' } });
  await settle();
  assert.equal(call.peers.get(B).slowness, 1, 'a trailing candidate proves nothing');
  sig.emit('signal', { from: B, conn: first.B, description: { type: 'answer', sdp: sdp(5, 3, []) } });
  sig.emit('signal', { from: B, conn: first.B, description: { type: 'answer', sdp: sdp(5, 3, []) } });
  await settle();
  assert.equal(call.peers.get(B).slowness, 2, 'twice as patient, once per given-up connection');
  assert.equal(call.peers.get(C).slowness, 1, 'only the peer that was slow');
  assert.ok(call.traceOf(B).some((line) => line.includes('slow peer: repair timers ×2')));
  // The fresh offers go unanswered: C's is sent again after the usual wait, B's only after twice it.
  const sent = { B: sig.descriptions(B).length, C: sig.descriptions(C).length };
  await clock.advance(NEGOTIATION_TIMEOUT);
  assert.equal(sig.descriptions(C).length, sent.C + 1);
  assert.equal(sig.descriptions(B).length, sent.B);
  await clock.advance(NEGOTIATION_TIMEOUT);
  assert.equal(sig.descriptions(B).length, sent.B + 1);
  assert.ok(MAX_SLOWNESS >= 2);
});

test('room-full ends the call and reports the real limit', async () => {
  const { call, sig, events } = joinedCall();
  sig.emit('error', { error: 'room-full', value: 'This room is full (4 people).', fatal: false, maxPeers: 4 });
  assert.equal(call.phase, 'full');
  assert.ok(sig.stopped);
  const full = events.filter((e) => e.type === 'phase').at(-1).detail;
  assert.equal(full.phase, 'full');
  assert.equal(full.maxPeers, 4);
  assert.deepEqual(call.media.stream.getTracks().map((t) => t.readyState), ['ended', 'ended']);
  // A signaling state change after the end does not bring back a banner.
  sig.drop();
  assert.equal(call.phase, 'full');
});

test('bad-room ends the call; bad-name is only a notice', () => {
  const a = joinedCall();
  a.sig.emit('error', { error: 'bad-name', value: 'Name too long', fatal: false });
  assert.equal(a.call.phase, 'connecting');
  assert.deepEqual(a.events.filter((e) => e.type === 'notice').map((e) => e.detail.value), ['Name too long']);
  a.sig.emit('error', { error: 'bad-room', value: 'No such room', fatal: false });
  assert.equal(a.call.phase, 'error');
  assert.ok(a.sig.stopped);
});

test('muting replaces the track and never renegotiates', async () => {
  const { call, sig, pcs } = joinedCall();
  sig.emit('welcome', welcome({ peers: [info(B)] }));
  await settle();
  const d = sig.descriptions(B)[0];
  sig.emit('signal', { from: B, conn: d.conn, description: { type: 'answer', sdp: sdp(5, 1, []) } });
  await settle();
  call.setCamera(false);
  call.setMic(false);
  await settle();
  const [audio, video] = pcs[0].getTransceivers();
  assert.equal(video.sender.track, null);
  assert.equal(audio.sender.track, null);
  assert.equal(call.media.video.enabled, false);
  assert.deepEqual(sig.media.at(-1), { audio: false, video: false });
  call.setCamera(true);
  await settle();
  assert.equal(video.sender.track, call.media.video);
  assert.equal(sig.descriptions(B).length, 1, 'no offer after the first');
});

test('fresh ICE servers reach the open connections', async () => {
  const { call, sig, pcs } = joinedCall();
  sig.emit('welcome', welcome({ peers: [info(B)] }));
  const servers = [{ urls: ['turn:198.18.0.1:3478'], username: 'u', credential: 'c' }];
  sig.emit('ice-servers', { iceServers: servers, iceTransportPolicy: 'relay' });
  assert.deepEqual(pcs[0].getConfiguration().iceServers, servers);
  assert.equal(pcs[0].getConfiguration().iceTransportPolicy, 'relay');
  assert.deepEqual(call.config.iceServers, servers);
});

test('a view signal is about what we send: reported as `view`, never taken for a connection', async () => {
  const { call, sig, pcs } = joinedCall();
  /** @type {any[]} */
  const views = [];
  call.addEventListener('view', (ev) => views.push(ev.detail));
  sig.emit('welcome', welcome());
  sig.emit('signal', { from: C, view: { width: 320, height: 180 } }); // a stranger: no connection made
  await settle();
  assert.equal(pcs.length, 0);
  assert.equal(call.peers.size, 0);
  assert.deepEqual(views, [{ id: C, view: { width: 320, height: 180 } }]);
});

test('switching a device replaces the track on every connection, with no new offer, then stops the old one', async () => {
  const { call, sig, pcs } = joinedCall();
  sig.emit('welcome', welcome({ peers: [info(A), info(B)] }));
  await settle();
  for (const id of [A, B]) {
    const d = sig.descriptions(id)[0];
    sig.emit('signal', { from: id, conn: d.conn, description: { type: 'answer', sdp: sdp(5, 1, []) } });
  }
  await settle();
  const old = call.media.video;
  const next = new FakeTrack('video');
  const seen = [];
  call.addEventListener('local-track', (ev) => seen.push(ev.detail.kind));
  await call.replaceTrack('video', next);
  for (const pc of pcs) assert.equal(pc.getTransceivers()[1].sender.track, next);
  assert.equal(old.readyState, 'ended');
  assert.equal(next.readyState, 'live');
  assert.deepEqual(call.media.stream.getTracks(), [call.media.audio, next]);
  assert.deepEqual(seen, ['video']);
  assert.deepEqual([A, B].map((id) => sig.descriptions(id).length), [1, 1], 'no offer after the first');
  // A camera that is off stays off on the new device: the track is opened but not sent.
  call.setCamera(false);
  const third = new FakeTrack('video');
  await call.replaceTrack('video', third);
  assert.equal(third.enabled, false);
  for (const pc of pcs) assert.equal(pc.getTransceivers()[1].sender.track, null);
});

test('room-locked ends the call and says who locked it', () => {
  const { call, sig, events } = joinedCall();
  sig.emit('error', { error: 'room-locked', value: 'This room is locked.', fatal: false, lockedBy: 'Ada' });
  assert.equal(call.phase, 'locked');
  assert.ok(sig.stopped);
  assert.equal(events.filter((e) => e.type === 'phase').at(-1).detail.lockedBy, 'Ada');
});

test('our own raised hand is about us, not a remote participant', async () => {
  const { call, sig, events } = joinedCall();
  const selfEvents = [];
  call.addEventListener('self-updated', (ev) => selfEvents.push(ev.detail.info));
  sig.emit('welcome', welcome({ peers: [info(A)] }));
  await settle();
  sig.emit('peer-updated', { ...info(ME), hand: 1 });
  assert.deepEqual(selfEvents.map((i) => i.hand), [1]);
  assert.ok(!call.infos.has(ME) && !call.peers.has(ME));
  assert.ok(!events.some((e) => e.type === 'peer-updated' && e.detail.id === ME));
});

test('the polite side that gave up is still repaired by a restart on the same connection', async () => {
  const { call, sig, pcs, clock } = joinedCall();
  sig.emit('welcome', welcome({ peers: [info(A)] }));
  await settle();
  const [pcA] = pcs;
  const conn = sig.descriptions(A)[0].conn;
  sig.emit('signal', { from: A, conn, description: { type: 'answer', sdp: sdp(5, 1, []) } });
  await settle();
  pcA.setConnectionState('connected');
  pcA.setConnectionState('failed');
  await settle();
  sig.emit('signal', { from: A, conn, description: { type: 'answer', sdp: sdp(5, 2, []) } });
  await settle();
  await clock.advance(REBUILD_AFTER_RESTART); // our restart did not help: we wait for A
  const sent = sig.descriptions(A).length;
  // A, slower, restarts ICE on the same connection: it is answered there, not dropped.
  sig.emit('signal', { from: A, ...offer(conn, 111, 3) });
  await settle();
  assert.deepEqual(sig.descriptions(A).slice(sent).map((d) => [d.type, d.conn]), [['answer', conn]]);
  pcA.setConnectionState('connected');
  assert.equal(call.peers.get(A).state, 'connected');
  assert.equal(call.rebuilds, 0);
  assert.equal(pcs.length, 1, 'no other connection was made');
  // Back to normal: its own watchdog repairs the next failure again.
  pcA.setConnectionState('failed');
  await settle();
  assert.equal(call.peers.get(A).iceRestarts, 2);
});
