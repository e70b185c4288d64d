// The call: who is in the room, one Peer (connection) per remote participant, what we
// send, and how the mesh is repaired. No DOM here (as snapdrop keeps its PeersManager
// apart from the UI): it listens to the signaling client and emits events the UI draws.
//
// A `signal` goes signaling → Call.onSignal → one Peer, once. Which connection a
// signal belongs to is decided here, by its `conn` (docs/protocol.md):
//  - an offer with another `conn` than the current connection's is a fresh connection
//    from the other side: close ours and answer on a new one (a rebuild);
//  - an answer or candidate with another `conn` is stale: dropped;
//  - a signal without `conn` belongs to the current connection.

import { browserEnv, MAX_SLOWNESS, Peer } from './peer.js';

/** Lines kept per remote participant in the connection log (oldest dropped first). */
const TRACE_LINES = 80;

/** @typedef {import('./signaling.js').PeerInfo} PeerInfo */
/** @typedef {import('./signaling.js').Welcome} Welcome */
/** @typedef {import('./peer.js').Env} Env */
/** @typedef {import('./peer.js').PeerState} PeerState */
/** @typedef {import('./peer.js').SignalPayload} SignalPayload */
/** @typedef {import('./media.js').LocalMedia} LocalMedia */
/** @typedef {'prejoin'|'connecting'|'joined'|'reconnecting'|'full'|'locked'|'left'|'error'} Phase */

/**
 * What the call needs of the signaling client (SignalingClient, or a fake in tests).
 * @typedef {EventTarget & {
 *   state: import('./signaling.js').SignalingState,
 *   start(): void, stop(code?: number): void, leave(): void, drop(): void,
 *   sendSignal(to: string, payload: Record<string, unknown>): void,
 *   setMedia(audio: boolean, video: boolean, screen?: string|null): void}} Signaling
 */

/**
 * Events (CustomEvent, payload in `detail`):
 *  - `phase` ({phase, serverAway, note, maxPeers, value}): the call as a whole changed;
 *    `reconnecting` says whether the server went away (`serverAway`, its `note`);
 *    `full` carries the room's `maxPeers`; `locked` who locked it (`lockedBy`); `full`,
 *    `locked` and `error` carry the server's `value`.
 *  - `joined` ({id, previousId, resumed}): a welcome; our id may have changed.
 *  - `peer-added` ({id, info}): a remote participant to show (info may be null when a
 *    signal came before anything else about it).
 *  - `peer-updated` ({id, info}): its name or media state changed.
 *  - `self-updated` ({info}): the server's view of us changed (our raised hand).
 *  - `local-track` ({kind, track}): a device switch put another track in our stream.
 *  - `peer-removed` ({id}): it left.
 *  - `peer-state` ({id, state}): its connection's PeerState; a rebuilt connection starts
 *    as `reconnecting`.
 *  - `remote-stream` ({id, stream}): show this stream for that participant.
 *  - `share-track` ({id, track, stream}): a track of that participant's screen share
 *    (the stream whose id is its `screen`).
 *  - `media` ({audio, video}): what we send changed.
 *  - `counters` ({rebuilds, iceRestarts}): a connection was rebuilt or ICE-restarted.
 *  - `view` ({id, view}): that participant says how large it shows our video
 *    ({width, height}; 0×0: not at all), for the send-quality policy (quality.js).
 *  - `notice` ({value}): something to tell the user that ends nothing (a bad name).
 *  - `error` ({error, value, fatal}): any other error frame.
 */
export class Call extends EventTarget {
  /** @param {{env?: Env}} [o] */
  constructor({ env = browserEnv() } = {}) {
    super();
    this.env = env;
    /** @type {LocalMedia|null} */
    this.media = null;
    this.micOn = true;
    this.camOn = true;
    /** @type {string|null} our peer id: 'self' until the first welcome */
    this.id = null;
    /** @type {Signaling|null} */
    this.signaling = null;
    /** @type {Map<string, Peer>} */
    this.peers = new Map();
    /** @type {Map<string, PeerInfo>} */
    this.infos = new Map();
    /** @type {Map<string, string>} per remote: the id of the connection closed last,
     * whose late signals are dropped while a fresh one is awaited */
    this.retired = new Map();
    /** @type {Map<string, number>} per remote shown to be slow: its repair timers' factor */
    this.slowness = new Map();
    /** @type {Map<string, string>} per remote: the given-up connection that last proved it slow */
    this.lateConn = new Map();
    /** @type {RTCConfiguration} */
    this.config = { iceServers: [], iceTransportPolicy: 'all' };
    this.maxPeers = 0;
    /** @type {Phase} */
    this.phase = 'prejoin';
    this.serverAway = false;
    this.awayNote = '';
    this.rebuilds = 0;
    /** ICE restarts of connections already closed (open ones count their own) */
    this.pastIceRestarts = 0;
    /** @type {Map<string, string[]>} per remote: the connection log (see traceOf) */
    this.traces = new Map();
    this.started = Date.now();
  }

  /**
   * The connection log for one remote participant: what happened to our connections
   * with it, step by step (signals in and out, state changes, repairs), the newest last.
   * A bounded ring, kept while the participant is in the room; for diagnostics.
   * @param {string} id
   */
  traceOf(id) {
    return [...(this.traces.get(id) || [])];
  }

  _trace(/** @type {string} */ id, /** @type {string|null} */ conn, /** @type {string} */ what) {
    let lines = this.traces.get(id);
    if (!lines) this.traces.set(id, (lines = []));
    const seconds = ((Date.now() - this.started) / 1000).toFixed(1);
    lines.push(`${seconds}s [${conn ? conn.slice(0, 6) : '-'}] ${what}`);
    if (lines.length > TRACE_LINES) lines.splice(0, lines.length - TRACE_LINES);
  }

  _emit(/** @type {string} */ type, /** @type {unknown} */ detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setPhase(/** @type {Phase} */ phase, /** @type {Record<string, unknown>} */ extra = {}) {
    this.phase = phase;
    this._emit('phase', { phase, serverAway: this.serverAway, note: this.awayNote, ...extra });
  }

  counters() {
    let iceRestarts = this.pastIceRestarts;
    for (const p of this.peers.values()) iceRestarts += p.iceRestarts;
    return { rebuilds: this.rebuilds, iceRestarts };
  }

  _countersChanged() {
    this._emit('counters', this.counters());
  }

  // ------------------------------------------------------------ local media
  useMedia(/** @type {LocalMedia} */ media) {
    this.media = media;
    this._applyMedia();
  }

  get micAvailable() {
    return !!(this.media && this.media.audio);
  }

  get camAvailable() {
    return !!(this.media && this.media.video);
  }

  get sendingAudio() {
    return this.micOn && this.micAvailable;
  }

  get sendingVideo() {
    return this.camOn && this.camAvailable;
  }

  /** The tracks a new connection sends (null: nothing of that kind now). */
  localTracks() {
    const m = this.media;
    return {
      audio: m && this.sendingAudio ? m.audio : null,
      video: m && this.sendingVideo ? m.video : null,
    };
  }

  setMic(/** @type {boolean} */ on) {
    this.micOn = on;
    this._applyMedia();
  }

  setCamera(/** @type {boolean} */ on) {
    this.camOn = on;
    this._applyMedia();
  }

  /**
   * Send another camera or microphone: the new track takes the old one's place on every
   * connection (RTCRtpSender.replaceTrack, no renegotiation, no new offer). The old
   * track is stopped only once every connection sends the new one, so the others see
   * no gap longer than the switch itself.
   * @param {'audio'|'video'} kind
   * @param {MediaStreamTrack} track
   */
  async replaceTrack(kind, track) {
    const m = this.media;
    if (!m || m[kind] === track) return;
    const old = m[kind];
    if (old) m.stream.removeTrack(old);
    m.stream.addTrack(track);
    m[kind] = track;
    track.enabled = kind === 'audio' ? this.micOn : this.camOn;
    const send = this.localTracks()[kind];
    await Promise.allSettled([...this.peers.values()].map((p) => p.setTrack(kind, send)));
    if (old) old.stop();
    this._emit('local-track', { kind, track });
    this._applyMedia(); // a device where there was none: the others' labels change
  }

  /** Muting is track.enabled plus replaceTrack(null), never renegotiation. */
  _applyMedia() {
    const m = this.media;
    if (!m) return;
    if (m.audio) m.audio.enabled = this.micOn;
    if (m.video) m.video.enabled = this.camOn;
    const tracks = this.localTracks();
    for (const peer of this.peers.values()) {
      peer.setTrack('audio', tracks.audio).catch((err) => console.warn('replaceTrack audio', err));
      peer.setTrack('video', tracks.video).catch((err) => console.warn('replaceTrack video', err));
    }
    if (this.signaling) this.signaling.setMedia(this.sendingAudio, this.sendingVideo);
    this._emit('media', { audio: this.sendingAudio, video: this.sendingVideo });
  }

  // ------------------------------------------------------------ joining and leaving
  /** Join through this signaling client (not started yet); the welcome does the rest. */
  join(/** @type {Signaling} */ signaling) {
    this.signaling = signaling;
    this.id = 'self';
    /** @type {[string, (detail: any) => void][]} */
    const handlers = [
      ['welcome', (d) => this.onWelcome(d)],
      ['peer-joined', (d) => this.onPeerJoined(d)],
      ['peer-updated', (d) => this.onPeerUpdated(d)],
      ['peer-left', (d) => this.onPeerLeft(d.id)],
      ['signal', (d) => this.onSignal(d)],
      ['error', (d) => this.onError(d)],
      ['ice-servers', (d) => this.onIceServers(d)],
      ['shutdown', (d) => this.onShutdown(d)],
      ['state', (d) => this.onSignalingState(d.state)],
    ];
    for (const [type, fn] of handlers) {
      signaling.addEventListener(type, (ev) => fn(/** @type {CustomEvent} */ (ev).detail));
    }
    this._setPhase('connecting');
    signaling.start();
  }

  leave() {
    this._end('left');
    if (this.signaling) this.signaling.leave();
  }

  /** The call is over for this page: no more connections, camera and microphone off. */
  _end(/** @type {Phase} */ phase, /** @type {Record<string, unknown>} */ extra = {}) {
    for (const id of [...this.peers.keys()]) this._removePeer(id);
    if (this.media) for (const t of this.media.stream.getTracks()) t.stop();
    this._setPhase(phase, extra);
  }

  // ------------------------------------------------------------ connections
  /**
   * Create (or replace) the connection to one peer.
   * @param {string} id
   * @param {{initiator: boolean, conn?: string|null, rebuilt?: boolean}} o
   *   initiator: we offer first, on a connection with a new id; otherwise the
   *   connection takes `conn` (the creating offer's, or null while waiting for it)
   */
  _connect(id, { initiator, conn = null, rebuilt = false }) {
    const old = this.peers.get(id);
    if (old) this._closePeer(old);
    if (!this.infos.has(id) && !this.peers.has(id)) this._emit('peer-added', { id, info: null });
    const sig = /** @type {Signaling} */ (this.signaling);
    const peer = new Peer({
      id,
      localId: /** @type {string} */ (this.id),
      conn: initiator ? this.env.newConnId() : conn,
      config: this.config,
      tracks: this.localTracks(),
      stream: this.media ? this.media.stream : this.env.createStream(),
      send: (payload) => sig.sendSignal(id, payload),
      initiator,
      env: this.env,
      note: (what, conn) => this._trace(id, conn, what),
      slowness: this.slowness.get(id) || 1,
    });
    this._trace(id, peer.conn, `new connection: ${initiator ? 'offering' : 'waiting for an offer'}${rebuilt ? ' (rebuilt)' : ''}`);
    this.peers.set(id, peer);
    const mine = () => this.peers.get(id) === peer;
    peer.addEventListener('state', () => {
      if (mine()) this._emit('peer-state', { id, state: peer.state });
    });
    peer.addEventListener('track', () => {
      if (mine()) this._emit('remote-stream', { id, stream: peer.remoteStream });
    });
    peer.isShare = (streamId) => {
      const info = this.infos.get(id);
      return !!info && !!info.screen && info.screen === streamId;
    };
    peer.addEventListener('share-track', (ev) => {
      if (mine()) this._emit('share-track', { id, ...(/** @type {CustomEvent} */ (ev).detail) });
    });
    peer.addEventListener('ice-restart', () => this._countersChanged());
    peer.addEventListener('rebuild', () => {
      if (mine()) this._rebuild(id, peer);
    });
    this._emit('peer-state', { id, state: rebuilt ? 'reconnecting' : 'connecting' });
    return peer;
  }

  /**
   * An ICE restart did not help. The impolite side (smaller id) offers on a fresh
   * connection. The polite side keeps its own and waits for that offer: closing it
   * would gain nothing (the other side learns of it only when its own checks fail) and
   * would throw away the other side's own repair of the same connection (an ICE restart
   * it may be sending right now), which a closed connection can only drop.
   */
  _rebuild(/** @type {string} */ id, /** @type {Peer} */ peer) {
    if (peer.polite) {
      this._trace(id, peer.conn, 'waiting for the other side to rebuild');
      return;
    }
    this.rebuilds += 1;
    this._connect(id, { initiator: true, rebuilt: true }); // the impolite side offers afresh
    this._countersChanged();
  }

  /**
   * An offer or answer came on a connection we had given up: the peer was alive, only
   * slower than our timers (a starved phone or kiosk). Rebuilding again at the same pace
   * would give up on the next negotiation just as early, over and over, so from now on
   * this peer's repair timers are twice as long, up to MAX_SLOWNESS times (once per
   * given-up connection).
   */
  _slowPeer(/** @type {string} */ id, /** @type {string} */ conn) {
    if (this.lateConn.get(id) === conn) return;
    this.lateConn.set(id, conn);
    const slowness = Math.min(MAX_SLOWNESS, 2 * (this.slowness.get(id) || 1));
    this.slowness.set(id, slowness);
    const peer = this.peers.get(id);
    if (peer) peer.setSlowness(slowness);
    this._trace(id, conn, `slow peer: repair timers ×${slowness}`);
  }

  _closePeer(/** @type {Peer} */ peer) {
    this.pastIceRestarts += peer.iceRestarts;
    if (peer.conn) this.retired.set(peer.id, peer.conn);
    peer.close();
  }

  _removePeer(/** @type {string} */ id) {
    const peer = this.peers.get(id);
    if (peer) this._closePeer(peer);
    this.peers.delete(id);
    this.infos.delete(id);
    this.retired.delete(id);
    this.slowness.delete(id);
    this.lateConn.delete(id);
    this.traces.delete(id);
    this._emit('peer-removed', { id });
  }

  // ------------------------------------------------------------ signaling events
  /** The RTCConfiguration the server hands out (in the welcome, and fresh later). */
  _iceConfig(/** @type {{iceServers?: RTCIceServer[], iceTransportPolicy?: RTCIceTransportPolicy}} */ m) {
    this.config = { iceServers: m.iceServers || [], iceTransportPolicy: m.iceTransportPolicy || 'all' };
  }

  /**
   * Fresh join: drop every old connection and call everyone present. Resumed (same id):
   * the connections were never touched; catch up on who came and went meanwhile.
   */
  onWelcome(/** @type {Welcome} */ w) {
    this._iceConfig(w);
    this.maxPeers = w.maxPeers;
    const previousId = this.id;
    const resumed = !!w.resumed && w.id === this.id;
    if (!resumed) {
      for (const id of [...this.peers.keys()]) this._removePeer(id);
      for (const id of [...this.infos.keys()]) this._removePeer(id);
      this.id = w.id;
      this._emit('joined', { id: w.id, previousId, resumed });
      for (const p of w.peers) this._addInfo(p);
      for (const p of w.peers) this._connect(p.id, { initiator: true });
    } else {
      this._emit('joined', { id: w.id, previousId, resumed });
      const present = new Set(w.peers.map((p) => p.id));
      for (const id of [...this.peers.keys()]) if (!present.has(id)) this._removePeer(id);
      for (const p of w.peers) {
        if (this.infos.has(p.id)) this.onPeerUpdated(p);
        else this._addInfo(p);
        if (!this.peers.has(p.id)) this._connect(p.id, { initiator: true });
      }
    }
    this.serverAway = false;
    this.awayNote = '';
    this._setPhase('joined');
  }

  _addInfo(/** @type {PeerInfo} */ p) {
    const known = this.infos.has(p.id) || this.peers.has(p.id);
    this.infos.set(p.id, p);
    this._emit(known ? 'peer-updated' : 'peer-added', { id: p.id, info: p });
  }

  /** Someone new: show them and wait for their offer (the newcomer calls). */
  onPeerJoined(/** @type {PeerInfo} */ p) {
    this._addInfo(p);
    if (!this.peers.has(p.id)) this._connect(p.id, { initiator: false });
  }

  onPeerUpdated(/** @type {PeerInfo} */ p) {
    if (p.id === this.id) {
      // About us (a raised hand is echoed to its owner): not a remote participant.
      this._emit('self-updated', { info: p });
      return;
    }
    this.infos.set(p.id, p);
    this._emit('peer-updated', { id: p.id, info: p });
  }

  onPeerLeft(/** @type {string} */ id) {
    if (this.peers.has(id) || this.infos.has(id)) this._removePeer(id);
  }

  /** @param {SignalPayload & {from: string}} msg */
  onSignal(msg) {
    const { from, conn } = msg;
    if (msg.view) {
      // About what we send, not about a connection: any connection of ours to it.
      this._emit('view', { id: from, view: msg.view });
      return;
    }
    const offer = !!msg.description && msg.description.type === 'offer';
    let peer = this.peers.get(from);
    if (conn !== undefined && conn === this.retired.get(from)) {
      this._trace(from, conn, `dropped a ${kindOf(msg)} of a connection we closed`);
      if (msg.description) this._slowPeer(from, conn);
      return;
    }
    if (!peer) {
      // Only an offer starts a connection; anything else from a stranger is left over.
      if (!offer) return;
      peer = this._connect(from, { initiator: false, conn: conn || this.env.newConnId() });
    } else if (peer.conn === null) {
      // A connection waiting for its first offer takes that offer's id.
      if (offer) peer.conn = conn || this.env.newConnId();
    } else if (conn !== undefined && conn !== peer.conn) {
      if (!offer) { // stale: an answer or candidate of a connection already replaced
        this._trace(from, conn, `dropped a stale ${kindOf(msg)}`);
        return;
      }
      // Both sides built a fresh connection at once (say one side resumed after an
      // outage that swallowed the other's offer): the impolite side keeps its own and
      // sends it again, since the other side may never have seen it.
      if (peer.offeringFresh && !peer.polite) {
        this._trace(from, conn, 'both built a fresh connection: ours stands, offer sent again');
        peer.resendOffer();
        return;
      }
      this.rebuilds += 1;
      peer = this._connect(from, { initiator: false, conn, rebuilt: true });
      this._countersChanged();
    }
    peer.handleSignal(msg);
  }

  /** Fresh TURN credentials: used for every connection from now on, open ones included. */
  onIceServers(/** @type {{iceServers: RTCIceServer[], iceTransportPolicy: RTCIceTransportPolicy}} */ m) {
    this._iceConfig(m);
    for (const peer of this.peers.values()) {
      try {
        peer.setConfiguration(this.config);
      } catch (err) {
        console.warn(`peer ${peer.id}: new ICE servers refused`, err);
      }
    }
  }

  /** @param {{error: string, value: string, fatal: boolean, maxPeers?: number, lockedBy?: string}} e */
  onError(e) {
    if (e.error === 'room-full') {
      if (this.signaling) this.signaling.stop();
      const maxPeers = typeof e.maxPeers === 'number' ? e.maxPeers : this.maxPeers || null;
      this._end('full', { maxPeers, value: e.value });
    } else if (e.error === 'bad-room') {
      if (this.signaling) this.signaling.stop();
      this._end('error', { value: e.value });
    } else if (e.error === 'room-locked') {
      if (this.signaling) this.signaling.stop();
      this._end('locked', { lockedBy: e.lockedBy || null, value: e.value });
    } else if (e.error === 'bad-name') {
      this._emit('notice', { value: e.value });
    } else {
      this._emit('error', e);
    }
  }

  onSignalingState(/** @type {import('./signaling.js').SignalingState} */ state) {
    if (this.phase === 'full' || this.phase === 'left' || this.phase === 'error') return;
    if (state === 'lost') this._setPhase('reconnecting');
  }

  /** The close that follows at once turns into `reconnecting`, which says why. */
  onShutdown(/** @type {{value: string}} */ s) {
    this.serverAway = true;
    this.awayNote = s.value || '';
  }
}

/** @param {SignalPayload} msg */
function kindOf(msg) {
  return msg.description ? msg.description.type : 'candidate';
}
