// The room display: `/r/<room>?display=1` on an unattended screen (a TV in a meeting
// room, a kiosk). It joins without a click, receive-only (no camera, no microphone
// unless `&camera=1` / `&mic=1`), shows no controls, self view, cursor or dialogs,
// follows presenting by itself (present.js), shows an idle screen with the room's QR
// code while alone, keeps the screen awake, and never gives up.

import { AUDIO } from './media.js';

/** @typedef {import('./media.js').LocalMedia} LocalMedia */
/** @typedef {import('./call.js').Call} Call */
/** @typedef {import('./grid.js').Grid} Grid */

export const DEFAULT_NAME = 'Room display';
/** A display turned away (room full) tries again this often, for as long as it runs. */
export const RETRY_FULL_MS = 15000;

/**
 * The display options of a page address, or null for an ordinary page.
 * @returns {{camera: boolean, mic: boolean}|null}
 */
export function displayOptions(/** @type {URLSearchParams} */ params) {
  if (params.get('display') !== '1') return null;
  return { camera: params.get('camera') === '1', mic: params.get('mic') === '1' };
}

/**
 * What a display sends: nothing, unless the room has a conference camera or microphone
 * on it. getUserMedia is not even asked otherwise (no prompt on a kiosk, no device lit).
 * @param {{camera: boolean, mic: boolean}} o
 * @returns {Promise<LocalMedia>}
 */
export async function displayMedia(o) {
  const none = { stream: new MediaStream(), audio: null, video: null, note: null };
  if ((!o.camera && !o.mic) || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return none;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: o.mic ? AUDIO : false,
      video: o.camera ? { width: { ideal: 1280 }, height: { ideal: 720 } } : false,
    });
    return { stream, audio: stream.getAudioTracks()[0] || null, video: stream.getVideoTracks()[0] || null, note: null };
  } catch (err) {
    console.info('display: camera/microphone not available', err);
    return none;
  }
}

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

export class RoomDisplay {
  /**
   * @param {object} o
   * @param {Call} o.call
   * @param {Grid} o.grid
   * @param {string} o.room  the room name as in the address
   */
  constructor({ call, grid, room }) {
    this.call = call;
    this.grid = grid;
    this.room = room;
    /** @type {WakeLockSentinel|null} */
    this.lock = null;
    this.status = document.createElement('p');
    document.body.classList.add('display-mode');
    this.idle = this._buildIdle();
    $('call').append(this.idle);
    // Autoplay with sound refused: one large notice; the picture keeps playing muted.
    $('unmute-audio').textContent = 'Tap for sound';
    for (const type of ['peer-added', 'peer-removed', 'phase']) {
      call.addEventListener(type, () => this._update());
    }
    call.addEventListener('phase', (ev) => {
      const { phase } = /** @type {CustomEvent} */ (ev).detail;
      // Turned away (full, locked) or ended: no message to dismiss, just try again later.
      if (phase === 'full' || phase === 'locked' || phase === 'error' || phase === 'left') {
        setTimeout(() => location.reload(), RETRY_FULL_MS);
      }
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.keepAwake();
    });
    this.keepAwake();
    this._update();
  }

  /** The idle screen: room name, a large QR code, the join address and the room code. */
  _buildIdle() {
    const link = `${location.origin}/r/${encodeURIComponent(this.room)}`;
    const el = document.createElement('section');
    el.id = 'idle';
    el.className = 'idle';
    el.setAttribute('aria-label', 'Waiting for people to join');
    const title = document.createElement('h1');
    title.className = 'idle-room';
    title.textContent = this.room;
    const qr = document.createElement('img');
    qr.id = 'idle-qr';
    qr.className = 'idle-qr';
    qr.alt = 'QR code to join this room';
    // People in this room join with microphone and speaker off: the display plays the room.
    qr.src = `/qr/${encodeURIComponent(this.room)}.svg?inroom=1`;
    const how = document.createElement('p');
    how.className = 'idle-how';
    how.textContent = 'Scan to join, or open';
    const addr = document.createElement('p');
    addr.id = 'idle-link';
    addr.className = 'idle-link';
    addr.textContent = link;
    const code = document.createElement('p');
    code.className = 'idle-code';
    code.append('Room code ');
    const strong = document.createElement('strong');
    strong.id = 'idle-code';
    strong.textContent = this.room;
    code.append(strong);
    this.status.className = 'idle-status';
    el.append(title, qr, how, addr, code, this.status);
    return el;
  }

  _update() {
    const phase = this.call.phase;
    const alone = this.grid.tiles.size === 0;
    this.idle.hidden = !(alone || phase === 'full' || phase === 'locked' || phase === 'error');
    this.status.textContent = phase === 'full' ? 'The room is full: this display will join when a place is free.'
      : phase === 'locked' ? 'The room is locked: this display will join when it is unlocked.'
        : phase === 'error' ? 'This room cannot be joined.' : '';
  }

  /** Keep the screen on; the lock is lost whenever the page is hidden, so ask again. */
  async keepAwake() {
    if (!('wakeLock' in navigator) || document.visibilityState !== 'visible') return;
    if (this.lock && !this.lock.released) return;
    try {
      this.lock = await navigator.wakeLock.request('screen');
    } catch (err) {
      console.info('display: no screen wake lock', err);
    }
  }
}
