// One connection to one remote participant: an RTCPeerConnection driven by the
// "perfect negotiation" pattern (webrtc/samples, MDN), trickle ICE, and repair when
// the media path or the negotiation gets stuck. No DOM here: call.js listens to events.
//
// Rules (docs/protocol.md):
//  - roles come from the ids alone, so both sides agree without asking: the larger id
//    is *polite* (rolls back its own offer on a collision), the smaller is *impolite*
//    (ignores a colliding offer);
//  - an impolite page keeps the offer it ignored; if no answer to its own offer comes
//    within COLLISION_WAIT_MS (the other side may be a client that cannot roll back),
//    it rolls back, answers the kept offer, and offers its own change again;
//  - every signal carries `conn`, the id of this RTCPeerConnection; which connection
//    a signal belongs to is decided by call.js before it reaches this object;
//  - the first offer (initiator) has one audio then one video transceiver, both
//    sendrecv; the answering side sends on the transceivers the offer created.
//    Muting is replaceTrack(), never renegotiation.

/** @typedef {'connecting'|'connected'|'reconnecting'|'failed'|'closed'} PeerState */
/** @typedef {{audio: MediaStreamTrack|null, video: MediaStreamTrack|null}} LocalTracks */
/** @typedef {{description?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit|null, conn?: string,
 *   view?: {width: number, height: number}}} SignalPayload */

/**
 * What a peer needs from the outside world, so that it runs with fakes in Node.
 * @typedef {object} Env
 * @property {(config: RTCConfiguration) => RTCPeerConnection} createPeerConnection
 * @property {() => MediaStream} createStream
 * @property {(fn: () => void, ms: number) => number} setTimeout
 * @property {(id: number|undefined) => void} clearTimeout
 * @property {() => string} newConnId  a fresh connection id (1-32 of A-Za-z0-9_-)
 */

export const RESTART_AFTER_DISCONNECTED = 3500;
export const REBUILD_AFTER_RESTART = 10000;
/** A first connection that has not come up by then is treated like a failed one. */
export const CONNECT_TIMEOUT = 15000;
/** An offer/answer exchange that has not finished by then is stuck (a lost frame). */
export const NEGOTIATION_TIMEOUT = 10000;
/** An unanswered offer is sent again this many times (every NEGOTIATION_TIMEOUT) before
 * it is given up: a slow peer's late answer to the same offer is still good, while a
 * rollback would throw away the work both sides did. */
export const OFFER_RESENDS = 2;
/** A connection whose ICE checks are under way (`checking`) is given this many more
 * waits of the timer that fired before it is restarted or rebuilt: on a starved device
 * ICE completes late, and the browser itself turns it `failed` if it cannot complete. */
export const ICE_PATIENCE = 2;
/** How long an impolite page waits for the answer to its own offer before it gives
 * way to a colliding offer it ignored. */
export const COLLISION_WAIT_MS = 2000;
/** The most the repair timers (CONNECT_TIMEOUT, NEGOTIATION_TIMEOUT,
 * REBUILD_AFTER_RESTART) are stretched for a peer that has shown itself slow (see
 * Call: an answer or offer of a connection already given up came after all). */
export const MAX_SLOWNESS = 4;

const KINDS = /** @type {const} */ (['audio', 'video']);

/** The environment of a real page. */
export function browserEnv() {
  /** @type {Env} */
  const env = {
    createPeerConnection: (config) => new RTCPeerConnection(config),
    createStream: () => new MediaStream(),
    setTimeout: (fn, ms) => window.setTimeout(fn, ms),
    clearTimeout: (id) => window.clearTimeout(id),
    newConnId,
  };
  return env;
}

/** 8 random bytes in hex: a connection id no other connection of this pair will share. */
export function newConnId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Events (CustomEvent, payload in `detail`): `state` ({state}), `track` ({stream}) when
 * the remote stream gains a track, `share-track` ({track, stream}) for a track of the
 * peer's screen share, `rebuild` ({}) when an ICE restart did not help and
 * the connection should be replaced, `ice-restart` ({count}).
 */
export class Peer extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.id          remote peer id
   * @param {string} o.localId     our own peer id
   * @param {string|null} o.conn   this connection's id; null while waiting for the
   *   offer that creates it (the answering side adopts that offer's id)
   * @param {RTCConfiguration} o.config  iceServers and iceTransportPolicy from the welcome
   * @param {LocalTracks} o.tracks   what to send (null: nothing of that kind right now)
   * @param {MediaStream} o.stream   the local stream (for msid)
   * @param {(msg: SignalPayload) => void} o.send  send a `signal` payload to this peer
   * @param {boolean} o.initiator    we make the first offer
   * @param {Env} o.env
   * @param {(what: string, conn: string|null) => void} [o.note]  told each step of
   *   negotiation and repair, for the connection log (see Call.traceOf)
   * @param {number} [o.slowness]  1 to MAX_SLOWNESS: how many times the usual repair
   *   timers this peer is given
   */
  constructor({ id, localId, conn, config, tracks, stream, send, initiator, env, note = () => {}, slowness = 1 }) {
    super();
    /** Repair timers are this many times their usual length (a slow peer's answers come
     * late; giving up on them early only starts a negotiation that will come late too). */
    this.slowness = slowness;
    this.note = (/** @type {string} */ what) => note(what, this.conn);
    this.id = id;
    this.polite = localId > id;
    this.initiator = initiator;
    this.conn = conn;
    this.env = env;
    this.tracks = { ...tracks };
    this.stream = stream;
    this.sendSignal = send;
    this.remoteStream = env.createStream();
    /** @type {PeerState} */
    this.state = 'connecting';
    this.makingOffer = false;
    this.ignoreOffer = false;
    /** @type {RTCSessionDescriptionInit|null} an offer ignored in a collision, kept for later */
    this.keptOffer = null;
    /** @type {(RTCIceCandidateInit|null)[]} candidates that came with the kept offer */
    this.keptCandidates = [];
    this.iceRestarts = 0;
    this.offerResends = 0;
    /** the first offer/answer exchange has completed (the connect wait starts again then) */
    this.negotiated = false;
    this.patience = 0;
    /** an ICE restart did not help and a rebuild was asked for */
    this.gaveUp = false;
    /** @type {Record<'audio'|'video', RTCRtpTransceiver|null>} where each kind of ours is sent */
    this.senders = { audio: null, video: null };
    /** @type {(streamId: string) => boolean} whether a remote stream is that peer's
     * screen share (its `screen` in the room); set by the call */
    this.isShare = () => false;
    /** @type {Promise<void>} */
    this.queue = Promise.resolve();
    /** @type {number|undefined} */
    this.restartTimer = undefined;
    /** @type {number|undefined} */
    this.rebuildTimer = undefined;
    /** @type {number|undefined} */
    this.collisionTimer = undefined;
    /** @type {number|undefined} */
    this.negotiationTimer = undefined;
    /** @type {number|undefined} */
    this.connectTimer = undefined;
    this._armConnectTimer();

    const pc = env.createPeerConnection(config);
    this.pc = pc;
    if (initiator) {
      for (const kind of KINDS) {
        this.senders[kind] = pc.addTransceiver(this.tracks[kind] || kind, { direction: 'sendrecv', streams: [stream] });
      }
    }
    pc.onnegotiationneeded = () => this._negotiate();
    pc.onicecandidate = ({ candidate }) => this._send({ candidate: candidate ? candidate.toJSON() : null });
    pc.ontrack = ({ track, streams }) => {
      // A screen share comes in a MediaStream of its own (docs/protocol.md): it is not
      // part of the camera stream, and goes to whoever draws shares.
      const stream = streams && streams[0];
      if (stream && this.isShare(stream.id)) {
        this._emit('share-track', { track, stream });
        return;
      }
      if (!this.remoteStream.getTracks().includes(track)) this.remoteStream.addTrack(track);
      this._emit('track', { stream: this.remoteStream });
    };
    pc.onconnectionstatechange = () => this._connectionChanged();
    pc.onsignalingstatechange = () => this._signalingChanged();
    pc.oniceconnectionstatechange = () => this.note(`ice ${pc.iceConnectionState}`);
  }

  _emit(/** @type {string} */ type, /** @type {unknown} */ detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Make the repair timers `slowness` times their usual length; those running start
   * again at the new length (the peer has just shown it is alive). */
  setSlowness(/** @type {number} */ slowness) {
    this.slowness = slowness;
    if (this.connectTimer !== undefined) {
      this.env.clearTimeout(this.connectTimer);
      this._armConnectTimer();
    }
    if (this.negotiationTimer !== undefined) {
      this.env.clearTimeout(this.negotiationTimer);
      this._armNegotiationTimer();
    }
    if (this.rebuildTimer !== undefined) {
      this.env.clearTimeout(this.rebuildTimer);
      this._armRebuildTimer();
    }
  }

  _armConnectTimer() {
    this.connectTimer = this.env.setTimeout(() => {
      this.connectTimer = undefined;
      if (this.state !== 'connecting') return;
      this.note(`connect timer: ${this.pc.connectionState}, ice ${this.pc.iceConnectionState}`);
      if (this._iceUnderWay()) this._armConnectTimer();
      else this.restartIce();
    }, CONNECT_TIMEOUT * this.slowness);
  }

  /** The repair under way is still making progress with a slow peer: ICE checks or the
   * DTLS handshake are running on a negotiated connection, our offer is still being sent
   * again (see OFFER_RESENDS), we are making our answer, or we are still waiting for the
   * first offer (a starved peer makes it late; an ICE restart of ours would only collide
   * with it). Worth waiting a little longer, at most ICE_PATIENCE times per connection. */
  _iceUnderWay() {
    const pc = this.pc;
    const ice = pc.iceConnectionState;
    const checking = pc.signalingState === 'stable' && (ice === 'checking'
      || ((ice === 'connected' || ice === 'completed') && pc.connectionState === 'connecting'));
    const offering = pc.signalingState === 'have-local-offer' && this.offerResends < OFFER_RESENDS;
    const answering = pc.signalingState === 'have-remote-offer';
    const awaiting = pc.signalingState === 'stable' && !this.negotiated && !this.initiator;
    if (!(checking || offering || answering || awaiting) || this.patience >= ICE_PATIENCE) return false;
    this.patience += 1;
    return true;
  }

  _setState(/** @type {PeerState} */ state) {
    if (this.state === state || this.state === 'closed') return;
    this.state = state;
    this._emit('state', { state });
  }

  /** Every signal names its connection (a connection still waiting has none to name). */
  _send(/** @type {SignalPayload} */ payload) {
    this.sendSignal(this.conn ? { conn: this.conn, ...payload } : payload);
  }

  _sendDescription() {
    const d = this.pc.localDescription;
    if (!d) return;
    this.note(`send ${d.type}`);
    this._send({ description: { type: d.type, sdp: d.sdp } });
  }

  async _negotiate() {
    const pc = this.pc;
    // A waiting side answers the newcomer's offer instead of making its own.
    if (!this.initiator && !pc.remoteDescription) return;
    if (pc.signalingState === 'closed') return;
    try {
      this.makingOffer = true;
      await pc.setLocalDescription();
      this._sendDescription();
    } catch (err) {
      console.warn(`peer ${this.id}: offer failed`, err);
    } finally {
      this.makingOffer = false;
    }
  }

  /** Handle a relayed `signal` payload of this connection; applied strictly in order. */
  handleSignal(/** @type {SignalPayload} */ msg) {
    return this._enqueue(() => this._handle(msg));
  }

  _enqueue(/** @type {() => Promise<void>} */ job) {
    this.queue = this.queue.then(job).catch((err) => {
      console.warn(`peer ${this.id}: signal failed`, err);
    });
    return this.queue;
  }

  /** @param {SignalPayload} msg */
  async _handle({ description, candidate }) {
    const pc = this.pc;
    if (pc.signalingState === 'closed') return;
    if (description) {
      this.note(`got ${description.type} in ${pc.signalingState}`);
      const collision = description.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) {
        this._keep(description);
        return;
      }
      if (description.type === 'answer') this._forgetKept(); // the other side gave way
      await pc.setRemoteDescription(description);
      if (description.type === 'offer') await this._answer();
    } else if (candidate !== undefined) {
      try {
        await pc.addIceCandidate(candidate === null ? undefined : candidate);
      } catch (err) {
        // Candidates of an offer we ignored fail now; keep them for when we answer it.
        if (this.keptOffer) this.keptCandidates.push(candidate);
        else console.warn(`peer ${this.id}: bad candidate`, err);
      }
    }
  }

  async _answer() {
    await this._attachLocal();
    await this.pc.setLocalDescription();
    this._sendDescription();
  }

  /** Impolite side of a collision: keep the ignored offer, and give way if our own
   * offer stays unanswered (the other side may be unable to roll back). */
  _keep(/** @type {RTCSessionDescriptionInit} */ offer) {
    this.note('collision: offer kept');
    this.keptOffer = offer;
    this.keptCandidates = [];
    if (this.collisionTimer === undefined) {
      this.collisionTimer = this.env.setTimeout(() => {
        this.collisionTimer = undefined;
        this._enqueue(() => this._answerKept());
      }, COLLISION_WAIT_MS);
    }
  }

  _forgetKept() {
    this.env.clearTimeout(this.collisionTimer);
    this.collisionTimer = undefined;
    this.keptOffer = null;
    this.keptCandidates = [];
  }

  async _answerKept() {
    const offer = this.keptOffer;
    const candidates = this.keptCandidates;
    this._forgetKept();
    const pc = this.pc;
    if (!offer || pc.signalingState === 'closed') return;
    this.note('collision: giving way to the kept offer');
    // Our own pending change comes back through negotiationneeded once stable again.
    if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
    this.ignoreOffer = false;
    await pc.setRemoteDescription(offer);
    await this._answer();
    for (const c of candidates) {
      await pc.addIceCandidate(c === null ? undefined : c).catch(() => {});
    }
  }

  /**
   * On the answering side, send our media on the transceivers the offer created: the
   * first one of each kind carries our track; any other m-line (a foreign client may
   * offer more, or only audio) just receives.
   */
  async _attachLocal() {
    for (const t of this.pc.getTransceivers()) {
      const kind = t.receiver.track.kind;
      if ((kind !== 'audio' && kind !== 'video') || this.senders[kind] || t.currentDirection === 'stopped') continue;
      if (t.direction === 'stopped' || t.direction === 'inactive') continue;
      this.senders[kind] = t;
      if (t.direction === 'recvonly') t.direction = 'sendrecv';
      await t.sender.replaceTrack(this.tracks[kind]);
      if (t.sender.setStreams) t.sender.setStreams(this.stream);
    }
  }

  /** Start or stop sending one kind (null stops the RTP stream; no renegotiation). */
  async setTrack(/** @type {'audio'|'video'} */ kind, /** @type {MediaStreamTrack|null} */ track) {
    if (this.tracks[kind] === track) return; // a toggle of the other kind: nothing to replace
    this.tracks[kind] = track;
    const t = this.senders[kind];
    if (t && this.pc.signalingState !== 'closed') await t.sender.replaceTrack(track);
  }

  setConfiguration(/** @type {RTCConfiguration} */ config) {
    this.pc.setConfiguration({ ...this.pc.getConfiguration(), ...config });
  }

  _connectionChanged() {
    const s = this.pc.connectionState;
    this.note(`connection ${s}`);
    if (s === 'connected') {
      this.gaveUp = false; // back: its own watchdog looks after it again
      this.env.clearTimeout(this.connectTimer);
      this.env.clearTimeout(this.restartTimer);
      this.env.clearTimeout(this.rebuildTimer);
      this.connectTimer = this.restartTimer = this.rebuildTimer = undefined;
      this._setState('connected');
    } else if (s === 'disconnected') {
      this._setState('reconnecting');
      if (this.restartTimer === undefined && this.rebuildTimer === undefined) {
        this.restartTimer = this.env.setTimeout(() => this.restartIce(), RESTART_AFTER_DISCONNECTED);
      }
    } else if (s === 'failed') {
      if (this.rebuildTimer === undefined) this.restartIce();
      else this._setState('failed');
    }
  }

  /** Watchdog: an offer/answer exchange that never finishes (a lost frame, a peer that
   * ignored us) is rolled back and retried with an ICE restart. */
  _signalingChanged() {
    const s = this.pc.signalingState;
    this.note(`signaling ${s}`);
    if (s === 'stable' || s === 'closed') {
      this.env.clearTimeout(this.negotiationTimer);
      this.negotiationTimer = undefined;
      this.offerResends = 0;
      if (s === 'stable' && !this.negotiated) {
        // The first exchange is done: ICE and DTLS start only now, and get the whole
        // connect wait. (A starved page can take longer to answer than to connect.)
        this.negotiated = true;
        if (this.connectTimer !== undefined) {
          this.env.clearTimeout(this.connectTimer);
          this._armConnectTimer();
        }
      }
    } else if (this.negotiationTimer === undefined && !this.gaveUp) {
      this._armNegotiationTimer();
    }
  }

  _armNegotiationTimer() {
    this.negotiationTimer = this.env.setTimeout(() => {
      this.negotiationTimer = undefined;
      this._enqueue(() => this._unstick());
    }, NEGOTIATION_TIMEOUT * this.slowness);
  }

  async _unstick() {
    const pc = this.pc;
    if (this.gaveUp || pc.signalingState === 'stable' || pc.signalingState === 'closed') return;
    if (pc.signalingState === 'have-local-offer' && this.offerResends < OFFER_RESENDS && !this.keptOffer) {
      // The offer or its answer may have been lost, or the other side is slow: the same
      // offer again costs nothing, and an answer to either copy completes it.
      this.offerResends += 1;
      this.note(`negotiation stuck: offer sent again (${this.offerResends})`);
      this._sendDescription();
      this._armNegotiationTimer();
      return;
    }
    this.note(`negotiation stuck in ${pc.signalingState}: rolling back`);
    if (pc.signalingState === 'have-local-offer' || pc.signalingState === 'have-remote-offer') {
      await pc.setLocalDescription({ type: 'rollback' });
    }
    this.restartIce(true);
  }

  /**
   * ICE restart through perfect negotiation; if it does not help within
   * REBUILD_AFTER_RESTART, ask for a rebuild (`rebuild` event).
   * @param {boolean} stuck  the negotiation, not the media path, is what failed
   */
  restartIce(stuck = false) {
    this.env.clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    if (this.state === 'closed' || this.gaveUp) return;
    if (!stuck && this.pc.connectionState === 'connected') return;
    this.iceRestarts += 1;
    this.note(`ICE restart ${this.iceRestarts}${stuck ? ' (negotiation stuck)' : ''}`);
    this._emit('ice-restart', { count: this.iceRestarts });
    if (this.pc.connectionState !== 'connected') this._setState('reconnecting');
    this.pc.restartIce();
    this.env.clearTimeout(this.rebuildTimer);
    this._armRebuildTimer();
  }

  _armRebuildTimer() {
    this.rebuildTimer = this.env.setTimeout(() => {
      this.rebuildTimer = undefined;
      if (this.state === 'closed') return;
      if (this.pc.connectionState !== 'connected' && this._iceUnderWay()) {
        this.note('rebuild timer: still under way, waiting');
        this._armRebuildTimer();
        return;
      }
      if (this.pc.connectionState !== 'connected' || this.pc.signalingState !== 'stable') {
        // Repair is now a fresh connection's job: stop our own watchdog.
        this.env.clearTimeout(this.negotiationTimer);
        this.negotiationTimer = undefined;
        this.gaveUp = true;
        this.note(`giving up: connection ${this.pc.connectionState}, signaling ${this.pc.signalingState}`);
        if (this.polite && this.pc.connectionState === 'connected') {
          // Only our own change went unanswered, and media still flows: nothing to
          // rebuild. Drop the change; the other side's next offer is welcome.
          this._enqueue(async () => {
            if (this.pc.signalingState === 'have-local-offer') await this.pc.setLocalDescription({ type: 'rollback' });
          });
          this.gaveUp = false;
          return;
        }
        // The polite side waits for the other side's fresh connection (call.js): to the
        // user that is still reconnecting, not a failure.
        this._setState(this.polite ? 'reconnecting' : 'failed');
        this._emit('rebuild', {});
      }
    }, REBUILD_AFTER_RESTART * this.slowness);
  }

  /** Send our outstanding offer again (its SDP carries the candidates gathered so far). */
  resendOffer() {
    if (this.pc.signalingState === 'have-local-offer') this._sendDescription();
  }

  /** Whether this is a fresh connection whose first offer is still unanswered. */
  get offeringFresh() {
    return this.initiator && !this.pc.remoteDescription && this.pc.signalingState !== 'closed';
  }

  close() {
    for (const t of [this.connectTimer, this.restartTimer, this.rebuildTimer, this.collisionTimer, this.negotiationTimer]) {
      this.env.clearTimeout(t);
    }
    this.connectTimer = this.restartTimer = this.rebuildTimer = this.collisionTimer = this.negotiationTimer = undefined;
    const pc = this.pc;
    pc.onnegotiationneeded = pc.onicecandidate = pc.ontrack = null;
    pc.onconnectionstatechange = pc.onsignalingstatechange = null;
    pc.close();
    this.state = 'closed';
  }
}
