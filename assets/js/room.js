// The meeting page: pre-join screen, the grid, the controls, the invite dialog and
// start-up. The call itself (peers, connections, repair) lives in the DOM-free call.js;
// this module draws what it reports.
// Evaluated before this module's body (a dependency), wherever it is first loaded from: the
// early socket and camera are then always asked for before main() looks for them.
import './early-media.js';
import { Call } from './call.js';
import { setupChat } from './chat-panel.js';
import { setupDetails } from './details.js';
import { setupDevices } from './device-panel.js';
import { DEFAULT_NAME, displayMedia, displayOptions, RoomDisplay } from './display.js';
import { SIGNALING_URL, takeEarly } from './early-socket.js';
import { Grid } from './grid.js';
import { icon } from './icons.js';
import { onKey } from './keys.js';
import { MicLevel } from './level.js';
import { getLocalMedia } from './media.js';
import { cleanName, ROOM_RE, saveName, savedName } from './names.js';
import { Presenter } from './present.js';
import { Quality } from './quality.js';
import { copy, linkPasscode, setupRoomControls } from './room-controls.js';
import { SignalingClient } from './signaling.js';
import { ViewReporter } from './views.js';

/** @typedef {import('./signaling.js').PeerInfo} PeerInfo */

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

const params = new URLSearchParams(location.search);
const roomName = decodeURIComponent(location.pathname.replace(/^\/r\//, '').replace(/\/.*$/, ''));
/** a room display (`?display=1`): unattended, receive-only, no controls */
const display = displayOptions(params);

const call = new Call();
// `?adapt=0` sends as a page without the policy would (the bench's baseline).
const adapt = params.get('adapt') !== '0';
const quality = new Quality(call, { enabled: adapt });
/** the display name we join with */
let myName = '';

/** @type {Grid} */
let grid;
/** @type {SignalingClient|null} */
let signalingClient = null;
/** Chat, raise hand, lock and passcodes: each attaches to the signaling client on join.
 * @type {{attach(s: SignalingClient): void}[]} */
let features = [];

// ---------------------------------------------------------------- test hook
// Read-only views for tests and diagnostics; nothing here can change the call
// except dropSignaling(), which behaves like a network failure.
Object.defineProperty(window, 'meshcall', {
  value: Object.freeze({
    peers: () => new Map([...call.peers].map(([id, p]) => [id, p.pc])),
    state: () => ({
      phase: call.phase,
      id: call.id,
      room: roomName,
      signaling: call.signaling ? call.signaling.state : 'idle',
      mic: call.sendingAudio,
      camera: call.sendingVideo,
      peers: Object.fromEntries([...call.peers].map(([id, p]) => [id, p.state])),
      ...call.counters(),
      serverAway: call.serverAway,
      liveness: signalingClient ? signalingClient.livenessFigures() : null,
    }),
    localTracks: () => (call.media ? call.media.stream.getTracks() : []),
    quality: () => ({
      enabled: quality.enabled,
      applied: Object.fromEntries(quality.applied),
      reasons: Object.fromEntries(quality.reasons),
      views: Object.fromEntries(quality.views),
    }),
    trace: (/** @type {string} */ id) => call.traceOf(id),
    dropSignaling: () => call.signaling && call.signaling.drop(),
  }),
});

// ---------------------------------------------------------------- messages
function showMessage(/** @type {string} */ title, /** @type {string} */ text, retry = false) {
  $('prejoin').hidden = true;
  $('call').hidden = true;
  $('message-title').textContent = title;
  $('message-text').textContent = text;
  $('message-retry').hidden = !retry;
  $('message').hidden = false;
}

function banner(/** @type {string|null} */ text) {
  const el = $('banner');
  el.textContent = text || '';
  el.hidden = !text;
}

function notice(/** @type {string|null} */ text) {
  const el = $('notice');
  el.textContent = text || '';
  el.hidden = !text;
}

// ---------------------------------------------------------------- controls
function setToggle(/** @type {HTMLElement} */ btn, /** @type {string} */ what, /** @type {string} */ iconName,
  /** @type {boolean} */ on, /** @type {boolean} */ available, /** @type {string} */ key) {
  btn.replaceChildren(icon(iconName, !on || !available));
  btn.setAttribute('aria-pressed', String(on && available));
  btn.setAttribute('aria-label', available ? `${what} ${on ? 'on' : 'off'} (${key})` : `${what} not available`);
  btn.title = btn.getAttribute('aria-label') || '';
  btn.toggleAttribute('disabled', !available);
  btn.classList.toggle('off', !on || !available);
}

function renderControls() {
  const mic = call.micAvailable;
  const cam = call.camAvailable;
  setToggle($('ctl-mic'), 'Microphone', 'mic', call.micOn, mic, 'm');
  setToggle($('ctl-cam'), 'Camera', 'cam', call.camOn, cam, 'v');
  const pm = $('prejoin-mic');
  const pc = $('prejoin-cam');
  pm.textContent = mic ? (call.micOn ? 'Mic on' : 'Mic off') : 'No mic';
  pc.textContent = cam ? (call.camOn ? 'Camera on' : 'Camera off') : 'No camera';
  pm.setAttribute('aria-pressed', String(call.sendingAudio));
  pc.setAttribute('aria-pressed', String(call.sendingVideo));
  pm.toggleAttribute('disabled', !mic);
  pc.toggleAttribute('disabled', !cam);
  $('preview-off').hidden = call.sendingVideo;
}

function toggleMic() {
  if (call.micAvailable) call.setMic(!call.micOn);
}

function toggleCam() {
  if (call.camAvailable) call.setCamera(!call.camOn);
}

// ---------------------------------------------------------------- drawing the call
function audioBlocked() {
  $('unmute-audio').hidden = false;
}

function enableAudio() {
  for (const tile of grid.tiles.values()) {
    if (!tile.self) {
      tile.video.muted = false;
      tile.play(audioBlocked);
    }
  }
  $('unmute-audio').hidden = true;
}

/** The tile of a remote participant; every connection has one, whatever came first. */
function tileOf(/** @type {string} */ id) {
  const info = call.infos.get(id);
  return grid.get(id) || grid.add({ id, name: info ? info.name : '…' });
}

function showInfo(/** @type {string} */ id, /** @type {PeerInfo|null} */ info) {
  const tile = grid.add({ id, name: info ? info.name : '…' });
  if (info) {
    tile.setName(info.name);
    tile.setMedia(info.audio, info.video);
  }
}

/** Draw what the call reports; each handler reads the event's detail only. */
function drawCall() {
  /** @type {Record<string, (d: any) => void>} */
  const on = {
    'peer-added': (d) => showInfo(d.id, d.info),
    'peer-updated': (d) => showInfo(d.id, d.info),
    'peer-removed': (d) => grid.remove(d.id),
    'peer-state': (d) => tileOf(d.id).setState(d.state),
    'remote-stream': (d) => tileOf(d.id).setStream(d.stream, audioBlocked),
    joined: (d) => {
      if (d.previousId && d.previousId !== d.id) grid.rekey(d.previousId, d.id);
    },
    media: (d) => {
      const self = call.id ? grid.get(call.id) : null;
      if (self) self.setMedia(d.audio, d.video);
      renderControls();
    },
    phase: (d) => showPhase(d),
    notice: (d) => notice(d.value),
    error: (d) => console.warn('signaling error', d),
  };
  for (const [type, fn] of Object.entries(on)) {
    call.addEventListener(type, (ev) => fn(/** @type {CustomEvent} */ (ev).detail));
  }
}

/** @param {{phase: import('./call.js').Phase, serverAway: boolean, note: string, maxPeers?: number|null, value?: string, lockedBy?: string|null}} d */
function showPhase(d) {
  // A display shows no message to dismiss: its idle screen says it and it tries again.
  if (display && (d.phase === 'full' || d.phase === 'locked' || d.phase === 'error' || d.phase === 'left')) return;
  if (d.phase === 'connecting') {
    banner('Connecting…');
  } else if (d.phase === 'joined') {
    banner(null);
  } else if (d.phase === 'reconnecting') {
    banner(d.serverAway
      ? `The meeting server went away — reconnecting… ${d.note} (the call continues meanwhile)`
      : 'Connection to the meeting server lost — reconnecting… (the call continues meanwhile)');
  } else if (d.phase === 'full') {
    // An older server names the limit only in its own words (`value`).
    const why = d.maxPeers ? `This room is full: a mesh call stays smooth with at most ${d.maxPeers} people.`
      : `${d.value || 'This room is full.'} A mesh call stays smooth with only a few people.`;
    showMessage('This room is full', `${why} Try again later, or start another room.`, true);
  } else if (d.phase === 'locked') {
    const by = d.lockedBy ? `${d.lockedBy} locked it` : 'Someone in it locked it';
    showMessage('This room is locked', `${by}: nobody new can join. Ask them to unlock it, then try again.`, true);
  } else if (d.phase === 'error') {
    showMessage('No such room', d.value || '');
  } else if (d.phase === 'left') {
    showMessage('You left the meeting', 'Thanks for joining.', true);
  }
}

/** Tell each sender how large we show it (quality.js caps what it sends to that). */
function reportViews() {
  const views = new ViewReporter($('grid'), (id, view) => {
    if (signalingClient) signalingClient.sendSignal(id, { view });
  });
  call.addEventListener('peer-state', (ev) => {
    const d = /** @type {CustomEvent} */ (ev).detail;
    if (d.state === 'connected') views.forget(d.id);
  });
  call.addEventListener('peer-removed', (ev) => views.sent.delete(/** @type {CustomEvent} */ (ev).detail.id));
}

// ---------------------------------------------------------------- join / leave
/** @param {WebSocket|null} early  the signaling socket, if opened while the camera started */
function join(early = null) {
  const m = /** @type {import('./media.js').LocalMedia} */ (call.media);
  $('prejoin').hidden = true;
  $('call').hidden = false;
  notice(m.note);
  // Our real id comes with the welcome; the self tile is re-keyed then. A display has none.
  if (!display) {
    const self = grid.add({ id: 'self', name: myName, self: true });
    self.video.srcObject = m.stream;
    self.play();
    self.setMedia(call.sendingAudio, call.sendingVideo);
  }
  renderControls();
  signalingClient = new SignalingClient(SIGNALING_URL,
    { room: roomName, name: myName, audio: call.sendingAudio, video: call.sendingVideo, ...linkPasscode() }, early);
  for (const f of features) f.attach(signalingClient);
  call.join(signalingClient);
}

// ---------------------------------------------------------------- invite
function openInvite() {
  const link = `${location.origin}/r/${encodeURIComponent(roomName)}`;
  const input = /** @type {HTMLInputElement} */ ($('invite-link'));
  input.value = link;
  const qr = /** @type {HTMLImageElement} */ ($('invite-qr'));
  if (!qr.src) qr.src = `/qr/${encodeURIComponent(roomName)}.svg`;
  $('invite-copied').hidden = true;
  /** @type {HTMLDialogElement} */ ($('invite')).showModal();
}

async function copyInvite() {
  await copy(/** @type {HTMLInputElement} */ ($('invite-link')));
  $('invite-copied').hidden = false;
}

// ---------------------------------------------------------------- start
function wireControls() {
  $('ctl-mic').addEventListener('click', toggleMic);
  $('ctl-cam').addEventListener('click', toggleCam);
  $('ctl-leave').addEventListener('click', () => call.leave());
  $('ctl-invite').addEventListener('click', openInvite);
  $('ctl-invite').replaceChildren(icon('invite'));
  $('ctl-leave').replaceChildren(icon('leave'));
  $('invite-copy').addEventListener('click', copyInvite);
  $('unmute-audio').addEventListener('click', enableAudio);
  $('prejoin-mic').addEventListener('click', toggleMic);
  $('prejoin-cam').addEventListener('click', toggleCam);
  $('message-retry').addEventListener('click', () => location.reload());
  onKey(call, 'm', toggleMic);
  onKey(call, 'v', toggleCam);
  window.addEventListener('pagehide', () => {
    if (call.signaling && call.phase !== 'left') call.signaling.leave();
  });
}

async function main() {
  // Opened while this page loaded, if its link joins at once (early-media.js).
  const ahead = takeEarly();
  if (!ROOM_RE.test(roomName)) {
    if (ahead) ahead.close();
    showMessage('No such room', 'A room name is 1 to 40 letters, digits, "-" or "_".');
    return;
  }
  document.title = `${roomName} — meshcall`;
  grid = new Grid($('grid'), $('stage'));
  drawCall();
  if (adapt) reportViews();
  setupDetails({ call, quality, tileOf: (id) => { const t = grid.get(id); return t ? t.el : null; } });
  wireControls();
  const mic = new MicLevel(call);
  call.addEventListener('phase', (ev) => {
    const { phase } = /** @type {CustomEvent} */ (ev).detail;
    if (phase === 'left' || phase === 'full' || phase === 'error' || phase === 'locked') mic.close();
  });
  const devices = setupDevices(call, { notice, mic });
  features = [setupChat(call), setupRoomControls(call, grid, { room: roomName, notice, mic })];
  if (display) new RoomDisplay({ call, grid, room: roomName });
  new Presenter({ call, grid, mic, options: { display: !!display, inRoom: params.get('inroom') === '1', notice } });
  // A room display joins at once, under a name that says what it is.
  const given = cleanName(params.get('name') || (display ? DEFAULT_NAME : ''));
  if (!given) {
    $('prejoin-room').textContent = roomName;
    const input = /** @type {HTMLInputElement} */ ($('prejoin-name'));
    input.value = savedName();
    $('prejoin').hidden = false;
  }
  // Joining at once (a shared link, a room display): the signaling socket opens while
  // the camera starts, so both waits overlap. The join itself waits for the media state.
  const early = given ? ahead || new WebSocket(SIGNALING_URL) : null;
  if (!given && ahead) ahead.close(); // a name that cleans to nothing: the page asks for one
  // Permission first: Chromium offers no usable ICE candidates before it.
  const media = display ? await displayMedia(display) : await getLocalMedia();
  call.useMedia(media);
  // A receive-only display has no device to watch, and must not open one by remembering it.
  if (!display || display.camera || display.mic) devices.start();
  const preview = /** @type {HTMLVideoElement} */ ($('preview'));
  // A video element given a stream without tracks never loads, and holds the page's
  // load event with it (a room display sends nothing).
  if (media.stream.getTracks().length) {
    preview.srcObject = media.stream;
    preview.play().catch(() => {});
  }
  renderControls();
  if (media.note) {
    $('prejoin-note').textContent = media.note;
    $('prejoin-note').hidden = false;
  }
  if (given) {
    myName = given;
    join(early);
    return;
  }
  $('prejoin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = cleanName(/** @type {HTMLInputElement} */ ($('prejoin-name')).value);
    if (!name) return;
    saveName(name);
    myName = name;
    preview.srcObject = null;
    join();
  });
}

main();
