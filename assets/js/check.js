// The device self-test (/check): runs on this device each thing a call needs, against
// this appliance, and shows it green or red with the fix in plain words. Standalone: it
// shares no code with the call page, so it still runs when something there is broken.

/** @typedef {'ok'|'fail'} Verdict */
/** @typedef {{iceServers: RTCIceServer[], iceTransportPolicy: RTCIceTransportPolicy}} IceConfig */

const WS_TIMEOUT = 5000;
// Chrome gives up on an unanswered STUN or TURN server after about 9.5 s.
const GATHER_TIMEOUT = 12000;

/** What the steps are called in the one-line summary. */
const SHORT = /** @type {Record<string, string>} */ ({
  secure: 'secure page', websocket: 'connection', camera: 'camera', microphone: 'microphone',
  host: 'network address', stun: 'STUN', turn: 'relay', autoplay: 'sound autoplay',
});

/** @type {Map<string, Verdict>} */
const results = new Map();

/**
 * @param {string} step
 * @param {Verdict} verdict
 * @param {string} detail  what was seen
 * @param {string} [fix]   what to do, when it failed
 */
function show(step, verdict, detail, fix = '') {
  const li = /** @type {HTMLElement} */ (document.querySelector(`[data-step="${step}"]`));
  li.dataset.state = verdict;
  /** @type {HTMLElement} */ (li.querySelector('.detail')).textContent = detail;
  /** @type {HTMLElement} */ (li.querySelector('.fix')).textContent = verdict === 'fail' ? fix : '';
  results.set(step, verdict);
}

function resetAll() {
  results.clear();
  for (const li of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('[data-step]'))) {
    li.dataset.state = 'pending';
    /** @type {HTMLElement} */ (li.querySelector('.detail')).textContent = '';
    /** @type {HTMLElement} */ (li.querySelector('.fix')).textContent = '';
  }
  const summary = /** @type {HTMLElement} */ (document.getElementById('summary'));
  summary.dataset.state = 'running';
  summary.textContent = 'Checking…';
}

function checkSecure() {
  if (window.isSecureContext && location.protocol === 'https:') {
    show('secure', 'ok', `${location.host} over HTTPS`);
  } else {
    show('secure', 'fail', 'this page is not on a secure (https://) address',
      'Open the join address that starts with https://. The first time on this device, open the ' +
      'appliance\'s http:// address with port 8080 and follow the steps to trust it.');
  }
}

/** @returns {Promise<void>} */
function checkWebSocket() {
  return new Promise((resolve) => {
    const started = performance.now();
    const fail = (/** @type {string} */ why) => {
      show('websocket', 'fail', why,
        'Something between this device and the appliance (a proxy, a firewall or a VPN) blocks the ' +
        'live connection. Join on the same network as the appliance, with the VPN off.');
      resolve();
    };
    let ws;
    try {
      ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
    } catch (err) {
      fail(`cannot open: ${err}`);
      return;
    }
    const timer = setTimeout(() => { ws.close(); fail(`no answer within ${WS_TIMEOUT / 1000} s`); }, WS_TIMEOUT);
    // A ping needs no room: the appliance answers it on any socket.
    ws.onopen = () => ws.send(JSON.stringify({ type: 'ping' }));
    ws.onmessage = (ev) => {
      let msg = null;
      try { msg = JSON.parse(String(ev.data)); } catch { /* not ours: wait for the pong */ }
      if (msg && msg.type === 'pong') {
        clearTimeout(timer);
        show('websocket', 'ok', `answered in ${Math.round(performance.now() - started)} ms`);
        ws.close(1000);
        resolve();
      }
    };
    ws.onerror = () => { clearTimeout(timer); fail('the connection was refused or broke off'); };
  });
}

/** @param {unknown} err @param {string} what */
function mediaFix(err, what) {
  const name = err instanceof Error ? err.name : '';
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return `The ${what} is blocked for this site. Allow it: tap the lock or camera icon next to the address ` +
      `(iPhone: Settings › Safari › ${what === 'camera' ? 'Camera' : 'Microphone'}), then check again.`;
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError') {
    return `This device has no ${what}. Connect one, or join without it: the others will still ` +
      (what === 'camera' ? 'hear you.' : 'see you.');
  }
  if (name === 'NotReadableError' || name === 'AbortError') {
    return `Another app is using the ${what}. Close it (another call, the camera app), then check again.`;
  }
  return `The browser could not open the ${what} (${name || err}). Try another browser, then check again.`;
}

/**
 * Ask for camera and microphone together (one prompt); if that fails, each alone to
 * tell which one is the problem.
 * @returns {Promise<MediaStream|null>}
 */
async function checkMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    const fix = 'This browser gives no camera or microphone to this page: open it by its https:// address in a current browser.';
    show('camera', 'fail', 'not available', fix);
    show('microphone', 'fail', 'not available', fix);
    return null;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    show('camera', 'ok', describe(stream.getVideoTracks()[0]));
    show('microphone', 'ok', describe(stream.getAudioTracks()[0]));
    return stream;
  } catch { /* one of them failed: ask for each alone below */ }
  const tracks = [];
  for (const [kind, what] of /** @type {const} */ ([['video', 'camera'], ['audio', 'microphone']])) {
    try {
      const alone = await navigator.mediaDevices.getUserMedia({ [kind]: true });
      show(what, 'ok', describe(alone.getTracks()[0]));
      tracks.push(...alone.getTracks());
    } catch (err) {
      show(what, 'fail', err instanceof Error ? err.name : String(err), mediaFix(err, what));
    }
  }
  return tracks.length ? new MediaStream(tracks) : null;
}

/** @param {MediaStreamTrack|undefined} track */
function describe(track) {
  if (!track) return 'none';
  const s = track.getSettings();
  return track.kind === 'video' && s.width ? `${track.label || 'camera'}, ${s.width}×${s.height}` : track.label || track.kind;
}

/** @param {MediaStream} stream */
function preview(stream) {
  const video = /** @type {HTMLVideoElement} */ (document.getElementById('preview'));
  video.srcObject = stream;
  video.play().catch(() => { /* a muted preview that will not play is no failure of the device */ });
  if (!stream.getAudioTracks().length || !window.AudioContext) return;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const meter = /** @type {HTMLMeterElement} */ (document.getElementById('level'));
  const draw = () => {
    analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    for (const v of samples) peak = Math.max(peak, Math.abs(v));
    meter.value = peak;
    if (stream.getAudioTracks().some((t) => t.readyState === 'live')) requestAnimationFrame(draw);
  };
  ctx.resume().finally(draw);
}

/** @returns {Promise<IceConfig|null>} */
async function iceConfig() {
  try {
    const resp = await fetch('/check/ice', { cache: 'no-store' });
    if (resp.ok) return /** @type {IceConfig} */ (await resp.json());
  } catch { /* reported by the steps below */ }
  return null;
}

/**
 * Gather candidates with the appliance's STUN and TURN, as a call would.
 * @param {IceConfig} config
 * @returns {Promise<{types: Map<string, string>, errors: {url: string, code: number, text: string}[], done: boolean}>}
 */
async function gather(config) {
  const pc = new RTCPeerConnection({ iceServers: config.iceServers, iceTransportPolicy: 'all' });
  /** @type {Map<string, string>} type → address, the first of each */
  const types = new Map();
  /** @type {{url: string, code: number, text: string}[]} */
  const errors = [];
  pc.createDataChannel('check');
  const done = new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), GATHER_TIMEOUT);
    pc.onicecandidate = (ev) => {
      if (!ev.candidate) { clearTimeout(timer); resolve(true); return; }
      const c = ev.candidate;
      if (c.type && !types.has(c.type)) types.set(c.type, `${c.address || '?'} ${c.protocol || ''}`.trim());
    };
  });
  pc.onicecandidateerror = (ev) => {
    const e = /** @type {RTCPeerConnectionIceErrorEvent} */ (ev);
    errors.push({ url: e.url, code: e.errorCode, text: e.errorText });
  };
  await pc.setLocalDescription();
  const finished = /** @type {boolean} */ (await done);
  pc.close();
  return { types, errors, done: finished };
}

/** @param {boolean} haveMedia */
async function checkIce(haveMedia) {
  if (!window.RTCPeerConnection) {
    const fix = 'This browser cannot make calls (no WebRTC). Use a current Chrome, Edge, Firefox or Safari.';
    for (const step of ['host', 'stun', 'turn']) show(step, 'fail', 'no WebRTC', fix);
    return;
  }
  const config = await iceConfig();
  if (!config) {
    for (const step of ['host', 'stun', 'turn']) {
      show(step, 'fail', 'the appliance did not say which servers to use',
        'Reload this page; if it stays red, restart the appliance.');
    }
    return;
  }
  const { types, errors, done } = await gather(config);
  const urls = config.iceServers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
  const stunUrls = urls.filter((u) => u.startsWith('stun:'));
  const turnUrls = urls.filter((u) => u.startsWith('turn:') || u.startsWith('turns:'));
  const errorsFor = (/** @type {string[]} */ list) => errors.filter((e) => list.some((u) => e.url && u.startsWith(e.url.split('?')[0])));

  if (types.has('host')) show('host', 'ok', types.get('host') || '');
  else {
    show('host', 'fail', 'the browser offers no address of this device',
      haveMedia ? 'Connect this device to the same network as the appliance (Wi-Fi, not only mobile data).'
        : 'Allow camera and microphone first (browsers hide the device\'s address until then), then check again.');
  }

  const noServers = 'The appliance runs no STUN/TURN server. The person running it starts meshcall without --no-turn.';
  if (!stunUrls.length) show('stun', 'fail', 'no STUN server offered', noServers);
  else if (types.has('srflx')) show('stun', 'ok', `seen as ${types.get('srflx')}`);
  else if (done && !errorsFor(stunUrls).length) {
    // A reflexive address equal to this device's own is not reported as a candidate: the
    // server answered, and nothing translates addresses between this device and it.
    show('stun', 'ok', 'the appliance answered; no address translation on the way');
  } else {
    const e = errorsFor(stunUrls)[0];
    show('stun', 'fail', e ? `${e.code} ${e.text}` : 'no answer',
      'UDP to the appliance\'s port 3478 does not get through. Join on the same network as the appliance; ' +
      'the person running it lets UDP and TCP port 3478 through the firewall.');
  }

  if (!turnUrls.length) show('turn', 'fail', 'no relay offered', noServers);
  else if (types.has('relay')) show('turn', 'ok', `relay address ${types.get('relay')}`);
  else {
    const e = errorsFor(turnUrls)[0];
    show('turn', 'fail', e ? `${e.code} ${e.text}` : 'no relay address',
      e && (e.code === 401 || e.code === 403)
        ? 'The relay refused this device\'s credentials: reload this page (they expire); if it stays red, the clocks of device and appliance differ a lot.'
        : 'The appliance\'s relay cannot be reached: the person running it lets UDP and TCP port 3478 and ' +
          'UDP ports 49160–49999 through the firewall.');
  }
}

/** A tenth of a second of silence as a WAV file: something to play without a sound. */
function silentWav() {
  const rate = 8000, samples = 800;
  const buf = new DataView(new ArrayBuffer(44 + samples));
  const text = (/** @type {number} */ at, /** @type {string} */ s) => { for (let i = 0; i < s.length; i++) buf.setUint8(at + i, s.charCodeAt(i)); };
  text(0, 'RIFF'); buf.setUint32(4, 36 + samples, true); text(8, 'WAVE'); text(12, 'fmt ');
  buf.setUint32(16, 16, true); buf.setUint16(20, 1, true); buf.setUint16(22, 1, true);
  buf.setUint32(24, rate, true); buf.setUint32(28, rate, true); buf.setUint16(32, 1, true);
  buf.setUint16(34, 8, true); text(36, 'data'); buf.setUint32(40, samples, true);
  for (let i = 0; i < samples; i++) buf.setUint8(44 + i, 128); // 8-bit PCM silence is 128
  return new Blob([buf], { type: 'audio/wav' });
}

async function checkAutoplay() {
  const url = URL.createObjectURL(silentWav());
  const audio = new Audio(url);
  const button = /** @type {HTMLButtonElement} */ (document.getElementById('sound'));
  try {
    await audio.play();
    show('autoplay', 'ok', 'allowed');
    button.hidden = true;
  } catch (err) {
    show('autoplay', 'fail', err instanceof Error ? err.name : String(err),
      'This browser plays sound only after a tap. In a call, tap the page once when it asks; ' +
      'here, tap "Tap to test sound".');
    button.hidden = false;
  } finally {
    audio.pause();
    URL.revokeObjectURL(url);
  }
}

function summarize() {
  const steps = [...document.querySelectorAll('[data-step]')].map((li) => /** @type {HTMLElement} */ (li).dataset.step || '');
  const failed = steps.filter((s) => results.get(s) !== 'ok');
  const ua = navigator.userAgent;
  const browser = (/(Edg|Firefox|Chrome|Version)\/(\d+)/.exec(ua) || []).slice(1, 3).join(' ').replace('Version', 'Safari').replace('Edg', 'Edge');
  const system = /iPhone|iPad/.test(ua) ? 'iOS' : /Android/.test(ua) ? 'Android' : /Windows/.test(ua) ? 'Windows'
    : /Mac OS X/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : 'unknown system';
  const summary = /** @type {HTMLElement} */ (document.getElementById('summary'));
  summary.dataset.state = failed.length ? 'fail' : 'ok';
  summary.textContent = failed.length
    ? `meshcall check: ${steps.length - failed.length} of ${steps.length} OK, failed: ${failed.map((s) => SHORT[s] || s).join(', ')} (${browser || 'browser'} on ${system})`
    : `meshcall check: all ${steps.length} OK (${browser || 'browser'} on ${system})`;
}

/** @type {MediaStream|null} */
let stream = null;

async function run() {
  resetAll();
  for (const t of stream ? stream.getTracks() : []) t.stop();
  checkSecure();
  await checkWebSocket();
  stream = await checkMedia();
  if (stream) preview(stream);
  await checkIce(stream !== null);
  await checkAutoplay();
  summarize();
}

/** @type {HTMLButtonElement} */ (document.getElementById('again')).addEventListener('click', () => { run(); });
/** @type {HTMLButtonElement} */ (document.getElementById('sound')).addEventListener('click', async () => {
  await checkAutoplay();
  summarize();
});
run();
