// The DOM-free parts of chat, device choice and raise hand.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { chatParts, safeHref } from '../../assets/js/chat.js';
import { loadChoices, pickDevice, saveChoice } from '../../assets/js/devices.js';
import { PAUSE_SECONDS, SPEAK_SECONDS, SPEECH_LEVEL, SpeakingTimer } from '../../assets/js/hand.js';

test('only http and https become links; the rest stays text, whatever it looks like', () => {
  assert.deepEqual(chatParts('slides: https://192.168.1.10:8443/files/deck.pdf.'), [
    { text: 'slides: ' },
    { text: 'https://192.168.1.10:8443/files/deck.pdf', href: 'https://192.168.1.10:8443/files/deck.pdf' },
    { text: '.' },
  ]);
  for (const hostile of ['javascript:alert(1)', '<a href="javascript:alert(1)">x</a>', 'JaVaScRiPt:alert(1)',
    'data:text/html,<script>alert(1)</script>', '<img src=x onerror=alert(1)>', 'file:///etc/passwd',
    'mailto:a@b.c', 'http:/x', 'https://']) {
    const parts = chatParts(hostile);
    assert.ok(parts.every((p) => !p.href), hostile);
    assert.equal(parts.map((p) => p.text).join(''), hostile);
  }
  const two = chatParts('(see http://a.example/x) and HTTPS://b.example/y?q=1#f, ok');
  assert.deepEqual(two.filter((p) => p.href).map((p) => p.href), ['http://a.example/x', 'https://b.example/y?q=1#f']);
  assert.equal(two.map((p) => p.text).join(''), '(see http://a.example/x) and HTTPS://b.example/y?q=1#f, ok');
  // A link cannot smuggle markup or quotes: they end it.
  assert.deepEqual(chatParts('https://x.example/"onmouseover="alert(1)').filter((p) => p.href).map((p) => p.href),
    ['https://x.example/']);
  assert.equal(safeHref('javascript://example.com/%0Aalert(1)'), null);
  assert.deepEqual(chatParts(''), []);
});

/** An in-memory Storage. */
function memory() {
  const m = new Map();
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)) };
}

const devs = [
  { kind: 'audioinput', deviceId: 'default', label: 'Default - Laptop mic' },
  { kind: 'audioinput', deviceId: 'mic-laptop', label: 'Laptop mic' },
  { kind: 'audioinput', deviceId: 'mic-headset', label: 'Headset' },
  { kind: 'videoinput', deviceId: 'cam-1', label: 'Front camera' },
  { kind: 'videoinput', deviceId: 'cam-2', label: 'USB camera' },
  { kind: 'audiooutput', deviceId: '', label: '' },
];

test('a remembered device is used when present, by id, else by label', () => {
  assert.deepEqual(pickDevice(devs, 'audioinput', { wanted: { deviceId: 'mic-headset', label: 'Headset' } }),
    { device: devs[2], fellBack: false });
  assert.deepEqual(pickDevice(devs, 'videoinput', { wanted: { deviceId: 'renewed-id', label: 'USB camera' } }),
    { device: devs[4], fellBack: false });
});

test('a device that is gone falls back to the one in use, else the default, and says so', () => {
  const unplugged = devs.filter((d) => d.deviceId !== 'mic-headset');
  assert.deepEqual(pickDevice(unplugged, 'audioinput', { wanted: { deviceId: 'mic-headset', label: 'Headset' }, current: null }),
    { device: devs[0], fellBack: true });
  assert.deepEqual(pickDevice(unplugged, 'audioinput', { current: 'mic-headset' }), { device: devs[0], fellBack: true });
  assert.deepEqual(pickDevice(devs, 'videoinput', { current: 'cam-2' }), { device: devs[4], fellBack: false });
  assert.deepEqual(pickDevice(devs, 'videoinput', {}), { device: devs[3], fellBack: false });
  assert.deepEqual(pickDevice(devs, 'audiooutput', {}), { device: null, fellBack: false }); // no id: not listable
});

test('choices are remembered per kind and garbage in storage is no choice', () => {
  const s = memory();
  assert.deepEqual(loadChoices(s), {});
  saveChoice(s, 'videoinput', { deviceId: 'cam-2', label: 'USB camera' });
  saveChoice(s, 'audioinput', { deviceId: 'mic-headset', label: 'Headset' });
  assert.deepEqual(loadChoices(s), { videoinput: { deviceId: 'cam-2', label: 'USB camera' },
    audioinput: { deviceId: 'mic-headset', label: 'Headset' } });
  s.setItem('meshcall.devices', '{not json');
  assert.deepEqual(loadChoices(s), {});
  s.setItem('meshcall.devices', JSON.stringify({ videoinput: { deviceId: 5 } }));
  assert.deepEqual(loadChoices(s), {});
  const broken = { getItem: () => { throw new Error('denied'); }, setItem: () => { throw new Error('denied'); } };
  assert.deepEqual(loadChoices(broken), {});
  saveChoice(broken, 'videoinput', { deviceId: 'x', label: 'y' }); // does not throw
  assert.deepEqual(loadChoices(null), {});
});

test('a hand lowers after a few seconds of speech, pauses included, but not for noise or a cough', () => {
  const t = new SpeakingTimer();
  const loud = SPEECH_LEVEL * 2;
  let now = 0;
  const feedFor = (seconds, level) => {
    let lowered = false;
    for (const end = now + seconds; now < end; now += 0.2) lowered = t.feed(level, now) || lowered;
    return lowered;
  };
  assert.equal(feedFor(10, SPEECH_LEVEL / 2), false); // room noise
  assert.equal(feedFor(1, loud), false); // a cough
  assert.equal(feedFor(PAUSE_SECONDS + 0.5, 0), false); // a long pause ends the run
  assert.equal(feedFor(SPEAK_SECONDS - 1, loud), false);
  assert.equal(feedFor(PAUSE_SECONDS / 2, 0), false); // a breath inside speech
  assert.equal(feedFor(1.5, loud), true);
  t.reset();
  assert.equal(t.feed(loud, now), false);
});
