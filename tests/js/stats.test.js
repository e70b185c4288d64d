// Connection health (stats.js) without a browser: what a getStats report is summarized
// to, and when a connection is called poor and fine again.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import './fakes.js'; // CustomEvent on old Node
import { HEALTH, Health, PoorTracker, isBad, summarize } from '../../assets/js/stats.js';

/** A report as Chromium gives it, for one connection relayed over TCP. */
function report({ rtt = 0.02, bytesIn = 0, bytesOut = 0, packetsIn = 0, lostIn = 0, fractionLost = 0 } = {}) {
  return new Map(Object.entries({
    T: { id: 'T', type: 'transport', selectedCandidatePairId: 'CP' },
    CP: { id: 'CP', type: 'candidate-pair', localCandidateId: 'L', remoteCandidateId: 'R', currentRoundTripTime: rtt },
    X: { id: 'X', type: 'candidate-pair', localCandidateId: 'L2', remoteCandidateId: 'R', currentRoundTripTime: 9 },
    L: { id: 'L', type: 'local-candidate', candidateType: 'relay', protocol: 'udp', relayProtocol: 'tcp' },
    L2: { id: 'L2', type: 'local-candidate', candidateType: 'host', protocol: 'udp' },
    R: { id: 'R', type: 'remote-candidate', candidateType: 'relay', protocol: 'udp' },
    IV: { id: 'IV', type: 'inbound-rtp', kind: 'video', bytesReceived: bytesIn, packetsReceived: packetsIn,
      packetsLost: lostIn, frameWidth: 320, frameHeight: 240, framesPerSecond: 15 },
    OV: { id: 'OV', type: 'outbound-rtp', kind: 'video', bytesSent: bytesOut, frameWidth: 160, frameHeight: 120,
      framesPerSecond: 15, qualityLimitationReason: 'cpu' },
    RI: { id: 'RI', type: 'remote-inbound-rtp', kind: 'video', fractionLost },
  }).map(([k, v]) => [k, v]));
}

test('a report is summarized to the selected path, frames both ways and rates', () => {
  const first = summarize(report(), null, 0);
  assert.equal(first.local, 'relay');
  assert.equal(first.remote, 'relay');
  assert.equal(first.protocol, 'tcp', 'a relay is reached over its relay protocol');
  assert.equal(first.rttMs, 20, 'the selected pair, not another one');
  assert.deepEqual(first.videoIn, { width: 320, height: 240, fps: 15 });
  assert.deepEqual(first.videoOut, { width: 160, height: 120, fps: 15 });
  assert.equal(first.limitation, 'cpu');
  assert.equal(first.kbpsIn, null, 'no rate from a single report');
  const second = summarize(report({ bytesIn: 125000, bytesOut: 250000, packetsIn: 90, lostIn: 10 }), first.totals, 1000);
  assert.equal(second.kbpsIn, 1000);
  assert.equal(second.kbpsOut, 2000);
  assert.equal(second.lossIn, 0.1);
});

test('bad means a long round trip or heavy loss either way', () => {
  const ok = summarize(report(), null, 0);
  assert.equal(isBad(ok), false);
  assert.equal(isBad({ ...ok, rttMs: HEALTH.rttMs + 1 }), true);
  assert.equal(isBad({ ...ok, lossIn: HEALTH.loss + 0.01 }), true);
  assert.equal(isBad({ ...ok, lossOut: HEALTH.loss + 0.01 }), true);
});

test('poor only after bad readings for poorAfterMs, fine after good ones for okAfterMs', () => {
  const p = new PoorTracker();
  assert.equal(p.sample(true, 0), false);
  assert.equal(p.sample(false, 2000), false, 'one good reading starts over');
  assert.equal(p.sample(true, 4000), false);
  assert.equal(p.sample(true, 4000 + HEALTH.poorAfterMs), true);
  assert.equal(p.poor, true);
  assert.equal(p.sample(false, 10000), false);
  assert.equal(p.sample(false, 10000 + HEALTH.okAfterMs - 1), false);
  assert.equal(p.sample(false, 10000 + HEALTH.okAfterMs), true);
  assert.equal(p.poor, false);
});

test('Health polls each connection and says when it turns poor and when it recovers', async () => {
  let rtt = 0.9;
  let bytes = 0;
  const pc = { connectionState: 'connected', getStats: async () => report({ rtt, bytesIn: (bytes += 1000) }) };
  const call = { peers: new Map([['p1', { pc }]]) };
  let now = 0;
  const health = new Health(call, { now: () => now });
  const events = [];
  health.addEventListener('poor', (ev) => events.push(ev.detail));
  for (; now <= 6000; now += HEALTH.everyMs) await health.poll();
  assert.deepEqual(events, [{ id: 'p1', poor: true }]);
  rtt = 0.03;
  for (; now <= 20000; now += HEALTH.everyMs) await health.poll();
  assert.deepEqual(events, [{ id: 'p1', poor: true }, { id: 'p1', poor: false }]);
  assert.equal(health.rows.get('p1').rttMs, 30);
  call.peers.delete('p1');
  await health.poll();
  assert.equal(health.rows.size, 0, 'a participant who left is forgotten');
});

test('Health runs one poller however often it is started, and none once stopped', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  let polls = 0;
  const pc = { connectionState: 'connected', getStats: async () => { polls += 1; return report(); } };
  const health = new Health({ peers: new Map([['p1', { pc }]]) });
  health.start();
  health.start(); // joined again after reconnecting: still one poller
  t.mock.timers.tick(HEALTH.everyMs);
  assert.equal(polls, 1);
  health.stop(); // the call ended
  t.mock.timers.tick(HEALTH.everyMs * 5);
  assert.equal(polls, 1);
});

test('while a screen is shared too, the sent video and its limitation are the camera\'s', () => {
  const r = report();
  r.set('SV', { id: 'SV', type: 'outbound-rtp', kind: 'video', mediaSourceId: 'MS', bytesSent: 0,
    frameWidth: 1920, frameHeight: 1080, framesPerSecond: 5, qualityLimitationReason: 'bandwidth' });
  r.set('MS', { id: 'MS', type: 'media-source', kind: 'video', trackIdentifier: 'screen-track' });
  r.set('MC', { id: 'MC', type: 'media-source', kind: 'video', trackIdentifier: 'camera-track' });
  r.get('OV').mediaSourceId = 'MC';
  const row = summarize(r, null, 0, 'camera-track');
  assert.equal(row.limitation, 'cpu');
  assert.deepEqual(row.videoOut, { width: 160, height: 120, fps: 15 });
  const share = summarize(r, null, 0, 'screen-track');
  assert.equal(share.limitation, 'bandwidth', 'the same report read for the other track');
});
