// The meeting page: pre-join screen, the call (grid, controls, states) and the mesh.
// It ties the DOM-free SignalingClient and Peer objects to the DOM.
import { Grid } from './grid.js';
import { icon } from './icons.js';
import { getLocalMedia } from './media.js';
import { cleanName, ROOM_RE, saveName, savedName } from './names.js';
import { Peer } from './peer.js';
import { SignalingClient } from './signaling.js';

/** @typedef {import('./signaling.js').PeerInfo} PeerInfo */
/** @typedef {import('./signaling.js').Welcome} Welcome */

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

const params = new URLSearchParams(location.search);
const roomName = decodeURIComponent(location.pathname.replace(/^\/r\//, '').replace(/\/.*$/, ''));
const SIGNALING_URL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;

/** Everything the call knows; one object, changed only by the functions below. */
const call = {
  /** @type {import('./media.js').LocalMedia|null} */
  media: null,
  micOn: true,
  camOn: true,
  name: '',
  /** @type {string|null} */
  id: null,
  /** @type {SignalingClient|null} */
  signaling: null,
  /** @type {Map<string, Peer>} */
  peers: new Map(),
  /** @type {Map<string, PeerInfo>} */
  infos: new Map(),
  /** @type {RTCConfiguration} */
  config: { iceServers: [], iceTransportPolicy: 'all' },
  maxPeers: 0,
  /** @type {'prejoin'|'connecting'|'joined'|'reconnecting'|'full'|'left'|'error'} */
  phase: 'prejoin',
  serverAway: false,
  /** what the server said when it went away */
  awayNote: '',
  iceRestarts: 0,
  rebuilds: 0,
};

/** @type {Grid} */
let grid;

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
      mic: sendingAudio(),
      camera: sendingVideo(),
      peers: Object.fromEntries([...call.peers].map(([id, p]) => [id, p.state])),
      iceRestarts: call.iceRestarts + [...call.peers.values()].reduce((n, p) => n + p.iceRestarts, 0),
      rebuilds: call.rebuilds,
      serverAway: call.serverAway,
    }),
    localTracks: () => (call.media ? call.media.stream.getTracks() : []),
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

// ---------------------------------------------------------------- local media
function micAvailable() {
  return !!(call.media && call.media.audio);
}
function camAvailable() {
  return !!(call.media && call.media.video);
}
function sendingAudio() {
  return call.micOn && micAvailable();
}
function sendingVideo() {
  return call.camOn && camAvailable();
}
function localTracks() {
  const m = /** @type {import('./media.js').LocalMedia} */ (call.media);
  return { audio: sendingAudio() ? m.audio : null, video: sendingVideo() ? m.video : null };
}

function applyMedia() {
  const m = call.media;
  if (!m) return;
  if (m.audio) m.audio.enabled = call.micOn;
  if (m.video) m.video.enabled = call.camOn;
  const tracks = localTracks();
  for (const peer of call.peers.values()) {
    peer.setTrack('audio', tracks.audio).catch((err) => console.warn('replaceTrack audio', err));
    peer.setTrack('video', tracks.video).catch((err) => console.warn('replaceTrack video', err));
  }
  if (call.signaling) call.signaling.setMedia(sendingAudio(), sendingVideo());
  const self = call.id && grid ? grid.get(call.id) : null;
  if (self) self.setMedia(sendingAudio(), sendingVideo());
  renderControls();
}

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
  setToggle($('ctl-mic'), 'Microphone', 'mic', call.micOn, micAvailable(), 'm');
  setToggle($('ctl-cam'), 'Camera', 'cam', call.camOn, camAvailable(), 'v');
  const pm = $('prejoin-mic');
  const pc = $('prejoin-cam');
  pm.textContent = micAvailable() ? (call.micOn ? 'Mic on' : 'Mic off') : 'No mic';
  pc.textContent = camAvailable() ? (call.camOn ? 'Camera on' : 'Camera off') : 'No camera';
  pm.setAttribute('aria-pressed', String(sendingAudio()));
  pc.setAttribute('aria-pressed', String(sendingVideo()));
  pm.toggleAttribute('disabled', !micAvailable());
  pc.toggleAttribute('disabled', !camAvailable());
  $('preview-off').hidden = sendingVideo();
}

function toggleMic() {
  if (!micAvailable()) return;
  call.micOn = !call.micOn;
  applyMedia();
}

function toggleCam() {
  if (!camAvailable()) return;
  call.camOn = !call.camOn;
  applyMedia();
}

// ---------------------------------------------------------------- peers
function peerTile(/** @type {string} */ id) {
  const info = call.infos.get(id);
  const tile = grid.add({ id, name: info ? info.name : '…' });
  if (info) tile.setMedia(info.audio, info.video);
  return tile;
}

/** Create (or replace) the connection to one peer. */
function connect(/** @type {string} */ id, /** @type {boolean} */ initiator) {
  const old = call.peers.get(id);
  if (old) {
    call.iceRestarts += old.iceRestarts;
    old.close();
  }
  const sig = /** @type {SignalingClient} */ (call.signaling);
  const m = /** @type {import('./media.js').LocalMedia} */ (call.media);
  const peer = new Peer({
    id,
    localId: /** @type {string} */ (call.id),
    config: call.config,
    tracks: localTracks(),
    stream: m.stream,
    send: (payload) => sig.sendSignal(id, payload),
    initiator,
  });
  call.peers.set(id, peer);
  const tile = peerTile(id);
  tile.setState(old ? 'reconnecting' : 'connecting');
  peer.addEventListener('state', () => {
    if (call.peers.get(id) === peer) tile.setState(peer.state);
  });
  peer.addEventListener('track', () => tile.setStream(peer.remoteStream, audioBlocked));
  peer.addEventListener('rebuild', () => {
    if (call.peers.get(id) !== peer) return;
    call.rebuilds += 1;
    // Both ends drop the connection; the impolite end (smaller id) offers a fresh one.
    connect(id, !peer.polite);
  });
  return peer;
}

function disconnect(/** @type {string} */ id) {
  const peer = call.peers.get(id);
  if (peer) {
    call.iceRestarts += peer.iceRestarts;
    peer.close();
  }
  call.peers.delete(id);
  call.infos.delete(id);
  grid.remove(id);
}

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

// ---------------------------------------------------------------- signaling
/** The RTCConfiguration the server hands out (in the welcome, and fresh later). */
function iceConfig(/** @type {{iceServers: RTCIceServer[], iceTransportPolicy: RTCIceTransportPolicy}} */ m) {
  return { iceServers: m.iceServers || [], iceTransportPolicy: m.iceTransportPolicy || 'all' };
}

function onWelcome(/** @type {Welcome} */ w) {
  call.config = iceConfig(w);
  call.maxPeers = w.maxPeers;
  const fresh = !w.resumed || w.id !== call.id;
  if (fresh) {
    // A newcomer (again): drop every old connection and call everyone present.
    for (const id of [...call.peers.keys()]) disconnect(id);
    if (call.id && call.id !== w.id) grid.rekey(call.id, w.id);
    call.id = w.id;
    call.infos.clear();
    for (const p of w.peers) call.infos.set(p.id, p);
    for (const p of w.peers) connect(p.id, true);
  } else {
    // Resumed: same id, the connections were never touched. Catch up on who came and went.
    const present = new Set(w.peers.map((p) => p.id));
    for (const id of [...call.peers.keys()]) if (!present.has(id)) disconnect(id);
    for (const p of w.peers) {
      onPeerUpdated(p);
      if (!call.peers.has(p.id)) connect(p.id, true);
    }
  }
  call.phase = 'joined';
  call.serverAway = false;
  banner(null);
  // The others learn our current media state from the join frame itself.
}

/** Fresh TURN credentials: used for every connection from now on, open ones included. */
function onIceServers(/** @type {{iceServers: RTCIceServer[], iceTransportPolicy: RTCIceTransportPolicy}} */ m) {
  call.config = iceConfig(m);
  for (const peer of call.peers.values()) {
    try {
      peer.pc.setConfiguration({ ...peer.pc.getConfiguration(), ...call.config });
    } catch (err) {
      console.warn(`peer ${peer.id}: new ICE servers refused`, err);
    }
  }
}

function onPeerJoined(/** @type {PeerInfo} */ p) {
  call.infos.set(p.id, p);
  connect(p.id, false);
}

/** What the room says about a peer: remember it and show it on its tile. */
function onPeerUpdated(/** @type {PeerInfo} */ p) {
  call.infos.set(p.id, p);
  const tile = grid.get(p.id);
  if (tile) {
    tile.setName(p.name);
    tile.setMedia(p.audio, p.video);
  }
}

function onSignal(/** @type {{from: string, description?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit|null}} */ msg) {
  let peer = call.peers.get(msg.from);
  if (!peer || (msg.description && peer.isFromNewSession(msg.description))) {
    if (peer) call.rebuilds += 1;
    peer = connect(msg.from, false); // the other end started a fresh connection
  }
  peer.handleSignal(msg);
}

function onError(/** @type {{error: string, value: string, fatal: boolean}} */ e) {
  if (e.error === 'room-full') {
    call.phase = 'full';
    if (call.signaling) call.signaling.stop();
    for (const id of [...call.peers.keys()]) disconnect(id);
    stopLocal();
    showMessage('This room is full', `${e.value} A mesh call stays smooth with at most ${call.maxPeers || 'a few'} people. Try again later, or start another room.`, true);
    return;
  }
  if (e.error === 'bad-name') {
    notice(e.value);
    return;
  }
  if (e.error === 'bad-room') {
    call.phase = 'error';
    if (call.signaling) call.signaling.stop();
    showMessage('No such room', e.value);
    return;
  }
  console.warn('signaling error', e);
}

function onSignalingState(/** @type {import('./signaling.js').SignalingState} */ state) {
  if (call.phase === 'full' || call.phase === 'left' || call.phase === 'error') return;
  if (state === 'lost') {
    call.phase = 'reconnecting';
    banner(call.serverAway
      ? `The meeting server went away — reconnecting… ${call.awayNote} (the call continues meanwhile)`
      : 'Connection to the meeting server lost — reconnecting… (the call continues meanwhile)');
  }
}

function onShutdown(/** @type {{value: string}} */ s) {
  // The close that follows at once turns this into the 'lost' banner, which says why.
  call.serverAway = true;
  call.awayNote = s.value || '';
}

// ---------------------------------------------------------------- join / leave
/** @param {WebSocket|null} early  the signaling socket, if opened while the camera started */
function join(early = null) {
  const m = /** @type {import('./media.js').LocalMedia} */ (call.media);
  $('prejoin').hidden = true;
  $('call').hidden = false;
  call.phase = 'connecting';
  banner('Connecting…');
  notice(m.note);
  const self = grid.add({ id: 'self', name: call.name, self: true });
  self.video.srcObject = m.stream;
  self.play();
  self.setMedia(sendingAudio(), sendingVideo());
  call.id = 'self'; // our real id comes with the welcome; the self tile is re-keyed then
  renderControls();
  const sig = new SignalingClient(SIGNALING_URL, { room: roomName, name: call.name, audio: sendingAudio(), video: sendingVideo() },
    early);
  call.signaling = sig;
  sig.addEventListener('welcome', (ev) => onWelcome(/** @type {CustomEvent} */ (ev).detail));
  sig.addEventListener('peer-joined', (ev) => onPeerJoined(/** @type {CustomEvent} */ (ev).detail));
  sig.addEventListener('peer-updated', (ev) => onPeerUpdated(/** @type {CustomEvent} */ (ev).detail));
  sig.addEventListener('peer-left', (ev) => disconnect(/** @type {CustomEvent} */ (ev).detail.id));
  sig.addEventListener('signal', (ev) => onSignal(/** @type {CustomEvent} */ (ev).detail));
  sig.addEventListener('error', (ev) => onError(/** @type {CustomEvent} */ (ev).detail));
  sig.addEventListener('ice-servers', (ev) => onIceServers(/** @type {CustomEvent} */ (ev).detail));
  sig.addEventListener('shutdown', (ev) => onShutdown(/** @type {CustomEvent} */ (ev).detail));
  sig.addEventListener('state', (ev) => onSignalingState(/** @type {CustomEvent} */ (ev).detail.state));
  sig.start();
}

function stopLocal() {
  if (call.media) for (const t of call.media.stream.getTracks()) t.stop();
}

function leave() {
  call.phase = 'left';
  if (call.signaling) call.signaling.leave();
  for (const id of [...call.peers.keys()]) disconnect(id);
  stopLocal();
  showMessage('You left the meeting', 'Thanks for joining.', true);
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
  const input = /** @type {HTMLInputElement} */ ($('invite-link'));
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select();
    document.execCommand('copy');
  }
  $('invite-copied').hidden = false;
}

// ---------------------------------------------------------------- start
function wireControls() {
  $('ctl-mic').addEventListener('click', toggleMic);
  $('ctl-cam').addEventListener('click', toggleCam);
  $('ctl-leave').addEventListener('click', leave);
  $('ctl-invite').addEventListener('click', openInvite);
  $('ctl-invite').replaceChildren(icon('invite'));
  $('ctl-leave').replaceChildren(icon('leave'));
  $('invite-copy').addEventListener('click', copyInvite);
  $('unmute-audio').addEventListener('click', enableAudio);
  $('prejoin-mic').addEventListener('click', toggleMic);
  $('prejoin-cam').addEventListener('click', toggleCam);
  $('message-retry').addEventListener('click', () => location.reload());
  document.addEventListener('keydown', (ev) => {
    if (call.phase === 'prejoin' || ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    const t = /** @type {HTMLElement} */ (ev.target);
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return;
    if (ev.key === 'm' || ev.key === 'M') toggleMic();
    else if (ev.key === 'v' || ev.key === 'V') toggleCam();
  });
  window.addEventListener('pagehide', () => {
    if (call.signaling && call.phase !== 'left') call.signaling.leave();
  });
}

async function main() {
  if (!ROOM_RE.test(roomName)) {
    showMessage('No such room', 'A room name is 1 to 40 letters, digits, "-" or "_".');
    return;
  }
  document.title = `${roomName} — meshcall`;
  grid = new Grid($('grid'), $('stage'));
  wireControls();
  const given = cleanName(params.get('name') || '');
  if (!given) {
    $('prejoin-room').textContent = roomName;
    const input = /** @type {HTMLInputElement} */ ($('prejoin-name'));
    input.value = savedName();
    $('prejoin').hidden = false;
  }
  // Joining at once (a shared link, a room display): open the signaling socket while
  // the camera starts, so both waits overlap. The join itself waits for the media state.
  const early = given ? new WebSocket(SIGNALING_URL) : null;
  // Permission first: Chromium offers no usable ICE candidates before it.
  call.media = await getLocalMedia();
  const preview = /** @type {HTMLVideoElement} */ ($('preview'));
  preview.srcObject = call.media.stream;
  preview.play().catch(() => {});
  renderControls();
  if (call.media.note) {
    $('prejoin-note').textContent = call.media.note;
    $('prejoin-note').hidden = false;
  }
  if (given) {
    call.name = given;
    join(early);
    return;
  }
  $('prejoin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = cleanName(/** @type {HTMLInputElement} */ ($('prejoin-name')).value);
    if (!name) return;
    saveName(name);
    call.name = name;
    preview.srcObject = null;
    join();
  });
}

main();
