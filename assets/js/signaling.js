// The signaling client: one WebSocket to the appliance, JSON frames in and out,
// events out. No DOM here (see docs/protocol.md for the frames).
//
// It keeps the connection alive on its own: an application-level ping every
// PING_EVERY ms, a socket that stays silent for DEAD_AFTER ms is closed, and a
// lost socket is reopened with backoff (first retry fast, then growing, with
// jitter). On every reopen it sends `join` again with the resume token of the
// last welcome, so within the server's grace period the page keeps its id.

/** @typedef {{id: string, name: string, audio: boolean, video: boolean}} PeerInfo */
/** @typedef {{type: 'welcome', id: string, token: string, room: string, peers: PeerInfo[],
 *   iceServers: RTCIceServer[], iceTransportPolicy: RTCIceTransportPolicy, maxPeers: number,
 *   resumed: boolean, version: string}} Welcome */
/** @typedef {'idle'|'connecting'|'joined'|'lost'|'closed'} SignalingState */

export const PING_EVERY = 5000;
export const DEAD_AFTER = 6000;
export const RETRY_FIRST = 500;
export const RETRY_MAX = 5000;
const OUTBOX_MAX = 500;

/** Close code the page uses for a socket it gives up on: not a clean close, so the
 * server keeps our place for its grace period and we can resume. */
const CLOSE_DEAD = 4000;

/**
 * Events (all CustomEvent, payload in `detail`):
 *  - `welcome` (Welcome), `peer-joined` (PeerInfo), `peer-left` ({id}),
 *    `peer-updated` (PeerInfo), `signal` ({from, description?, candidate?}),
 *    `shutdown` ({value}), `error` ({error, value, fatal}),
 *    `ice-servers` ({iceServers, iceTransportPolicy}) with fresh TURN credentials,
 *  - `state` ({state: SignalingState}) whenever the connection state changes.
 */
export class SignalingClient extends EventTarget {
  /**
   * @param {string} url  wss:// URL of the signaling endpoint
   * @param {{room: string, name: string, audio: boolean, video: boolean}} join
   * @param {WebSocket|null} early  a socket to this URL opened ahead of time (while the
   *   camera was starting); used for the first connection if it is still usable
   */
  constructor(url, join, early = null) {
    super();
    this.url = url;
    this.join = { ...join };
    this.early = early;
    /** @type {WebSocket|null} */
    this.ws = null;
    /** @type {SignalingState} */
    this.state = 'idle';
    /** @type {string|null} */
    this.token = null;
    /** @type {string|null} */
    this.id = null;
    this.attempt = 0;
    this.lastHeard = 0;
    this._lastPing = 0;
    /** @type {Record<string, unknown>[]} signal frames held while the socket is down */
    this.outbox = [];
    this.stopped = false;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setInterval>|undefined} */
    this.pingTimer = undefined;
  }

  start() {
    this.stopped = false;
    this._open();
  }

  /** Send one frame; false when the socket is not open (the frame is dropped). */
  send(/** @type {Record<string, unknown>} */ msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  /**
   * Relay a description or candidate to one peer. While the connection is down the
   * frame is held, and sent after a resumed welcome (the peer ids are still valid).
   */
  sendSignal(/** @type {string} */ to, /** @type {Record<string, unknown>} */ payload) {
    const msg = { type: 'signal', to, ...payload };
    if (this.state === 'joined' && this.send(msg)) return;
    if (this.outbox.length < OUTBOX_MAX) this.outbox.push(msg);
  }

  /** @param {boolean} audio @param {boolean} video */
  setMedia(audio, video) {
    this.join.audio = audio;
    this.join.video = video;
    if (this.state === 'joined') this.send({ type: 'media', audio, video });
  }

  /** Leave on purpose: the others see us go at once; no reconnect. */
  leave() {
    this.send({ type: 'leave' });
    this.stop(1000);
  }

  /** Stop for good (room full, leaving). */
  stop(code = 1000) {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(code);
    this._setState('closed');
  }

  /** Drop the socket as if the network had failed; the client reconnects and resumes. */
  drop() {
    if (this.ws) this._lost(this.ws);
  }

  _setState(/** @type {SignalingState} */ state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', { state });
  }

  _emit(/** @type {string} */ type, /** @type {unknown} */ detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _open() {
    clearTimeout(this.retryTimer);
    if (this.stopped) return;
    if (this.state !== 'lost') this._setState('connecting');
    const early = this.early;
    this.early = null;
    const ws = early && early.readyState <= WebSocket.OPEN ? early : new WebSocket(this.url);
    if (early && ws !== early) early.close();
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.lastHeard = Date.now();
      /** @type {Record<string, unknown>} */
      const join = { type: 'join', ...this.join };
      if (this.token) join.resume = this.token;
      ws.send(JSON.stringify(join));
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this._heartbeat(ws), PING_EVERY / 5);
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastHeard = Date.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!msg || typeof msg.type !== 'string') return;
      this._dispatch(msg);
    };
    ws.onclose = () => {
      if (ws === this.ws) this._lost(ws);
    };
    if (ws.readyState === WebSocket.OPEN) ws.onopen(new Event('open'));
  }

  /** Runs every second while the socket is open: ping now and then, and notice silence. */
  _heartbeat(/** @type {WebSocket} */ ws) {
    if (ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    if (now - this.lastHeard > DEAD_AFTER) {
      this._lost(ws);
      return;
    }
    if (now - this._lastPing >= PING_EVERY) {
      this._lastPing = now;
      ws.send(JSON.stringify({ type: 'ping' }));
    }
  }

  _lost(/** @type {WebSocket} */ ws) {
    clearInterval(this.pingTimer);
    this.ws = null;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close(CLOSE_DEAD, 'connection lost');
    } catch {
      /* already closed */
    }
    if (this.stopped) return;
    this._setState('lost');
    const base = Math.min(RETRY_MAX, RETRY_FIRST * 2 ** this.attempt);
    this.attempt += 1;
    const delay = base * (0.8 + Math.random() * 0.4);
    this.retryTimer = setTimeout(() => this._open(), delay);
  }

  _dispatch(/** @type {any} */ msg) {
    switch (msg.type) {
      case 'welcome':
        this.id = msg.id;
        this.token = msg.token;
        this.attempt = 0;
        {
          const held = this.outbox;
          this.outbox = [];
          this._setState('joined');
          if (msg.resumed) for (const frame of held) this.send(frame);
        }
        this._emit('welcome', msg);
        break;
      case 'peer-joined':
      case 'peer-updated':
        this._emit(msg.type, msg.peer);
        break;
      case 'peer-left':
        this._emit('peer-left', { id: msg.id });
        break;
      case 'signal':
        this._emit('signal', msg);
        break;
      case 'ice-servers':
        this._emit('ice-servers', { iceServers: msg.iceServers, iceTransportPolicy: msg.iceTransportPolicy });
        break;
      case 'pong':
        break;
      case 'shutdown':
        this._emit('shutdown', { value: msg.value });
        break;
      case 'error':
        this._emit('error', { error: msg.error, value: msg.value, fatal: !!msg.fatal });
        break;
      default:
        break;
    }
  }
}
