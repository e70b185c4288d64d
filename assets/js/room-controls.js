// Raise hand, room lock and passcodes: the buttons, the hands on the tiles, the prompt
// for a passcode, and the invite links with and without it.
import { SpeakingTimer } from './hand.js';
import { icon } from './icons.js';
import { onKey } from './keys.js';

/** @typedef {import('./signaling.js').SignalingClient} SignalingClient */
/** @typedef {import('./signaling.js').RoomState} RoomState */
/** @typedef {import('./signaling.js').PeerInfo} PeerInfo */

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** How often a raised hand listens to its microphone: each reading covers ~20 ms of
 * sound, so reading often enough not to step over the syllables of speech. */
const HAND_LISTEN_MS = 50;

/**
 * The room passcode given in the link's fragment (`#key=…`): a fragment never reaches a
 * server log or a proxy. An access code the server already took (`access=`) is removed
 * from the address here, as the access page does.
 * @returns {{passcode?: string}}
 */
export function linkPasscode() {
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.has('access')) {
    frag.delete('access');
    const rest = frag.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
  }
  const key = frag.get('key');
  return key ? { passcode: key } : {};
}

/** Copy an input's text: the clipboard API, or selecting it where that is refused (plain
 * HTTP, an old browser). */
export async function copy(/** @type {HTMLInputElement} */ input) {
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select();
    document.execCommand('copy');
  }
}

/**
 * @param {import('./call.js').Call} call
 * @param {import('./grid.js').Grid} grid
 * @param {{room: string, notice: (text: string) => void, mic: import('./level.js').MicLevel}} o
 *   mic: the level of the microphone we send
 */
export function setupRoomControls(call, grid, { room, notice, mic }) {
  const handBtn = $('ctl-hand');
  handBtn.replaceChildren(icon('hand'));
  const lockBtn = $('ctl-lock');
  const status = $('room-status');
  const dialog = /** @type {HTMLDialogElement} */ ($('passcode-dialog'));
  const promptInput = /** @type {HTMLInputElement} */ ($('passcode-input'));
  const promptError = $('passcode-error');
  /** @type {SignalingClient|null} */
  let sig = null;
  /** @type {RoomState} */
  let roomState = { locked: false, lockedBy: null, passcode: false };
  /** the passcode this page knows (from the link, the prompt, or set here) */
  let passcode = linkPasscode().passcode || null;
  /** a passcode this page just sent: the next room-updated is its echo */
  let sentPasscode = /** @type {string|null|undefined} */ (undefined);
  /** @type {Map<string, number>} raised hands: peer id (ours too) → order number */
  const hands = new Map();
  const timer = new SpeakingTimer();
  /** @type {number|undefined} */
  let listening;

  // ------------------------------------------------------------ raise hand
  const myHand = () => (call.id ? hands.get(call.id) : undefined);

  function renderHands() {
    const order = [...hands.entries()].sort((a, b) => a[1] - b[1]).map(([id]) => id);
    for (const [id, tile] of grid.tiles) {
      let badge = /** @type {HTMLElement|null} */ (tile.el.querySelector('.hand'));
      const place = order.indexOf(id) + 1;
      if (!place) {
        if (badge) badge.remove();
        tile.el.removeAttribute('data-hand');
        continue;
      }
      if (!badge) {
        badge = document.createElement('div');
        badge.className = 'hand';
        badge.setAttribute('role', 'img');
        tile.el.append(badge);
      }
      // An icon, not the emoji: a device without an emoji font shows an empty box.
      badge.replaceChildren(icon('hand'), document.createTextNode(` ${place}`));
      badge.setAttribute('aria-label', `hand raised, ${place} in line`);
      tile.el.dataset.hand = String(place);
    }
    const up = myHand() !== undefined;
    handBtn.setAttribute('aria-pressed', String(up));
    handBtn.classList.toggle('on', up);
    handBtn.title = up ? 'Lower hand (h)' : 'Raise hand (h)';
    if (up) listen();
    else stopListening();
  }

  function setHand(/** @type {string} */ id, /** @type {number|null|undefined} */ hand) {
    if (typeof hand === 'number') hands.set(id, hand);
    else hands.delete(id);
    renderHands();
  }

  function raise(/** @type {boolean} */ up) {
    if (sig) sig.send({ type: 'hand', raised: up });
  }

  /** While our hand is up and the microphone on: lower it after a few seconds of speech. */
  function listen() {
    if (listening !== undefined) return;
    timer.reset();
    listening = window.setInterval(() => {
      if (!call.sendingAudio) {
        timer.reset();
        return;
      }
      if (timer.feed(mic.level(), performance.now() / 1000)) {
        raise(false);
        notice('Your hand was lowered: you have the floor.');
        stopListening();
      }
    }, HAND_LISTEN_MS);
  }

  function stopListening() {
    window.clearInterval(listening);
    listening = undefined;
    mic.close(); // its audio thread is not free: open only while a hand is up
  }

  // ------------------------------------------------------------ lock and passcode
  function renderRoom() {
    lockBtn.setAttribute('aria-pressed', String(roomState.locked));
    lockBtn.classList.toggle('on', roomState.locked);
    lockBtn.title = roomState.locked ? 'Unlock the room' : 'Lock the room: nobody new can join';
    const parts = [];
    if (roomState.locked) parts.push(`Room locked by ${roomState.lockedBy || 'someone'}`);
    if (roomState.passcode) parts.push('Passcode set');
    status.textContent = parts.join(' · ');
    status.hidden = !parts.length;
    renderInvite();
  }

  function onRoomUpdated(/** @type {{roomState: RoomState, by: string}} */ d) {
    const before = roomState;
    roomState = d.roomState;
    const lockChange = before.locked !== roomState.locked || before.lockedBy !== roomState.lockedBy;
    if (!lockChange) {
      // A passcode change: ours (we know the new code), or someone else's (what this
      // page knew is stale; the server never says the code).
      passcode = sentPasscode !== undefined ? sentPasscode : null;
      sentPasscode = undefined;
    }
    if (!roomState.passcode) passcode = null;
    renderRoom();
  }

  function askPasscode(/** @type {string} */ why) {
    promptError.textContent = why;
    promptError.hidden = !why;
    if (!dialog.open) dialog.showModal();
    promptInput.select();
  }

  // ------------------------------------------------------------ invite
  function renderInvite() {
    const base = `${location.origin}/r/${encodeURIComponent(room)}`;
    const withKey = /** @type {HTMLInputElement} */ ($('invite-link-key'));
    $('invite-key-row').hidden = !passcode;
    withKey.value = passcode ? `${base}#key=${encodeURIComponent(passcode)}` : '';
    $('invite-passcode-note').textContent = roomState.passcode
      ? (passcode ? 'This room has a passcode. The first link asks for it; the second one carries it.'
        : 'This room has a passcode: people need it to join with the link.')
      : 'No passcode: anyone on this network with the link can join.';
    $('invite-passcode-clear').hidden = !roomState.passcode;
  }

  function setPasscode(/** @type {string|null} */ value) {
    if (!sig) return;
    sentPasscode = value;
    sig.send({ type: 'passcode', passcode: value });
  }

  // ------------------------------------------------------------ wiring
  handBtn.addEventListener('click', () => raise(myHand() === undefined));
  onKey(call, 'h', () => raise(myHand() === undefined));
  lockBtn.addEventListener('click', () => {
    if (sig) sig.send({ type: 'lock', locked: !roomState.locked });
  });
  $('passcode-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = promptInput.value;
    if (!value.trim() || !sig) return;
    passcode = value;
    sig.rejoin({ passcode: value });
    dialog.close();
  });
  $('passcode-cancel').addEventListener('click', () => {
    location.href = '/';
  });
  dialog.addEventListener('cancel', (ev) => ev.preventDefault()); // Escape: the room stays closed
  $('invite-passcode-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = /** @type {HTMLInputElement} */ ($('invite-passcode'));
    if (!input.value.trim()) return;
    setPasscode(input.value);
    input.value = '';
  });
  $('invite-passcode-clear').addEventListener('click', () => setPasscode(null));
  $('invite-copy-key').addEventListener('click', () => copy(/** @type {HTMLInputElement} */ ($('invite-link-key'))));

  /** @type {Record<string, (d: any) => void>} */
  const on = {
    'peer-added': (d) => setHand(d.id, d.info && d.info.hand),
    'peer-updated': (d) => setHand(d.id, d.info && d.info.hand),
    'peer-removed': (d) => setHand(d.id, null),
    'self-updated': (d) => setHand(d.info.id, d.info.hand),
    joined: (d) => {
      if (d.previousId && d.previousId !== d.id) hands.delete(d.previousId);
      renderHands();
    },
  };
  for (const [type, fn] of Object.entries(on)) {
    call.addEventListener(type, (ev) => fn(/** @type {CustomEvent} */ (ev).detail));
  }
  renderRoom();

  return {
    attach(/** @type {SignalingClient} */ s) {
      sig = s;
      s.addEventListener('welcome', (ev) => {
        const w = /** @type {CustomEvent} */ (ev).detail;
        if (w.roomState) roomState = w.roomState;
        if (!roomState.passcode) passcode = null;
        if (dialog.open) dialog.close();
        for (const p of w.peers) setHand(p.id, p.hand);
        renderRoom();
      });
      s.addEventListener('room-updated', (ev) => onRoomUpdated(/** @type {CustomEvent} */ (ev).detail));
      s.addEventListener('error', (ev) => {
        const e = /** @type {CustomEvent} */ (ev).detail;
        if (e.error === 'passcode-required') askPasscode('');
        else if (e.error === 'bad-passcode' && s.state === 'joined') notice('A passcode must not be blank.');
        else if (e.error === 'bad-passcode') askPasscode('That passcode is not right.');
        else if (e.error === 'too-many-tries') askPasscode('Too many wrong passcodes from this device. Wait a few seconds, then try again.');
      });
    },
  };
}
