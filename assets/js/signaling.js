// The signaling client: one WebSocket to the appliance, JSON frames in and out,
// events out. No DOM here (see docs/protocol.md for the frames).
//
// It keeps the connection alive on its own: an application-level ping every
// PING_EVERY ms, a socket that stays silent for DEAD_AFTER ms *of the page's own
// running time* is closed, and a lost socket is reopened with backoff (first retry
// fast, then growing, with jitter). On every reopen it sends `join` again with the
// resume token of the last welcome, so within the server's grace period the page
// keeps its id.
//
// A slow page is not a dead socket: on a phone or a starved laptop the page's own
// timers and message events run seconds late, while the browser's network stack
// keeps the socket (and the server's pings) alive. So silence is counted by the
// Liveness clock below, which leaves out the time the page itself was not running
// (see docs/protocol.md, Liveness, for the measurements behind the numbers).

/** @typedef {{id: string, name: string, audio: boolean, video: boolean, hand?: number|null, screen?: string|null}} PeerInfo */
/** @typedef {{locked: boolean, lockedBy: string|null, passcode: boolean}} RoomState */
/** @typedef {{id: number, from: string, name: string, ts: number, text: string}} ChatMessage */
/** @typedef {{type: 'welcome', id: string, token: string, room: string, peers: PeerInfo[],
 *   iceServers: RTCIceServer[], iceTransportPolicy: RTCIceTransportPolicy, maxPeers: number,
 *   resumed: boolean, version: string, roomState?: RoomState}} Welcome */
/** @typedef {'idle'|'connecting'|'joined'|'lost'|'closed'} SignalingState */

export const PING_EVERY = 2500;
export const DEAD_AFTER = 10000;
/** A page whose answers come late waits longer, like TCP's retransmission timeout: three
 * times the slowest of its last answers, but never more than this. */
export const DEAD_AFTER_MAX = 30000;
const RECENT_ANSWERS = 8;
/** How often the heartbeat runs; a tick later than STALL_AFTER means the page was stalled. */
export const TICK = 500;
export const STALL_AFTER = 1500;
export const RETRY_FIRST = 500;
export const RETRY_MAX = 5000;
/** A socket still opening after this long is given up and tried again: a connection
 * attempt can hang (a SYN or a handshake lost on busy Wi-Fi) with no close to tell us. */
export const OPEN_TIMEOUT = 15000;
const OUTBOX_MAX = 500;

/** Close code the page uses for a socket it gives up on: not a clean close, so the
 * server keeps our place for its grace period and we can resume. */
const CLOSE_DEAD = 4000;

/**
 * Silence measured in the page's running time. Every heartbeat tick adds the time since
 * the last tick, but at most STALL_AFTER: a longer gap means the page's event loop did
 * not run (CPU starved, throttled, suspended), and frames the server sent meanwhile may
 * still be queued behind the tick. Anything heard resets it. Pure: the clock is passed in.
 */
export class Liveness {
  constructor(/** @type {number} */ now) {
    this.lastTick = now;
    this.silence = 0;
    /** the longest stall seen (ms), and the longest silence counted (ms): for the bench */
    this.maxStall = 0;
    this.maxSilence = 0;
    this.stalls = 0;
    /** @type {number|null} when our unanswered ping went out, and the longest wait for an answer */
    this.pingAt = null;
    this.maxPongWait = 0;
    /** @type {number[]} how long the last few answers took (ms) */
    this.recent = [];
  }

  /** How long a silence must last before the socket counts as dead, from how slow the
   * answers have been lately: a starved browser answers late, but it answers. */
  deadAfter() {
    const slowest = this.recent.length ? Math.max(...this.recent) : 0;
    return Math.min(DEAD_AFTER_MAX, Math.max(DEAD_AFTER, 3 * slowest));
  }

  pinged(/** @type {number} */ now) {
    if (this.pingAt === null) this.pingAt = now;
  }

  heard(/** @type {number} */ now) {
    if (this.pingAt !== null) {
      const wait = now - this.pingAt;
      this.maxPongWait = Math.max(this.maxPongWait, wait);
      this.recent.push(wait);
      if (this.recent.length > RECENT_ANSWERS) this.recent.shift();
    }
    this.pingAt = null;
    this.silence = 0;
    this.lastTick = Math.max(this.lastTick, now);
  }

  /** One heartbeat tick; true when the socket has been silent too long to be alive. */
  tick(/** @type {number} */ now) {
    const gap = Math.max(0, now - this.lastTick);
    this.lastTick = now;
    if (gap > STALL_AFTER) {
      this.stalls += 1;
      this.maxStall = Math.max(this.maxStall, gap);
    }
    this.silence += Math.min(gap, STALL_AFTER);
    this.maxSilence = Math.max(this.maxSilence, this.silence);
    return this.silence > this.deadAfter();
  }
}

/**
 * Events (all CustomEvent, payload in `detail`):
 *  - `welcome` (Welcome), `peer-joined` (PeerInfo), `peer-left` ({id}),
 *    `peer-updated` (PeerInfo), `signal` ({from, description?, candidate?}),
 *    `shutdown` ({value}), `error` ({error, value, fatal, maxPeers?}),
 *    `ice-servers` ({iceServers, iceTransportPolicy}) with fresh TURN credentials,
 *  - `chat` (ChatMessage), `chat-history` ({messages}), `room-updated` ({roomState, by}),
 *  - `state` ({state: SignalingState}) whenever the connection state changes.
 */
export class SignalingClient extends EventTarget {
  /**
   * @param {string} url  wss:// URL of the signaling endpoint
   * @param {{room: string, name: string, audio: boolean, video: boolean, passcode?: string}} join
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
    /** @type {string|null} the stream id of our screen share, while sharing */
    this.screen = null;
    this.liveness = new Liveness(Date.now());
    /** sockets given up on by the dead-socket check (a figure for the bench) */
    this.deadSockets = 0;
    /** @type {Record<string, unknown>[]} signal frames held while the socket is down */
    this.outbox = [];
    this.stopped = false;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.openTimer = undefined;
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

  /**
   * @param {boolean} audio @param {boolean} video
   * @param {string|null} [screen]  the share's stream id, null when it ends; left out:
   *   unchanged (a microphone toggle does not end a share)
   */
  setMedia(audio, video, screen) {
    this.join.audio = audio;
    this.join.video = video;
    if (screen !== undefined) this.screen = screen;
    if (this.state === 'joined') this.send({ type: 'media', audio, video, screen: this.screen });
  }

  /** What the dead-socket check saw (ms): for diagnostics and the bench. */
  livenessFigures() {
    const l = this.liveness;
    return { maxStall: l.maxStall, maxSilence: l.maxSilence, maxPongWait: l.maxPongWait, stalls: l.stalls,
      deadSockets: this.deadSockets };
  }

  /**
   * Ask to join again on the open socket with changed fields (a passcode after
   * `passcode-required`); later reconnects send them too.
   */
  rejoin(/** @type {{passcode?: string}} */ extra) {
    Object.assign(this.join, extra);
    if (this.state !== 'joined') this.send({ type: 'join', ...this.join });
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
    clearTimeout(this.openTimer);
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
    clearTimeout(this.openTimer);
    this.openTimer = setTimeout(() => {
      if (ws === this.ws && ws.readyState === WebSocket.CONNECTING) this._lost(ws);
    }, OPEN_TIMEOUT);
    ws.onopen = () => {
      if (ws !== this.ws) return;
      clearTimeout(this.openTimer);
      this.lastHeard = Date.now();
      this.liveness.heard(this.lastHeard);
      /** @type {Record<string, unknown>} */
      const join = { type: 'join', ...this.join };
      if (this.token) join.resume = this.token;
      ws.send(JSON.stringify(join));
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this._heartbeat(ws), TICK);
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastHeard = Date.now();
      this.liveness.heard(this.lastHeard);
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

  /** Runs every TICK while the socket is open: ping now and then, and notice silence. */
  _heartbeat(/** @type {WebSocket} */ ws) {
    if (ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    if (this.liveness.tick(now)) {
      this.deadSockets += 1;
      this._lost(ws);
      return;
    }
    if (now - this._lastPing >= PING_EVERY) {
      this._lastPing = now;
      this.liveness.pinged(now);
      ws.send(JSON.stringify({ type: 'ping' }));
    }
  }

  _lost(/** @type {WebSocket} */ ws) {
    clearInterval(this.pingTimer);
    clearTimeout(this.openTimer);
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
        // `join` cannot say we share a screen: a share that goes on is announced again
        // before anything else, so the others know the share's stream before its offer.
        if (this.screen) this.send({ type: 'media', audio: this.join.audio, video: this.join.video, screen: this.screen });
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
      case 'chat':
      case 'chat-history':
      case 'room-updated':
        this._emit(msg.type, msg);
        break;
      case 'pong':
        break;
      case 'shutdown':
        this._emit('shutdown', { value: msg.value });
        break;
      case 'error': {
        /** @type {{error: string, value: string, fatal: boolean, maxPeers?: number, lockedBy?: string}} */
        const e = { error: msg.error, value: msg.value, fatal: !!msg.fatal };
        if (typeof msg.maxPeers === 'number') e.maxPeers = msg.maxPeers; // room-full says the limit
        if (typeof msg.lockedBy === 'string') e.lockedBy = msg.lockedBy; // room-locked says who
        this._emit('error', e);
        break;
      }
      default:
        break;
    }
  }
}
