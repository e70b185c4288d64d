// Presenting without a browser: which layout and where tiles go (layout.js), who speaks
// (speaker.js), sending a share on its own transceivers (share.js), and how a call tells
// a share's tracks from the camera's.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Call } from '../../assets/js/call.js';
import { chooseLayout, DISPLAY_SPEAKER_AFTER, presenterRects } from '../../assets/js/layout.js';
import { ScreenShare } from '../../assets/js/share.js';
import { LOUDER, SPEAK_OFF_MS, SPEAK_ON_MS, SpeakerDetector, SWITCH_MS } from '../../assets/js/speaker.js';
import { FakeSignaling, FakeStream, fakeEnv, fakeMedia, settle } from './fakes.js';

// ---------------------------------------------------------------- layout
const base = { shares: [], picked: null, pinned: null, gridChosen: false, speaker: null, display: false, people: 3 };

test('the newest share is shown large, a picked one instead, a pinned tile above all', () => {
  assert.deepEqual(chooseLayout(base), { layout: 'grid', main: null });
  const two = { ...base, shares: ['screen:a', 'screen:b'] };
  assert.deepEqual(chooseLayout(two), { layout: 'presenter', main: 'screen:b' });
  assert.deepEqual(chooseLayout({ ...two, picked: 'screen:a' }), { layout: 'presenter', main: 'screen:a' });
  // A pick of a share that ended falls back to the newest.
  assert.deepEqual(chooseLayout({ ...two, picked: 'screen:gone' }), { layout: 'presenter', main: 'screen:b' });
  assert.deepEqual(chooseLayout({ ...two, gridChosen: true }), { layout: 'grid', main: null });
  assert.deepEqual(chooseLayout({ ...two, gridChosen: true, pinned: 'p1' }), { layout: 'presenter', main: 'p1' });
  assert.deepEqual(chooseLayout({ ...base, pinned: 'p1' }), { layout: 'presenter', main: 'p1' });
});

test('a room display shows the active speaker large only past four people and without a share', () => {
  const d = { ...base, display: true, speaker: 'p2' };
  assert.equal(chooseLayout({ ...d, people: DISPLAY_SPEAKER_AFTER }).layout, 'grid');
  assert.deepEqual(chooseLayout({ ...d, people: DISPLAY_SPEAKER_AFTER + 1 }), { layout: 'presenter', main: 'p2' });
  assert.deepEqual(chooseLayout({ ...d, people: 6, shares: ['screen:a'] }), { layout: 'presenter', main: 'screen:a' });
  assert.equal(chooseLayout({ ...d, people: 6, speaker: null }).layout, 'grid');
  assert.equal(chooseLayout({ ...d, display: false, people: 6 }).layout, 'grid', 'people choose for themselves');
});

/** @param {{x: number, y: number, w: number, h: number}} a @param {{x: number, y: number, w: number, h: number}} b */
const overlaps = (a, b) => Math.min(a.x + a.w, b.x + b.w) > Math.max(a.x, b.x) && Math.min(a.y + a.h, b.y + b.h) > Math.max(a.y, b.y);

test('the presenter layout fits phones and screens with 1-6 people, the share largest', () => {
  for (const [W, H] of [[360, 640], [1920, 1080], [1280, 720], [640, 360], [768, 1024], [320, 480]]) {
    for (let n = 0; n <= 6; n++) {
      const r = presenterRects(W, H, n);
      const all = [r.main, ...r.strip];
      assert.equal(r.strip.length, n);
      for (const t of all) {
        const where = `${W}x${H} n=${n} ${JSON.stringify(t)}`;
        assert.ok(t.x >= 0 && t.y >= 0 && t.x + t.w <= W && t.y + t.h <= H, `inside: ${where}`);
        assert.ok(t.w >= 40 && t.h >= 30, `large enough to see: ${where}`);
      }
      for (let i = 0; i < all.length; i++) {
        for (let j = i + 1; j < all.length; j++) assert.ok(!overlaps(all[i], all[j]), `${W}x${H} n=${n}: ${i} and ${j} overlap`);
      }
      for (const t of r.strip) assert.ok(r.main.w * r.main.h > 2 * t.w * t.h, `${W}x${H} n=${n}: the main tile dominates`);
      if (n) assert.equal(r.side, H > W ? 'bottom' : 'right');
      if (n && W >= H) {
        assert.equal(Math.max(...r.strip.map((t) => t.x + t.w)), W, 'the strip is against the edge');
        assert.equal(r.main.w, Math.min(...r.strip.map((t) => t.x)) - 8, 'the main tile takes the rest');
      }
    }
  }
});

test('on a portrait phone the share is on top and full width, people below', () => {
  const r = presenterRects(360, 640, 6);
  assert.deepEqual([r.main.x, r.main.y, r.main.w], [0, 0, 360]);
  for (const t of r.strip) assert.ok(t.y >= r.main.h);
});

// ---------------------------------------------------------------- active speaker
/** Feed the same levels every 100 ms for `ms`; returns the last result. */
function feed(/** @type {SpeakerDetector} */ d, /** @type {Record<string, number>} */ levels, ms, clock) {
  let r = d.update(new Map(Object.entries(levels)), clock.now);
  for (let t = 100; t <= ms; t += 100) {
    clock.now += 100;
    r = d.update(new Map(Object.entries(levels)), clock.now);
  }
  return r;
}

test('someone speaks after a moment above the threshold, and a pause between words keeps them speaking', () => {
  const d = new SpeakerDetector();
  const clock = { now: 0 };
  let r = feed(d, { a: 0.3, b: 0 }, SPEAK_ON_MS - 100, clock);
  assert.equal(r.speaking, false, 'a click or a cough is not speech');
  r = feed(d, { a: 0.3, b: 0 }, 200, clock);
  assert.deepEqual([r.active, r.speaking], ['a', true]);
  r = feed(d, { a: 0, b: 0 }, SPEAK_OFF_MS - 400, clock);
  assert.deepEqual([r.active, r.speaking], ['a', true], 'a short pause');
  r = feed(d, { a: 0, b: 0 }, 1500, clock);
  assert.deepEqual([r.active, r.speaking], ['a', false], 'silence: not highlighted, still the last speaker');
});

test('the highlight moves only to someone clearly louder for a while, or when the speaker stops', () => {
  const d = new SpeakerDetector();
  const clock = { now: 0 };
  feed(d, { a: 0.1, b: 0 }, 500, clock);
  assert.equal(d.active, 'a');
  // b interjects, louder, but briefly.
  let r = feed(d, { a: 0.1, b: 0.1 * LOUDER * 1.5 }, SWITCH_MS - 300, clock);
  assert.equal(r.active, 'a');
  // b counts once speaking (SPEAK_ON_MS) and then louder for SWITCH_MS.
  r = feed(d, { a: 0.1, b: 0.1 * LOUDER * 1.5 }, 400 + SPEAK_ON_MS, clock);
  assert.equal(r.active, 'b', 'louder for long enough');
  // As loud as b, not louder by far: no switch back.
  r = feed(d, { a: 0.3, b: 0.3 }, 3000, clock);
  assert.equal(r.active, 'b');
  // b stops: a, still speaking, takes over as soon as b is no longer speaking.
  r = feed(d, { a: 0.3, b: 0 }, SPEAK_OFF_MS + 500, clock);
  assert.deepEqual([r.active, r.speaking], ['a', true]);
  // Someone who leaves is forgotten.
  r = feed(d, { b: 0 }, 100, clock);
  assert.notEqual(r.active, 'a');
  assert.ok(!d.voices.has('a'));
});

test('levels that are not numbers count as silence', () => {
  const d = new SpeakerDetector();
  const clock = { now: 0 };
  const r = feed(d, { a: NaN, b: -1, c: undefined }, 2000, clock);
  assert.equal(r.active, null);
});

// ---------------------------------------------------------------- sending a share
class Track extends EventTarget {
  constructor(/** @type {string} */ kind) {
    super();
    this.kind = kind;
    this.enabled = true;
    this.readyState = 'live';
    this.contentHint = '';
  }

  stop() {
    this.readyState = 'ended';
  }
}

class DisplayStream extends FakeStream {
  constructor(/** @type {string} */ id, /** @type {Track[]} */ tracks) {
    super(tracks);
    this.id = id;
  }

  getVideoTracks() {
    return this.tracks.filter((t) => t.kind === 'video');
  }

  getAudioTracks() {
    return this.tracks.filter((t) => t.kind === 'audio');
  }
}

const ME = 'p000010';
const A = 'p000001';

/** A call with one connected peer A, a signaling client that records `media`, and a share. */
async function sharingCall({ audio = true } = {}) {
  const { env, pcs } = fakeEnv();
  const call = new Call({ env });
  call.useMedia(fakeMedia());
  const sig = new FakeSignaling();
  /** @type {{audio: boolean, video: boolean, screen: string|null|undefined, transceivers: number}[]} */
  const media = [];
  sig.setMedia = (a, v, screen) => media.push({ audio: a, video: v, screen, transceivers: pcs[0] ? pcs[0].getTransceivers().length : 0 });
  call.join(sig);
  sig.emit('welcome', { type: 'welcome', id: ME, token: 't', room: 'r', iceServers: [], iceTransportPolicy: 'all',
    maxPeers: 6, resumed: false, version: '0', peers: [{ id: A, name: 'Ada', audio: true, video: true, screen: null }] });
  await settle();
  let n = 0;
  const captures = [];
  const share = new ScreenShare(call, {
    getDisplayMedia: async () => {
      n += 1;
      const s = new DisplayStream(`share-${n}`, audio ? [new Track('video'), new Track('audio')] : [new Track('video')]);
      captures.push(s);
      return /** @type {any} */ (s);
    },
  });
  return { call, sig, pcs, media, share, captures };
}

test('a share is announced first, then sent on transceivers of its own, after the first offer', async () => {
  const { pcs, media, share, captures } = await sharingCall();
  const pc = pcs[0];
  assert.equal(pc.getTransceivers().length, 2, 'the first offer is the plain audio + video one');
  await share.start();
  assert.equal(pc.getTransceivers().length, 2, 'not before the connection is up');
  assert.deepEqual(media.at(-1), { audio: true, video: true, screen: 'share-1', transceivers: 2 });
  pc.setConnectionState('connected');
  await settle();
  const ts = pc.getTransceivers().slice(2);
  assert.deepEqual(ts.map((t) => [t.receiver.track.kind, t.direction, t.sender.track.kind]),
    [['video', 'sendonly', 'video'], ['audio', 'sendonly', 'audio']]);
  assert.deepEqual(ts.map((t) => t.sender.streams[0].id), ['share-1', 'share-1']);
  assert.equal(captures[0].getVideoTracks()[0].contentHint, 'detail');

  share.stop();
  assert.deepEqual(media.at(-1).screen, null);
  assert.deepEqual(ts.map((t) => t.direction), ['inactive', 'inactive']);
  assert.ok(captures[0].getTracks().every((t) => t.readyState === 'ended'));
  await settle();
  assert.deepEqual(ts.map((t) => t.sender.track), [null, null]);

  // Sharing again reuses those m-lines rather than adding more.
  await share.start();
  await settle();
  assert.equal(pc.getTransceivers().length, 4);
  assert.deepEqual(ts.map((t) => [t.direction, t.sender.streams[0].id]), [['sendonly', 'share-2'], ['sendonly', 'share-2']]);
  assert.equal(media.at(-1).screen, 'share-2');
});

test("the browser's own stop ends the share; a browser without screen capture cannot start one", async () => {
  const { media, share, captures, call } = await sharingCall({ audio: false });
  await share.start();
  assert.ok(share.active);
  captures[0].getVideoTracks()[0].dispatchEvent(new Event('ended'));
  assert.ok(!share.active);
  assert.equal(media.at(-1).screen, null);
  // A microphone toggle afterwards leaves the share state alone (undefined: unchanged).
  call.setMic(false);
  assert.equal(media.at(-1).screen, undefined);

  const none = new ScreenShare(call, { getDisplayMedia: null });
  assert.equal(none.supported, false);
  await none.start();
  assert.equal(none.active, false);
});

test("a call tells the peer's share tracks from its camera by the announced stream id", async () => {
  const { env, pcs } = fakeEnv();
  const call = new Call({ env });
  call.useMedia(fakeMedia());
  const sig = new FakeSignaling();
  call.join(sig);
  /** @type {any[]} */
  const shares = [];
  call.addEventListener('share-track', (ev) => shares.push(/** @type {CustomEvent} */ (ev).detail));
  sig.emit('welcome', { type: 'welcome', id: ME, token: 't', room: 'r', iceServers: [], iceTransportPolicy: 'all',
    maxPeers: 6, resumed: false, version: '0', peers: [{ id: A, name: 'Ada', audio: true, video: true, screen: 'S1' }] });
  await settle();
  const pc = pcs[0];
  const peer = call.peers.get(A);
  const cam = { id: 'camera' };
  const screen = { id: 'S1' };
  pc.ontrack({ track: { kind: 'video', id: 'v1' }, streams: [cam] });
  pc.ontrack({ track: { kind: 'video', id: 'v2' }, streams: [screen] });
  pc.ontrack({ track: { kind: 'audio', id: 'a2' }, streams: [screen] });
  assert.deepEqual(peer.remoteStream.getTracks().map((t) => t.id), ['v1']);
  assert.deepEqual(shares.map((s) => [s.id, s.track.id, s.stream.id]), [[A, 'v2', 'S1'], [A, 'a2', 'S1']]);
  // Once the share has ended, the same stream id is nothing special any more.
  sig.emit('peer-updated', { id: A, name: 'Ada', audio: true, video: true, screen: null });
  pc.ontrack({ track: { kind: 'video', id: 'v3' }, streams: [{ id: 'S1' }] });
  assert.equal(shares.length, 2);
});
